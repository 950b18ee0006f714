"""Flakiness prediction, prequential: P(the next run fails) for every run, predicted before it is learned.

    python benchmarks/flakiness.py --dataset ../shared/datasets/flaky-reruns-dev [--json]
    #   --runs K        runs per test (default 100)
    #   --stable N      never-failing tests in the stream, at least (default 3000)
    #   --seed S        seed of every random choice below (default 0)

The dataset is ``test_results.csv`` (``project,test,is_flaky,failing_runs,passing_runs``): per test, how
many of its ~10,000 reruns failed and passed (FlakeFlagger). It has counts, not sequences, so the
benchmark expands them into one time-ordered stream of ``(test_id, outcome)`` rows:

1. **Tests, in whole classes** (``project/package.Class`` from the test id up to ``#``): every class
   with at least one test with ``failing_runs > 0`` (237 classes, 2,283 tests of which 958 ever fail, in
   the dev file), plus whole classes drawn uniformly, without replacement, from the classes whose tests
   never fail, until the stream holds ``--stable`` never-failing tests. Whole classes keep a suite's
   real mix of flaky and stable tests side by side (sampling single tests would make flaky classes look
   denser than they are). The file has ~96 % never-failing tests; this stream has far fewer, so it is
   about failures and *harder* than the file's own mix, not easier.
2. **Outcomes:** per test, the first K runs of a uniformly random permutation of its ``failing_runs``
   F and ``passing_runs`` P (drawn as K draws without replacement). Runs of a test are therefore
   exchangeable: there is no order to exploit within a test.
3. **Time order:** builds 0, 1, 2, ...; test i joins at a build drawn uniformly from 0..K-1 (tests are
   added to a suite over time, so new tests keep arriving) and then runs once in each build until it
   has K runs. Within a build the tests run in a random order. That gives ``tests x K`` rows over
   ``2K - 1`` builds.

``is_flaky`` and the totals are never features: every method sees only the rows before the one it
predicts, through ``healing_guard.flaky.prequential.replay``, the same code as ``guard flakiness replay``.
Every method replays the identical rows. Methods:

- **ours**: ``TestModel`` per test under a ``FlakePrior`` fitted online across the tests so far, and
  along the test id (the other tests of its class and project, with a weight fitted online).
- **ours, generic prior**: ``TestModel`` alone with its built-in generic prior, which is how the guard's
  worker runs it today (no population prior is wired there yet).
- **global rate** (a): (all failures so far + 1) / (all rows so far + 2).
- **beta(1,1)** (b): per test (fails + 1) / (runs + 2).
- **30% rule** (c): 0.9 if the test's fails / runs so far >= 0.3, else 0.1 (0.1 before its first run).
- **oracle** (reference only, not a method: it uses the future): the test's failure rate over all its
  reruns in the file, ``failing_runs / (failing_runs + passing_runs)``. With exchangeable runs nothing
  can rank better than this, so its "AUC after failure" is the ceiling for that column.

Metrics per method: log-loss (natural log, p clipped to 1e-15), Brier score, ROC AUC over all rows, and
the same over the rows right after a failure of the same test (does the retry fail again? the
retry-vs-notify decision; log-loss there too), plus log-loss / beta(1,1)'s log-loss, over all rows and
over the rows of the tests that ever fail (there the never-failing tests, where a population prior wins
most, do not count). AUC is computed from logit bins of width 1e-3 (streaming, bounded memory).

Prints a table; with ``--json`` the last stdout line is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

from healing_guard.flaky.prequential import BetaRate, GlobalRate, Metrics, OurModel, ThresholdRule, replay

GOAL_LOG_LOSS_RATIO = 0.90
GOAL_AUC_AFTER_FAILURE = 0.95


class Oracle:
    """Reference only: the test's true failure rate over all its reruns (uses the future)."""

    name = "oracle"
    description = "failing_runs / total runs of the test in the file (uses the future: a ceiling, not a method)"

    def __init__(self, rates: dict[str, float]) -> None:
        self.rates = rates

    def learn(self, test_id: str, failed: bool) -> float:
        return self.rates[test_id]


