"""The locator: each platform's exit line, the error lines before it, the failing command."""

from __future__ import annotations

import io
from typing import Any

import pytest

from healing_guard.classify.locate import LOCATED_DETAIL, LOCATED_ERROR, LOCATED_EXIT, failing_command
from healing_guard.engine import Engine, offline_job
from healing_guard.settings import Settings

ENGINE = Engine(Settings(text_model="off"))


def _read(text: str) -> tuple[Any, Any]:
    """(ready, analysis) of ``text`` read whole, as `guard analyze` reads a log."""
    return ENGINE.read_log(io.BytesIO(text.encode()), offline_job("1"))


def _details(ready: Any) -> list[int]:
    """The lines the locator kept as where the failing step's details start."""
    return [e.line for e in ready.located if e.pattern == LOCATED_DETAIL]

LOGS = {
    "github": ("2024-05-01T10:00:00.0000000Z ##[group]Run make check\n"
               "2024-05-01T10:00:01.0000000Z cc -c widget.c\n"
               "2024-05-01T10:00:02.0000000Z widget.c:12: frobnicate went sideways\n"
               "2024-05-01T10:00:02.0000000Z make: *** [Makefile:4: check] Error 2\n"
               "2024-05-01T10:00:02.5000000Z ##[error]Process completed with exit code 2.\n"
               "2024-05-01T10:00:03.0000000Z Post job cleanup.\n"
               "2024-05-01T10:00:03.0000000Z error: cleanup noise after the failure\n", "make check"),
    "gitlab": ("section_start:1714557600:step_script\r\x1b[0KExecuting \"step_script\" stage\n"
               "$ ./run-checks.sh\n"
               "checks: 3 of 4 passed\n"
               "check 'schema' failed: column mismatch\n"
               "section_end:1714557610:step_script\r\x1b[0K\n"
               "ERROR: Job failed: exit code 1\n", "./run-checks.sh"),
    "jenkins": ("[Pipeline] { (Verify)\n[Pipeline] sh\n+ ./verify.sh\n"
                "verify: the release notes fail the lint\n"
                "ERROR: script returned exit code 3\nFinished: FAILURE\n", "./verify.sh"),
    "circleci": ("#!/bin/bash -eo pipefail\n./gradlew check\n"
                 "Task :check FAILED\n"
                 "\nExited with code exit status 1\n", None),
    "travis": ("$ bundle exec rake spec\n"
               "Failure/Error: expect(total).to eq(3)\n"
               "\nThe command \"bundle exec rake spec\" exited with 1.\n"
               "Done. Your build exited with 1.\n", "bundle exec rake spec"),
}


@pytest.mark.parametrize("platform", sorted(LOGS))
def test_the_exit_and_the_error_lines_before_it_are_found(platform: str) -> None:
    text, command = LOGS[platform]
    ready, _ = _read(text)
    lines = text.split("\n")
    exits = [e for e in ready.located if e.pattern == LOCATED_EXIT]
    errors = [e for e in ready.located if e.pattern == LOCATED_ERROR]
    assert len(exits) == 1 and exits[0].line == 1 + next(i for i, s in enumerate(lines) if s and (
        "exit code" in s or "Job failed" in s or "Exited with" in s or "exited with" in s))
    assert errors and all(e.line < exits[0].line for e in errors)  # nothing after the job stopped
    assert errors[0].line == max(e.line for e in errors)  # the last one first
    details = [e for e in ready.located if e.pattern == LOCATED_DETAIL]
    assert ready.located[: len(details)] == tuple(details)  # where the details start, then the errors
    assert ready.command == command


def test_evidence_is_never_empty_and_line_numbers_are_sed_lines() -> None:
    """No pattern names this failure; a bare \\r (a progress bar) is not a line break."""
    text = ("##[group]Run ./deploy.sh\nuploading 10%\r20%\r100%\n"
            "deploy: the quux endpoint said no\n##[error]Process completed with exit code 1.\n")
    ready, analysis = _read(text)
    lines = [e.line for e in analysis.diagnosis.evidence]
    assert lines and max(lines) <= text.count("\n")
    assert text.split("\n")[lines[0] - 1].startswith("deploy: the quux endpoint said no")


def test_the_window_and_the_whole_log_reader_locate_the_same_lines() -> None:
    from healing_guard.engine.window import JobWindow, on_chunk, on_job_event
    from healing_guard.schemas import JobEvent, LogChunk

    text, _ = LOGS["github"]
    lines = text.rstrip("\n").split("\n")
    w = JobWindow(job_key="github/o/r/1")
    for seq, start in enumerate(range(0, len(lines), 2)):
        chunk = LogChunk(provider="github", owner="o", repo="r", job_id="1", seq=seq, lines=lines[start:start + 2],
                         first_line=start + 1, eof=start + 2 >= len(lines))
        w, _ = on_chunk(w, chunk, ENGINE.matcher, ENGINE.limits, 0.0)
    ev = JobEvent(provider="github", owner="o", repo="r", job_id="1", job_name="b", status="completed",
                  conclusion="failure")
    w, out = on_job_event(w, ev, ENGINE.limits, 0.0)
    whole, _ = _read(text)
    assert out and out[0].located == whole.located and out[0].command == whole.command


def test_failing_command_from_a_state() -> None:
    assert failing_command({"step": [3, "+ npm test"], "exit": None, "errors": []}) == "npm test"
    assert failing_command(None) is None


