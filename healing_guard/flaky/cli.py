"""``guard flakiness``: the per-test flakiness model on recorded histories (logic in ``prequential.py``)."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .prequential import CsvError, Metrics, OurModel, parse_rows, replay as replay_rows

__all__ = ["flakiness_app"]

flakiness_app = typer.Typer(no_args_is_help=True,
                            help="Per-test flakiness model: replay recorded test histories through it.")
err = Console(stderr=True)


@flakiness_app.callback()
def _group() -> None:
    """Per-test flakiness model: replay recorded test histories through it."""  # keeps ``replay`` a subcommand


def _p(p: float) -> float:
    return float(f"{p:.6g}")


def _metrics_table(res: dict[str, Any], source: str) -> Table:
    t = Table(title=f"prequential metrics: {escape(source)}")
    t.add_column("rows")
    t.add_column("n", justify="right")
    t.add_column("failed", justify="right")
    t.add_column("log-loss", justify="right")
    t.add_column("Brier", justify="right")
    t.add_column("AUC", justify="right")

    def f(x: float | None) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"

    t.add_row("all", f"{res['rows']:,}", f"{res['fails']:,}", f(res["log_loss"]), f(res["brier"]), f(res["auc"]))
    t.add_row("right after a failure", f"{res['rows_after_failure']:,}", f"{res['fails_after_failure']:,}",
              f(res["log_loss_after_failure"]), "", f(res["auc_after_failure"]))
    return t


def _decoded(stream: BinaryIO, source: str) -> Iterator[str]:
    """Lines of a byte stream as text, with the exact line of any byte that is not UTF-8."""
    for n, raw in enumerate(stream, 1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CsvError(source, n, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _run(stream: Iterable[str], source: str, json_out: bool, quiet: bool, generic_prior: bool) -> dict[str, Any]:
    method = OurModel(shared_prior=not generic_prior)
    metrics = Metrics()
    out = sys.stdout
    if not json_out and not quiet:
        out.write(f"{'p_fail':>10}  outcome  test_id\n")
    for pred in replay_rows(parse_rows(stream, source), method):
        metrics.add(pred)
        if quiet:
            continue
        if json_out:
            d = pred.to_dict()
            d["p_fail"] = _p(pred.p_fail)
            out.write(orjson.dumps(d).decode() + "\n")
        else:
            out.write(f"{pred.p_fail:>10.6f}  {'F' if pred.failed else 'P':^7}  {pred.test_id}\n")
    res = metrics.result()
    res["tests"] = len(method.models)
    return res


_REPLAY_HELP = (
    "Prequential evaluation on a CSV of test runs in time order: for every row, the P(fail) that the per-test "
    "model predicted BEFORE learning the row, then log-loss, Brier score and AUC over all rows and over the rows "
    "right after a failure of the same test. One model per test id, under a prior over flake rates fitted "
    "online across the tests so far. Streams the file: memory grows with the number of tests, not of rows. "
    "A bad row stops the run with exit code 2 and an error naming the line and the field."
)


@flakiness_app.command(help=_REPLAY_HELP)
def replay(
    file: str = typer.Argument(..., help="CSV, rows in time order, with a header naming the columns test_id and "
                                         "outcome (P or F); other columns are ignored. '-' reads stdin."),
    json_out: bool = typer.Option(False, "--json", help="one JSON object per row on stdout: "
                                                        '{"test_id", "outcome", "p_fail"}; metrics as one JSON line on stderr'),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only the metrics"),
    generic_prior: bool = typer.Option(False, "--generic-prior",
                                       help="do not fit the population prior across the file's tests: every test "
                                            "model uses the built-in generic prior (as the stream worker does)"),
) -> None:
    """``guard flakiness replay FILE.csv [--json]``: see ``_REPLAY_HELP``; the logic is in ``prequential.py``."""
    source = "<stdin>" if file == "-" else file
    try:
        if file == "-":
            res = _run(_decoded(sys.stdin.buffer, source), source, json_out, quiet, generic_prior)
        else:
            with open(file, "rb") as stream:
                res = _run(_decoded(stream, source), source, json_out, quiet, generic_prior)
    except CsvError as exc:
        sys.stdout.flush()
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):  # e.g. piped into head: stop quietly
            _silence_stdout()
            raise typer.Exit(0) from None
        err.print(f"[red]error:[/red] {escape(source)}: {escape(exc.strerror or str(exc))}")
        raise typer.Exit(2) from None
    sys.stdout.flush()
    if json_out:
        sys.stderr.write(orjson.dumps({"metrics": res}).decode() + "\n")
    else:
        err.print(_metrics_table(res, source))
        err.print(f"{res['tests']:,} tests; p_fail is predicted before each row is learned")


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
