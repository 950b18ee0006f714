"""JUnit XML ingestion (pytest, Surefire, Gradle, jest-junit), its CLI and the opt-in pytest plugin."""

from __future__ import annotations

import io
import json
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from healing_guard.platforms.junit import JUnitError, parse_junit, pytest_id_from_nodeid, test_id
from healing_guard.platforms.junit_cli import ingest_app
from healing_guard.schemas import TestResult
from tests.support.paths import FIXTURES

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _quiet_inner_runs(request: pytest.FixtureRequest) -> None:
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester").makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")

FIX = FIXTURES / "junit"
JOB = dict(provider="github", owner="acme", repo="app", job_id="42")


def parse(name: str, **kw) -> dict[str, TestResult]:
    return {r.test_id: r for r in parse_junit(FIX / name, **JOB, **kw)}


def summary(rs: dict[str, TestResult]) -> dict[str, tuple]:
    return {k: (r.outcome, r.duration_s, r.message) for k, r in rs.items()}


def test_pytest_variant() -> None:
    rs = parse("pytest.xml", attempt=2)
    assert summary(rs) == {
        "tests/test_math.py::test_add": ("passed", 0.001, None),
        "tests/test_math.py::TestDiv::test_zero[a-1]": ("failed", 0.012, "ZeroDivisionError: division by zero"),
        "tests/test_math.py::test_db": (
            "error", 0.1, 'failed on setup with "ConnectionRefusedError: [Errno 111] Connection refused"'),
        "tests/test_math.py::test_later": ("skipped", 0.0, None),
        "tests/test_broken.py": ("error", 0.0, "collection failure"),
    }
    r = rs["tests/test_math.py::test_add"]
    assert (r.provider, r.owner, r.repo, r.job_id, r.attempt) == ("github", "acme", "app", "42", 2)
    assert all(x.failed_in_run == 3 for x in rs.values())
    assert r.ts == pytest.approx(1714550400.123456)  # the suite's timestamp (with its +02:00 offset)
    assert TestResult.from_json(r.to_json()) == r


def test_surefire_variant() -> None:
    rs = parse("TEST-com.acme.FooTest.xml", ts=1000.0)
    assert summary(rs) == {
        "com.acme.FooTest#bar": ("passed", 0.021, None),
        "com.acme.FooTest#baz": ("failed", 0.5, "expected: <1> but was: <2>"),
        "com.acme.FooTest#qux": ("error", 1234.5, "java.lang.NullPointerException"),  # first line of text
        "com.acme.FooTest#ignored": ("skipped", 0.0, None),
        "com.acme.FooTest#flaky": ("passed", 0.3, None),  # <flakyFailure>: passed on a rerun
    }
    assert {r.ts for r in rs.values()} == {1000.0}
    assert {r.failed_in_run for r in rs.values()} == {2}


def test_gradle_variant() -> None:
    rs = parse("TEST-com.acme.BarTest.xml")
    assert summary(rs) == {
        "com.acme.BarTest#opens": ("passed", 0.012, None),  # JUnit 5 "opens()" -> "opens"
        "com.acme.BarTest#closes(int)[2]": (
            "failed", 0.04, "org.opentest4j.AssertionFailedError: expected: <true> but was: <false>"),
        "com.acme.BarTest#later": ("skipped", 0.0, None),
    }
    assert rs["com.acme.BarTest#opens"].ts == 1714557600.0  # naive timestamp read as UTC


def test_jest_variant() -> None:
    rs = parse("jest-junit.xml")
    assert summary(rs) == {
        "Calculator adds numbers": ("passed", 0.003, None),
        "Calculator divides by zero": (
            "failed", 0.01, "Error: expect(received).toBe(expected) // Object.is equality"),
        "Calculator › skips for now": ("skipped", 0.0, None),
        "Test suite failed to run › src/broken.test.js": (
            "error", 0.0, "Cannot find module './nope' from 'src/broken.test.js'"),
    }
    assert {r.failed_in_run for r in rs.values()} == {2}


