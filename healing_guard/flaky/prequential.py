"""Prequential ("test-then-train") evaluation of flakiness predictors on recorded test histories.

Pure and streaming: :func:`parse_rows` reads ``test_id,outcome`` rows one at a time, :func:`replay` asks a
:class:`Method` for P(fail) of each row *before* the method learns that row, and :class:`Metrics`
accumulates log-loss, Brier score and AUC (over all rows, and over the rows that come right after a
failure of the same test: "will a retry fail again?") in bounded memory. The per-test state lives in
the methods (one model per test id); nothing else grows with the length of the input.

Methods: :class:`OurModel` (``TestModel`` per test + a ``FlakePrior`` fitted online across tests, the
same model the guard uses) and the baselines :class:`GlobalRate`, :class:`BetaRate` and
:class:`ThresholdRule`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from .model import FlakePrior, TestModel

#: accepted spellings of an outcome (case-insensitive); "P" and "F" are the documented ones
OUTCOMES = {"P": False, "F": True, "PASS": False, "PASSED": False, "FAIL": True, "FAILED": True}
_EPS = 1e-15


class CsvError(ValueError):
    """A bad input row: names the source, the 1-based line and the field."""

    def __init__(self, source: str, line: int, field: str | None, message: str) -> None:
        self.source, self.line, self.field, self.message = source, line, field, message
        where = f"{source}: line {line}" + (f", field {field!r}" if field else "")
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class Row:
    line: int  # 1-based line in the source
    test_id: str
    failed: bool


@dataclass(frozen=True, slots=True)
class Prediction:
    test_id: str
    failed: bool
    p_fail: float  # predicted before the row was learned
    after_failure: bool  # the test's previous run failed

    def to_dict(self) -> dict[str, Any]:
        return {"test_id": self.test_id, "outcome": "F" if self.failed else "P", "p_fail": self.p_fail}


def parse_rows(lines: Iterable[str], source: str = "<csv>") -> Iterator[Row]:
    """Rows of a CSV with a header naming ``test_id`` and ``outcome`` (any order, other columns ignored).

    Blank lines are skipped; anything else that is not a test id and an outcome P/F raises
    :class:`CsvError` naming the line and the field.
    """
    reader = csv.reader(lines)
    try:
        header = next(reader, None)
        if header is None:
            raise CsvError(source, 1, None, "empty input: a header line 'test_id,outcome' is required")
        names = [h.strip().lstrip("\ufeff").lower() for h in header]
        missing = [c for c in ("test_id", "outcome") if c not in names]
        if missing:
            raise CsvError(source, reader.line_num, missing[0],
                           f"a header line naming the columns test_id and outcome is required, got {header!r}")
        i_test, i_out = names.index("test_id"), names.index("outcome")
        width = max(i_test, i_out) + 1
        for fields in reader:
            line = reader.line_num
            if not fields or not any(f.strip() for f in fields):
                continue
            if len(fields) < width:
                raise CsvError(source, line, "outcome" if len(fields) <= i_out else "test_id",
                               f"missing (the row has {len(fields)} field(s))")
            test_id = fields[i_test].strip()
            if not test_id:
                raise CsvError(source, line, "test_id", "empty test id")
            raw = fields[i_out].strip()
            failed = OUTCOMES.get(raw.upper())
            if failed is None:
                raise CsvError(source, line, "outcome", f"expected P or F, got {raw!r}")
            yield Row(line, test_id, failed)
    except csv.Error as exc:
        raise CsvError(source, reader.line_num, None, f"not valid CSV: {exc}") from None


# --- methods ---------------------------------------------------------------------------------------
class Method(Protocol):
    name: str

    def learn(self, test_id: str, failed: bool) -> float:
        """Learn one row; return the P(fail) predicted for it before learning it."""
        ...


class OurModel:
    """The guard's model: a ``TestModel`` per test id, under a ``FlakePrior`` fitted across the tests."""

    name = "ours"
    description = ("TestModel per test: Bayesian filter over (failure rate, volatility regime) under a prior "
                   "fitted online across tests and along the test id, class and project (FlakePrior)")

    def __init__(self, prior: FlakePrior | None = None, shared_prior: bool = True) -> None:
        self.models: dict[str, TestModel] = {}
        self.prior = (prior or FlakePrior()) if shared_prior else None
        if self.prior is None:
            self.description = "TestModel per test on its own, with the built-in generic prior (no FlakePrior)"

    def learn(self, test_id: str, failed: bool) -> float:
        m = self.models.get(test_id)
        if m is None:
            m = self.models[test_id] = TestModel()
        if self.prior is None:
            return m.learn(failed)
        return self.prior.learn(test_id, m, failed)


class GlobalRate:
    """Baseline (a): the failure rate of all rows so far, (fails + 1) / (rows + 2)."""

    name = "global rate"
    description = "(all fails so far + 1) / (all rows so far + 2), the same for every test"

    def __init__(self) -> None:
        self.fails = 0
        self.runs = 0

    def learn(self, test_id: str, failed: bool) -> float:
        p = (self.fails + 1) / (self.runs + 2)
        self.fails += failed
        self.runs += 1
        return p


class BetaRate:
    """Baseline (b): per-test Beta(1, 1) posterior mean (fails + 1) / (runs + 2) (the idea behind a
    probabilistic flakiness score)."""

    name = "beta(1,1)"
    description = "per test (fails + 1) / (runs + 2)"

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}

    def learn(self, test_id: str, failed: bool) -> float:
        c = self.counts.get(test_id)
        if c is None:
            c = self.counts[test_id] = [0, 0]
        p = (c[0] + 1) / (c[1] + 2)
        c[0] += failed
        c[1] += 1
        return p


