"""Lines per second of the tokenizer + matcher against two baselines: the engine behind ``guard bench matcher``.

Three measurements, in one process, on one corpus and one pattern library, interleaved run by run:

* **ours** - the product's hot path: the corpus as raw bytes cut into blocks of about 1 MiB at line
  boundaries (as :class:`~healing_guard.classify.log_stream.LogAnalyzer` streams a file), ``Matcher.scan``
  per block, then ``tokenize`` for every hit (the evidence the product stores). One thread.
* **re loop** - how Jenkins' Build Failure Analyzer scans: every pattern's regex (Python ``re``) against
  every line once :func:`~healing_guard.patterns.tokenize.clean` has stripped the platform decoration
  the patterns are written without, then ``tokenize`` for every hit. About 100x slower, so it runs on
  the first lines of the same corpus; rates are per line, so the comparison stays fair.
* **drain3** - ``TemplateMiner`` with its default configuration and no persistence, fed
  ``clean(line)`` line by line (also on a leading slice).

The comparison is only honest if ours finds what the re loop finds: :func:`compare_hits` checks the
(line, pattern id) hit sets of both on the re loop's slice, with an uncapped matcher.
"""

from __future__ import annotations

import gc
import math
import os
import re
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from healing_guard.patterns.library import Pattern, load_library
from healing_guard.patterns.matcher import Matcher
from healing_guard.patterns.tokenize import clean, tokenize

__all__ = [
    "BLOCK_BYTES",
    "DATASET_ENV",
    "BenchError",
    "Corpus",
    "Run",
    "build_corpus",
    "compare_hits",
    "compile_re_loop",
    "cut_blocks",
    "head",
    "import_drain3",
    "resolve_dataset",
    "run_drain3",
    "run_matcher_bench",
    "run_ours",
    "run_re_loop",
]

#: Block size ours scans at once: the analyzer's (``classify.analyze.BLOCK_BYTES``).
BLOCK_BYTES = 1 << 20
#: Environment variable naming the default dataset folder.
DATASET_ENV = "GUARD_BENCH_DATASET"
#: Tried (relative to the current directory) when neither ``--dataset`` nor the variable is given.
DEFAULT_DATASET = Path("..") / "shared" / "datasets" / "ci-logs-dev"
DRAIN3_HINT = "drain3 is not installed: pip install 'self-healing-pipeline-guard[bench]'"
#: Lines each measurement runs once, untimed, before the first run (first-call costs, caches).
WARMUP_LINES = 2_000

Progress = Callable[[str], None]


class BenchError(RuntimeError):
    """The benchmark cannot run as asked (no dataset, no drain3, ...); the message says why."""


@dataclass(frozen=True)
class Corpus:
    """The benchmark's input: newline-terminated raw log lines, repeated to reach the requested size."""

    data: bytes
    lines: int
    source: str  # what the lines were read from, for the report
    files: int
    base_lines: int  # lines before repetition
    repeats: int
    from_samples: bool = False


@dataclass(frozen=True)
class Run:
    """One timed measurement: ``lines`` processed in ``seconds`` (wall), with what it found.

    ``hits`` holds ``(line index, pattern id, evidence text)`` for the matchers; ``clusters`` the template
    count for drain3.
    """

    lines: int
    seconds: float
    hits: list[tuple[int, str, str]] = field(default_factory=list)
    clusters: int = 0

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else math.inf


# --------------------------------------------------------------------------------------------------
# corpus
# --------------------------------------------------------------------------------------------------


def resolve_dataset(dataset: Path | None = None, *, cwd: Path | None = None) -> Path | None:
    """The dataset folder to read: ``dataset``, else ``$GUARD_BENCH_DATASET``, else
    ``../shared/datasets/ci-logs-dev`` if it exists; None when none applies (use the sample logs).

    A folder that was asked for explicitly (argument or variable) must exist and hold ``logs/*.log``.
    """
    for asked, how in ((dataset, "--dataset"), (os.environ.get(DATASET_ENV) or None, f"${DATASET_ENV}")):
        if asked is None:
            continue
        path = Path(asked)
        if not path.is_dir():
            raise BenchError(f"{how}: {path} is not a directory")
        if not dataset_files(path):
            raise BenchError(f"{how}: no logs/*.log files in {path}")
        return path
    default = (cwd or Path.cwd()) / DEFAULT_DATASET
    if default.is_dir() and dataset_files(default):
        return default.resolve()
    return None