def test_nested_testsuites() -> None:
    rs = parse("nested.xml")
    assert summary(rs) == {
        "com.acme.a.ATest#one": ("passed", 0.1, None),
        "com.acme.a.ATest$Inner#two": ("failed", 0.2, "boom"),
        "com.acme.b.BTest#three": ("error", 0.3, "kaput"),
    }
    # a nested suite without a timestamp inherits its parent's
    assert rs["com.acme.a.ATest$Inner#two"].ts == rs["com.acme.a.ATest#one"].ts == 1714557600.0
    assert rs["com.acme.b.BTest#three"].ts is None


def test_sources_bytes_and_file_objects() -> None:
    raw = (FIX / "nested.xml").read_bytes()
    assert len(parse_junit(raw, **JOB)) == 3
    assert len(parse_junit(io.BytesIO(raw), **JOB)) == 3
    with (FIX / "nested.xml").open("rb") as fh:
        assert len(parse_junit(fh, **JOB)) == 3


def test_message_truncated_and_large_report_streams() -> None:
    long = "x" * 10_000
    cases = "".join(f'<testcase classname="com.a.T" name="t{i}" time="0.001"/>' for i in range(20_000))
    xml = f'<testsuite name="s"><testcase classname="com.a.T" name="big"><failure message="{long}"/></testcase>' \
          f"{cases}</testsuite>".encode()
    rs = parse_junit(xml, **JOB)
    assert len(rs) == 20_001
    assert rs[0].message == "x" * 4000
    assert rs[-1].failed_in_run == 1


@pytest.mark.parametrize("name", ["bomb.xml", "xxe.xml"])
def test_entities_are_refused(name: str) -> None:
    with pytest.raises(JUnitError) as ei:
        parse_junit(FIX / name, **JOB)
    assert name in str(ei.value) and "refused unsafe XML" in str(ei.value)


def test_malformed_file_names_file_and_line() -> None:
    with pytest.raises(JUnitError) as ei:
        parse_junit(FIX / "malformed.xml", **JOB)
    assert ei.value.file.endswith("malformed.xml") and ei.value.line == 4
    assert str(ei.value).startswith(str(FIX / "malformed.xml") + ":4: malformed XML")


@pytest.mark.parametrize("raw,reason", [
    (b"", "malformed XML"),
    (b"<html><body/></html>", "not a JUnit report"),
    (b'<testsuite><testcase time="1"/></testsuite>', "neither classname nor name"),
])
def test_other_bad_reports(raw: bytes, reason: str) -> None:
    with pytest.raises(JUnitError, match=reason):
        parse_junit(raw, **JOB)


def test_missing_file_and_bad_job_fields(tmp_path: Path) -> None:
    with pytest.raises(JUnitError, match="cannot read"):
        parse_junit(tmp_path / "nope.xml", **JOB)
    with pytest.raises(ValueError, match="job_id"):
        parse_junit(b"<testsuite/>", provider="github", owner="a", repo="b", job_id="")


@pytest.mark.parametrize("classname,name,kw,expected", [
    ("tests.test_x", "test_y", {}, "tests/test_x.py::test_y"),
    ("tests.test_x.TestA.TestB", "test_y[1.5-a]", {}, "tests/test_x.py::TestA::TestB::test_y[1.5-a]"),
    ("pkg.checks", "test_y", {"suite": "pytest"}, "pkg/checks.py::test_y"),
    ("checks.TestA", "test_y", {"file": "src/checks.py"}, "src/checks.py::TestA::test_y"),
    ("com.acme.FooTest", "bar()", {}, "com.acme.FooTest#bar"),
    ("com.acme.FooTest", "bar", {"flavor": "jest"}, "com.acme.FooTest › bar"),
    ("", "just a name", {}, "just a name"),
])
def test_id_rules(classname: str, name: str, kw: dict, expected: str) -> None:
    assert test_id(classname, name, **kw) == expected


def test_nodeid_rule_matches_junit_rule() -> None:
    assert pytest_id_from_nodeid("tests/test_x.py::TestA::test_y[a.b/c]") == "tests/test_x.py::TestA::test_y[a.b/c]"
    assert pytest_id_from_nodeid("tests/test_broken.py") == "tests/test_broken.py"
    assert pytest_id_from_nodeid("docs/index.txt::index.txt") == "docs/index.txt::index.txt"


