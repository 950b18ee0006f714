"""Memory per thousand tracked tests, and per open job, with the guard's own types.

* **Tests.** ``--tests`` synthetic tests (ids ``proj{p}/pkg.Class{c}#test{i}``: 20 tests per class, 50
  classes per project) with a realistic mix of behaviour: 85 % stable (fail rate 0.1 %), 10 % flaky
  (rate 2-30 %), 3 % broken then fixed (a regression in the middle of the history), 2 % always failing.
  Each gets ``--history`` results (failure messages on failures, durations, a commit every 10 runs) fed
  through ``Engine.learn_test`` and ``Engine.quarantine``, exactly what the tests agent does per result.
  Then:

  - **table value**: the compact value the tests agent stores per test (``engine/state.py::dump_test``:
    Faust table + changelog), summed: bytes per 1,000 tests;
  - **live objects**: ``tracemalloc`` of decoding every value into a dict (the model objects as one
    message handler holds them; the memory:// table keeps the bytes);
  - **shared state that grows with tests**: the engine's ``FlakePrior`` (one posterior contribution per
    test, up to ``MAX_PRIOR_TESTS``) and ``RetryContext``, ``tracemalloc`` of a copy of them;
  - **naive baseline**: each test's full outcome history as the obvious store would keep it, a list of
    ``(failed, duration_s, ts)`` per run, pickled and live. It grows with the history; ours does not.

  Sizes are for the first ``--tests`` tests and (when ``--tests-big`` is larger) again for that many.

* **Jobs.** The per-job window state (``JobWindow`` as orjson, what the ingest agent writes to the
  ``windows`` table after every chunk) of the sample traffic's jobs at their largest, just before their
  completion event, and the small "decided" marker kept afterwards: bytes per 1,000 open jobs.

    .venv/bin/python benchmarks/memory.py --json
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any


def _traced(fn: Callable[[], Any]) -> tuple[Any, int]:
    """``fn()`` and the bytes it left allocated (tracemalloc, after a collection)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = fn()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return out, after - before


def test_ids(n: int) -> list[str]:
    return [f"proj{i // 1000}/pkg{(i // 100) % 10}.Class{(i // 20) % 50}#test{i % 20}" for i in range(n)]