def test_details_start_where_the_failing_step_reports_its_first_failure() -> None:
    """A numbered test failure and a compiler diagnostic are where a person starts reading; an earlier
    step's diagnostics and a warning are not; the evidence shows them right after the strongest line."""
    text = ("$ make lint\n"
            "src/old.c:3:1: style nit in a step that passed\n"
            "$ npm test\n"
            "src/util.js:10:5: warning: unused variable\n"
            "  12 passing\n"
            "  1 failing\n"
            "\n"
            "  1) cart totals\n"
            "       adds the tax:\n"
            "     AssertionError: expected 10 to equal 11\n"
            "      at Context.<anonymous> (test/cart.js:9:12)\n"
            "npm ERR! Test failed.  See above for more details.\n"
            "\nThe command \"npm test\" exited with 1.\n")
    ready, analysis = _read(text)
    lines = text.split("\n")
    details = _details(ready)
    assert [lines[n - 1].strip() for n in details] == ["1) cart totals", "AssertionError: expected 10 to equal 11"]
    top3 = [e.line for e in analysis.diagnosis.evidence[:3]]
    assert details[0] in top3 and details[1] in top3


def test_no_detail_lines_from_a_step_that_passed() -> None:
    text = ("##[group]Run make lint\nsrc/a.c:3:1: note from lint\n##[group]Run ./deploy.sh\n"
            "deploy: upload said no\n##[error]Process completed with exit code 1.\n")
    ready, _ = _read(text)
    assert not [e for e in ready.located if e.pattern == LOCATED_DETAIL]


def test_a_failed_test_item_comes_before_exceptions_printed_earlier_in_the_step() -> None:
    """A test run prints exceptions of tests that pass or set up; the ``[-]`` item is the failure."""
    text = ("$ pwsh -c ./run-tests.ps1\n"
            "ParameterBindingException: A parameter cannot be found that matches parameter name 'Tag'.\n"
            "RuntimeException: discovery of a skipped file went wrong\n"
            "Describing totals\n"
            "    [+] adds 6ms\n"
            "    [-] adds the tax 8ms\n"
            "      Expected 11, but got 10.\n"
            "Tests Passed: 1, Failed: 1\n"
            "\nThe command \"pwsh -c ./run-tests.ps1\" exited with 1.\n")
    ready, analysis = _read(text)
    lines = text.split("\n")
    details = [lines[e.line - 1].strip() for e in ready.located if e.pattern == LOCATED_DETAIL]
    assert details[0] == "[-] adds the tax 8ms"
    assert "[-] adds the tax 8ms" in [lines[e.line - 1].strip() for e in analysis.diagnosis.evidence[:3]]


def test_build_tools_boilerplate_is_not_where_it_failed() -> None:
    text = ("$ mvn -B verify\n"
            "[ERROR] Failed to execute goal org.acme:acme-plugin:1.0:check (default) on project app: the widget "
            "is not registered -> [Help 1]\n"
            "[ERROR] \n"
            "[ERROR] To see the full stack trace of the errors, re-run Maven with the -e switch.\n"
            "[ERROR] Re-run Maven using the -X switch to enable full debug logging.\n"
            "[ERROR] For more information about the errors and possible solutions, please read the following articles:\n"
            "[ERROR] [Help 1] http://cwiki.apache.org/confluence/display/MAVEN/MojoExecutionException\n"
            "\nThe command \"mvn -B verify\" exited with 1.\n")
    ready, _ = _read(text)
    errors = [e.line for e in ready.located if e.pattern == LOCATED_ERROR]
    assert errors == [2]


@pytest.mark.parametrize("line", [
    "docs/guide.md: 78: MD031/blanks-around-fences Fenced code blocks should be surrounded by blank lines",
    " 429:1\tUnexpected missing newline at end of file (no-missing-eof-newline)",
    "\ttest72 FAILED",
    "inet_SUITE:t_gethost failed on line 696",
    "(./docs/intro.md): did not find expected ',' or ']' while parsing a flow sequence at line 5 column 7",
    "raw(com.acme.ClientTest)  Time elapsed: 0.053 sec  <<< ERROR!",
])
def test_more_tools_detail_formats(line: str) -> None:
    text = f"$ ./check.sh\nchecking\n{line}\n\nThe command \"./check.sh\" exited with 1.\n"
    ready, _ = _read(text)
    assert _details(ready) == [3]


def test_a_pytest_verbose_listing_is_not_the_failure_details() -> None:
    text = ("$ pytest -v\n"
            "tests/test_a.py::test_one PASSED\n"
            "tests/test_a.py::test_two FAILED\n"
            "=================================== FAILURES ===================================\n"
            "___________________________________ test_two ___________________________________\n"
            "E       assert 1 == 2\n"
            "\nThe command \"pytest -v\" exited with 1.\n")
    ready, _ = _read(text)
    assert _details(ready) == [4, 5]


def test_a_log_that_just_stops_shows_where_it_stopped() -> None:
    """No exit line, no error word, no pattern: the runner went away mid-step. The evidence is the
    log's last lines (most recent first, numbered as an editor numbers them), never nothing."""
    text = "$ python etl.py\n[day 1] loaded\n[day 2] loaded\n\n[day 3] extracting ...\n"
    _, analysis = _read(text)
    lines = text.split("\n")
    ev = analysis.diagnosis.evidence
    assert [e.line for e in ev] == [5, 3, 2]
    assert [e.text for e in ev] == [lines[4], lines[2], lines[1]]
