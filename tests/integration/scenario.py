"""A small scenario with known answers: which job gets which command, what goes to dead letters."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import orjson

from healing_guard.schemas import JobEvent, LogChunk, TestResult

T0 = 1_767_225_600.0
FLAKY_TEST = "tests/test_session.py::test_refresh_token"


@dataclass
class Scenario:
    messages: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    expected_actions: dict[str, str] = field(default_factory=dict)  # job key -> action
    expected_categories: dict[str, str] = field(default_factory=dict)
    expected_dead_letters: dict[str, str] = field(default_factory=dict)  # reason fragment -> field or ""
    jobs: int = 0
    test_results: int = 0


def _noise(n: int, rng: random.Random) -> list[str]:
    return [f"2026-01-01T10:00:{i % 60:02d}.{rng.randrange(10**7):07d}Z step {i}: ok ({rng.random():.3f}s)"
            for i in range(n)]


def _job(sc: Scenario, provider: str, owner: str, repo: str, job_id: str, lines: list[str], conclusion: str,
         *, attempt: int = 1, exit_code: int | None = 1, chunk_lines: int = 400, runner_size: str = "medium",
         category: str | None = None, action: str | None = None, ts: float = T0) -> None:
    key = f"{provider}/{owner}/{repo}/{job_id}".encode()
    base = dict(provider=provider, owner=owner, repo=repo, job_id=job_id, job_name="build", attempt=attempt)
    chunks = [lines[i:i + chunk_lines] for i in range(0, len(lines), chunk_lines)] or [[]]
    sc.messages.append(("ci.jobs", key, JobEvent(**base, status="in_progress", started_at=ts).to_json()))
    first = 1
    for seq, part in enumerate(chunks):
        c = LogChunk(provider=provider, owner=owner, repo=repo, job_id=job_id, attempt=attempt, seq=seq, lines=part,
                     first_line=first, eof=seq == len(chunks) - 1, ts=ts + seq)
        first += len(part)
        sc.messages.append(("ci.logs", key, c.to_json()))
    done = JobEvent(**base, status="completed", conclusion=conclusion, exit_code=exit_code, started_at=ts,
                    completed_at=ts + 720, runner_size=runner_size, log_chunks=len(chunks), run_id="r" + job_id)
    sc.jobs += 1
    sc._pending_done = (key, done)  # type: ignore[attr-defined]
    if category:
        sc.expected_categories[key.decode()] = category
    if action:
        sc.expected_actions[key.decode()] = action


def _complete(sc: Scenario) -> None:
    key, done = sc._pending_done  # type: ignore[attr-defined]
    sc.messages.append(("ci.jobs", key, done.to_json()))


def _test(sc: Scenario, provider: str, owner: str, repo: str, job_id: str, test_id: str, outcome: str, ts: float) -> None:
    r = TestResult(provider=provider, owner=owner, repo=repo, job_id=job_id, test_id=test_id, outcome=outcome,
                   duration_s=1.5, ts=ts)
    sc.messages.append(("ci.tests", test_id.encode(), r.to_json()))
    sc.test_results += 1


def build() -> Scenario:
    rng = random.Random(11)
    sc = Scenario()
    # 1. GitHub Actions, Java OOM in the middle of a long log split into many chunks
    lines = _noise(3000, rng) + [
        "[INFO] Running com.acme.ReportTest",
        "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space",
        "\tat java.base/java.util.Arrays.copyOf(Arrays.java:3512)",
        "##[error]Process completed with exit code 1.",
    ]
    _job(sc, "github", "acme", "reports", "1001", lines, "failure", category="oom", action="rerun_more_memory")
    _complete(sc)
    # 2. GitLab CI, network failure during dependency download
    lines = _noise(200, rng) + [
        "$ npm ci",
        "npm ERR! code ETIMEDOUT",
        "npm ERR! errno ETIMEDOUT",
        "npm ERR! network request to https://registry.npmjs.org/react failed, reason: connect ETIMEDOUT 104.16.1.35:443",
        "ERROR: Job failed: exit code 1",
    ]
    _job(sc, "gitlab", "platform", "frontend", "2002", lines, "failure", category="network", action="retry_backoff")
    _complete(sc)
    # 3. Jenkins, a compilation error: goes to the author, never retried
    lines = _noise(500, rng) + [
        "[INFO] --- maven-compiler-plugin:3.11.0:compile (default-compile) @ billing ---",
        "[ERROR] COMPILATION ERROR : ",
        "[ERROR] /var/lib/jenkins/workspace/billing/src/main/java/com/acme/Invoice.java:[42,17] cannot find symbol",
        "[ERROR] BUILD FAILURE",
        "Finished: FAILURE",
    ]
    _job(sc, "jenkins", "acme", "billing", "3003", lines, "failure", category="compilation_error",
         action="notify_author")
    _complete(sc)
    # 4. CircleCI, green: no command, only a job-run fact
    _job(sc, "circleci", "acme", "docs", "4004", _noise(120, rng), "success", exit_code=0)
    _complete(sc)
    # 5. a flaky test: its history (from earlier green and red runs), then a job where only it fails
    t = T0 - 86_400
    for i in range(40):
        outcome = "failed" if i % 5 == 2 else "passed"  # fails 1 run in 5, always passes on the next run
        _test(sc, "github", "acme", "auth", f"h{i}", FLAKY_TEST, outcome, t + i * 600)
    lines = _noise(300, rng) + [
        "tests/test_session.py::test_refresh_token FAILED",
        "FAILED tests/test_session.py::test_refresh_token - AssertionError: assert 401 == 200",
        "========================= 1 failed, 212 passed in 41.02s =========================",
        "##[error]Process completed with exit code 1.",
    ]
    _job(sc, "github", "acme", "auth", "5005", lines, "failure", category="test_failure",
         action="retry_tests_isolated")
    _test(sc, "github", "acme", "auth", "5005", FLAKY_TEST, "failed", T0)
    _complete(sc)
    # 6. a test that was always green and now fails: a regression, to the author
    new_test = "tests/test_pay.py::test_refund"
    for i in range(20):
        _test(sc, "github", "acme", "pay", f"p{i}", new_test, "passed", t + i * 600)
    lines = _noise(100, rng) + [
        "FAILED tests/test_pay.py::test_refund - AssertionError: expected refund of 10.00, got 0.00",
        "========================= 1 failed, 80 passed in 9.10s =========================",
    ]
    _job(sc, "github", "acme", "pay", "6006", lines, "failure", category="test_failure", action="notify_author")
    _test(sc, "github", "acme", "pay", "6006", new_test, "failed", T0)
    _complete(sc)
    # bad input: each must land in guard.deadletter with a reason (and the field, where there is one)
    sc.messages.append(("ci.logs", b"github/acme/x/1", b"{this is not json"))
    sc.expected_dead_letters["not valid JSON/UTF-8: unexpected character"] = ""
    sc.messages.append(("ci.jobs", b"github/acme/x/2", b'{"provider": "github", "owner": "\xff\xfe"}'))
    sc.expected_dead_letters["str is not valid UTF-8"] = ""
    bad_job = orjson.loads(JobEvent(provider="github", owner="acme", repo="x", job_id="3", job_name="b",
                                    status="queued").to_json())
    del bad_job["job_name"]
    sc.messages.append(("ci.jobs", b"github/acme/x/3", orjson.dumps(bad_job)))
    sc.expected_dead_letters["required field is missing"] = "job_name"
    huge = LogChunk(provider="github", owner="acme", repo="x", job_id="4", seq=0, lines=["A" * 1_000_000] * 5)
    sc.messages.append(("ci.logs", b"github/acme/x/4", huge.to_json()))
    sc.expected_dead_letters["over the limit"] = ""
    sc.messages.append(("ci.tests", b"t", b'{"provider": "gitlab", "owner": "g", "repo": "r", "job_id": "9", '
                                          b'"test_id": 5, "outcome": "failed"}'))
    sc.expected_dead_letters["expected a string, got int"] = "test_id"
    return sc
