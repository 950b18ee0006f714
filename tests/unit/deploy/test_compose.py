"""docker-compose.yml (not run here: no Docker engine) names guard commands and options that exist, and
wires every guard process to the same broker, command key and warehouse."""

from __future__ import annotations

from typing import Any

import yaml
from typer.testing import CliRunner

from healing_guard.cli import app
from tests.support.paths import ROOT


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])


def test_every_guard_service_runs_a_command_the_cli_accepts() -> None:
    guard = {name: svc for name, svc in compose().items() if svc.get("build") == "."}
    assert {"topics", "keys", "worker", "executor", "api", "webhooks"} <= set(guard)
    for name, svc in guard.items():
        if "entrypoint" in svc:
            continue  # the keys job runs python -m healing_guard.signing
        res = CliRunner().invoke(app, [*svc["command"], "--help"])
        assert res.exit_code == 0, (name, svc["command"], res.output)


def test_the_guard_processes_share_broker_key_and_warehouse() -> None:
    s = compose()
    for name in ("worker", "executor", "api", "webhooks"):
        assert s[name]["environment"]["GUARD_BROKER_URL"] == "kafka://kafka:9092", name
    for name in ("worker", "executor", "api"):
        assert s[name]["environment"]["GUARD_COMMAND_KEY_FILE"] == "/data/command-keys", name
        assert s[name]["depends_on"]["keys"]["condition"] == "service_completed_successfully"
    assert s["worker"]["environment"]["GUARD_CLICKHOUSE_DSN"] == s["api"]["environment"]["GUARD_CLICKHOUSE_DSN"]
    assert "new-key /data/command-keys" in " ".join(s["keys"]["entrypoint"])
    assert "--live" not in s["executor"]["command"]  # a dry run until the operator says otherwise
