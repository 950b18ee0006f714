"""Intermittent infrastructure failures are not sent to authors as code failures, and code failures are
not retried: checked on GitLab jobs that people labelled intermittent (flaky) or not.

    python benchmarks/intermittent.py --dataset ../shared/datasets/gitlab-flaky-veloren [--json]

Each log goes through the engine as the worker reads it (``guard analyze``'s path, the shipped text model
included), and the command the worker would send on a fresh budget is compared with the label:

- an intermittent job told to its author (``notify_author``) is the first mistake: a person hunts a
  regression that is not there;
- a genuine failure retried automatically is the second: the retry costs money and hides it.

The labels are job-level (``labels.csv``: ``file,flaky,reason``); the set is read, never copied.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

import orjson

from healing_guard.log_files import Analyzer
from healing_guard.remediate.actions import is_rerun
from healing_guard.settings import Settings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=Path("../shared/datasets/gitlab-flaky-veloren"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with (args.dataset / "labels.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    an = Analyzer(Settings(label_model="", text_model="packaged"))
    counts: Counter[tuple[bool, str]] = Counter()
    cats: Counter[tuple[bool, str]] = Counter()
    for i, row in enumerate(rows, 1):
        flaky = row["flaky"].strip().lower() in ("true", "1", "yes")
        (r,) = list(an.analyze_paths([str(args.dataset / "logs" / row["file"])], duration_minutes=10.0))
        rep = an.report(r)
        action = str(rep.get("action", "error"))
        kind = "rerun" if is_rerun(action) else action
        counts[(flaky, kind)] += 1
        cats[(flaky, str(rep.get("category")))] += 1
        print(f"\r{i}/{len(rows)} jobs", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    n_flaky = sum(v for (fl, _), v in counts.items() if fl)
    n_code = sum(v for (fl, _), v in counts.items() if not fl)
    to_author = counts[(True, "notify_author")]
    retried = counts[(False, "rerun")]
    out = {
        "jobs": len(rows), "intermittent": n_flaky, "genuine": n_code,
        "intermittent_sent_to_author": to_author,
        "intermittent_sent_to_author_rate": round(to_author / n_flaky, 4) if n_flaky else None,
        "intermittent_retried": counts[(True, "rerun")],
        "genuine_retried": retried, "genuine_retried_rate": round(retried / n_code, 4) if n_code else None,
        "actions": {f"{'intermittent' if fl else 'genuine'}:{k}": v for (fl, k), v in sorted(counts.items())},
        "categories": {f"{'intermittent' if fl else 'genuine'}:{k}": v for (fl, k), v in sorted(cats.items())},
    }
    print(f"intermittent jobs ({n_flaky}): sent to the author as code failures {to_author}, "
          f"retried {out['intermittent_retried']}; genuine failures ({n_code}): retried automatically {retried}")
    for k, v in out["actions"].items():
        print(f"  {k:40} {v}")
    if args.json:
        print(orjson.dumps(out).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
