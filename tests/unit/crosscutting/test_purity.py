"""Pure logic never imports Faust, Kafka, ClickHouse or an HTTP stack (DESIGN.md, Style 2).

Each pure package is imported with every one of its modules in a fresh interpreter (another test may
already have imported Faust into this one), and the adapters' libraries must not be in ``sys.modules``.
"""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from tests.support.paths import ROOT

#: the libraries of the adapters: streams and agents (Faust, Kafka), warehouse (ClickHouse), rest/executor (HTTP)
ADAPTER_LIBRARIES = ("faust", "aiokafka", "kafka", "mode", "clickhouse_connect", "chdb", "httpx", "requests",
                     "urllib3", "fastapi", "starlette", "uvicorn")

#: packages (every module in them) and single modules that must stay pure
PURE = ("healing_guard.patterns", "healing_guard.classify", "healing_guard.flaky", "healing_guard.remediate",
        "healing_guard.engine", "healing_guard.schemas", "healing_guard.warehouse.facts", "healing_guard.topics")

# In the child: import the package, then each of its modules; after each import, the adapter libraries
# that appeared, so a failure names the module that pulled one in.
_CHILD = """
import importlib, pkgutil, sys
import orjson
bad = set(sys.argv[2].split(","))
def loaded():
    return {m.split(".")[0] for m in sys.modules} & bad
found = {}
def load(name):
    before = loaded()
    module = importlib.import_module(name)
    new = sorted(loaded() - before)
    if new:
        found[name] = new
    return module
pkg = load(sys.argv[1])
names = [sys.argv[1]]
if hasattr(pkg, "__path__"):
    names += sorted(m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."))
for name in names[1:]:
    load(name)
sys.stdout.write(orjson.dumps({"modules": names, "found": found}).decode())
"""


@pytest.mark.parametrize("package", PURE)
def test_pure_package_imports_no_adapter_library(package: str) -> None:
    out = subprocess.run([sys.executable, "-c", _CHILD, package, ",".join(ADAPTER_LIBRARIES)],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    result = orjson.loads(out)
    assert result["modules"][0] == package
    assert result["found"] == {}, f"{package}: these modules import adapter libraries: {result['found']}"


def test_the_check_sees_an_adapter_library() -> None:
    """The child would notice: importing the worker's streams package brings in Faust."""
    out = subprocess.run([sys.executable, "-c", _CHILD, "healing_guard.streams.app", ",".join(ADAPTER_LIBRARIES)],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert "faust" in orjson.loads(out)["found"]["healing_guard.streams.app"]
