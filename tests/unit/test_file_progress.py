"""`pytest --file-progress` (make test): a line per finished file with its counts, with and without xdist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_line_per_finished_file(tmp_path: Path, workers: list[str]) -> None:
    (tmp_path / "test_a.py").write_text("def test_1(): pass\ndef test_2(): pass\n")
    (tmp_path / "test_b.py").write_text("import pytest\ndef test_1(): pass\n"
                                        "@pytest.mark.skip('no')\ndef test_2(): pass\ndef test_3(): assert 0\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.support.file_progress", "--file-progress",
                        "-p", "no:cacheprovider", *workers, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    lines = [x for x in r.stdout.splitlines() if " files, " in x]
    assert len(lines) == 2, r.stdout
    a = next(x for x in lines if "test_a.py" in x)
    b = next(x for x in lines if "test_b.py" in x)
    assert "2 passed" in a and "/2 files" in a
    assert "1 failed" in b and "1 passed" in b and "1 skipped" in b
