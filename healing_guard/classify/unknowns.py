"""Group failures the library cannot explain, so that a new recurring failure type surfaces.

An ``unknown`` diagnosis still has a log. Its *signature* is the templated line that best describes
it: the last error-looking line near the end (generic wrappers such as "Process completed with exit
code 1" skipped), else the strongest weak evidence, else the last non-empty line. Templating masks
numbers, paths, hashes and ids, so the same new failure from a hundred runs and repositories yields one
signature, and ``guard unknowns`` lists the largest groups with examples: each is a pattern worth
writing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from healing_guard.patterns.tokenize import template

from .classifier import EvidenceLine

__all__ = ["Cluster", "cluster_unknowns", "signature_line"]

MAX_SIGNATURE = 300
MAX_EXAMPLES = 3

_ERRORISH = re.compile(
    r"(?i)\b(?:error|errors|fail|failed|failure|fatal|exception|panic|panicked|abort|aborted|denied|refused"
    r"|killed|cannot|can't|unable|not found|no such|timed? ?out|invalid|unexpected|missing|traceback)\b"
)
# Lines every failed job prints whatever the cause: they describe nothing.
_GENERIC = re.compile(
    r"(?i)process completed with exit code|exited with code|exit status \d+$|job failed: exit code"
    r"|^finished: failure|marked build as failure|^error: script returned exit code|cleaning up orphan"
    r"|^make(?:\[\d+\])?: \*\*\* \[|^error: process completed|^##\[error\]$|^build failed\.?$"
    r"|^\[error\] *$|^error: *$|^failed\.?$"
)


def _describes(line: str) -> bool:
    s = line.strip()
    return bool(s) and _ERRORISH.search(s) is not None and _GENERIC.search(s) is None


def signature_line(evidence: Sequence[EvidenceLine], tail: Sequence[str]) -> str | None:
    """The templated line that stands for an unexplained failure (``None`` for an empty log)."""
    chosen = next((ln for ln in reversed(tail) if _describes(ln)), None)
    if chosen is None and evidence:
        chosen = max(evidence, key=lambda e: (e.weight, e.line)).text
    if chosen is None:
        chosen = next((ln for ln in reversed(tail) if ln.strip()), None)
    if chosen is None:
        return None
    return template(chosen.strip())[:MAX_SIGNATURE]


@dataclass
class Cluster:
    """Unknown failures sharing one signature."""

    signature: str
    count: int = 0
    examples: list[str] = field(default_factory=list)  # where the examples came from (file or job)


def cluster_unknowns(items: Iterable[tuple[str, str | None]], *, examples: int = MAX_EXAMPLES) -> list[Cluster]:
    """Group ``(source, signature)`` pairs; largest clusters first, then by signature for stable output.

    Items without a signature (empty logs) form one ``<empty log>`` cluster rather than vanishing.
    """
    by_sig: dict[str, Cluster] = {}
    for source, sig in items:
        key = sig if sig else "<empty log>"
        c = by_sig.get(key)
        if c is None:
            c = by_sig[key] = Cluster(key)
        c.count += 1
        if len(c.examples) < examples:
            c.examples.append(source)
    return sorted(by_sig.values(), key=lambda c: (-c.count, c.signature))