# --- CLI -------------------------------------------------------------------------------------------


def test_cli_dry_run_and_bad_file() -> None:
    res = CliRunner().invoke(ingest_app, [
        "junit", "--dry-run", "--provider", "gitlab", "--repo", "group/sub/proj", "--job-id", "9",
        "--attempt", "3", str(FIX / "TEST-com.acme.BarTest.xml"), str(FIX / "malformed.xml")])
    assert res.exit_code == 1
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    recs = [TestResult.from_json(ln.encode()) for ln in lines]
    assert [r.test_id for r in recs] == ["com.acme.BarTest#opens", "com.acme.BarTest#closes(int)[2]",
                                         "com.acme.BarTest#later"]
    jobs = {(r.provider, r.owner, r.repo, r.job_id, r.attempt) for r in recs}
    assert jobs == {("gitlab", "group/sub", "proj", "9", 3)}
    assert "malformed.xml:4: malformed XML" in res.output


def test_cli_head_sha_from_option_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GITHUB_SHA", "CI_COMMIT_SHA", "GIT_COMMIT", "CIRCLE_SHA1"):
        monkeypatch.delenv(var, raising=False)
    args = ["junit", "--json", "--provider", "github", "--repo", "acme/app", "--job-id", "1", str(FIX / "nested.xml")]
    shas = lambda res: {orjson.loads(ln)["head_sha"] for ln in res.stdout.splitlines()}  # noqa: E731
    assert shas(CliRunner().invoke(ingest_app, args)) == {None}
    monkeypatch.setenv("GITHUB_SHA", "feed1234")
    assert shas(CliRunner().invoke(ingest_app, args)) == {"feed1234"}
    assert shas(CliRunner().invoke(ingest_app, [*args, "--head-sha", "beef"])) == {"beef"}


def test_cli_json_ok_and_bad_options() -> None:
    runner = CliRunner()
    res = runner.invoke(ingest_app, ["junit", "--json", "--provider", "github", "--repo", "acme/app",
                                     "--job-id", "1", str(FIX / "nested.xml")])
    assert res.exit_code == 0, res.output
    assert len(res.stdout.strip().splitlines()) == 3
    res = runner.invoke(ingest_app, ["junit", "--dry-run", "--provider", "travis", "--repo", "acme/app",
                                     "--job-id", "1", str(FIX / "nested.xml")])
    assert res.exit_code == 2 and "--provider" in res.output
    res = runner.invoke(ingest_app, ["junit", "--dry-run", "--provider", "github", "--repo", "app",
                                     "--job-id", "1", str(FIX / "nested.xml")])
    assert res.exit_code == 2 and "owner/repo" in res.output


def test_cli_unreachable_broker_is_an_error_not_a_traceback() -> None:
    res = CliRunner().invoke(ingest_app, ["junit", "--provider", "github", "--repo", "acme/app", "--job-id", "1",
                                          "--broker", "kafka://127.0.0.1:1", str(FIX / "nested.xml")])
    assert res.exit_code == 1
    assert "could not send to kafka://127.0.0.1:1 (ci.tests)" in res.output


# --- pytest plugin ---------------------------------------------------------------------------------

SAMPLE = """
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("db down")

def test_ok():
    pass

def test_fail():
    assert 1 == 2, "one is not two"

def test_setup_error(broken):
    pass

@pytest.mark.skip(reason="later")
def test_skip():
    pass

@pytest.mark.xfail
def test_xfail():
    assert 0

class TestGroup:
    @pytest.mark.parametrize("x", [1, 2])
    def test_param(self, x):
        assert x == 1
"""


def _plugin_run(pytester: pytest.Pytester, *extra: str) -> tuple[pytest.RunResult, dict[str, dict]]:
    pytester.makepyfile(**{"tests/test_sample": SAMPLE})
    res = pytester.runpytest("-p", "healing_guard.pytest_plugin", "--guard-output", "out.jsonl",
                             "--guard-repo", "acme/app", "--guard-job-id", "77", "--guard-provider", "github",
                             "-p", "no:cacheprovider", *extra)
    out = pytester.path / "out.jsonl"
    recs = [orjson.loads(ln) for ln in out.read_bytes().splitlines()] if out.exists() else []
    return res, {r["test_id"]: r for r in recs}


