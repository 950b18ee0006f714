"""jest and mocha under a directive, on small projects: only the failed tests run, in one process.

jest and mocha come from the npm registry once (into ~/.cache/healing-guard/node-tools, about 11 s) and
are linked into each project."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .test_tools import _directive, _job, _ran

pytestmark = [pytest.mark.integration, pytest.mark.skipif(shutil.which("npm") is None, reason="needs Node.js and npm")]

TOOLS = {"jest": "29", "mocha": "10"}
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "healing-guard" / (
    "node-tools-" + "-".join(f"{k}{v}" for k, v in TOOLS.items()))

REC = "const fs = require('fs');\nconst rec = (n) => fs.appendFileSync(process.env.REC, `${n}:${process.pid}\\n`);\n"


@pytest.fixture(scope="module")
def node_modules() -> Path:
    mods = CACHE / "node_modules"
    if not (mods / ".bin" / "jest").exists() or not (mods / ".bin" / "mocha").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / "package.json").write_text('{"name": "guard-node-tools", "version": "1.0.0", "private": true}')
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
                        *(f"{k}@{v}" for k, v in TOOLS.items())], cwd=CACHE, check=True, timeout=300,
                       capture_output=True)
    return mods


def _project(tmp_path: Path, node_modules: Path, files: dict[str, str]) -> Path:
    proj = tmp_path / "proj"
    for name, text in files.items():
        (proj / name).parent.mkdir(parents=True, exist_ok=True)
        (proj / name).write_text(REC + text)
    (proj / "package.json").write_text('{"name": "proj", "version": "1.0.0", "private": true}')
    (proj / "node_modules").symlink_to(node_modules)
    return proj


def test_jest_runs_only_the_failed_tests_in_one_worker(tmp_path: Path, node_modules: Path) -> None:
    proj = _project(tmp_path, node_modules, {
        "t/cart.test.js": "describe('Cart', () => { test('adds (1+1) items', () => rec('adds'));"
                          " test('removes', () => rec('removes')); test('empties', () => rec('empties')); });\n",
        "t/pay.test.js": "describe('Pay', () => { test('refunds', () => rec('refunds'));"
                         " test('charges', () => rec('charges')); });\n"})
    # the project's own parallelism is in its config (a --maxWorkers on the command line would win over the
    # directive's); each run gets a fresh cache directory, or jest's "these tests are fast" timing
    # heuristic would run them in band by itself
    (proj / "jest.config.js").write_text("module.exports = { maxWorkers: 2 };\n")
    cmd = ('eval "npx jest --cacheDirectory \"$(mktemp -d)\" t '
           '$(guard directive args jest --file ../.guard/directive.json)"')
    plain = _job(tmp_path, _directive(tmp_path, action="retry"), cmd, proj)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    ran = [r.split(":") for r in _ran(tmp_path)]
    assert len(ran) == 5 and len({pid for _, pid in ran}) == 2  # two files, two workers
    (tmp_path / "rec.txt").unlink()
    d = _directive(tmp_path, action="rerun_sequential", sequential=True,
                   tests=["Cart › adds (1+1) items", "Pay › refunds", "tests/test_x.py::test_py"])
    out = _job(tmp_path, d, cmd, proj)
    assert out.returncode == 0, out.stdout + out.stderr
    ran = [r.split(":") for r in _ran(tmp_path)]
    assert sorted(n for n, _ in ran) == ["adds", "refunds"] and len({pid for _, pid in ran}) == 1


def test_mocha_runs_only_the_failed_tests_without_parallel_workers(tmp_path: Path, node_modules: Path) -> None:
    proj = _project(tmp_path, node_modules, {
        "m/cart.spec.js": "describe('Cart', () => { it('adds (1+1) items', () => rec('adds'));"
                          " it('removes', () => rec('removes')); });\n",
        "m/pay.spec.js": "describe('Pay', () => { it('refunds', () => rec('refunds')); it('charges', () => rec('charges')); });\n"})
    cmd = "eval \"npx mocha --parallel --jobs 2 'm/*.spec.js' $(guard directive args mocha --file ../.guard/directive.json)\""
    plain = _job(tmp_path, _directive(tmp_path, action="retry"), cmd, proj)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    ran = [r.split(":") for r in _ran(tmp_path)]
    assert len(ran) == 4 and len({pid for _, pid in ran}) == 2
    (tmp_path / "rec.txt").unlink()
    d = _directive(tmp_path, action="rerun_sequential", sequential=True, tests=["Cart › adds (1+1) items", "Pay › refunds"])
    out = _job(tmp_path, d, cmd, proj)
    assert out.returncode == 0, out.stdout + out.stderr
    ran = [r.split(":") for r in _ran(tmp_path)]
    assert sorted(n for n, _ in ran) == ["adds", "refunds"] and len({pid for _, pid in ran}) == 1
