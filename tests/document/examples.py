"""The examples of the product document (docs/product-document.md, the README our users read first),
extracted from the document itself: a change to an example changes what the conformance suite runs.

``blocks()`` gives every fenced code block with its language and the headings above it;
``block(heading, lang)`` the one block under a heading (``###`` or ``##`` title, emoji and all left out
of the match: ``block("Strategy Configuration", "yaml")``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import ROOT

DOCUMENT = ROOT / "docs" / "product-document.md"
#: the document as the product's authors keep it (beside the repository, on their machines only)
UPSTREAM = ROOT.parent / "shared" / "seed" / "product-document.md"

_FENCE = re.compile(r"^```([\w-]*)\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")


@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    headings: tuple[str, ...]  # the section titles above the block, outermost first
    line: int  # 1-based line of the opening fence

    @property
    def heading(self) -> str:
        return self.headings[-1] if self.headings else ""

    def __str__(self) -> str:
        return f"{DOCUMENT.name}:{self.line} ({self.heading}, {self.lang or 'text'})"


def _title(raw: str) -> str:
    """A heading without its leading emoji or symbols: "⚙️ Configuration" -> "Configuration"."""
    return re.sub(r"^[^A-Za-z`]+", "", raw).strip()  # its emoji are mojibake (letters)


def blocks(path: Path = DOCUMENT) -> list[Block]:
    out: list[Block] = []
    stack: list[tuple[int, str]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _HEADING.match(lines[i])
        if m:
            level = len(m.group(1))
            stack = [(lv, t) for lv, t in stack if lv < level] + [(level, _title(m.group(2)))]
            i += 1
            continue
        f = _FENCE.match(lines[i])
        if f:
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            out.append(Block(f.group(1).lower(), "\n".join(body) + "\n", tuple(t for _, t in stack), start))
        i += 1
    return out


def block(heading: str, lang: str, path: Path = DOCUMENT) -> Block:
    found = [b for b in blocks(path) if b.heading == heading and b.lang == lang]
    if len(found) != 1:
        raise LookupError(f"{path.name}: expected one {lang} block under {heading!r}, found {len(found)}")
    return found[0]
