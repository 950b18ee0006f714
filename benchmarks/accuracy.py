"""Diagnosis accuracy on labelled CI logs: per-category precision, recall and F1, macro-F1, a confusion
matrix, and the precision of the diagnoses whose remediation would run automatically.

    python benchmarks/accuracy.py --dataset ../shared/datasets/ci-logs-dev [--json] [--write-gate FILE]

The dataset layout is ``labels.csv`` (``file,category[,source]``) plus ``logs/<file>``. Every log goes
through the same path as ``guard analyze``: streamed in blocks, matched, classified. "Automatic" means
the category's strategy acts without a human *and* the confidence clears that category's gate
threshold (``healing_guard/remediate/gate.yml``); everything else notifies a human, so only the
automatic diagnoses can cost money when they are wrong.

``--held-out`` scores the way the guard meets a new user's logs: **leave-one-project-out** over every
``--dataset`` given (default: ``ci-logs-dev``, ``ci-logs-more`` and the real-tool corpus of ``make corpus``).
Each project's logs are diagnosed by the rules plus a text model trained without that project (its words
too); printed next to the in-sample fit (the model trained on everything, as shipped) and the rules
alone: macro-F1, unknown rate, per-category precision/recall, automatic actions and their precision, and
located@1/@3 on sets with ``chunks.csv``. The patterns cannot be held out this way (they are written by
hand); their score on a set they were not developed on is the rules' column for that set.

    python benchmarks/accuracy.py --held-out [--dataset D ...] [--json]

``--online`` adds a prequential (test-then-train) run of the online learner: each log is predicted
first, then its label is learned, in file order, which is how confirmed labels arrive in production.
``--write-gate FILE`` writes per-category thresholds chosen from the measured precision.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from healing_guard.classify.learner import LabelLearner
from healing_guard.log_files import Analyzer
from healing_guard.settings import Settings
from healing_guard.remediate.gate import AUTOMATIC_CATEGORIES, choose_thresholds, dump_gate, packaged_thresholds


@dataclass
class Row:
    file: str
    label: str
    predicted: str
    confidence: float
    evidence: str
    seconds: float
    lines: tuple[int, ...] = ()  # the evidence's line numbers, in the order the guard reports them


def load_labels(dataset: Path) -> list[tuple[str, str]]:
    path = dataset / "labels.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: not found (the dataset needs labels.csv with columns file,category)")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"file", "category"} - set(reader.fieldnames or ())
        if missing:
            raise SystemExit(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        return [(r["file"], r["category"]) for r in reader]


def run(dataset: Path, pattern_files: list[str], online: bool, text_model: str = "off") -> tuple[list[Row], list[Row]]:
    # the engine's path, as guard analyze and the worker judge a log; by default the rules alone (the
    # shipped text model learned from these sets: its held-out score is benchmarks/train_text_model.py
    # --evaluate, leave-one-project-out)
    analyzer = Analyzer(Settings(pattern_files=tuple(pattern_files), label_model="", text_model=text_model))
    rows: list[Row] = []
    learned: list[Row] = []
    learner = LabelLearner() if online else None
    labels = load_labels(dataset)
    for i, (name, label) in enumerate(labels, 1):
        path = dataset / "logs" / name
        t0 = time.perf_counter()
        with path.open("rb") as f:
            a = analyzer.analyze(f)
        dt = time.perf_counter() - t0
        d = a.diagnosis
        top = d.evidence[0].pattern if d.evidence else ""
        rows.append(Row(name, label, d.category, d.confidence, top, dt, tuple(e.line for e in d.evidence)))
        if learner is not None:
            d2 = learner.predict(d, signature=a.signature)
            learned.append(Row(name, label, d2.category, d2.confidence, top, dt))
            learner.learn(d, label, signature=a.signature)
        print(f"\r{i}/{len(labels)} logs", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return rows, learned


#: the baseline locator: "the last line that says error or fail"
_ERROR_WORD = re.compile(rb"error|fail", re.IGNORECASE)


def load_chunks(dataset: Path) -> dict[str, tuple[int, int]]:
    """``chunks.csv`` (``file,first_line,last_line``): the lines a person marked as the failure's reason."""
    path = dataset / "chunks.csv"
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as f:
        return {r["file"]: (int(r["first_line"]), int(r["last_line"])) for r in csv.DictReader(f)}


def _baseline_lines(path: Path, k: int) -> list[int]:
    """The last ``k`` lines that say error/fail (line numbers as ``sed -n`` counts them: split on \\n)."""
    found: list[int] = []
    with path.open("rb") as f:
        for i, line in enumerate(f, 1):
            if _ERROR_WORD.search(line):
                found.append(i)
                if len(found) > k:
                    del found[0]
    return list(reversed(found))


