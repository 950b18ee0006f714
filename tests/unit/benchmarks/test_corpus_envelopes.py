"""The real-tool corpus's log envelopes (benchmarks/corpus/envelopes.py): the failure chunk's line numbers
point at the failing step's output as ``sed -n`` counts lines, the same job renders to the same bytes, and
each platform closes the job with its own words. No tool runs here: the step results are made up."""

from __future__ import annotations

import re

import pytest

from benchmarks.corpus.case import Case, Step, StepResult
from benchmarks.corpus.envelopes import PLATFORMS, render

INSTALL = Step("Install dependencies", "python -m pip install -r requirements.txt")
TEST = Step("Run tests", "python -m pytest -q\necho never-reached")
OUTPUT = ("F.                                                      [100%]\n"
          "E   assert 3 == 4\n"
          "progress 10%\rprogress 100%\n"  # a bare \r is not a line break
          "FAILED tests/test_totals.py::test_sum - assert 3 == 4\n"
          "1 failed, 1 passed in 0.02s\n")
FAILING = [line for line in OUTPUT.split("\n")[:-1]]


def _job(ends: str = "exit", output: str = OUTPUT, code: int = 1) -> tuple[Case, list[StepResult]]:
    case = Case("python-fake-assert", "python", "test_failure", "fakeproj", {}, (INSTALL, TEST), ends=ends)
    return case, [StepResult(INSTALL, "Requirement already satisfied: pytest in ./venv\n", 0, 1.25),
                  StepResult(TEST, output, code, 0.5)]


def _sed(text: str, n: int) -> str:
    """``sed -n Np``: lines are split on \\n only."""
    return text.split("\n")[n - 1]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_chunk_points_at_the_failing_output(platform: str) -> None:
    case, results = _job()
    r = render(platform, case, results)
    assert r.last_line - r.first_line + 1 == len(FAILING)
    got = [_sed(r.text, n) for n in range(r.first_line, r.last_line + 1)]
    if platform == "github":  # every line carries the runner's timestamp
        assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z ", g) for g in got)
        got = [g.split(" ", 1)[1] for g in got]
    assert got == FAILING
    assert r.text.endswith("\n") and "\r\n" not in r.text


@pytest.mark.parametrize("platform", PLATFORMS)
def test_same_job_same_bytes(platform: str) -> None:
    a = render(platform, *_job())
    b = render(platform, *_job())
    assert a == b
    other = Case("python-fake-other", "python", "test_failure", "fakeproj", {}, (INSTALL, TEST))
    assert render(platform, other, _job()[1]).text != a.text  # the seed is the case name


EXIT_LINES = {
    "github": r"Z ##\[error\]Process completed with exit code 1\.$",
    "gitlab": r"^\x1b\[31;1mERROR: Job failed: exit code 1$",
    "jenkins": r"^ERROR: script returned exit code 1$",
    "circleci": r"^Exited with code exit status 1$",
    "travis": r'The command "python -m pytest -q$',
}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_exit_line(platform: str) -> None:
    r = render(platform, *_job())
    lines = r.text.split("\n")
    after = lines[r.last_line:]  # the lines after the chunk
    assert any(re.search(EXIT_LINES[platform], ln) for ln in after), platform
    closing = {"jenkins": "Finished: FAILURE", "travis": "Done. Your build exited with 1.",
               "gitlab": "\x1b[0;m", "circleci": "Exited with code exit status 1",
               "github": "Cleaning up orphan processes"}[platform]
    assert lines[-2].endswith(closing)
    if platform == "gitlab":
        assert any(ln.startswith("section_start:") and "\r" in ln for ln in lines)
        assert any("$ python -m pytest -q # collapsed multi-line command" in ln for ln in lines)


TIMEOUT_WORDS = {
    "github": "has exceeded the maximum execution time of 5 minutes.",
    "gitlab": "ERROR: Job failed: execution took longer than 1h0m0s seconds",
    "jenkins": "Cancelling nested steps due to timeout",
    "circleci": "Too long with no output (exceeded 10m0s): context deadline exceeded",
    "travis": "No output has been received in the last 10m0s, this potentially indicates a stalled build",
}
LOST_WORDS = {
    "github": "The runner has received a shutdown signal.",
    "gitlab": "ERROR: Job failed (system failure):",
    "jenkins": "Agent went offline during the build",
    "circleci": "Lost connection to job executor",
    "travis": None,  # Travis requeues and prints nothing: the log stops
}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_job_timeout_and_runner_lost(platform: str) -> None:
    r = render(platform, *_job("job_timeout", code=124))
    assert TIMEOUT_WORDS[platform] in "\n".join(r.text.split("\n")[r.last_line:])
    assert [_sed(r.text, n).split("Z ", 1)[-1] for n in (r.first_line, r.last_line)] == [FAILING[0], FAILING[-1]]
    assert "exit code 124" not in r.text and "exited with 124" not in r.text
    lost = render(platform, *_job("runner_lost", code=137))
    words = LOST_WORDS[platform]
    if words is None:
        assert lost.last_line == lost.text.count("\n")
    else:
        assert words in "\n".join(lost.text.split("\n")[lost.last_line:])


@pytest.mark.parametrize("platform", PLATFORMS)
def test_silent_failing_step_points_at_the_verdict(platform: str) -> None:
    r = render(platform, *_job(output=""))
    assert r.first_line == r.last_line
    line = _sed(r.text, r.first_line)
    assert re.search(EXIT_LINES[platform], line), (platform, line)
