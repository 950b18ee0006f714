"""infra/vector: the Vector configuration ships ci.logs chunks the guard accepts.

There is no Vector binary here, so the configuration is checked as data (sources, transforms and sinks
wired to the guard's topics and record fields) and its Lua transform, which does the chunking, runs in
lupa's Lua 5.4 with Vector's v2 hook protocol (``process(event, emit)``, timer handlers, ``shutdown``).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
import yaml

lupa = pytest.importorskip("lupa.lua54")

from healing_guard.patterns.library import load_library  # noqa: E402
from healing_guard.patterns.matcher import Matcher  # noqa: E402
from healing_guard.schemas import DeadLetter, JobEvent, LogChunk  # noqa: E402
from healing_guard.engine.window import JobWindow, Limits, Ready, on_chunk, on_job_event  # noqa: E402
from tests.support.paths import ROOT

VECTOR = ROOT / "infra" / "vector"
CONFIG = yaml.safe_load((VECTOR / "vector.yaml").read_text())


class Vector:
    """Vector's Lua v2 transform protocol, driven by hand with a clock the test controls."""

    def __init__(self, root: str = "/var/log/ci") -> None:
        self.lua = lupa.LuaRuntime(unpack_returned_tuples=True)
        self.t = 1_000_000
        self.out: list[dict[str, Any]] = []
        self.lua.execute(f'package.path = "{VECTOR}/?.lua;" .. package.path')
        self.lua.execute(CONFIG["transforms"]["ci_log_chunks"]["source"].replace("${GUARD_LOG_DIR:-/var/log/ci}", root))
        self.lua.globals().now = lambda: self.t
        self.emit = lambda ev: self.out.append(self._py(ev)["log"])
        hooks = CONFIG["transforms"]["ci_log_chunks"]["hooks"]
        self.lua.globals()[hooks["init"]](self.emit)

    def _py(self, v: Any) -> Any:
        if lupa.lua_type(v) != "table":
            return v.decode() if isinstance(v, bytes) else v
        keys = list(v.keys())
        if keys and all(isinstance(k, int) for k in keys) and sorted(keys) == list(range(1, len(keys) + 1)):
            return [self._py(v[k]) for k in range(1, len(keys) + 1)]
        return {k: self._py(x) for k, x in v.items()}

    def line(self, file: str, message: str | bytes, offset: int | None = None) -> None:
        fields: dict[str, Any] = {"file": file, "message": message}
        if offset is not None:
            fields[CONFIG["sources"]["ci_log_files"]["offset_key"]] = offset
        event = self.lua.table_from({"log": self.lua.table_from(fields)})
        self.lua.globals()[CONFIG["transforms"]["ci_log_chunks"]["hooks"]["process"]](event, self.emit)

    def tick(self, seconds: int) -> None:
        self.t += seconds
        for timer in CONFIG["transforms"]["ci_log_chunks"]["timers"]:
            self.lua.globals()[timer["handler"]](self.emit)

    def shutdown(self) -> None:
        self.lua.globals()[CONFIG["transforms"]["ci_log_chunks"]["hooks"]["shutdown"]](self.emit)

    def routed(self, route: str) -> list[dict[str, Any]]:
        """The events Vector's route transform sends to a sink, encoded as that sink encodes them."""
        kind = CONFIG["transforms"]["guard_route"]["route"][route].split('"')[1]
        sink = next(s for s in CONFIG["sinks"].values() if s["inputs"] == [f"guard_route.{route}"])
        keep = sink["encoding"]["only_fields"]
        return [orjson.loads(orjson.dumps({k: e[k] for k in keep if k in e}))
                for e in self.out if e["guard_kind"] == kind]


def test_the_pipeline_is_wired_to_the_guards_topics_and_fields() -> None:
    assert CONFIG["sources"]["ci_log_files"]["type"] == "file"
    assert CONFIG["transforms"]["ci_log_chunks"]["inputs"] == ["ci_log_files"]
    assert CONFIG["transforms"]["guard_route"]["inputs"] == ["ci_log_chunks"]
    sinks = {s["topic"].split("}")[-1]: s for s in CONFIG["sinks"].values()}
    assert set(sinks) == {LogChunk.topic, DeadLetter.topic}
    logs = sinks[LogChunk.topic]
    assert logs["type"] == "kafka" and logs["key_field"] == "job_key" and logs["encoding"]["codec"] == "json"
    names = {f for f in LogChunk.__dataclass_fields__}
    assert set(logs["encoding"]["only_fields"]) <= names
    assert {"provider", "owner", "repo", "job_id", "seq", "lines"} <= set(logs["encoding"]["only_fields"])
    dead = set(sinks[DeadLetter.topic]["encoding"]["only_fields"])
    assert dead <= set(DeadLetter.__dataclass_fields__) and {"source_topic", "reason", "original_b64"} <= dead
    # Vector discards a line longer than max_line_bytes; the transform cuts long lines instead
    assert CONFIG["sources"]["ci_log_files"]["max_line_bytes"] >= 50 << 20
    v = Vector()
    for name in [*CONFIG["transforms"]["ci_log_chunks"]["hooks"].values(),
                 *(t["handler"] for t in CONFIG["transforms"]["ci_log_chunks"]["timers"])]:
        assert lupa.lua_type(v.lua.globals()[name]) == "function", name