def dataset_files(dataset: Path) -> list[Path]:
    """The log files of a dataset folder (layout: ``labels.csv`` + ``logs/*.log``), in name order."""
    return sorted(p for p in (dataset / "logs").glob("*.log") if p.is_file())


def _sample_bytes(n_jobs: int, seed: int) -> bytes:
    from healing_guard.samples import generate

    jobs = generate(n_jobs, seed)
    lines = [ln.replace("\n", " ") for job in jobs for ln in job.log_lines]
    return ("\n".join(lines) + "\n").encode("utf-8", "replace") if lines else b""


def build_corpus(
    dataset: Path | None,
    min_lines: int,
    *,
    sample_jobs: int = 300,
    sample_seed: int = 7,
) -> Corpus:
    """Every ``logs/*.log`` of ``dataset`` read as bytes (each ending with a newline) and concatenated,
    repeated until there are at least ``min_lines`` lines. Without a dataset, the seeded sample job logs
    of :mod:`healing_guard.samples` are used instead. Files are only read, never copied."""
    if dataset is not None:
        files = dataset_files(dataset)
        pieces: list[bytes] = []
        for f in files:
            data = f.read_bytes()
            if data:
                pieces.append(data if data.endswith(b"\n") else data + b"\n")
        base = b"".join(pieces)
        source, n_files, samples = str(dataset), len(files), False
    else:
        base = _sample_bytes(sample_jobs, sample_seed)
        source = f"healing_guard.samples.generate({sample_jobs}, seed={sample_seed}) (no dataset found)"
        n_files, samples = sample_jobs, True
    base_lines = base.count(b"\n")
    if not base_lines:
        raise BenchError(f"no log lines in {source}")
    repeats = max(1, math.ceil(min_lines / base_lines))
    return Corpus(data=base * repeats, lines=base_lines * repeats, source=source, files=n_files,
                  base_lines=base_lines, repeats=repeats, from_samples=samples)


def head(data: bytes, n_lines: int) -> bytes:
    """The first ``n_lines`` newline-terminated lines of ``data`` (all of it if it has fewer)."""
    pos = 0
    for _ in range(n_lines):
        nl = data.find(b"\n", pos)
        if nl < 0:
            return data
        pos = nl + 1
    return data[:pos]


def cut_blocks(data: bytes, block_bytes: int = BLOCK_BYTES) -> list[tuple[int, bytes]]:
    """``data`` cut at line boundaries into blocks of at most ``block_bytes`` (more only for a longer
    line), each as ``(index of its first line, its lines without the final newline)``, as the analyzer
    hands them to the matcher."""
    if block_bytes < 1:
        raise ValueError("block_bytes must be >= 1")
    out: list[tuple[int, bytes]] = []
    start, line, n = 0, 0, len(data)
    while start < n:
        end = start + block_bytes
        if end >= n:
            stop = n
        else:
            nl = data.rfind(b"\n", start, end)
            if nl < 0:
                nl = data.find(b"\n", end)
            stop = n if nl < 0 else nl + 1
        chunk = data[start:stop]
        body = chunk[:-1] if chunk.endswith(b"\n") else chunk
        out.append((line, body))
        line += body.count(b"\n") + 1
        start = stop
    return out


def _lines(buf: bytes) -> list[str]:
    """Decoded lines of a newline-terminated buffer; index i is line i as the matcher counts lines."""
    text = buf.decode("utf-8", "replace")
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return lines


# --------------------------------------------------------------------------------------------------
# the three measurements
# --------------------------------------------------------------------------------------------------


def run_ours(matcher: Matcher, blocks: Sequence[tuple[int, bytes]]) -> Run:
    """The product path: ``matcher.scan`` per block, ``tokenize`` per hit."""
    n_lines = sum(b.count(b"\n") + 1 for _, b in blocks)
    scan = matcher.scan
    hits: list[tuple[int, str, str]] = []
    t0 = time.perf_counter()
    for first, block in blocks:
        for h in scan(block):
            hits.append((first + h.index, h.pattern.id, tokenize(h.text)))
    seconds = time.perf_counter() - t0
    return Run(lines=n_lines, seconds=seconds, hits=hits)


