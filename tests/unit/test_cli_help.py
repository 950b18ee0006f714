"""`guard --help` for a newcomer: commands in panels in a useful order, no `<bool>` after a flag, help
texts as written (a `[embedded]` is not eaten as markup), and a broker that cannot start says what to install."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from healing_guard import cli
from healing_guard.brokers import EMBEDDED_HINT, BrokerError, TansuBroker


def commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((*path, name))
        if hasattr(cmd, "commands"):  # a group (typer's own click or click's)
            out += commands(cmd, (*path, name))
    return out


def test_every_command_is_in_a_panel_in_order() -> None:
    top: Any = get_command(cli.app)
    listed = [n for names in cli.HELP_PANELS.values() for n in names]
    assert sorted(listed) == sorted(top.commands), set(listed) ^ set(top.commands)
    text = CliRunner().invoke(cli.app, ["--help"], terminal_width=200).output
    positions = [text.index(f" {name} ") for name in listed]
    assert positions.index(min(positions)) == 0 and "Start here" in text and "Other" not in text
    for title in cli.HELP_PANELS:
        assert title in text


def test_no_flag_shows_a_value_type_anywhere() -> None:
    top: Any = get_command(cli.app)
    seen = 0
    for path in commands(top):
        res = CliRunner().invoke(cli.app, [*path, "--help"], terminal_width=200)
        assert res.exit_code == 0, (path, res.output)
        assert "<bool>" not in res.output and "<list[" not in res.output, (path, res.output)
        seen += 1
    assert seen > 40
    watch = CliRunner().invoke(cli.app, ["watch", "--help"], terminal_width=200).output
    assert "<str>..." in watch  # a repeatable option


def test_a_broker_that_cannot_start_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    def start(self: Any, timeout: float = 30.0) -> str:
        raise BrokerError(EMBEDDED_HINT)

    monkeypatch.setattr(TansuBroker, "start", start)
    monkeypatch.setattr(sys, "argv", ["guard", "worker", "--broker", "embedded", "--no-create-topics"])
    monkeypatch.setenv("GUARD_CONFIG", "")
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "pip install 'self-healing-pipeline-guard[embedded]'" in err, err
    assert "Traceback" not in err
