"""The package type-checks: `mypy healing_guard` with the settings of [tool.mypy] in pyproject.toml.

A test rather than a make step so that it runs beside the other tests under xdist instead of before them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_package_type_checks() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy", "healing_guard"], cwd=REPO, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, f"mypy healing_guard found problems:\n{proc.stdout}{proc.stderr}"
    assert "Success" in proc.stdout