def behaviours(n: int, rng: random.Random) -> list[Callable[[int, int], float]]:
    """Per test, its failure rate at run ``k`` of ``h``."""
    out: list[Callable[[int, int], float]] = []
    for _ in range(n):
        u = rng.random()
        if u < 0.85:
            out.append(lambda k, h: 0.001)
        elif u < 0.95:
            r = rng.uniform(0.02, 0.30)
            out.append(lambda k, h, r=r: r)
        elif u < 0.98:
            a = rng.randrange(10, 60)
            out.append(lambda k, h, a=a: 1.0 if a <= k * 100 // max(h, 1) < a + 15 else 0.001)
        else:
            out.append(lambda k, h: 1.0)
    return out


def learn_tests(n: int, history: int, seed: int) -> tuple[Any, dict[bytes, bytes], list[list[tuple[bool, float, float]]]]:
    """Learn ``history`` results of ``n`` tests, interleaved by run as builds would deliver them; returns
    the engine, the tests table (key -> compact value) and the naive histories."""
    from healing_guard.engine.state import dump_test
    from healing_guard.flaky.quarantine import QuarantineState
    from healing_guard.engine.core import Engine
    from healing_guard.schemas import TestResult
    from healing_guard.settings import Settings

    rng = random.Random(seed)
    engine = Engine(Settings(facts_enabled=False, status_file=""))
    ids = test_ids(n)
    rates = behaviours(n, rng)
    models: list[Any] = [None] * n
    states = [QuarantineState() for _ in range(n)]
    naive: list[list[tuple[bool, float, float]]] = [[] for _ in range(n)]
    ts = 1.7e9
    for k in range(history):
        sha = f"{k // 10:040x}"
        for i, tid in enumerate(ids):
            failed = rng.random() < rates[i](k, history)
            dur = round(rng.lognormvariate(0.0, 0.5), 3)
            ts += 0.5
            r = TestResult(provider="github", owner="acme", repo=f"repo{i // 1000}", job_id=str(k), test_id=tid,
                           outcome="failed" if failed else "passed", duration_s=dur, ts=ts, head_sha=sha,
                           message=f"AssertionError: expected {rng.randrange(100)} got {rng.randrange(100)}"
                           if failed else None, failed_in_run=1 if failed else 0)
            models[i], _fact, _risk = engine.learn_test(models[i], r)
            engine.quarantine(states[i], models[i], r, now=ts)
            naive[i].append((failed, dur, ts))
    table = {tid.encode(): dump_test(m, s, (0, i)) for i, (tid, m, s) in enumerate(zip(ids, models, states))}
    return engine, table, naive


def measure_tests(n: int, history: int, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    engine, table, naive = learn_tests(n, history, seed)  # not traced: tracemalloc slows it tenfold
    learn_s = time.perf_counter() - t0
    per_k = 1000.0 / n
    table_bytes = sum(len(k) + len(v) for k, v in table.items())
    from healing_guard.engine.state import load_test

    live, live_bytes = _traced(lambda: {k: load_test(v) for k, v in table.items()})
    del live
    # the shared prior and retry context: what the engine holds beyond the tests' own values
    _, prior_bytes = _traced(lambda: pickle.loads(pickle.dumps((engine.flake_prior, engine.retry_context))))
    naive_pickled = sum(len(pickle.dumps(h, protocol=pickle.HIGHEST_PROTOCOL)) for h in naive)
    naive_copy, naive_live = _traced(lambda: [list(map(tuple, h)) for h in pickle.loads(pickle.dumps(naive))])
    del naive_copy
    return {
        "tests": n, "history": history, "learn_seconds": round(learn_s, 2),
        "table_kb_per_1k": round(table_bytes * per_k / 1024, 1),
        "value_bytes_median": int(statistics.median(len(v) for v in table.values())),
        "live_kb_per_1k": round(live_bytes * per_k / 1024, 1),
        "shared_prior_kb_per_1k": round(prior_bytes * per_k / 1024, 1),
        "naive_pickled_kb_per_1k": round(naive_pickled * per_k / 1024, 1),
        "naive_live_kb_per_1k": round(naive_live * per_k / 1024, 1),
        "naive_pickled_bytes_per_result": round(naive_pickled / (n * history), 1),
        # how many results per test until the full history takes more than our table value
        "naive_break_even_results": round(table_bytes / max(naive_pickled / history, 1e-9)),
    }


def measure_windows(n_jobs: int, seed: int) -> dict[str, Any]:
    """Window state bytes of sample jobs just before their completion event, and of the decided marker."""
    import orjson

    from healing_guard.engine.core import Engine
    from healing_guard.samples import generate
    from healing_guard.settings import Settings
    from healing_guard.engine.window import JobWindow, decided

    engine = Engine(Settings(facts_enabled=False, test_grace_seconds=0.0, status_file=""))
    open_sizes, failed_sizes = [], []
    raws: list[bytes] = []
    for job in generate(n_jobs, seed, chunk_lines=500):
        w = JobWindow(job_key=job.key)
        w, _ = engine.job_event(w, job.started, now=0.0)
        for c in job.chunks:
            w, _ = engine.chunk(w, c, now=0.0)
        raw = orjson.dumps(w.to_dict())
        open_sizes.append(len(job.key) + len(raw))
        if job.completed.conclusion in ("failure", "timed_out"):
            failed_sizes.append(len(job.key) + len(raw))
        raws.append(raw)
    live, live_total = _traced(lambda: [JobWindow.from_dict(orjson.loads(r)) for r in raws])
    del live
    marker = orjson.dumps(decided("github/acme/repo/123456789", 1, 0, 1.7e9, ("rerun_failed", "network")).to_dict())
    n = len(open_sizes)
    return {
        "jobs": n, "failed_jobs": len(failed_sizes),
        "window_kb_per_1k_open_jobs": round(sum(open_sizes) * 1000 / n / 1024, 1),
        "window_bytes_median": int(statistics.median(open_sizes)),
        "window_bytes_median_failed": int(statistics.median(failed_sizes)) if failed_sizes else None,
        "window_bytes_max": max(open_sizes),
        "window_live_kb_per_1k_open_jobs": round(live_total * 1000 / n / 1024, 1),
        "marker_bytes": len(marker) + len("github/acme/repo/123456789"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tests", type=int, default=1000)
    p.add_argument("--tests-big", type=int, default=10000, help="also measure this many tests (0: skip)")
    p.add_argument("--history", type=int, default=100, help="results learned per test")
    p.add_argument("--history-big", type=int, default=20, help="results per test for --tests-big (time)")
    p.add_argument("--jobs", type=int, default=500, help="sample jobs for the window state")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", action="store_true", help="progress to stderr, one JSON object as the last stdout line")
    args = p.parse_args(argv)
    say = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    t0 = time.monotonic()
    tests = [measure_tests(args.tests, args.history, args.seed)]
    if args.tests_big > args.tests:
        tests.append(measure_tests(args.tests_big, args.history_big, args.seed))
    windows = measure_windows(args.jobs, args.seed)
    say("| tests | results each | table value KB / 1k tests | live objects KB / 1k | shared prior KB / 1k | "
        "naive history: pickled / live KB / 1k |\n|---|---|---|---|---|---|")
    for t in tests:
        say(f"| {t['tests']:,} | {t['history']} | {t['table_kb_per_1k']:,.1f} | {t['live_kb_per_1k']:,.1f} | "
            f"{t['shared_prior_kb_per_1k']:,.1f} | {t['naive_pickled_kb_per_1k']:,.1f} / {t['naive_live_kb_per_1k']:,.1f} |")
    say(f"\nopen job windows ({windows['jobs']} sample jobs at their largest): "
        f"{windows['window_kb_per_1k_open_jobs']:,.1f} KB per 1,000 open jobs as stored "
        f"({windows['window_live_kb_per_1k_open_jobs']:,.1f} KB live), median {windows['window_bytes_median']} B, "
        f"failed jobs median {windows['window_bytes_median_failed']} B, max {windows['window_bytes_max']} B; "
        f"decided marker {windows['marker_bytes']} B (wall time {time.monotonic() - t0:.0f}s)")
    if args.json:
        print(json.dumps({"tests": tests, "windows": windows}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