def compile_re_loop(patterns: Sequence[Pattern]) -> list[tuple[str, re.Pattern[str]]]:
    """Each pattern compiled on its own with Python ``re``: ``(pattern id, compiled regex)``."""
    return [(p.id, re.compile(p.regex, re.IGNORECASE if p.caseless else 0)) for p in patterns]


def run_re_loop(compiled: Sequence[tuple[str, re.Pattern[str]]], buf: bytes) -> Run:
    """Build Failure Analyzer's way: per line ``clean``, then every regex's ``search``; ``tokenize`` per
    hit. Decoding the bytes is part of the timed work (ours is handed bytes too)."""
    hits: list[tuple[int, str, str]] = []
    t0 = time.perf_counter()
    lines = _lines(buf)
    for i, line in enumerate(lines):
        cleaned = clean(line)
        for pid, rx in compiled:
            if rx.search(cleaned) is not None:
                hits.append((i, pid, tokenize(line)))
    seconds = time.perf_counter() - t0
    return Run(lines=len(lines), seconds=seconds, hits=hits)


def import_drain3() -> Any:
    """The drain3 package, or a :class:`BenchError` saying how to install it."""
    try:
        import drain3
        from drain3.template_miner_config import TemplateMinerConfig  # noqa: F401
    except ImportError:
        raise BenchError(DRAIN3_HINT) from None
    return drain3


def run_drain3(buf: bytes) -> Run:
    """A fresh ``TemplateMiner`` (default configuration, no persistence), ``add_log_message(clean(line))``
    per line. The configuration object is passed explicitly so a ``drain3.ini`` in the current directory
    cannot change the defaults."""
    import_drain3()
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    miner = TemplateMiner(config=TemplateMinerConfig())
    add = miner.add_log_message
    t0 = time.perf_counter()
    lines = _lines(buf)
    for line in lines:
        add(clean(line))
    seconds = time.perf_counter() - t0
    return Run(lines=len(lines), seconds=seconds, clusters=len(miner.drain.clusters))


# --------------------------------------------------------------------------------------------------
# sanity check
# --------------------------------------------------------------------------------------------------


def compare_hits(
    ours: Iterable[tuple[int, str]],
    re_loop: Iterable[tuple[int, str]],
    lines: Sequence[str] = (),
    *,
    max_examples: int = 5,
) -> dict[str, Any]:
    """Agreement of two sets of ``(line index, pattern id)`` hits, with up to ``max_examples`` of the
    differences (``side`` is who found it; ``line`` is the cleaned line when ``lines`` is given)."""
    a, b = set(ours), set(re_loop)
    only_ours, only_re = sorted(a - b), sorted(b - a)
    examples: list[dict[str, Any]] = []
    for idx, pid, side in sorted([(i, p, "ours only") for i, p in only_ours]
                                 + [(i, p, "re loop only") for i, p in only_re])[:max_examples]:
        ex: dict[str, Any] = {"line_index": idx, "pattern": pid, "side": side}
        if 0 <= idx < len(lines):
            ex["line"] = clean(lines[idx])[:300]
        examples.append(ex)
    return {
        "ours_hits": len(a),
        "re_loop_hits": len(b),
        "both": len(a & b),
        "only_ours": len(only_ours),
        "only_re_loop": len(only_re),
        "differ": len(only_ours) + len(only_re),
        "examples": examples,
    }


# --------------------------------------------------------------------------------------------------
# the whole benchmark
# --------------------------------------------------------------------------------------------------


def _median_rate(runs: Sequence[Run]) -> float:
    med = statistics.median(r.seconds for r in runs)
    return runs[0].lines / med if med > 0 else math.inf


def _summary(runs: Sequence[Run]) -> dict[str, Any]:
    return {
        "lines": runs[0].lines,
        "seconds": [round(r.seconds, 4) for r in runs],
        "median_s": round(statistics.median(r.seconds for r in runs), 4),
        "lines_per_s": round(_median_rate(runs), 1),
    }


