"""ClickHouse ingest rows/s through the guard's FactWriter into chDB, against row-at-a-time inserts.

The rows are what the worker writes: the sample traffic (``healing_guard.samples.generate``) run through the
real ``Engine`` (window steps, diagnosis, plan) and the fact builders of ``healing_guard.warehouse.facts``:
one ``job_runs`` row per job, ``diagnoses`` + ``commands`` rows per failed job, and a ``test_results`` row
per test result, in stream order. Each fact goes through its JSON form on ``guard.facts``
(``fact_to_json`` / ``fact_from_json``) as the sink receives it.

* **ours**: ``FactWriter.write`` on batches of ``fact_batch_size`` (5,000, the default of the fact sink):
  one column-oriented insert per table per batch;
* **baseline**: the same ``FactWriter`` called with one fact at a time: one INSERT per row, what DESIGN.md
  forbids (each insert makes a part). Run on the first ``--baseline-rows`` rows because it is slow.

One chDB data directory for the whole process (chDB allows one per process), a fresh database per run
(migrated before the clock starts), runs interleaved ours / baseline, medians reported.

    .venv/bin/python benchmarks/ingest.py --json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def sample_facts(n_jobs: int, seed: int) -> list[Any]:
    """The facts a worker would write for ``n_jobs`` sample jobs, through their JSON form."""
    from healing_guard.engine.core import Engine
    from healing_guard.remediate import Ledger
    from healing_guard.samples import generate
    from healing_guard.settings import Settings
    from healing_guard.warehouse.facts import fact_from_json, fact_to_json
    from healing_guard.engine.window import Closed, JobWindow, Ready

    settings = Settings(facts_enabled=False, test_grace_seconds=0.0, status_file="")
    engine = Engine(settings)
    ledger = Ledger()
    facts = []
    for job in generate(n_jobs, seed, chunk_lines=500):
        w = JobWindow(job_key=job.key)
        now = job.completed.completed_at or 0.0
        w, _ = engine.job_event(w, job.started, now=now)
        for c in job.chunks:
            w, _ = engine.chunk(w, c, now=now)
        for t in job.tests:
            _model, fact, _risk = engine.learn_test(None, t)
            facts.append(fact)
        w, outs = engine.job_event(w, job.completed, now=now)
        for out in outs:
            if isinstance(out, Ready):
                ledger, decision = engine.decide(out, ledger, now=now)
                facts.extend(decision.facts)
            elif isinstance(out, Closed):
                facts.extend(engine.closed_facts(out))
    return [fact_from_json(fact_to_json(f)) for f in facts]


def fresh_writer(client: Any, name: str) -> Any:
    from healing_guard.warehouse.migrate import migrate
    from healing_guard.warehouse.writer import FactWriter

    migrate(client, name)
    return FactWriter(client, name)


def count_rows(client: Any, database: str) -> int:
    from healing_guard.warehouse.facts import TABLES

    return sum(int(client.query(f"SELECT count() FROM {database}.{t}").result_rows[0][0]) for t in TABLES)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from healing_guard.warehouse.client import connect

    say = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    t_all = time.monotonic()
    facts = sample_facts(args.jobs, args.seed)
    mix = Counter(f.table for f in facts)
    say(f"{len(facts):,} fact rows from {args.jobs} sample jobs: "
        + ", ".join(f"{t} {n:,}" for t, n in sorted(mix.items())))
    base_facts = facts[: args.baseline_rows]
    data_dir = Path(tempfile.mkdtemp(prefix="bench-chdb-"))
    client = connect(f"chdb://{data_dir}")
    ours: list[float] = []
    base: list[float] = []
    try:
        for run_no in range(1, args.runs + 1):
            db = f"bench_ours_{run_no}"
            writer = fresh_writer(client, db)
            t0 = time.perf_counter()
            for i in range(0, len(facts), args.batch_size):
                writer.write(facts[i : i + args.batch_size])
            sec = time.perf_counter() - t0
            n = count_rows(client, db)
            if n != len(facts):
                raise SystemExit(f"ours wrote {n} rows, expected {len(facts)}")
            ours.append(len(facts) / sec)
            say(f"run {run_no} ours: {len(facts):,} rows in batches of {args.batch_size:,}: {sec:.2f}s = "
                f"{ours[-1]:,.0f} rows/s")
            db = f"bench_row_{run_no}"
            writer = fresh_writer(client, db)
            t0 = time.perf_counter()
            for f in base_facts:
                writer.write([f])
            sec = time.perf_counter() - t0
            n = count_rows(client, db)
            if n != len(base_facts):
                raise SystemExit(f"baseline wrote {n} rows, expected {len(base_facts)}")
            base.append(len(base_facts) / sec)
            say(f"run {run_no} baseline: {len(base_facts):,} rows one INSERT each: {sec:.2f}s = {base[-1]:,.0f} rows/s")
    finally:
        try:
            client.close()
        except Exception:
            pass
        shutil.rmtree(data_dir, ignore_errors=True)
    o, b = statistics.median(ours), statistics.median(base)
    res = {"rows": len(facts), "baseline_rows": len(base_facts), "batch_size": args.batch_size,
           "tables": dict(sorted(mix.items())), "ours_rows_per_s": round(o, 1), "baseline_rows_per_s": round(b, 1),
           "ratio": round(o / b, 1), "runs": args.runs,
           "ours_runs": [round(x, 1) for x in ours], "baseline_runs": [round(x, 1) for x in base]}
    say("\n| side | rows | rows/s (median) | runs |\n|---|---|---|---|")
    say(f"| FactWriter, batches of {args.batch_size:,} | {len(facts):,} | {o:,.0f} | "
        f"{' · '.join(f'{x:,.0f}' for x in ours)} |")
    say(f"| baseline: one INSERT per row | {len(base_facts):,} | {b:,.0f} | {' · '.join(f'{x:,.0f}' for x in base)} |")
    say(f"| ratio | | **{o / b:,.0f}x** | |\n(wall time {time.monotonic() - t_all:.0f}s)")
    return res


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=2000, help="sample jobs whose facts are written")
    p.add_argument("--batch-size", type=int, default=0, help="rows per write (default: Settings.fact_batch_size)")
    p.add_argument("--baseline-rows", type=int, default=1000, help="rows of the row-at-a-time baseline")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", action="store_true", help="progress to stderr, one JSON object as the last stdout line")
    args = p.parse_args(argv)
    if not args.batch_size:
        from healing_guard.settings import Settings

        args.batch_size = Settings().fact_batch_size
    res = run(args)
    if args.json:
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
