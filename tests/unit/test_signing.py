"""Signed commands (healing_guard/signing.py, executor/authn.py) and the broker-credential settings."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from healing_guard.executor.authn import CommandGate
from healing_guard.schemas import Command, SchemaError
from healing_guard.settings import ConfigError, load_settings
from healing_guard.signing import (
    KEY_ID_HEADER, SIGNATURE_HEADER, Keyring, keyring_of, main, read_keyring, sign_headers, signature, write_key,
)

K1 = "old-secret-0123456789abcdef"
K2 = "new-secret-0123456789abcdef"


def command(n: int = 1) -> Command:
    return Command(provider="github", owner="acme", repo="shop", job_id=str(n), command_id=f"cmd-{n}",
                   attempt=1, action="retry", reason="r", category="network", confidence=0.9)


def keyring(**keys: str) -> Keyring:
    return Keyring(keys={k: v.encode() for k, v in keys.items()}, signing_id=next(iter(keys)))


def record(value: bytes, headers: list[tuple[str, bytes]] | None) -> Any:
    return SimpleNamespace(topic="guard.actions", partition=0, offset=0, value=value, headers=tuple(headers or ()))


# --- sign / verify ----------------------------------------------------------------------------------

def test_a_signed_command_is_accepted() -> None:
    ring = keyring(k1=K1)
    value = command().to_json()
    headers = ring.headers(value)
    assert headers is not None and dict(headers)[KEY_ID_HEADER] == b"k1"
    assert dict(headers)[SIGNATURE_HEADER] == signature(K1.encode(), "k1", value).encode()
    assert ring.verify(value, headers) is None
    assert CommandGate(ring).command(record(value, headers)) == command()


def test_a_tampered_body_is_refused() -> None:
    ring = keyring(k1=K1)
    value = command().to_json()
    headers = ring.headers(value)
    tampered = value.replace(b'"retry"', b'"cancel"')
    assert tampered != value
    reason = ring.verify(tampered, headers)
    assert reason is not None and reason.startswith("bad signature for key id k1")
    # one byte anywhere, even whitespace the JSON parser would not see
    assert ring.verify(value + b" ", headers) is not None


def test_a_command_signed_with_another_key_is_refused() -> None:
    value = command().to_json()
    forged = keyring(k1="attacker-key-0123456789abcdef").headers(value)
    reason = keyring(k1=K1).verify(value, forged)
    assert reason is not None and reason.startswith("bad signature for key id k1")
    # and a key id the executor does not hold
    other = keyring(k9=K1).headers(value)
    reason = keyring(k1=K1).verify(value, other)
    assert reason == "signed with key id k9, which this executor does not hold (it accepts: k1)"


def test_missing_or_malformed_headers_are_refused() -> None:
    ring = keyring(k1=K1)
    value = command().to_json()
    good = ring.headers(value)
    assert good is not None
    assert ring.verify(value, None) == ("unsigned command: no guard-signature header, and this executor carries "
                                        "out signed commands only")
    assert ring.verify(value, [h for h in good if h[0] != KEY_ID_HEADER]) == \
        "signed command without a guard-key-id header"
    assert ring.verify(value, good + [(SIGNATURE_HEADER, dict(good)[SIGNATURE_HEADER])]) == \
        "more than one guard-signature or guard-key-id header"
    upper = [(k, v.upper() if k == SIGNATURE_HEADER else v) for k, v in good]
    assert ring.verify(value, upper) == "guard-signature is not 64 lowercase hex digits"
    assert ring.verify(value, [(KEY_ID_HEADER, b"k1"), (SIGNATURE_HEADER, b"")]) is not None


def test_the_signature_covers_the_key_id() -> None:
    """Two key ids with one secret: a signature made under one id does not verify under the other."""
    value = command().to_json()
    ring = Keyring(keys={"a": K1.encode(), "b": K1.encode()}, signing_id="a")
    headers = ring.headers(value)
    assert headers is not None
    moved = [(KEY_ID_HEADER, b"b") if k == KEY_ID_HEADER else (k, v) for k, v in headers]
    assert ring.verify(value, headers) is None
    assert ring.verify(value, moved) is not None


def test_key_rotation_keeps_the_old_key_id_accepted(tmp_path: Path) -> None:
    """New key in GUARD_COMMAND_KEY (k2), the old one (k1) still in the keyring file: k2 signs, both verify.
    With k1 gone from the file, what k1 signed is refused."""
    old_file = tmp_path / "old-keys"
    old_file.write_text(f"# keys\nk1 {K1}\n")
    value = command().to_json()
    signed_by_k1 = sign_headers(load_settings(None, env={"GUARD_COMMAND_KEY_FILE": str(old_file)}), value)
    assert signed_by_k1 is not None and dict(signed_by_k1)[KEY_ID_HEADER] == b"k1"

    rotated = load_settings(None, env={"GUARD_COMMAND_KEY": K2, "GUARD_COMMAND_KEY_ID": "k2",
                                       "GUARD_COMMAND_KEY_FILE": str(old_file)})
    ring = keyring_of(rotated)
    assert ring.signing_id == "k2" and sorted(ring.keys) == ["k1", "k2"]
    signed_by_k2 = sign_headers(rotated, value)
    assert signed_by_k2 is not None and dict(signed_by_k2)[KEY_ID_HEADER] == b"k2"
    assert ring.verify(value, signed_by_k1) is None
    assert ring.verify(value, signed_by_k2) is None

    only_new = keyring_of(load_settings(None, env={"GUARD_COMMAND_KEY": K2, "GUARD_COMMAND_KEY_ID": "k2"}))
    assert only_new.verify(value, signed_by_k2) is None
    assert only_new.verify(value, signed_by_k1) == \
        "signed with key id k1, which this executor does not hold (it accepts: k2)"


def test_new_key_puts_the_new_key_first_and_keeps_the_old(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "command-keys"
    assert main(["new-key", str(path)]) == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    (first,) = read_keyring(path)
    assert first[0] == "k1" and len(first[1]) >= 43
    assert main(["new-key", str(path)]) == 0
    keys = read_keyring(path)
    assert [k for k, _ in keys] == ["k2", "k1"] and keys[1] == first
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(ConfigError, match="already in the file"):
        write_key(path, "k1")
    assert [f for f in os.listdir(path.parent) if f.startswith(".command-keys.")] == []  # no temp left
    assert main(["new-key"]) == 2


# --- the executor's gate ----------------------------------------------------------------------------

def test_the_gate_refuses_unsigned_commands_once_a_key_is_configured() -> None:
    value = command().to_json()
    gate = CommandGate(keyring(k1=K1))
    with pytest.raises(SchemaError) as info:
        gate.command(record(value, None))
    assert info.value.field == "headers.guard-signature"
    assert info.value.reason.startswith("refused: unsigned command")
    assert gate.refused == 1


def test_without_a_key_the_gate_lets_unsigned_commands_through(caplog: pytest.LogCaptureFixture) -> None:
    s = load_settings(None, env={})
    assert sign_headers(s, b"{}") is None  # the worker and the API sign nothing
    with caplog.at_level("WARNING", logger="healing_guard.executor"):
        gate = CommandGate.from_settings(s)
    assert "commands are NOT authenticated" in caplog.text
    assert gate.command(record(command().to_json(), None)) == command()
    with pytest.raises(SchemaError):  # not JSON: the schema's dead letter, as before
        gate.command(record(b"{not json", None))


# --- settings ---------------------------------------------------------------------------------------

def test_key_settings_are_checked_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_settings(None, env={"GUARD_COMMAND_KEY": "short"})
    with pytest.raises(ConfigError, match="key id"):
        load_settings(None, env={"GUARD_COMMAND_KEY": K1, "GUARD_COMMAND_KEY_ID": "bad id"})
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(None, env={"GUARD_COMMAND_KEY_FILE": str(tmp_path / "missing")})
    bad = tmp_path / "bad"
    bad.write_text(f"k1 {K1}\nk2\n")
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={"GUARD_COMMAND_KEY_FILE": str(bad)})
    assert info.value.line == 2 and "KEY_ID SECRET" in info.value.reason
    bad.write_text(f"k1 {K1}\nk1 {K2}\n")
    with pytest.raises(ConfigError, match="appears twice"):
        load_settings(None, env={"GUARD_COMMAND_KEY_FILE": str(bad)})
    cfg = tmp_path / "healing-config.yml"
    cfg.write_text(f"signing:\n  key: {K1}\n  key_id: prod-1\n")
    assert keyring_of(load_settings(cfg, env={})).signing_id == "prod-1"


def test_secrets_stay_out_of_the_settings_repr() -> None:
    s = load_settings(None, env={"GUARD_COMMAND_KEY": K1, "GUARD_BROKER_SASL_MECHANISM": "plain",
                                 "GUARD_BROKER_USERNAME": "worker", "GUARD_BROKER_PASSWORD": "pw-of-the-worker"})
    assert s.broker_sasl_mechanism == "PLAIN" and s.command_key == K1
    assert K1 not in repr(s) and "pw-of-the-worker" not in repr(s)


def test_broker_credentials_reach_aiokafka_and_faust(tmp_path: Path) -> None:
    import faust

    from healing_guard.kafka_auth import client_options, faust_credentials
    from healing_guard.streams.app import create_app

    plain = load_settings(None, env={"GUARD_DATA_DIR": str(tmp_path)})
    assert client_options(plain) == {} and faust_credentials(plain) is None
    s = load_settings(None, env={"GUARD_BROKER_SASL_MECHANISM": "SCRAM-SHA-512", "GUARD_BROKER_USERNAME": "worker",
                                 "GUARD_BROKER_PASSWORD": "pw-of-the-worker", "GUARD_DATA_DIR": str(tmp_path)})
    assert client_options(s) == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                                 "sasl_plain_username": "worker", "sasl_plain_password": "pw-of-the-worker"}
    creds = create_app(s).conf.broker_credentials
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == ("worker", "pw-of-the-worker", "SCRAM-SHA-512")
    tls = load_settings(None, env={"GUARD_BROKER_SASL_MECHANISM": "PLAIN", "GUARD_BROKER_USERNAME": "w",
                                   "GUARD_BROKER_PASSWORD": "p", "GUARD_BROKER_TLS": "true"})
    assert client_options(tls)["security_protocol"] == "SASL_SSL" and client_options(tls)["ssl_context"] is not None
    with pytest.raises(ConfigError, match="set broker.username and broker.password"):
        load_settings(None, env={"GUARD_BROKER_SASL_MECHANISM": "PLAIN", "GUARD_BROKER_USERNAME": "worker"})
    with pytest.raises(ConfigError, match="no SASL mechanism"):
        load_settings(None, env={"GUARD_BROKER_USERNAME": "worker", "GUARD_BROKER_PASSWORD": "pw"})
    with pytest.raises(ConfigError, match="GSSAPI"):
        load_settings(None, env={"GUARD_BROKER_SASL_MECHANISM": "GSSAPI"})


def test_guard_acls_leave_guard_actions_to_the_worker() -> None:
    from healing_guard.kafka_auth import guard_acls

    s = load_settings(None, env={"GUARD_TOPIC_PREFIX": "p.", "GUARD_APP_ID": "guard"})
    acls = guard_acls(s, api="api")
    on_actions = {(a.principal, a.operation) for a in acls if a.name == "p.guard.actions"}
    assert on_actions == {("User:worker", "write"), ("User:worker", "describe"), ("User:api", "write"),
                          ("User:api", "describe"), ("User:executor", "read"), ("User:executor", "describe")}
    assert all(a.permission == "allow" and a.pattern == "literal" for a in acls)
    assert ("User:executor", "group", "guard-executor", "read") in {(a.principal, a.resource_type, a.name, a.operation)
                                                                     for a in acls}
