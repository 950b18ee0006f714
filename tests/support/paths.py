"""Paths the tests share, independent of how deep a test module sits under tests/."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: child interpreters import healing_guard from here
FIXTURES = ROOT / "tests" / "fixtures"  # webhook payloads, JUnit files, the pattern-coverage corpus
