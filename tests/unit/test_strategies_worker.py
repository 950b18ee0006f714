"""healing-strategies.yml as the worker and the CLI read it (through Settings)."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from healing_guard.cli import app
from healing_guard.remediate.gate import NEVER
from healing_guard.settings import Settings
from healing_guard.strategies_config import apply_to_settings, parse_strategies

NET_LOG = "npm ERR! code ECONNRESET\nnpm ERR! network request to https://registry.npmjs.org/x failed, reason: read ECONNRESET\n"


def test_apply_thresholds_gates_and_disabled_strategies() -> None:
    cfg = parse_strategies("thresholds: {flaky: 0.7, quarantine: 0.4, confidence: 0.55}\n"
                           "actions:\n  network_backoff: {enabled: false}\n  oom_recovery: {confidence_threshold: 0.9}\n")
    s = apply_to_settings(Settings(), cfg)
    assert (s.flaky_retry_threshold, s.quarantine_threshold, s.confidence_threshold) == (0.7, 0.4, 0.55)
    assert s.auto_thresholds["network"] == NEVER and s.auto_thresholds["rate_limit"] == NEVER
    assert s.auto_thresholds["oom"] == 0.9
    assert apply_to_settings(Settings(), parse_strategies("version: 1\n")) == Settings()


def test_cli_reads_the_strategies_file_from_the_environment(tmp_path: Path) -> None:
    log = tmp_path / "net.log"
    log.write_text(NET_LOG)
    runner = CliRunner()
    r = runner.invoke(app, ["analyze", "--json", str(log)], env={})
    assert orjson.loads(r.stdout)["automatic"] is True
    strategies = tmp_path / "healing-strategies.yml"
    strategies.write_text("actions:\n  network_backoff:\n    enabled: false\n")
    r = runner.invoke(app, ["analyze", "--json", str(log)], env={"GUARD_STRATEGIES": str(strategies)})
    row = orjson.loads(r.stdout)
    assert row["category"] == "network" and row["automatic"] is False and row["action"] == "notify_oncall"
    strategies.write_text("actions:\n  network_backof:\n    enabled: false\n")
    r = runner.invoke(app, ["analyze", "--json", str(log)], env={"GUARD_STRATEGIES": str(strategies)})
    assert r.exit_code == 2 and "network_backof" in r.stderr and "healing-strategies.yml:2" in r.stderr.replace("\n", "")
