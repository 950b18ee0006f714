"""Train (and evaluate) the text model that ships with the guard: healing_guard/classify/text_model.json.

    python benchmarks/train_text_model.py --dataset ../shared/datasets/ci-logs-dev \\
        --dataset ../shared/datasets/ci-logs-more --dataset /tmp/corpus [--evaluate] [--out FILE]

Every labelled log goes through the engine as the worker reads it (``Engine.read_log``: pattern evidence,
the located error and exit lines, the failing command), and the model learns the features of that
failure chunk (classify/text_model.py). Balanced: each category contributes as much as the largest one,
and within a category each (ecosystem or project family, platform) group as much as the others, by
repeating examples in a fixed order, so the most frequent label or platform is not a default.
The vocabulary keeps only words seen in logs of at least ``--min-projects`` projects.

``--evaluate`` scores leave-one-project-out: each project's logs are diagnosed by a model trained
without that project (its vocabulary too), next to the rules alone and the in-sample fit.
The datasets are read, never copied; the artifact holds word statistics, not log lines.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from healing_guard.classify.text_model import MODEL_FILE, TextModel, combine
from healing_guard.engine import Engine, offline_job
from healing_guard.engine.core import text_features
from healing_guard.remediate.gate import AUTOMATIC_CATEGORIES, packaged_thresholds
from healing_guard.settings import Settings


@dataclass
class Example:
    file: str
    dataset: str
    label: str
    project: str
    group: str  # ecosystem / project family and platform: what balancing evens out within a category
    x: dict[str, float]
    rule_category: str
    rule_confidence: float
    rule: Any  # the rules' Diagnosis
    lines: tuple[int, ...] = ()  # the evidence's line numbers, in the order the guard reports them


def project_of(dataset: str, file: str, row: dict[str, str]) -> tuple[str, str]:
    """(project, group) of a labelled log: the corpus says it; the real sets name it in the file name."""
    if row.get("project"):
        return f"corpus:{row['project']}", f"{row.get('ecosystem', '')}/{row.get('platform', '')}"
    stem = file.rsplit(".", 1)[0]
    parts = stem.split("__")
    if parts[0] == "logchunks" and len(parts) >= 3:
        return f"logchunks:{parts[2]}", f"travis/{parts[1]}"
    if parts[0] == "bump" and len(parts) >= 2:
        return f"bump:{parts[1]}", "maven/none"
    if parts[0] == "cidiff" and len(parts) >= 2:
        return f"cidiff:{parts[1].rsplit('_', 1)[0]}", "java/cidiff"
    if parts[0] == "pytorch":  # fixtures of one organisation's CI: one project
        return "pytorch:pytorch", "pytorch/github"
    return f"{dataset}:{stem}", f"{dataset}/unknown"


def load(datasets: list[Path]) -> list[Example]:
    engine = Engine(Settings(text_model="off", label_model=""))
    out: list[Example] = []
    for ds in datasets:
        with (ds / "labels.csv").open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        for i, row in enumerate(rows, 1):
            path = ds / "logs" / row["file"]
            job = offline_job(row["file"])
            with path.open("rb") as fp:
                ready, analysis = engine.read_log(fp, job)
            d = analysis.diagnosis
            rule_evidence = tuple(e for e in d.evidence if not e.pattern.startswith("_locate"))
            x = text_features(ready, d.evidence)  # what the engine predicts from (offline jobs: no exit code)
            project, group = project_of(ds.name, row["file"], row)
            out.append(Example(row["file"], ds.name, row["category"], project, group, x, d.category, d.confidence,
                               dataclass_replace_evidence(d, rule_evidence), tuple(e.line for e in d.evidence)))
            print(f"\r{ds.name}: {i}/{len(rows)} logs", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    return out


def dataclass_replace_evidence(d: Any, evidence: tuple[Any, ...]) -> Any:
    import dataclasses

    return dataclasses.replace(d, evidence=evidence)


def vocabulary(examples: list[Example], min_projects: int, min_sources: int = 2) -> frozenset[str]:
    """Words seen in logs of ``min_projects`` projects from ``min_sources`` different sources (the corpus,
    and each real collection): a product's or an organisation's name stays out even when it has several
    repositories in one collection."""
    projects: dict[str, set[str]] = defaultdict(set)
    sources: dict[str, set[str]] = defaultdict(set)
    for e in examples:
        src = e.project.split(":", 1)[0]
        for k in e.x:
            projects[k].add(e.project)
            sources[k].add(src)
    return frozenset(k for k, ps in projects.items() if len(ps) >= min_projects and len(sources[k]) >= min_sources)


def balanced(examples: list[Example]) -> list[Example]:
    """Each category as many times as the largest; within it, each group as often as the others."""
    by_cat: dict[str, dict[str, list[Example]]] = defaultdict(lambda: defaultdict(list))
    for e in examples:
        by_cat[e.label][e.group].append(e)
    target = max(sum(len(v) for v in g.values()) for g in by_cat.values())
    out: list[Example] = []
    for cat in sorted(by_cat):
        groups = [by_cat[cat][g] for g in sorted(by_cat[cat])]
        n, i = 0, 0
        while n < target:
            g = groups[i % len(groups)]
            out.append(g[(i // len(groups)) % len(g)])
            n += 1
            i += 1
    # interleave categories so an online learner sees them mixed
    out.sort(key=lambda e: zlib.crc32(f"{e.file}|{e.label}".encode()))
    return out


def train(examples: list[Example], min_projects: int) -> TextModel:
    model = TextModel(vocabulary=vocabulary(examples, min_projects))
    for e in balanced(examples):
        model.learn_one(e.x, e.label)
    return model


def score(rows: list[tuple[str, str, float, bool]]) -> dict[str, Any]:
    """rows: (label, predicted, confidence, learned)."""
    labels = sorted({r[0] for r in rows})
    f1s = []
    per: dict[str, dict[str, float]] = {}
    for c in labels:
        tp = sum(1 for r in rows if r[0] == c and r[1] == c)
        fp = sum(1 for r in rows if r[0] != c and r[1] == c)
        fn = sum(1 for r in rows if r[0] == c and r[1] != c)
        p = tp / (tp + fp) if tp + fp else 0.0
        rc = tp / (tp + fn) if tp + fn else 0.0
        f = 2 * p * rc / (p + rc) if p + rc else 0.0
        per[c] = {"precision": round(p, 3), "recall": round(rc, 3), "f1": round(f, 3), "support": tp + fn}
        f1s.append(f)
    gate = packaged_thresholds()
    auto = [r for r in rows if r[1] in AUTOMATIC_CATEGORIES and not r[3] and r[2] >= gate.get(r[1], 1.01)]
    return {"logs": len(rows), "macro_f1": round(sum(f1s) / len(f1s), 4) if f1s else 0.0,
            "accuracy": round(sum(r[0] == r[1] for r in rows) / len(rows), 4) if rows else 0.0,
            "unknown_rate": round(sum(r[1] == "unknown" for r in rows) / len(rows), 4) if rows else 0.0,
            "automatic_actions": len(auto),
            "automatic_action_precision": round(sum(r[0] == r[1] for r in auto) / len(auto), 4) if auto else None,
            "per_category": per}


def predict(model: TextModel, e: Example) -> tuple[str, str, float, bool]:
    d = combine(e.rule, model.predict_proba(e.x))
    return (e.label, d.category, d.confidence, d.learned)


def evaluate(examples: list[Example], min_projects: int) -> dict[str, Any]:
    rules = [(e.label, e.rule_category, e.rule_confidence, False) for e in examples]
    full = train(examples, min_projects)
    in_sample = [predict(full, e) for e in examples]
    held: list[tuple[str, str, float, bool]] = []
    held_by_ds: dict[str, list[tuple[str, str, float, bool]]] = defaultdict(list)
    projects = sorted({e.project for e in examples})
    t0 = time.monotonic()
    for i, proj in enumerate(projects, 1):
        train_set = [e for e in examples if e.project != proj]
        model = train(train_set, min_projects)
        for e in examples:
            if e.project == proj:
                r = predict(model, e)
                held.append(r)
                held_by_ds[e.dataset].append(r)
        print(f"\rleave-one-project-out: {i}/{len(projects)} projects ({time.monotonic() - t0:.0f} s)",
              end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    rules_by_ds: dict[str, list[tuple[str, str, float, bool]]] = defaultdict(list)
    for e, r in zip(examples, rules):
        rules_by_ds[e.dataset].append(r)
    return {
        "projects": len(projects),
        "rules": score(rules), "in_sample": score(in_sample), "held_out": score(held),
        "by_dataset": {ds: {"rules": score(rules_by_ds[ds]), "held_out": score(held_by_ds[ds])}
                       for ds in sorted(held_by_ds)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, action="append", required=True, help="labels.csv + logs/ (repeatable)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "healing_guard" / "classify" / MODEL_FILE)
    ap.add_argument("--min-projects", type=int, default=3, help="a word must appear in logs of this many projects")
    ap.add_argument("--evaluate", action="store_true", help="leave-one-project-out scores (no model written)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    examples = load(args.dataset)
    print(f"{len(examples)} logs, {len({e.project for e in examples})} projects; labels: "
          + ", ".join(f"{c} {n}" for c, n in Counter(e.label for e in examples).most_common()), file=sys.stderr)
    if args.evaluate:
        res = evaluate(examples, args.min_projects)
        for name in ("rules", "in_sample", "held_out"):
            s = res[name]
            print(f"{name:10} macro-F1 {s['macro_f1']:.3f}  accuracy {s['accuracy']:.3f}  unknown {s['unknown_rate']:.1%}  "
                  f"automatic {s['automatic_actions']} (precision {s['automatic_action_precision']})")
        for ds, v in res["by_dataset"].items():
            print(f"  {ds:22} rules macro-F1 {v['rules']['macro_f1']:.3f} -> held-out {v['held_out']['macro_f1']:.3f}"
                  f"  unknown {v['rules']['unknown_rate']:.1%} -> {v['held_out']['unknown_rate']:.1%}")
        if args.json:
            print(orjson.dumps(res).decode())
        return 0
    model = train(examples, args.min_projects)
    model.info = {"datasets": [p.name for p in args.dataset], "logs": len(examples),
                  "projects": len({e.project for e in examples}), "vocabulary": len(model.vocabulary or ()),
                  "labels": dict(Counter(e.label for e in examples)), "min_projects": args.min_projects,
                  "command": "python benchmarks/train_text_model.py " + " ".join(
                      f"--dataset {p}" for p in args.dataset)}
    model.dump(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB, vocabulary {len(model.vocabulary or ())})",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