def located(rows: list[Row], dataset: Path, chunks: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """located@1/@3: one of the first k evidence lines falls in the person's chunk; the baseline's too."""
    scored = [r for r in rows if r.file in chunks]
    if not scored:
        return {}
    out: dict[str, Any] = {"logs": len(scored)}
    for k in (1, 3):
        ours = base = 0
        for r in scored:
            lo, hi = chunks[r.file]
            ours += any(lo <= ln <= hi for ln in r.lines[:k])
            base += any(lo <= ln <= hi for ln in _baseline_lines(dataset / "logs" / r.file, k))
        out[f"located@{k}"] = round(ours / len(scored), 4)
        out[f"baseline@{k}"] = round(base / len(scored), 4)
    out["empty_evidence"] = sum(1 for r in scored if not r.lines)
    return out


def scores(rows: list[Row], gate: dict[str, float]) -> dict[str, Any]:
    labels = sorted({r.label for r in rows})
    cats = sorted({r.label for r in rows} | {r.predicted for r in rows})
    per: dict[str, dict[str, float]] = {}
    for c in cats:
        tp = sum(1 for r in rows if r.label == c and r.predicted == c)
        fp = sum(1 for r in rows if r.label != c and r.predicted == c)
        fn = sum(1 for r in rows if r.label == c and r.predicted != c)
        p = tp / (tp + fp) if tp + fp else 0.0
        rcl = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * p * rcl / (p + rcl) if p + rcl else 0.0
        per[c] = {"precision": round(p, 4), "recall": round(rcl, 4), "f1": round(f1, 4), "support": tp + fn,
                  "predicted": tp + fp}
    macro = sum(per[c]["f1"] for c in labels) / len(labels) if labels else 0.0
    auto = [r for r in rows if r.predicted in AUTOMATIC_CATEGORIES and r.confidence >= gate.get(r.predicted, 1.01)]
    auto_right = sum(1 for r in auto if r.predicted == r.label)
    confusion = Counter((r.label, r.predicted) for r in rows)
    return {
        "logs": len(rows),
        "accuracy": round(sum(r.label == r.predicted for r in rows) / len(rows), 4) if rows else 0.0,
        "macro_f1": round(macro, 4),
        "unknown_rate": round(sum(r.predicted == "unknown" for r in rows) / len(rows), 4) if rows else 0.0,
        "empty_evidence": sum(1 for r in rows if not r.lines),
        "per_category": per,
        "automatic_actions": len(auto),
        "automatic_action_precision": round(auto_right / len(auto), 4) if auto else None,
        "confusion": {f"{t} -> {p}": n for (t, p), n in sorted(confusion.items())},
    }


def calibration(rows: list[Row], bins: int = 5) -> dict[str, Any]:
    """How well confidence predicts correctness: per confidence bin the share of right diagnoses, and the
    expected calibration error (ECE: the bins' |accuracy - mean confidence| weighted by size). Only
    diagnoses that name a category count (an `unknown` confidence is its doubt, not a claim)."""
    named = [r for r in rows if r.predicted != "unknown"]
    table = []
    ece = 0.0
    lo = 0.5
    width = (1.0 - lo) / bins
    for b in range(bins):
        a, z = lo + b * width, lo + (b + 1) * width
        inb = [r for r in named if a <= r.confidence < z or (b == bins - 1 and r.confidence >= z)]
        if not inb:
            continue
        conf = sum(r.confidence for r in inb) / len(inb)
        acc = sum(r.predicted == r.label for r in inb) / len(inb)
        ece += len(inb) / len(named) * abs(acc - conf)
        table.append({"bin": f"{a:.1f}-{z:.1f}", "n": len(inb), "mean_confidence": round(conf, 3),
                      "accuracy": round(acc, 3)})
    return {"ece": round(ece, 4), "bins": table}


def cross_validated_gate(rows: list[Row], *, folds: int, target: float, seed: int = 7) -> dict[str, Any]:
    """Automatic-action precision when each log's gate was chosen *without* that log.

    The packaged gate was measured on this same data, so its precision here is optimistic; K-fold
    cross-validation (thresholds chosen on K-1 folds, applied to the held-out fold) is the honest
    estimate of how the gate does on logs it has not seen.
    """
    import random

    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    acted = right = 0
    for k in range(folds):
        held = {i for j, i in enumerate(order) if j % folds == k}
        train = [rows[i] for i in order if i not in held]
        gate = choose_thresholds(((r.predicted, r.confidence, r.predicted == r.label) for r in train), target=target)
        for i in held:
            r = rows[i]
            e = gate.get(r.predicted)
            if e is not None and r.confidence >= e.threshold:
                acted += 1
                right += r.predicted == r.label
    return {"folds": folds, "automatic_actions": acted,
            "automatic_action_precision": round(right / acted, 4) if acted else None}


def print_report(name: str, s: dict[str, Any], rows: list[Row]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
    t = Table(title=f"{name}: per-category scores")
    for col in ("category", "precision", "recall", "F1", "support", "predicted"):
        t.add_column(col, justify="left" if col == "category" else "right")
    for c, v in s["per_category"].items():
        t.add_row(c, f"{v['precision']:.2f}", f"{v['recall']:.2f}", f"{v['f1']:.2f}", str(v["support"]),
                  str(v["predicted"]))
    con.print(t)
    labels = sorted({r.label for r in rows})
    preds = sorted({r.predicted for r in rows})
    cm = Table(title=f"{name}: confusion matrix (rows: label, columns: predicted)")
    cm.add_column("label \\ predicted")
    for p in preds:
        cm.add_column(p[:10], justify="right")
    counts = Counter((r.label, r.predicted) for r in rows)
    for lab in labels:
        cm.add_row(lab, *[str(counts.get((lab, p), "")) for p in preds])
    con.print(cm)
    wrong = [r for r in rows if r.label != r.predicted]
    if wrong:
        w = Table(title=f"{name}: misclassified logs")
        for col in ("file", "label", "predicted", "confidence", "top evidence"):
            w.add_column(col)
        for r in wrong:
            w.add_row(r.file, r.label, r.predicted, f"{r.confidence:.2f}", r.evidence)
        con.print(w)
    ap = s["automatic_action_precision"]
    con.print(f"{name}: accuracy {s['accuracy']:.3f}  macro-F1 {s['macro_f1']:.3f}  "
              f"automatic actions {s['automatic_actions']}  precision "
              f"{'n/a' if ap is None else f'{ap:.3f}'}")


DEFAULT_SETS = (Path("../shared/datasets/ci-logs-dev"), Path("../shared/datasets/ci-logs-more"),
                Path(".guard/corpus/out"))


def held_out(datasets: list[Path], min_projects: int) -> dict[str, Any]:
    """Leave-one-project-out over ``datasets`` with the text model (benchmarks/train_text_model.py), plus
    located@k of the engine's evidence on the sets that have a person's chunks."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_text_model import evaluate, load

    examples = load(datasets)
    res = evaluate(examples, min_projects)
    res["located"] = {}
    for ds in datasets:
        chunks = load_chunks(ds)
        if chunks:  # the evidence lines load() already read (the model changes no evidence)
            rows = [Row(e.file, e.label, e.rule_category, e.rule_confidence, "", 0.0, e.lines)
                    for e in examples if e.dataset == ds.name]
            res["located"][ds.name] = located(rows, ds, chunks)
    return res


def print_held_out(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=None if sys.stdout.isatty() else 160)
    t = Table(title=f"leave-one-project-out ({res['projects']} projects, {res['held_out']['logs']} logs)")
    for col in ("set", "rules macro-F1", "in-sample", "held-out", "unknown rules / held-out",
                "automatic (precision), held-out"):
        t.add_column(col, justify="left" if col == "set" else "right")

    def auto(s: dict[str, Any]) -> str:
        p = s["automatic_action_precision"]
        return f"{s['automatic_actions']} ({'n/a' if p is None else f'{p:.3f}'})"

    for name, v in [*res["by_dataset"].items(), ("union", {k: res[k] for k in ("rules", "in_sample", "held_out")})]:
        ins = v.get("in_sample")
        t.add_row(name, f"{v['rules']['macro_f1']:.3f}", f"{ins['macro_f1']:.3f}" if ins else "",
                  f"{v['held_out']['macro_f1']:.3f}",
                  f"{v['rules']['unknown_rate']:.1%} / {v['held_out']['unknown_rate']:.1%}", auto(v["held_out"]))
    con.print(t)
    c = Table(title="held out, union: per category")
    for col in ("category", "precision", "recall", "F1", "support"):
        c.add_column(col, justify="left" if col == "category" else "right")
    for cat, v in res["held_out"]["per_category"].items():
        c.add_row(cat, f"{v['precision']:.2f}", f"{v['recall']:.2f}", f"{v['f1']:.2f}", str(v["support"]))
    con.print(c)
    for name, loc in res["located"].items():
        con.print(f"located on {name} ({loc['logs']} logs with a person's chunk): ours @1 {loc['located@1']:.3f} "
                  f"@3 {loc['located@3']:.3f}; last error/fail line @1 {loc['baseline@1']:.3f} @3 {loc['baseline@3']:.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, action="append", default=[],
                    help="folder with labels.csv and logs/ (default ci-logs-dev; with --held-out repeatable, "
                         "default all labelled sets)")
    ap.add_argument("--held-out", action="store_true",
                    help="leave-one-project-out over the datasets, with the text model, next to in-sample")
    ap.add_argument("--min-projects", type=int, default=3, help=argparse.SUPPRESS)
    ap.add_argument("--pattern-file", action="append", default=[], help="extra pattern library file(s)")
    ap.add_argument("--json", action="store_true", help="print the scores as one JSON line at the end")
    ap.add_argument("--online", action="store_true", help="also score the online learner, test-then-train")
    ap.add_argument("--with-model", action="store_true",
                    help="diagnose with the shipped text model too (in-sample on the sets it learned from)")
    ap.add_argument("--write-gate", type=Path, help="write per-category automatic-action thresholds here")
    ap.add_argument("--target-precision", type=float, default=0.95)
    ap.add_argument("--folds", type=int, default=5, help="folds of the cross-validated gate estimate")
    args = ap.parse_args(argv)
    if args.held_out:
        sets = args.dataset or [d for d in DEFAULT_SETS if (d / "labels.csv").is_file()]
        if not args.dataset:
            for d in DEFAULT_SETS:
                if d not in sets:  # say so: a union without a set is a different figure
                    print(f"note: {d} not found (from {Path.cwd()}), left out; pass --dataset to name it",
                          file=sys.stderr)
        missing = [str(d) for d in sets if not (d / "labels.csv").is_file()]
        if missing or not sets:
            print(f"no labels.csv in: {', '.join(missing) or 'any default set'} (make corpus builds the corpus)",
                  file=sys.stderr)
            return 2
        res = held_out(sets, args.min_projects)
        print_held_out(res)
        if args.json:
            print(orjson.dumps(res).decode())
        return 0
    if len(args.dataset) > 1:
        print("several --dataset: use --held-out (one set at a time otherwise)", file=sys.stderr)
        return 2
    args.dataset = args.dataset[0] if args.dataset else DEFAULT_SETS[0]
    if not (args.dataset / "logs").is_dir():
        print(f"{args.dataset}: no logs/ folder (expected labels.csv + logs/)", file=sys.stderr)
        return 2
    rows, learned = run(args.dataset, args.pattern_file, args.online, "packaged" if args.with_model else "off")
    if args.with_model:
        print("with the shipped text model: IN-SAMPLE on the sets it was trained on "
              "(held-out: benchmarks/train_text_model.py --evaluate)", file=sys.stderr)
    gate = packaged_thresholds()
    if args.write_gate:
        entries = choose_thresholds(((r.predicted, r.confidence, r.predicted == r.label) for r in rows),
                                    target=args.target_precision)
        args.write_gate.write_text(
            "# Written by benchmarks/accuracy.py --write-gate; see healing_guard/remediate/gate.py\n"
            + dump_gate(entries, source=f"{args.dataset.name}: {len(rows)} labelled logs", target=args.target_precision),
            encoding="utf-8")
        gate = {c: e.threshold for c, e in entries.items()}
        print(f"wrote {args.write_gate}", file=sys.stderr)
    s = scores(rows, gate)
    print_report("rules", s, rows)
    cv = cross_validated_gate(rows, folds=args.folds, target=args.target_precision)
    cvp = cv["automatic_action_precision"]
    print(f"gate chosen by {args.folds}-fold cross-validation: {cv['automatic_actions']} automatic actions, "
          f"precision {'n/a' if cvp is None else f'{cvp:.3f}'}")
    cal = calibration(rows)
    print("calibration (named categories): " + "  ".join(
        f"{b['bin']}: n={b['n']} conf={b['mean_confidence']:.2f} acc={b['accuracy']:.2f}" for b in cal["bins"])
        + f"  ECE {cal['ece']:.3f}")
    out: dict[str, Any] = {"dataset": str(args.dataset), **s, "cross_validated_gate": cv, "calibration": cal}
    loc = located(rows, args.dataset, load_chunks(args.dataset))
    if loc:
        out["located"] = loc
        print(f"located (a person's chunk, {loc['logs']} logs): ours @1 {loc['located@1']:.3f} @3 {loc['located@3']:.3f}; "
              f"last error/fail line @1 {loc['baseline@1']:.3f} @3 {loc['baseline@3']:.3f}")
    print(f"unknown {s['unknown_rate']:.1%}; logs with no evidence line: {s['empty_evidence']}")
    if learned:
        s2 = scores(learned, gate)
        print_report("online learner (test-then-train)", s2, learned)
        out["online"] = {k: s2[k] for k in ("accuracy", "macro_f1", "automatic_actions", "automatic_action_precision")}
    if args.json:
        print(orjson.dumps(out).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