def run_matcher_bench(
    dataset: Path | None = None,
    *,
    lines: int = 1_000_000,
    runs: int = 5,
    baseline_lines: int = 20_000,
    drain3_lines: int = 100_000,
    pattern_files: Sequence[str | Path] = (),
    block_bytes: int = BLOCK_BYTES,
    sample_jobs: int = 300,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the three measurements ``runs`` times, interleaved, and the hit agreement check.

    ``dataset`` is used as given (None: the sample logs); see :func:`resolve_dataset` for the CLI's
    defaults. The result holds the medians (``lines``, ``ours_lines_per_s``, ``re_loop_lines_per_s``,
    ``drain3_lines_per_s``), the ratios, every run's seconds, the corpus and the agreement report.
    """
    if lines < 1 or runs < 1 or baseline_lines < 1 or drain3_lines < 1:
        raise ValueError("lines, runs, baseline_lines and drain3_lines must be >= 1")
    say: Progress = progress or (lambda _msg: None)
    import_drain3()  # fail before the slow setup

    say("loading the pattern library")
    patterns = load_library(pattern_files)
    if not patterns:
        raise BenchError("the pattern library is empty")
    say(f"building the corpus from {dataset if dataset is not None else 'the sample logs'}")
    corpus = build_corpus(dataset, lines, sample_jobs=sample_jobs)
    say(f"corpus: {corpus.lines:,} lines, {len(corpus.data) / 2**20:.1f} MiB "
        f"({corpus.base_lines:,} lines x {corpus.repeats})")
    say(f"compiling {len(patterns)} patterns (Hyperscan and re)")
    matcher = Matcher(patterns)
    compiled = compile_re_loop(patterns)
    blocks = cut_blocks(corpus.data, block_bytes)
    re_buf = head(corpus.data, baseline_lines)
    d3_buf = head(corpus.data, drain3_lines)

    warm = head(corpus.data, WARMUP_LINES)
    run_ours(matcher, cut_blocks(warm, block_bytes))
    run_re_loop(compiled, warm)
    run_drain3(warm)

    ours: list[Run] = []
    rel: list[Run] = []
    d3: list[Run] = []
    for r in range(runs):
        for label, out, fn in (
            ("ours", ours, lambda: run_ours(matcher, blocks)),
            ("re loop", rel, lambda: run_re_loop(compiled, re_buf)),
            ("drain3", d3, lambda: run_drain3(d3_buf)),
        ):
            gc.collect()
            res = fn()
            out.append(res)
            say(f"run {r + 1}/{runs}: {label:8s} {res.lines:>10,} lines in {res.seconds:7.3f} s "
                f"= {res.lines_per_s:>12,.0f} lines/s")

    say("checking hit agreement on the re loop's slice (uncapped matcher, one buffer)")
    uncapped = Matcher(patterns, max_hits_per_pattern=10**9)
    ours_set = {(h.index, h.pattern.id) for h in uncapped.scan(re_buf[:-1] if re_buf.endswith(b"\n") else re_buf)}
    re_set = {(i, pid) for i, pid, _ in rel[0].hits}
    agreement = compare_hits(ours_set, re_set, _lines(re_buf))
    agreement["lines"] = rel[0].lines

    ours_rate, re_rate, d3_rate = _median_rate(ours), _median_rate(rel), _median_rate(d3)
    return {
        "lines": corpus.lines,
        "ours_lines_per_s": round(ours_rate, 1),
        "re_loop_lines_per_s": round(re_rate, 1),
        "drain3_lines_per_s": round(d3_rate, 1),
        "ours_vs_re_loop": round(ours_rate / re_rate, 2),
        "ours_vs_drain3": round(ours_rate / d3_rate, 2),
        "runs": runs,
        "patterns": len(patterns),
        "corpus": {
            "source": corpus.source,
            "from_samples": corpus.from_samples,
            "files": corpus.files,
            "bytes": len(corpus.data),
            "base_lines": corpus.base_lines,
            "repeats": corpus.repeats,
        },
        "ours": {**_summary(ours), "blocks": len(blocks), "block_bytes": block_bytes,
                 "hits": len(ours[0].hits), "max_hits_per_pattern": matcher.max_hits_per_pattern},
        "re_loop": {**_summary(rel), "hits": len(rel[0].hits)},
        "drain3": {**_summary(d3), "clusters": d3[0].clusters},
        "agreement": agreement,
    }