class ThresholdRule:
    """Baseline (c): the fixed rule "flaky if its failure rate so far >= 30 %", as a probability:
    ``high`` when the rule fires, ``low`` otherwise (also for a test with no runs yet)."""

    name = "30% rule"

    def __init__(self, threshold: float = 0.3, high: float = 0.9, low: float = 0.1) -> None:
        self.threshold, self.high, self.low = threshold, high, low
        self.counts: dict[str, list[int]] = {}
        self.description = (f"{high:g} if the test's fails / runs so far >= {threshold:g}, else {low:g} "
                            f"(also {low:g} before its first run)")

    def learn(self, test_id: str, failed: bool) -> float:
        c = self.counts.get(test_id)
        if c is None:
            c = self.counts[test_id] = [0, 0]
        p = self.high if c[1] > 0 and c[0] >= self.threshold * c[1] else self.low
        c[0] += failed
        c[1] += 1
        return p


def replay(rows: Iterable[Row | tuple[str, bool]], method: Method) -> Iterator[Prediction]:
    """For every row in order: the method's P(fail) predicted before the row, then the method learns it."""
    last: dict[str, bool] = {}
    for row in rows:
        if isinstance(row, Row):
            test_id, failed = row.test_id, row.failed
        else:
            test_id, failed = row
        p = method.learn(test_id, failed)
        prev = last.get(test_id)
        last[test_id] = failed
        yield Prediction(test_id, failed, p, prev is True)


# --- metrics ---------------------------------------------------------------------------------------
def _clip(p: float) -> float:
    return min(max(p, _EPS), 1.0 - _EPS)


def log_loss(ps: Iterable[float], ys: Iterable[bool]) -> float:
    """Mean negative log-likelihood (natural log), p clipped to [1e-15, 1 - 1e-15]."""
    total, n = 0.0, 0
    for p, y in zip(ps, ys, strict=True):
        total -= math.log(_clip(p) if y else 1.0 - _clip(p))
        n += 1
    return total / n if n else math.nan


def brier(ps: Iterable[float], ys: Iterable[bool]) -> float:
    """Mean squared error of p against the outcome (1 = failed)."""
    total, n = 0.0, 0
    for p, y in zip(ps, ys, strict=True):
        total += (p - (1.0 if y else 0.0)) ** 2
        n += 1
    return total / n if n else math.nan


def auc(ps: Iterable[float], ys: Iterable[bool]) -> float | None:
    """Exact ROC AUC (ties count half); None when only one class is present."""
    pairs = sorted(zip(ps, ys, strict=True))
    pos = sum(1 for _, y in pairs if y)
    neg = len(pairs) - pos
    if not pos or not neg:
        return None
    wins, below, i = 0.0, 0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        p_here = sum(1 for _, y in pairs[i:j] if y)
        n_here = (j - i) - p_here
        wins += p_here * (below + 0.5 * n_here)
        below += n_here
        i = j
    return wins / (pos * neg)


class _BinnedAuc:
    """Streaming AUC: scores binned by logit in steps of 1e-3 (bounded memory; scores within one bin
    count as ties, so it can differ from the exact AUC by well under 1e-3)."""

    __slots__ = ("bins",)

    def __init__(self) -> None:
        self.bins: dict[int, list[int]] = {}

    def add(self, p: float, y: bool) -> None:
        p = _clip(p)
        key = round(max(-40.0, min(40.0, math.log(p / (1.0 - p)))) * 1000)
        b = self.bins.get(key)
        if b is None:
            b = self.bins[key] = [0, 0]
        b[y] += 1

    def value(self) -> float | None:
        pos = sum(b[1] for b in self.bins.values())
        neg = sum(b[0] for b in self.bins.values())
        if not pos or not neg:
            return None
        wins, below = 0.0, 0
        for key in sorted(self.bins):
            n_here, p_here = self.bins[key]
            wins += p_here * (below + 0.5 * n_here)
            below += n_here
        return wins / (pos * neg)


class _Scores:
    __slots__ = ("n", "fails", "nll", "sq", "auc")

    def __init__(self) -> None:
        self.n = self.fails = 0
        self.nll = self.sq = 0.0
        self.auc = _BinnedAuc()

    def add(self, p: float, y: bool) -> None:
        self.n += 1
        self.fails += y
        c = _clip(p)
        self.nll -= math.log(c if y else 1.0 - c)
        self.sq += (p - y) ** 2
        self.auc.add(p, y)


class Metrics:
    """Log-loss, Brier and AUC of predictions, over all rows and over rows right after a failure of the
    same test. Constant memory in the number of rows (AUC via logit bins)."""

    def __init__(self) -> None:
        self.all = _Scores()
        self.after = _Scores()

    def add(self, pred: Prediction) -> None:
        self.all.add(pred.p_fail, pred.failed)
        if pred.after_failure:
            self.after.add(pred.p_fail, pred.failed)

    def result(self) -> dict[str, Any]:
        a, f = self.all, self.after
        return {
            "rows": a.n, "fails": a.fails,
            "log_loss": a.nll / a.n if a.n else None,
            "brier": a.sq / a.n if a.n else None,
            "auc": a.auc.value(),
            "rows_after_failure": f.n, "fails_after_failure": f.fails,
            "log_loss_after_failure": f.nll / f.n if f.n else None,
            "auc_after_failure": f.auc.value(),
        }


def evaluate(rows: Iterable[Row | tuple[str, bool]], method: Method) -> dict[str, Any]:
    """Replay every row through ``method`` and return its :class:`Metrics`."""
    m = Metrics()
    for pred in replay(rows, method):
        m.add(pred)
    return m.result()