def test_plugin_writes_results(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GITHUB_SHA", "CI_COMMIT_SHA", "GIT_COMMIT", "CIRCLE_SHA1"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CI_COMMIT_SHA", "0123abcd")  # the commit under test comes from the CI's environment
    res, recs = _plugin_run(pytester, "--junitxml", "junit.xml")
    res.assert_outcomes(passed=2, failed=2, errors=1, skipped=1, xfailed=1)
    assert {k: r["outcome"] for k, r in recs.items()} == {
        "tests/test_sample.py::test_ok": "passed",
        "tests/test_sample.py::test_fail": "failed",
        "tests/test_sample.py::test_setup_error": "error",
        "tests/test_sample.py::test_skip": "skipped",
        "tests/test_sample.py::test_xfail": "skipped",
        "tests/test_sample.py::TestGroup::test_param[1]": "passed",
        "tests/test_sample.py::TestGroup::test_param[2]": "failed",
    }
    fail = recs["tests/test_sample.py::test_fail"]
    assert fail["message"].startswith("AssertionError: one is not two")
    assert "db down" in recs["tests/test_sample.py::test_setup_error"]["message"]
    assert {r["failed_in_run"] for r in recs.values()} == {3}
    assert all(TestResult.from_dict(r).job_key == "github/acme/app/77" for r in recs.values())
    assert {r["head_sha"] for r in recs.values()} == {"0123abcd"}
    assert all(r["duration_s"] >= 0 and r["ts"] for r in recs.values())
    # the JUnit file of the same run gives the same ids and outcomes
    junit = parse_junit(pytester.path / "junit.xml", **JOB)
    assert {r.test_id: r.outcome for r in junit} == {k: r["outcome"] for k, r in recs.items()}
    assert "healing-guard: wrote 7 test results" in res.stdout.str()


def test_plugin_unreachable_broker_does_not_fail_the_run(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setattr("healing_guard.pytest_plugin.SEND_TIMEOUT_S", 10.0)
    pytester.makepyfile(test_a="def test_a():\n    pass\n")
    res = pytester.runpytest("-p", "healing_guard.pytest_plugin", "--guard-broker", "kafka://127.0.0.1:1",
                             "--guard-repo", "acme/app", "--guard-job-id", "1", "--guard-provider", "github")
    assert res.ret == 0
    res.stdout.fnmatch_lines(["*healing-guard: WARNING: results not reported*not affected*"])


def test_plugin_inactive_without_destination_and_usage_error(pytester: pytest.Pytester, monkeypatch) -> None:
    for var in ("GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "CIRCLECI", "GITHUB_REPOSITORY",
                "CI_PROJECT_PATH", "CI_JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    pytester.makepyfile(test_a="def test_a():\n    pass\n")
    res = pytester.runpytest("-p", "healing_guard.pytest_plugin")
    assert res.ret == 0 and "healing-guard" not in res.stdout.str()
    res = pytester.runpytest("-p", "healing_guard.pytest_plugin", "--guard-output", "o.jsonl")
    assert res.ret != 0
    assert "--guard-repo, --guard-job-id, --guard-provider required" in res.stderr.str()
    monkeypatch.setenv("GITLAB_CI", "true")
    monkeypatch.setenv("CI_PROJECT_PATH", "grp/sub/proj")
    monkeypatch.setenv("CI_JOB_ID", "555")
    res = pytester.runpytest("-p", "healing_guard.pytest_plugin", "--guard-output", "o.jsonl")
    assert res.ret == 0
    (rec,) = [json.loads(ln) for ln in (pytester.path / "o.jsonl").read_text().splitlines()]
    assert (rec["provider"], rec["owner"], rec["repo"], rec["job_id"], rec["test_id"]) == (
        "gitlab", "grp/sub", "proj", "555", "test_a.py::test_a")
