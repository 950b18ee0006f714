"""The product document's pattern libraries ("Flaky Test Patterns", "Infrastructure Patterns"), taken from
the document itself, work as written: each block, saved as a file and named in ``pipeline.pattern_files``
of a healing-config.yml (what a user does), loads; its patterns find their lines, in the categories
docs/diagnosis.md documents; and the command the engine decides carries the block's remediation."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from healing_guard.classify import Diagnosis
from healing_guard.directives import environment, from_command
from healing_guard.engine import offline_job
from healing_guard.log_files import Analyzer
from healing_guard.remediate import Ledger
from healing_guard.schemas import Command, TestRisk
from healing_guard.settings import load_settings
from tests.document.examples import block

BLOCKS = {"Flaky Test Patterns": "flaky-test-patterns.yml", "Infrastructure Patterns": "infrastructure-patterns.yml"}


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory: pytest.TempPathFactory) -> Analyzer:
    d = tmp_path_factory.mktemp("document-patterns")
    files = []
    for heading, name in BLOCKS.items():
        f = d / name
        f.write_text(block(heading, "yaml").text, encoding="utf-8")
        files.append(f)
    cfg = d / "healing-config.yml"
    cfg.write_text("pipeline:\n  pattern_files:\n" + "".join(f"    - {f}\n" for f in files), encoding="utf-8")
    settings = load_settings(cfg, env={})
    assert settings.pattern_files == tuple(str(f) for f in files)
    return Analyzer(settings)


def failed_step(line: str) -> str:
    """A GitHub Actions job whose last step printed ``line`` and failed."""
    return (f"2026-01-05T10:00:00.0000000Z ##[group]Run make test\n2026-01-05T10:00:01.0000000Z {line}\n"
            "2026-01-05T10:00:02.0000000Z ##[error]Process completed with exit code 1.\n")


def decide(an: Analyzer, line: str, risks: tuple[TestRisk, ...] = ()) -> tuple[Diagnosis, Command]:
    ready, analysis = an.engine.read_log(io.BytesIO(failed_step(line).encode()), offline_job("doc"), risks=risks)
    _, decision = an.engine.decide(ready, Ledger(), diagnosis=analysis.diagnosis)
    return analysis.diagnosis, decision.command


def test_the_blocks_load_as_namespaced_patterns_in_the_documented_categories(analyzer: Analyzer) -> None:
    mine = {p.id: p for p in analyzer.matcher.patterns if p.id.startswith("user.")}
    assert {i: p.category for i, p in mine.items()} == {
        "user.timing_sensitive": "test_timeout", "user.timing_sensitive.0": "test_timeout",
        "user.timing_sensitive.1": "test_timeout",
        "user.external_dependency": "network", "user.external_dependency.0": "network",
        "user.external_dependency.1": "network",
        "user.docker_layer_cache.0": "docker_registry", "user.docker_layer_cache.1": "docker_registry",
        "user.disk_pressure.0": "disk_full", "user.disk_pressure.1": "disk_full",
    }
    assert all(p.caseless and p.confidence == 0.8 for p in mine.values())
    assert mine["user.disk_pressure.0"].regex == "no space left on device"
    if not analyzer.engine.plan_config.pattern_remedies:
        pytest.fail("the engine's planner config carries no pattern remedies: healing_guard/engine/core.py "
                    "plan_config() must pass pattern_remedies=pattern_remedies(load_library(settings.pattern_files, "
                    "include_builtin=False)) (patterns/named.py)")


@pytest.mark.parametrize(("line", "category", "pattern"), [
    ("E       AssertionError: assertion failed after 1500ms", "test_timeout", "user.timing_sensitive.0"),
    ("E       AssertionError: expected job state DONE within 5 seconds", "test_timeout", "user.timing_sensitive.1"),
    ("test_poll: deadline reached before the export finished", "test_timeout", "user.timing_sensitive"),
    ("payments client: connection refused by payments.example.com:443", "network", "user.external_dependency"),
    ("checkout Service Unavailable, giving up", "network", "user.external_dependency"),
    ("upstream answered HTTP 503", "network", "user.external_dependency.1"),
    ("ERROR: failed to solve: layer does not exist", "docker_registry", "user.docker_layer_cache.0"),
    ("error pushing image: blob unknown: blob unknown to registry", "docker_registry", "user.docker_layer_cache.1"),
    ("write /home/runner/work/app/out.o: no space left on device", "disk_full", "user.disk_pressure.0"),
    ("cp: error writing 'dist/app.tar': Disk quota exceeded", "disk_full", "user.disk_pressure.1"),
])
def test_the_patterns_find_their_lines(analyzer: Analyzer, line: str, category: str, pattern: str) -> None:
    d, _ = decide(analyzer, line)
    assert (d.category, d.evidence[0].pattern, d.evidence[0].line) == (category, pattern, 2)
    assert d.confidence >= 0.75


def test_timing_sensitive_reruns_known_flaky_tests_with_twice_the_timeout(analyzer: Analyzer) -> None:
    flaky = (TestRisk(test_id="tests/test_api.py::test_poll", p_fail=0.2, p_retry_pass=0.9, runs=40, recoveries=6),)
    _, cmd = decide(analyzer, "E       AssertionError: assertion failed after 1500ms", flaky)
    assert cmd.action == "retry_tests_isolated"
    assert cmd.parameters["timeout_factor"] == 2.0 and cmd.parameters["tests"] == ["tests/test_api.py::test_poll"]
    assert cmd.reason == ("pattern user.timing_sensitive: rerun with a 2x test timeout; for the author: add retry "
                          "logic (a bounded number of attempts) around the timing-sensitive code")
    directive = from_command(cmd)
    assert directive is not None and directive.timeout_factor == 2.0
    assert environment(directive)["GUARD_TIMEOUT_FACTOR"] == "2"
    # without a flaky history the failure is the author's, and the reason says what was not done
    _, cmd = decide(analyzer, "E       AssertionError: assertion failed after 1500ms")
    assert cmd.action == "notify_author" and "timeout_factor" not in cmd.parameters
    assert cmd.reason.endswith("(pattern user.timing_sensitive: rerun with a 2x test timeout; for the author: add "
                               "retry logic (a bounded number of attempts) around the timing-sensitive code: not done)")


def test_external_dependency_is_advice_for_the_author_not_a_retry(analyzer: Analyzer) -> None:
    _, cmd = decide(analyzer, "payments client: connection refused by payments.example.com:443")
    assert cmd.action == "notify_author" and cmd.estimated_cost_usd == 0.0
    assert cmd.reason == ("pattern user.external_dependency: for the author: mock the external services the tests "
                          "call, so they do not depend on those services being up; add a circuit breaker around "
                          "calls to the external service (a code change: the guard does not retry_backoff)")


@pytest.mark.parametrize("line", ["ERROR: failed to solve: layer does not exist",
                                  "error pushing image: blob unknown: blob unknown to registry"])
def test_docker_layer_cache_rebuilds_without_the_layer_cache(analyzer: Analyzer, line: str) -> None:
    _, cmd = decide(analyzer, line)
    assert cmd.action == "rebuild_no_layer_cache" and cmd.parameters["no_cache"] is True
    assert cmd.reason == "pattern user.docker_layer_cache: rebuild without the Docker layer cache"
    directive = from_command(cmd)
    assert directive is not None and environment(directive)["GUARD_DOCKER_BUILD_ARGS"] == "--no-cache --pull"


@pytest.mark.parametrize("line", ["write /home/runner/work/app/out.o: no space left on device",
                                  "cp: error writing 'dist/app.tar': Disk quota exceeded"])
def test_disk_pressure_cleans_up_and_says_it_cannot_expand_the_volume(analyzer: Analyzer, line: str) -> None:
    _, cmd = decide(analyzer, line)
    assert cmd.action == "cleanup_retry"
    assert cmd.parameters["cleanup"] == ["git clean -ffdx", "docker system prune -af", "rm -rf ~/.cache"]
    assert cmd.reason == ("pattern user.disk_pressure: clean up (git clean -ffdx, docker system prune -af, "
                          "rm -rf ~/.cache) and rerun; the guard cannot grow a job's disk (+10GB asked); hosted "
                          "runners have fixed disks: cleaning up instead")
    directive = from_command(cmd)
    assert directive is not None and directive.cleanup == cmd.parameters["cleanup"]


def test_guard_analyze_says_the_patterns_remediation(analyzer: Analyzer, tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text(failed_step("ERROR: failed to solve: layer does not exist"), encoding="utf-8")
    (result,) = analyzer.analyze_paths([str(log)])
    report = analyzer.report(result)
    assert report["category"] == "docker_registry" and report["evidence"][0]["pattern"] == "user.docker_layer_cache.0"
    assert report["remediation"] == "rebuild without the Docker layer cache"
    assert report["action"] == "rebuild_no_layer_cache" and report["automatic"] is True
