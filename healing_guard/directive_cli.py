"""``guard directive``: the command line of healing_guard/directive_client.py (see there)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from . import directive_client as client
from .directives import TOOLS

directive_app = typer.Typer(no_args_is_help=True, help="Obtain and apply the guard's fix in a re-run job's first step.")

FileOpt = typer.Option(None, "--file", help="a directive saved before (JSON); default: look it up")
ApiOpt = typer.Option(None, "--api", help="the guard's REST API base URL (GUARD_API_URL)")
KeyOpt = typer.Option(None, "--key", help="an API key for this repository (GUARD_API_KEY)")


@directive_app.command("apply")
def apply(file: Optional[Path] = FileOpt, api: Optional[str] = ApiOpt, key: Optional[str] = KeyOpt,
          out_dir: Path = typer.Option(Path(".guard"), "--out-dir",
                                       help="where the directive, the failed tests' list and the pytest plugin go"),
          fmt: str = typer.Option("auto", "--format",
                                  help="auto (GitHub: $GITHUB_ENV, CircleCI: $BASH_ENV, else shell), github, "
                                       "shell (export lines on stdout), json"),
          cleanup: bool = typer.Option(True, "--cleanup/--no-cleanup", help="run the directive's cleanup commands"),
          timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="seconds to wait for the API")) -> None:
    """Obtain this attempt's directive and make the job's tools apply it (variables, the failed tests'
    list, cleanups). Prints nothing on stdout when there is none; never fails the job."""
    try:
        client.apply(file, api, key, out_dir, fmt, cleanup, timeout)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@directive_app.command("args")
def args(tool: str = typer.Argument(..., help=f"one of {', '.join(TOOLS)}"),
         file: Path = typer.Option(Path(".guard/directive.json"), "--file", help="the directive `apply` saved")) -> None:
    """Print the shell-quoted arguments that make TOOL apply the saved directive (nothing when there is
    none): eval "npx jest $(guard directive args jest)"."""
    try:
        sys.stdout.write(client.args(tool, file) + "\n")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="TOOL") from None


@directive_app.command("show")
def show(file: Optional[Path] = FileOpt, api: Optional[str] = ApiOpt, key: Optional[str] = KeyOpt) -> None:
    """Print this attempt's directive as JSON (nothing when there is none)."""
    out = client.show(file, api, key)
    if out:
        sys.stdout.write(out + "\n")