def test_a_log_becomes_gapless_chunks_the_guard_assembles_and_diagnoses() -> None:
    v = Vector()
    long_line = "y" * 600_000
    lines = [f"##[group]Run pytest step {i}" if i == 0 else f"collected line {i} ok" for i in range(1203)]
    lines += ["", "windows line\r", long_line,
              "E   requests.exceptions.ConnectionError: HTTPSConnectionPool(host='pypi.org', port=443): "
              "Max retries exceeded with url: /simple/ (Caused by NewConnectionError: "
              "[Errno 111] Connection refused)",
              "##[error]Process completed with exit code 1."]
    path = "/var/log/ci/github/acme/web/987654321.2.log"
    for line in lines:
        v.line(path, line)
    v.tick(3)  # quiet for longer than IDLE_SECONDS: the partial chunk goes out
    n_before_eof = len(v.out)
    v.tick(400)  # quiet for longer than EOF_SECONDS: the last line goes out marked eof
    assert len(v.out) == n_before_eof + 1 and v.out[-1]["lines"] == [lines[-1]]
    chunks = [LogChunk.from_dict(d) for d in v.routed("chunks")]
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert [c.eof for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert {(c.provider, c.owner, c.repo, c.job_id, c.attempt) for c in chunks} == {("github", "acme", "web", "987654321", 2)}
    assert all(e["job_key"] == "github/acme/web/987654321" for e in v.out)
    n = 1
    for c in chunks:
        assert c.first_line == n and len(c.lines) <= 500
        assert len(orjson.dumps(c.to_dict())) < 1_000_000  # fits Kafka's default message size
        n += len(c.lines)
    got = [line for c in chunks for line in c.lines]
    want = lines[:1204] + ["windows line", long_line[:262144], long_line[262144:524288], long_line[524288:]] + lines[-2:]
    assert got == want

    matcher = Matcher(load_library(), markers=True)
    w, limits = JobWindow("github/acme/web/987654321"), Limits()
    for c in reversed(chunks):  # Kafka keeps a partition in order; the window copes with any order anyway
        w, outs = on_chunk(w, c, matcher, limits, now=0.0)
        assert outs == []
    w, outs = on_job_event(w, JobEvent(provider="github", owner="acme", repo="web", job_id="987654321",
                                       job_name="test", status="completed", conclusion="failure", attempt=2),
                           limits, now=0.0)
    ready = [o for o in outs if isinstance(o, Ready)]
    assert len(ready) == 1 and ready[0].log_complete and ready[0].total_lines == len(want)
    assert any("ConnectionError" in e.text for e in ready[0].evidence)


def test_gitlab_subgroups_and_attempts_come_from_the_path() -> None:
    v = Vector(root="/srv/logs")
    v.line("/srv/logs/gitlab/group/sub/project/4455.log", "a")
    v.line("/srv/logs/jenkins/ci/folder%2Fpipeline/77.3.log", "b")
    v.shutdown()
    got = {(c["owner"], c["repo"], c["job_id"], c["attempt"], c["eof"]) for c in v.routed("chunks")}
    assert got == {("group/sub", "project", "4455", 1, False), ("ci", "folder%2Fpipeline", "77", 3, False)}


@pytest.mark.parametrize("path, reason", [
    ("/var/log/ci/travis/o/r/1.log", "unknown provider 'travis'"),
    ("/var/log/ci/github/o/1.log", "<provider>/<owner>/<repo>/<job_id>"),
    ("/tmp/github/o/r/1.log", "not under /var/log/ci"),
    ("/var/log/ci/github/o/r/1.txt", "must end in .log"),
])
def test_a_file_that_names_no_job_goes_to_the_dead_letter_topic_line_by_line(path: str, reason: str) -> None:
    v = Vector()
    raw = "token ü \x00 line".encode()
    v.line(path, raw)
    v.line(path, "second")
    dead = [DeadLetter.from_dict(d) for d in v.routed("deadletter")]
    assert len(dead) == 2 and v.routed("chunks") == []
    assert reason in dead[0].reason
    assert base64.b64decode(dead[0].original_b64) == raw and dead[0].original_size == len(raw)
    assert dead[1].original_b64 == base64.b64encode(b"second").decode()


def test_a_line_after_eof_is_not_lost() -> None:
    v = Vector()
    path = "/var/log/ci/circleci/o/r/5.log"
    v.line(path, "first")
    v.tick(400)
    v.line(path, "late")
    assert [(c["lines"], c["eof"]) for c in v.routed("chunks")] == [(["first"], True)]
    dead = v.routed("deadletter")
    assert len(dead) == 1 and base64.b64decode(dead[0]["original_b64"]) == b"late" and "eof" in dead[0]["reason"]


def test_a_log_vector_resumed_mid_file_after_a_restart_goes_to_the_dead_letter_topic() -> None:
    v = Vector()
    v.line("/var/log/ci/github/o/r/1.log", "from the start", offset=0)
    v.line("/var/log/ci/github/o/r/1.log", "next", offset=15)
    v.line("/var/log/ci/github/o/r/2.log", "resumed", offset=4096)  # first sight of 2.log is mid-file
    v.line("/var/log/ci/github/o/r/2.log", "and on", offset=4104)
    v.tick(400)
    assert [c["lines"] for c in v.routed("chunks")] == [["from the start", "next"]]
    dead = v.routed("deadletter")
    assert [base64.b64decode(d["original_b64"]) for d in dead] == [b"resumed", b"and on"]
    assert "byte 4096" in dead[0]["reason"] and "guard forward" in dead[0]["reason"]
