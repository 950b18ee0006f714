"""Combine pattern hits from a whole job log into one category with a confidence.

The decision has to be explainable (it drives retries that cost money and tickets that reach people),
so it is a small, additive scoring rule over evidence lines rather than a learned model:

* each line contributes its pattern's confidence, scaled by how close it is to the end of the log,
  because the last error usually explains the failure and early errors are often retried or ignored;
* more lines of the same category add support with diminishing returns, so one noisy pattern that
  fires a thousand times cannot outvote one precise line;
* the exit code and the platform's conclusion add independent support (137 is usually the OOM killer,
  ``timed_out`` is the platform's own verdict);
* one line is one piece of evidence for one cause: when patterns of several categories match the same
  line, only the strongest reading counts (a Checkstyle finding printed in the compiler's location
  format, a clang-format violation printed as a compiler error, Maven's "could not resolve
  dependencies" wrapper around the real cause);
* a specific root cause near the end (out of memory, disk full, network, registry, runner lost, ...)
  wins over the generic consequence it caused, when the two are close: "tests failed" after an OOM
  kill, a runtime abort after "heap out of memory", "could not compile" after the compiler was killed.
  A cause printed just before the consequence first shows (a wrapper's timeout right before "the test
  file failed") explains it too, even when the log goes on long after.

Transient causes (network, rate limit, registry, cache, memory, disk, runner, platform timeout) trigger
automatic retries that cost money, so the words that name them only count where a tool says them about
the machine it runs on:

* a line that reports a *passing* test is no evidence at all, whatever the test is called
  (``✓ retries on ECONNRESET``);
* a line that *announces a retry* (``Retrying ...``, ``Will retry in 10 seconds``, ``spurious network
  error``) describes a hiccup the tool is handling, and a line that starts with a *source location*
  (grep output, a test's own ``file.go:42:`` log line) quotes code or test output: on such lines a
  transient reading is supporting evidence only, never enough on its own;
* a line a test runner prints about a failed test or assertion (``E  assert 'Connection reset' == ...``)
  belongs to the test: a transient reading of the same line is dropped;
* a transient cause found *only* inside a code step's failure message (the compiler, test, lint or
  configuration step reports it as its own reason to fail) is reported with a confidence capped below
  the automatic-action gates: a person decides. Dependency resolvers are not code steps for this rule:
  fetching is their job, so a transport error is the expected reason they fail;
* a connection error said only after a test was reported failed (in the test run's failure report), or
  only about a service on the machine itself or on a local-only name (``localhost``, ``db.local``), is a
  test's own call to the service it started: when tests failed, the diagnosis is ``test_failure``.

Below ``threshold`` the answer is ``unknown``: a guess would send the wrong remediation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from healing_guard.patterns.library import MARKER_CATEGORIES, STEP_CATEGORY
from healing_guard.patterns.matcher import Hit
from healing_guard.patterns.named import NAMESPACE
from healing_guard.patterns.tokenize import tokenize

__all__ = [
    "Diagnosis",
    "EvidenceLine",
    "MAX_EVIDENCE",
    "MAX_TEXT",
    "ROOT_CAUSES",
    "TRANSIENT",
    "classify",
    "evidence_from_hits",
    "step_start",
]

MAX_EVIDENCE = 5
MAX_TEXT = 500

#: Causes that explain a failure rather than restate it. When one of these is found near the end of
#: the log and scores close to a generic test failure, it is the better diagnosis: a retry with more
#: memory fixes an OOM-killed test run, re-running the assertion does not.
ROOT_CAUSES = frozenset(
    {
        "oom",
        "disk_full",
        "network",
        "docker_registry",
        "rate_limit",
        "cache_corruption",
        "infra_runner_lost",
        "infra_timeout",
        "test_timeout",
    }
)
#: Categories whose remediation runs automatically (a retry, a cache clean-up): their evidence must be
#: said about the machine, not quoted by code or tests (see the module docstring).
TRANSIENT = frozenset(
    {
        "network",
        "rate_limit",
        "docker_registry",
        "cache_corruption",
        "oom",
        "disk_full",
        "infra_runner_lost",
        "infra_timeout",
    }
)
#: Which causes may take precedence over which generic consequence. `crash` explains a test failure
#: only through strong evidence (a segfault, an abort, a panic on a program's main thread): a Rust or
#: Go test's failed assertion is a panic too, and that is the test failing, not the program crashing.
#: A crash or a failed compile is in turn the consequence of running out of memory or disk: the
#: runtime aborts after "heap out of memory", the compiler dies when the OOM killer takes it.
_EXPLAINED_BY: dict[str, frozenset[str]] = {
    "test_failure": ROOT_CAUSES | {"crash"},
    "crash": frozenset({"oom", "disk_full"}),
    "compilation_error": frozenset({"oom", "disk_full"}),
}
#: Minimum weight of a cause's strongest line for it to take precedence (others: any weight).
_MIN_PRECEDENCE_WEIGHT = {"crash": 0.8}
_PRECEDENCE_MARGIN = 0.2  # how far below the consequence a root cause may score and still win
_NEAR_END = 0.8  # recency a root cause's strongest line needs to count as "near the end"
_CAUSE_WINDOW = 30  # ...or how few lines before the consequence's first line it must be printed

# Support from the exit code of the failing step (128 + signal for signal deaths).
_EXIT_SUPPORT: dict[int, tuple[tuple[str, float], ...]] = {
    137: (("oom", 0.45),),  # SIGKILL: the kernel or cgroup OOM killer, most often
    143: (("infra_runner_lost", 0.35), ("infra_timeout", 0.3)),  # SIGTERM: runner shutdown/cancel
    124: (("infra_timeout", 0.35), ("test_timeout", 0.3)),  # coreutils `timeout`
    126: (("build_config", 0.3),),  # found but not executable: a script committed without +x
    139: (("crash", 0.5),),  # SIGSEGV
    134: (("crash", 0.45),),  # SIGABRT
    -11: (("crash", 0.5),),
    -6: (("crash", 0.45),),
    -9: (("oom", 0.4),),
}
_CONCLUSION_SUPPORT: dict[str, tuple[tuple[str, float], ...]] = {
    "timed_out": (("infra_timeout", 0.6),),
}

# Where a transient word is not said about the machine.
_PASSING_LINE = re.compile(
    r"^\s*(?:✓|✔|√)\s"  # jest, vitest, mocha
    r"|^\s*PASS\s"  # jest suite header
    r"|(?:^|\s)PASSED(?:\s|$)"  # pytest -v, xdist
    r"|\.\.\. ok$"  # unittest, cargo test
    r"|^\s*--- PASS: |^ok\s+\S+\s+(?:[\d.]+s|\(cached\))"  # go test
)
_RETRY_LINE = re.compile(
    r"\bretrying\b|\bwill retry\b|\bretry in \d|\bretries (?:left|remaining)\b|\btries remaining\b"
    r"|\bspurious network error\b|\bback(?:ing)? off\b|\bRetry\(total=",
    re.IGNORECASE,
)
# `path/file.ext:LINE:` then anything but a column (a compiler diagnostic) or Ruby's `:in 'method'`
# (an uncaught exception, which is the tool speaking).
_SOURCE_LINE = re.compile(r"^\s*[\w./\\@+-]+\.[A-Za-z]\w{0,7}:\d+:(?!\d+:)(?!in [`'])")
#: a connection to the machine itself or to a name only a local network resolves (a service the job or
#: its tests started, e.g. a compose service): not the CI network failing
_LOCAL_SERVICE = re.compile(
    r"(?<![\w.-])(?:localhost|127\.0\.0\.1|0\.0\.0\.0|::1|host\.docker\.internal"
    r"|[\w-]+(?:\.[\w-]+)*\.(?:local|internal|test))(?![\w.-])", re.IGNORECASE)
_SUPPORT_ONLY = 0.45  # weight of a transient reading on a retry or source line: below any threshold
_TEST_OWNS_LINE = 0.6  # a test-failure reading at least this strong claims its line
#: A transient cause seen only inside these steps' own failure lines is capped below the gates.
_CODE_STEPS = frozenset({"compilation_error", "test_failure", "lint_style", "build_config", "crash", "test_timeout"})
_CONTEST_WEIGHT = 0.7  # how specific the code step's reading of the line must be
_CONTESTED_CAP = 0.7  # below the default automatic gate (DEFAULT_THRESHOLD in remediate/gate.py: 0.75)

_REPEAT_SHARE = 0.35  # at most this share of the remaining doubt is removed by repeated lines
_REPEAT_SCALE = 2.0  # how quickly repeated support saturates
_MAX_REPEATS = 20  # lines per category beyond the strongest that count at all


@dataclass(frozen=True)
class EvidenceLine:
    """A log line that matched a pattern, as stored with a finding.

    ``line`` is 1-based in the whole log; ``text`` is already cleaned and redacted; ``weight`` is the
    matching pattern's confidence.
    """

    line: int
    text: str
    pattern: str
    category: str
    weight: float


@dataclass(frozen=True)
class Diagnosis:
    """One category for a failed job attempt, with the evidence that decided it (strongest first)."""

    category: str
    confidence: float
    evidence: tuple[EvidenceLine, ...]
    #: every category's score, highest first: the features the online learner corrects
    scores: tuple[tuple[str, float], ...] = ()
    #: the category came from the text model, not a pattern (classify/text_model.py): the planner tells a
    #: person instead of acting by itself
    learned: bool = False


def evidence_from_hits(hits: Sequence[Hit], first_line_no: int) -> list[EvidenceLine]:
    """Turn matcher hits on one chunk into evidence with whole-log line numbers.

    The text is tokenized (cleaned and redacted) here because evidence leaves the worker, and truncated
    so one minified-JS line cannot bloat a finding.
    """
    out: list[EvidenceLine] = []
    texts: dict[int, str] = {}  # several patterns often hit one line: tokenize it once
    for h in hits:
        if h.pattern.category in MARKER_CATEGORIES:
            continue
        text = texts.get(h.index)
        if text is None:
            text = texts[h.index] = tokenize(h.text)[:MAX_TEXT]
        out.append(
            EvidenceLine(
                line=first_line_no + h.index,
                text=text,
                pattern=h.pattern.id,
                category=h.pattern.category,
                weight=h.pattern.confidence,
            )
        )
    return out


def step_start(hits: Sequence[Hit], first_line_no: int) -> int | None:
    """The whole-log line where the last step marker among ``hits`` is (None: no marker)."""
    lines = [first_line_no + h.index for h in hits if h.pattern.category == STEP_CATEGORY]
    return max(lines) if lines else None


def _recency(line: int, total_lines: int, step: int | None = None) -> float:
    """1.0 at the end of the log, decaying towards the start (by position and by distance); 1.0 for
    every line of the last step, when the log marks steps (what follows it is the runner's cleanup)."""
    if step is not None and line >= step:
        return 1.0
    total = max(total_lines, line, 1)
    pos = max(line, 1) / total
    dist = total - line
    return max(pos**3, 0.5 ** (dist / 150.0))


def _strength(weight: float, line: int, total_lines: int, step: int | None = None) -> float:
    return max(0.0, min(1.0, weight)) * (0.65 + 0.35 * _recency(line, total_lines, step))


def _effective(evidence: Sequence[EvidenceLine]) -> list[tuple[float, EvidenceLine]]:
    """Each evidence line with the weight it may carry here (see the module docstring)."""
    kinds: dict[int, tuple[bool, bool]] = {}  # line -> (passing, quoted or retried)
    test_owned: set[int] = set()
    for e in evidence:
        if e.category == "test_failure" and e.weight >= _TEST_OWNS_LINE:
            test_owned.add(e.line)
    out: list[tuple[float, EvidenceLine]] = []
    for e in evidence:
        kind = kinds.get(e.line)
        if kind is None:
            t = e.text
            kind = (_PASSING_LINE.search(t) is not None,
                    _RETRY_LINE.search(t) is not None or _SOURCE_LINE.match(t) is not None)
            kinds[e.line] = kind
        passing, weak = kind
        if passing:
            continue
        w = e.weight
        if e.category in TRANSIENT:
            if e.line in test_owned:
                continue
            if weak:
                w = min(w, _SUPPORT_ONLY)
        out.append((w, e))
    return out


def _inside_test_report(cause: list[tuple[float, EvidenceLine]], tests: list[tuple[float, EvidenceLine]]) -> bool:
    """Every line of a transient cause comes after a test was already reported failed: it is in the
    test run's failure report (a test's own connection error to the service it started), which a
    person should read before anything is retried."""
    failed = [e.line for _, e in tests if e.weight >= _TEST_OWNS_LINE]
    return bool(failed) and min(failed) < min(e.line for _, e in cause)


def _combine(strengths: list[float]) -> float:
    """The strongest line plus diminishing support from the others."""
    if not strengths:
        return 0.0
    strengths.sort(reverse=True)
    top = strengths[0]
    rest = sum(strengths[1 : 1 + _MAX_REPEATS])
    return top + (1.0 - top) * _REPEAT_SHARE * (1.0 - math.exp(-rest / _REPEAT_SCALE))



def _named(e: EvidenceLine) -> bool:
    """Evidence of a team's named pattern (the product document's pattern format)."""
    return e.pattern.startswith(NAMESPACE)

def classify(
    evidence: Sequence[EvidenceLine],
    *,
    total_lines: int,
    exit_code: int | None = None,
    conclusion: str | None = None,
    threshold: float = 0.5,
    step: int | None = None,
) -> Diagnosis:
    """One category for a job from all evidence lines of its log (see the module docstring).

    ``step`` is the line where the log's last CI step starts (see :func:`step_start`), when known.
    """
    weighted = _effective(evidence)
    # Strongest contribution per (category, line): two patterns of one category on one line are one
    # piece of evidence, not two.
    per_line: dict[tuple[str, int], tuple[float, float, EvidenceLine]] = {}
    code_step: dict[int, float] = {}  # line -> strongest reading of it by a code step
    for w, e in weighted:
        s = _strength(w, e.line, total_lines, step)
        key = (e.category, e.line)
        cur = per_line.get(key)
        if cur is None or s > cur[0] or (s == cur[0] and e.pattern < cur[2].pattern):
            keep = cur[2] if cur is not None and _named(cur[2]) and not _named(e) else e
            per_line[key] = (s, w, e if keep is e else replace(keep, weight=w))
        elif _named(e) and not _named(cur[2]):
            # a team's named pattern (patterns/named.py) speaks for a line it reads: the planner carries
            # its remediation; the line keeps the strongest reading's strength and weight
            per_line[key] = (cur[0], cur[1], replace(e, weight=cur[1]))
        if e.category in _CODE_STEPS:
            code_step[e.line] = max(code_step.get(e.line, 0.0), w)
    # One line, one cause: a category whose reading of a line is weaker than another's drops out.
    line_top: dict[int, float] = {}
    for (_, line), (_, w, _) in per_line.items():
        line_top[line] = max(line_top.get(line, 0.0), w)
    kept = {k: (s, e) for k, (s, w, e) in per_line.items() if w >= line_top[k[1]]}

    by_cat: dict[str, list[tuple[float, EvidenceLine]]] = {}
    for (cat, _), item in kept.items():
        by_cat.setdefault(cat, []).append(item)

    scores: dict[str, float] = {cat: _combine([s for s, _ in items]) for cat, items in by_cat.items()}

    supports = list(_EXIT_SUPPORT.get(exit_code, ())) if exit_code is not None else []
    if conclusion is not None:
        supports.extend(_CONCLUSION_SUPPORT.get(conclusion, ()))
    for cat, sup in supports:
        scores[cat] = 1.0 - (1.0 - scores.get(cat, 0.0)) * (1.0 - sup)

    def ranked(items: list[tuple[float, EvidenceLine]]) -> list[EvidenceLine]:
        return [e for _, e in sorted(items, key=lambda t: (-t[0], -t[1].line, t[1].pattern))]

    if not scores:
        return Diagnosis("unknown", 1.0, ())

    # Deterministic order: score, then category name.
    order = sorted(scores, key=lambda c: (-scores[c], c))
    best = order[0]
    explains = _EXPLAINED_BY.get(best, frozenset())
    consequence = by_cat.get(best, [])
    starts = min((e.line for _, e in consequence), default=None)  # where the consequence shows first
    by_proximity = False
    for cat in order[1:]:
        if cat not in explains:
            continue
        if scores[cat] < threshold or scores[cat] < scores[best] - _PRECEDENCE_MARGIN:
            continue
        items = by_cat.get(cat, [])
        if not items or max(per_line[(cat, e.line)][1] for _, e in items) < _MIN_PRECEDENCE_WEIGHT.get(cat, 0.0):
            continue
        if max(_recency(e.line, total_lines, step) for _, e in items) >= _NEAR_END:
            best = cat
            break
        if starts is not None and any(starts - _CAUSE_WINDOW <= e.line < starts for _, e in items):
            # printed right before the consequence first shows: it started the failure, but far from
            # the end of the log that is a weaker argument, so a person confirms a transient cause
            best, by_proximity = cat, True
            break

    score = max(0.0, min(1.0, scores[best]))
    best_items = by_cat.get(best, [])
    if best in TRANSIENT and best_items:
        tests = by_cat.get("test_failure", [])
        tests_own = _inside_test_report(best_items, tests) or all(_LOCAL_SERVICE.search(e.text) for _, e in best_items)
        if best == "network" and tests and scores.get("test_failure", 0.0) >= threshold and tests_own:
            # a test's own connection to the service it started (or told of in its failure report): the
            # test failed, and its error is a detail of that failure, not the CI machine's fault
            best, score = "test_failure", max(0.0, min(1.0, scores["test_failure"]))
            best_items = tests
        elif by_proximity or all(code_step.get(e.line, 0.0) >= _CONTEST_WEIGHT for _, e in best_items) or tests_own:
            # seen only inside a code step's own failure lines, or explaining a failure from afar:
            # report it, but let a person decide
            score = min(score, _CONTESTED_CAP)
    all_scores = tuple((c, round(min(1.0, scores[c]), 4)) for c in order)
    if score < threshold:
        all_items = [item for items in by_cat.values() for item in items]
        return Diagnosis("unknown", round(1.0 - score, 4), tuple(ranked(all_items)[:MAX_EVIDENCE]), all_scores)
    return Diagnosis(best, round(score, 4), tuple(ranked(by_cat.get(best, []))[:MAX_EVIDENCE]), all_scores)
