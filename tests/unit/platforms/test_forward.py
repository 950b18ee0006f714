"""guard forward: a log cut into ordered chunks without losing a byte of text."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from healing_guard.cli import app
from healing_guard.platforms.forward import log_chunks


def _lines(blocks: list[bytes], **kw: int) -> list[str]:
    chunks = list(log_chunks(blocks, provider="github", owner="o", repo="r", job_id="1", **kw))
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert [c.eof for c in chunks] == [False] * (len(chunks) - 1) + [True]
    n = 1
    for c in chunks:
        assert c.first_line == n
        n += len(c.lines)
    return [line for c in chunks for line in c.lines]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ab é\n", max_size=40), max_size=30), st.integers(1, 5))
def test_chunks_keep_every_line_in_order(pieces: list[str], per_chunk: int) -> None:
    text = "".join(pieces)
    data = text.encode()
    blocks = [data[i:i + 7] for i in range(0, len(data), 7)]
    want = text.split("\n")
    if want and want[-1] == "":
        want = want[:-1]
    assert _lines(blocks, chunk_lines_max=per_chunk) == want


def test_a_giant_line_is_cut_not_dropped_and_chunks_stay_small() -> None:
    blocks = [b"start\n", b"x" * 5000, b"y" * 5000, b"\nend\n"]
    chunks = list(log_chunks(blocks, provider="github", owner="o", repo="r", job_id="1", chunk_bytes=2048))
    assert all(sum(len(s) for s in c.lines) <= 2048 for c in chunks)
    assert "".join(line for c in chunks for line in c.lines).count("x") == 5000
    assert chunks[-1].lines[-1] == "end"


def test_empty_log_is_one_empty_eof_chunk() -> None:
    chunks = list(log_chunks([], provider="github", owner="o", repo="r", job_id="1"))
    assert len(chunks) == 1 and chunks[0].eof and chunks[0].lines == []


def test_cli_dry_run_with_completion() -> None:
    r = CliRunner().invoke(app, ["forward", "--provider", "gitlab", "--repo", "grp/sub/proj", "--job-id", "5",
                                 "--conclusion", "failure", "--exit-code", "137", "--dry-run"],
                           input="Killed\nERROR: Job failed: exit code 137\n")
    assert r.exit_code == 0, r.stderr
    rows = [orjson.loads(x) for x in r.stdout.splitlines()]
    assert [x["topic"] for x in rows] == ["ci.logs", "ci.jobs"]
    assert rows[0]["record"]["owner"] == "grp/sub" and rows[0]["record"]["eof"] is True
    assert rows[1]["record"]["log_chunks"] == 1 and rows[1]["record"]["exit_code"] == 137
    bad = CliRunner().invoke(app, ["forward", "--provider", "gitlab", "--repo", "x/y", "--job-id", "5",
                                   "--conclusion", "broken", "--dry-run"], input="")
    assert bad.exit_code == 2 and "--conclusion" in bad.stderr


def test_follow_ships_what_the_job_writes_while_it_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import threading
    import time

    log = tmp_path / "job.log"
    log.write_bytes(b"line 1\n")

    def job() -> None:
        for i in range(2, 6):
            time.sleep(0.15)
            with log.open("ab") as fp:
                fp.write(f"line {i}".encode() + (b"\n" if i < 5 else b""))  # the last line has no newline yet

    writer = threading.Thread(target=job)
    writer.start()
    res = CliRunner().invoke(app, ["forward", str(log), "--provider", "github", "--repo", "o/r", "--job-id", "1",
                                   "--follow", "--idle-timeout", "0.5", "--dry-run"])
    writer.join()
    assert res.exit_code == 0, res.output
    recs = [orjson.loads(x)["record"] for x in res.stdout.splitlines()]
    # it waited for the writer (every line it wrote, the last one unterminated, was shipped), then ended
    # the stream after the quiet period
    assert [line for r in recs for line in r["lines"]] == [f"line {i}" for i in range(1, 6)]
    assert recs[-1]["eof"] is True and not any(r["eof"] for r in recs[:-1])


def test_without_follow_a_growing_file_is_read_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "job.log"
    log.write_bytes(b"a\nb\n")
    res = CliRunner().invoke(app, ["forward", str(log), "--provider", "github", "--repo", "o/r", "--job-id", "1",
                                   "--dry-run"])
    assert res.exit_code == 0 and [orjson.loads(x)["record"]["lines"] for x in res.stdout.splitlines()] == [["a", "b"]]


# --- --junit: the job's test results, between its log and its completion ---------------------------------

def _ci_free(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os

    for var in list(os.environ):
        if var.startswith(("GITHUB_", "RUNNER_", "CI_", "GITLAB_", "CIRCLE", "JENKINS_", "BUILD_", "GIT_", "GUARD_")):
            monkeypatch.delenv(var)


def test_cli_junit_results_go_between_the_log_and_the_completion(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.support.paths import FIXTURES

    _ci_free(monkeypatch)
    fix = FIXTURES / "junit"
    log = tmp_path / "job.log"
    log.write_text("FAILED tests/test_x.py::test_y\n")
    res = CliRunner().invoke(app, ["forward", str(log), "--provider", "gitlab", "--repo", "grp/sub/proj",
                                   "--job-id", "5", "--attempt", "2", "--commit", "c0ffee", "--conclusion", "failure",
                                   "--junit", str(fix / "nested.xml"), "--junit", str(fix / "pytest.xml"),
                                   "--junit", str(fix / "nested.xml"), "--dry-run"])
    assert res.exit_code == 0, res.output
    rows = [orjson.loads(x) for x in res.stdout.splitlines()]
    topics = [x["topic"] for x in rows]
    n = topics.count("ci.tests")
    assert topics == ["ci.logs"] + ["ci.tests"] * n + ["ci.jobs"]
    tests = [x["record"] for x in rows if x["topic"] == "ci.tests"]
    # the reports' results, each once (nested.xml was given twice), for the job the log and completion name
    from healing_guard.platforms.junit import parse_junit

    job = dict(provider="gitlab", owner="grp/sub", repo="proj", job_id="5", attempt=2, head_sha="c0ffee")
    want = parse_junit(fix / "nested.xml", **job) + parse_junit(fix / "pytest.xml", **job)  # type: ignore[arg-type]
    assert [t["test_id"] for t in tests] == [r.test_id for r in want] and n > 5
    assert {(t["provider"], t["owner"], t["repo"], t["job_id"], t["attempt"], t["head_sha"]) for t in tests} == {
        ("gitlab", "grp/sub", "proj", "5", 2, "c0ffee")}
    assert rows[-1]["record"]["head_sha"] == "c0ffee" and rows[-1]["record"]["attempt"] == 2


def test_cli_junit_without_completion_takes_the_commit_from_the_environment(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.support.paths import FIXTURES

    _ci_free(monkeypatch)
    monkeypatch.setenv("CI_JOB_ID", "5")
    monkeypatch.setenv("CI_COMMIT_SHA", "feed1234")
    res = CliRunner().invoke(app, ["forward", "--provider", "gitlab", "--repo", "g/p", "--job-id", "5",
                                   "--junit", str(FIXTURES / "junit" / "nested.xml"), "--dry-run"], input="x\n")
    assert res.exit_code == 0, res.output
    rows = [orjson.loads(x) for x in res.stdout.splitlines()]
    assert [x["topic"] for x in rows] == ["ci.logs"] + ["ci.tests"] * 3
    assert {x["record"]["head_sha"] for x in rows[1:]} == {"feed1234"}
    # CI_JOB_ID names another job (--from-env auto is then run): the pipeline's commit still applies; off: none
    monkeypatch.setenv("CI_JOB_ID", "6")
    res = CliRunner().invoke(app, ["forward", "--provider", "gitlab", "--repo", "g/p", "--job-id", "5",
                                   "--junit", str(FIXTURES / "junit" / "nested.xml"), "--dry-run"], input="x\n")
    assert {orjson.loads(x)["record"].get("head_sha") for x in res.stdout.splitlines()[1:]} == {"feed1234"}
    res = CliRunner().invoke(app, ["forward", "--provider", "gitlab", "--repo", "g/p", "--job-id", "5",
                                   "--from-env", "off", "--junit", str(FIXTURES / "junit" / "nested.xml"),
                                   "--dry-run"], input="x\n")
    assert {orjson.loads(x)["record"].get("head_sha") for x in res.stdout.splitlines()[1:]} == {None}


def test_cli_a_bad_report_is_named_and_the_rest_is_still_sent(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.support.paths import FIXTURES

    _ci_free(monkeypatch)
    fix = FIXTURES / "junit"
    res = CliRunner().invoke(app, ["forward", "--provider", "github", "--repo", "o/r", "--job-id", "1",
                                   "--conclusion", "failure", "--junit", str(fix / "malformed.xml"),
                                   "--junit", str(tmp_path / "missing.xml"), "--junit", str(fix / "nested.xml"),
                                   "--dry-run"], input="boom\n")
    assert res.exit_code == 1
    assert [orjson.loads(x)["topic"] for x in res.stdout.splitlines()] == ["ci.logs"] + ["ci.tests"] * 3 + ["ci.jobs"]
    assert "malformed.xml:4: malformed XML" in res.stderr
    assert f"{tmp_path / 'missing.xml'}: cannot read" in res.stderr
    assert "2 of 3 JUnit report(s) could not be read" in res.stderr