def load_tests(dataset: Path) -> list[tuple[str, int, int]]:
    path = dataset / "test_results.csv" if dataset.is_dir() else dataset
    if not path.is_file():
        raise SystemExit(f"{path}: not found (expected test_results.csv with project,test,failing_runs,passing_runs)")
    out = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"project", "test", "failing_runs", "passing_runs"} - set(reader.fieldnames or ())
        if missing:
            raise SystemExit(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for r in reader:
            out.append((f"{r['project']}/{r['test']}", int(r["failing_runs"]), int(r["passing_runs"])))
    return out


def _class_of(test_id: str) -> str:
    return test_id.rsplit("#", 1)[0]  # project/package.Class#method -> project/package.Class


def build_stream(tests: list[tuple[str, int, int]], runs: int, stable: int, seed: int
                 ) -> tuple[list[tuple[str, bool]], dict[str, Any]]:
    """The rows (see the module docstring) and a description of how they were made."""
    rng = np.random.default_rng(seed)
    usable = [t for t in tests if t[1] + t[2] >= runs]
    classes: dict[str, list[tuple[str, int, int]]] = {}
    for t in usable:
        classes.setdefault(_class_of(t[0]), []).append(t)
    failing_cls = [c for c, ts in classes.items() if any(t[1] > 0 for t in ts)]
    other_cls = [c for c, ts in classes.items() if all(t[1] == 0 for t in ts)]
    chosen = [t for c in failing_cls for t in classes[c]]
    siblings = sum(1 for t in chosen if t[1] == 0)
    extra = extra_cls = 0
    for i in rng.permutation(len(other_cls)):  # whole never-failing classes until `stable` never-failing tests
        if siblings + extra >= stable:
            break
        chosen.extend(classes[other_cls[i]])
        extra += len(classes[other_cls[i]])
        extra_cls += 1
    seqs: list[np.ndarray] = []
    for _, f, p in chosen:
        draws = rng.choice(f + p, size=runs, replace=False)
        seqs.append(draws < f)  # positions < failing_runs are the F's of the permutation
    start = rng.integers(0, runs, size=len(chosen))
    rows: list[tuple[str, bool]] = []
    for build in range(int(start.max()) + runs):
        active = np.flatnonzero((start <= build) & (build < start + runs))
        for i in rng.permutation(active):
            rows.append((chosen[i][0], bool(seqs[i][build - start[i]])))
    design = {
        "tests_in_file": len(tests), "tests_with_enough_runs": len(usable), "classes_in_file": len(classes),
        "tests": len(chosen), "tests_ever_failing": sum(1 for t in chosen if t[1] > 0),
        "classes_with_failing_tests": len(failing_cls), "never_failing_tests_in_those_classes": siblings,
        "never_failing_classes_sampled": extra_cls,
        "never_failing_tests_in_sampled_classes": extra,
        "runs_per_test": runs, "rows": len(rows), "builds": int(start.max()) + runs, "seed": seed,
        "fails": int(sum(r[1] for r in rows)),
    }
    return rows, design


def run_method(method: Any, rows: list[tuple[str, bool]], ever_failing: set[str]) -> dict[str, Any]:
    everything, failing_only = Metrics(), Metrics()
    t0 = time.perf_counter()
    for pred in replay(rows, method):
        everything.add(pred)
        if pred.test_id in ever_failing:
            failing_only.add(pred)
    res = everything.result()
    sub = failing_only.result()
    res["log_loss_ever_failing_tests"] = sub["log_loss"]
    res["seconds"] = round(time.perf_counter() - t0, 2)
    res["description"] = method.description
    return res


def _f(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=Path("../shared/datasets/flaky-reruns-dev"))
    ap.add_argument("--runs", type=int, default=100, help="runs per test (first K of its shuffled reruns)")
    ap.add_argument("--stable", type=int, default=3000, help="never-failing tests to sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print every number as one JSON line at the end")
    args = ap.parse_args()
    out = Console(width=150)
    t_start = time.perf_counter()

    tests = load_tests(args.dataset)
    rows, design = build_stream(tests, args.runs, args.stable, args.seed)
    ever_failing = {t[0] for t in tests if t[1] > 0}
    rates = {t[0]: t[1] / (t[1] + t[2]) for t in tests if t[1] + t[2] > 0}
    methods: list[tuple[str, Any]] = [
        ("ours", OurModel()),
        ("ours, generic prior", OurModel(shared_prior=False)),  # how the worker runs it today
        ("global rate", GlobalRate()),
        ("beta(1,1)", BetaRate()),
        ("30% rule", ThresholdRule(0.3, 0.9, 0.1)),
        ("oracle", Oracle(rates)),
    ]
    results: dict[str, dict[str, Any]] = {}
    for name, method in methods:
        results[name] = run_method(method, rows, ever_failing)
        if name == "ours":
            pr = method.prior
            results[name]["learned_prior"] = {
                "mean_rate": round(pr.mean_rate(), 5),
                "regime_weights": [round(float(w), 4) for w in pr.regimes],
                "group_weight": round(pr.group_weight, 4),
            }
    beta = results["beta(1,1)"]
    for r in results.values():
        r["log_loss_vs_beta"] = r["log_loss"] / beta["log_loss"]
        r["log_loss_vs_beta_ever_failing_tests"] = r["log_loss_ever_failing_tests"] / beta["log_loss_ever_failing_tests"]

    ours = results["ours"]
    goals = {
        "log_loss_vs_beta": {"value": ours["log_loss_vs_beta"], "goal": f"<= {GOAL_LOG_LOSS_RATIO}",
                             "met": ours["log_loss_vs_beta"] <= GOAL_LOG_LOSS_RATIO},
        "auc_after_failure": {"value": ours["auc_after_failure"], "goal": f">= {GOAL_AUC_AFTER_FAILURE}",
                              "met": (ours["auc_after_failure"] or 0.0) >= GOAL_AUC_AFTER_FAILURE},
    }

    t = Table(title=f"flakiness, prequential: {design['rows']:,} rows = {design['tests']:,} tests "
                    f"({design['tests_ever_failing']:,} ever failing) x {design['runs_per_test']} runs")
    for col in ("method", "log-loss", "vs beta", "Brier", "AUC", "AUC after fail", "log-loss after fail",
                "log-loss (failing tests)", "vs beta", "s"):
        t.add_column(col, justify="left" if col == "method" else "right")
    for name, r in results.items():
        t.add_row(name, _f(r["log_loss"], 5), _f(r["log_loss_vs_beta"], 3), _f(r["brier"], 5), _f(r["auc"]),
                  _f(r["auc_after_failure"]), _f(r["log_loss_after_failure"], 4), _f(r["log_loss_ever_failing_tests"], 5),
                  _f(r["log_loss_vs_beta_ever_failing_tests"], 3), f"{r['seconds']:.1f}")
    out.print(t)
    out.print(f"rows: {design['rows']:,} ({design['fails']:,} failed); rows right after a failure: "
              f"{ours['rows_after_failure']:,} ({ours['fails_after_failure']:,} failed again); builds: {design['builds']}")
    out.print(f"stream: every class with a failing test ({design['classes_with_failing_tests']} classes, "
              f"{design['tests_ever_failing']} ever-failing + {design['never_failing_tests_in_those_classes']} "
              f"never-failing tests) + {design['never_failing_classes_sampled']} never-failing classes drawn uniformly "
              f"({design['never_failing_tests_in_sampled_classes']} tests); per test the first {design['runs_per_test']} "
              "runs of a seeded random permutation of its F/P reruns; test i joins at a random build in 0..K-1 and "
              f"runs once per build; random order within a build (seed {design['seed']})")
    for name, r in results.items():
        out.print(f"  {name}: {r['description']}")
    lp = ours["learned_prior"]
    out.print(f"ours' learned prior at the end: mean failure rate of a new test {lp['mean_rate']}, "
              f"regime weights (delta 0, 1e-3, 1e-2, 1e-1) {lp['regime_weights']}, "
              f"weight of the class/project prior {lp['group_weight']}")
    for k, g in goals.items():
        out.print(f"goal {k} {g['goal']}: {_f(g['value'], 3)} -> {'met' if g['met'] else 'NOT met'}")
    o = results["oracle"]
    out.print(f"(ceiling for AUC after failure with exchangeable runs, the oracle's: {_f(o['auc_after_failure'])})")
    elapsed = time.perf_counter() - t_start
    out.print(f"total {elapsed:.1f} s")
    if args.json:
        sys.stdout.write(orjson.dumps({"design": design, "methods": results, "goals": goals,
                                       "seconds": round(elapsed, 2)}).decode() + "\n")


if __name__ == "__main__":
    main()
