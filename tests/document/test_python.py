"""The product document's Python examples, run unchanged (docs/product-document.md, the README our users
read first). What the document leaves to the reader is supplied as a reader would: the failed job's log
(``failure_logs``), the ``guard`` the custom strategy is registered on, a git checkout of a monorepo as the
current directory, and a running ``guard api`` whose address and key are in the environment.

Each block is compiled with the document's file name and line numbers, so a traceback points at the line
of the document that broke.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from healing_guard import PipelineGuard, Strategy
from healing_guard.brokers import free_port
from healing_guard.schemas import Command
from tests.document.examples import DOCUMENT, Block, block
from tests.support.paths import ROOT
from tests.support.servers import stop, wait_healthy
from tests.unit.test_monorepo import git_repo

REPO = "your-org/your-repo"  # the document's repository

#: a flaky test as CI shows it: an integration test that lost its connection to a sandbox API
FAILURE_LOGS = """\
2024-05-14T09:12:03.1234567Z ##[group]Run pytest -q tests/
2024-05-14T09:12:03.1301122Z ============================= test session starts ==============================
2024-05-14T09:12:05.0022311Z collected 212 items
2024-05-14T09:12:40.4402345Z tests/test_checkout.py ........F.........                                   [ 10%]
2024-05-14T09:12:58.9912003Z tests/test_orders.py ...........................................         [ 30%]
2024-05-14T09:13:01.0000000Z =================================== FAILURES ===================================
2024-05-14T09:13:01.0000000Z ____________________________ test_payment_webhook ______________________________
2024-05-14T09:13:01.0000000Z
2024-05-14T09:13:01.0000000Z     def test_payment_webhook(sandbox):
2024-05-14T09:13:01.0000000Z >       resp = sandbox.post("/v1/charges", json={"amount": 1200})
2024-05-14T09:13:01.0000000Z E       requests.exceptions.ConnectionError: ('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))
2024-05-14T09:13:01.0000000Z
2024-05-14T09:13:01.0000000Z tests/test_checkout.py:88: ConnectionError
2024-05-14T09:13:01.0000000Z =========================== short test summary info ============================
2024-05-14T09:13:01.0000000Z FAILED tests/test_checkout.py::test_payment_webhook - requests.exceptions.ConnectionError: ('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))
2024-05-14T09:13:01.0000000Z ================== 1 failed, 211 passed in 58.12s ==================
2024-05-14T09:13:01.5000000Z ##[error]Process completed with exit code 1.
"""

_CI_ENV = ("GITHUB_EVENT_PATH", "CI_COMMIT_SHA", "CI_COMMIT_BEFORE_SHA", "CI_MERGE_REQUEST_DIFF_BASE_SHA")
_PROXIES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def run(b: Block, ns: dict[str, Any]) -> dict[str, Any]:
    """Execute a block as it stands in the document (line numbers included) in the namespace ``ns``."""
    code = compile("\n" * b.line + b.text, str(DOCUMENT), "exec")
    exec(code, ns)  # noqa: S102 - the product's own documentation
    return ns


@pytest.fixture(autouse=True)
def _a_readers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No settings, CI commit range or proxy of the machine running the tests."""
    for var in [v for v in os.environ if v.startswith("GUARD_")] + [*_CI_ENV, *_PROXIES]:
        monkeypatch.delenv(var, raising=False)


# --- Python Library Usage ----------------------------------------------------------------------------

def test_python_library_usage(capsys: pytest.CaptureFixture[str]) -> None:
    ns = run(block("Python Library Usage", "python"), {"__name__": "readme", "failure_logs": FAILURE_LOGS})
    guard, failure, result = ns["guard"], ns["failure"], ns["result"]
    assert (guard.ci_provider, guard.repo) == ("github", REPO)
    flaky = guard.strategies[Strategy.FLAKY_TEST_RETRY]
    assert (flaky.confidence_threshold, flaky.max_retries) == (0.8, 3)
    assert (failure.provider, failure.repo, failure.job_id) == ("github", REPO, "12345")
    # the test's connection to the sandbox was reset: a transient cause, retried after a backoff (dry run)
    assert (failure.category, result.action, result.status) == ("network", "retry_backoff", "dry_run")
    assert result.time_saved_minutes > 0
    assert capsys.readouterr().out == (f"Healing result: dry_run\n"
                                       f"Time saved: {result.time_saved_minutes} minutes\n")


# --- Custom Strategy Example --------------------------------------------------------------------------

@pytest.fixture()
def monorepo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two npm workspaces; the last commit changed @acme/api only. The current directory."""
    repo = git_repo(tmp_path / "mono", {
        "package.json": '{"name": "mono", "private": true, "workspaces": ["packages/*"]}\n',
        "packages/api/package.json": '{"name": "@acme/api", "version": "1.4.0"}\n',
        "packages/api/src/charge.js": "module.exports = (a) => a * 100\n",
        "packages/api/src/charge.test.js": "test('charges', () => {})\n",
        "packages/web/package.json": '{"name": "@acme/web", "version": "2.0.1"}\n',
        "packages/web/src/cart.test.js": "test('cart', () => {})\n",
    }, {"packages/api/src/charge.js": "module.exports = (a) => Math.round(a * 100)\n"})
    monkeypatch.chdir(repo)
    return repo


#: jest across both workspaces: @acme/api's changed code fails, and so does @acme/web's flaky test
MONOREPO_LOG = """\
> mono@0.0.0 test
> npm test --workspaces

> @acme/api@1.4.0 test
> jest

FAIL src/charge.test.js
  ● charge › rounds to cents
npm ERR! Lifecycle script `test` failed with error:
npm ERR!   in workspace: @acme/api@1.4.0

> @acme/web@2.0.1 test
> jest

FAIL src/cart.test.js (5.02 s)
  ● cart › renders the total
npm ERR! Lifecycle script `test` failed with error:
npm ERR!   in workspace: @acme/web@2.0.1
"""


def test_custom_strategy_example(monorepo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    guard = PipelineGuard(ci_provider="github", repo=REPO)
    ns = run(block("Custom Strategy Example", "python"), {"__name__": "readme", "guard": guard})
    assert guard.custom_strategies == ("MonorepoStrategy",) and capsys.readouterr().out == ""
    strategy = ns["MonorepoStrategy"]()

    failure = guard.analyze_failure(job_id="12345", logs=MONOREPO_LOG)
    assert failure.commit_range == "HEAD~1..HEAD"  # no CI environment: the last commit
    assert strategy.get_changed_packages(failure.commit_range) == {"packages/api"}
    assert strategy.extract_failed_packages(failure.logs) == {"packages/api", "packages/web"}
    assert strategy.detect(failure) is True
    result = guard.heal(failure)
    assert (result.strategy, result.action) == ("MonorepoStrategy", "selective-rebuild")
    # only the package the change broke is rebuilt, with the document's parameters
    assert dict(result.command.parameters) == {"packages": ["packages/api"], "parallel": True, "cache": "warm"}
    # no executor knows "selective-rebuild": nothing pretends it ran or saved time, and the result says why
    assert (result.status, result.time_saved_minutes) == ("dry_run", 0.0)
    assert "does not carry out the custom action 'selective-rebuild'" in result.reason
    assert "PipelineGuard(executor=...)" in result.reason

    # a failure only where nothing changed is not the strategy's case: the built-in table decides
    web_only = "FAIL packages/web/src/cart.test.js (5.02 s)\n  ● cart › renders the total\n"
    other = guard.heal(guard.analyze_failure(job_id="12346", logs=web_only))
    assert strategy.detect(guard.analyze_failure(job_id="12346", logs=web_only)) is False
    assert other.strategy != "MonorepoStrategy"


def test_custom_strategy_example_with_an_executor(monorepo: Path) -> None:
    ran: list[Command] = []

    def rebuild(cmd: Command) -> bool:  # the team's own runner of selective rebuilds
        ran.append(cmd)
        return True

    guard = PipelineGuard(ci_provider="github", repo=REPO, executor=rebuild)
    run(block("Custom Strategy Example", "python"), {"__name__": "readme", "guard": guard})
    result = guard.heal(guard.analyze_failure(job_id="12345", logs=MONOREPO_LOG))
    assert (result.status, result.action) == ("succeeded", "selective-rebuild") and result.time_saved_minutes > 0
    assert [(c.action, c.parameters["packages"]) for c in ran] == [("selective-rebuild", ["packages/api"])]


# --- Python SDK ---------------------------------------------------------------------------------------

DB = "guard_doc"
SHA = "4f1c2a9e8b7d6c5b4a39281706f5e4d3c2b1a098"


def sdk_facts() -> list[Any]:
    """your-org/your-repo over the last day: two failed jobs the guard re-ran (one passed on its re-run,
    one failed again: 50 % healed), and four tests of which one failed and passed on the same commit
    (25 % flaky). Job 12345 was diagnosed as a network failure at 0.82."""
    from healing_guard.schemas import Evidence, Finding, JobEvent, TestResult
    from healing_guard.warehouse import command_fact, diagnosis_fact, job_run_fact, test_result_fact

    t = float(int(time.time()) - 86400)
    owner, repo = REPO.split("/")
    ref: dict[str, Any] = {"provider": "github", "owner": owner, "repo": repo}
    out: list[Any] = []
    for job_id, category, action, second in (("12345", "network", "retry_backoff", "success"),
                                             ("12346", "infra_runner_lost", "retry", "failure")):
        for attempt, conclusion, at in ((1, "failure", t), (2, second, t + 900)):
            out.append(job_run_fact(JobEvent(**ref, job_id=job_id, job_name="test", status="completed",
                                             conclusion=conclusion, attempt=attempt, head_sha=SHA,  # type: ignore[arg-type]
                                             started_at=at - 300, completed_at=at), cost_usd=0.4))
        out.append(diagnosis_fact(Finding(**ref, job_id=job_id, finding_id=f"f-{job_id}", attempt=1, category=category,
                                          confidence=0.82, ts=t + 30,
                                          evidence=[Evidence(line=15, text="ConnectionResetError(104)", pattern="p")])))
        out.append(command_fact(Command(**ref, job_id=job_id, command_id=f"c-{job_id}", attempt=1, action=action,
                                        reason="transient", category=category, confidence=0.82, ts=t + 120)))
    for test_id, outcomes in (("tests/test_checkout.py::test_payment_webhook", ("failed", "passed")),
                              ("tests/test_orders.py::test_create", ("passed", "passed")),
                              ("tests/test_orders.py::test_cancel", ("passed", "passed")),
                              ("tests/test_cart.py::test_total", ("passed", "passed"))):
        for attempt, outcome in enumerate(outcomes, start=1):
            out.append(test_result_fact(TestResult(**ref, job_id="12345", test_id=test_id, outcome=outcome,  # type: ignore[arg-type]
                                                   attempt=attempt, ts=t + attempt), p_fail=None))
    return out


@pytest.fixture(scope="module")
def guard_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``guard api`` as a user starts it (read only: no broker), over a chDB warehouse holding sdk_facts().

    chDB allows one process per data directory: the facts are written by a child process that exits
    before ``guard api`` opens it (as tests/integration/rest/test_api_live.py does)."""
    pytest.importorskip("chdb", reason="chDB is the [embedded] extra")
    tmp = tmp_path_factory.mktemp("document_sdk")
    dsn = f"chdb://{tmp / 'chdb'}"
    subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from healing_guard.warehouse import FactWriter, connect, migrate
        from tests.document.test_python import sdk_facts
        c = connect({dsn!r})
        migrate(c, {DB!r})
        FactWriter(c, {DB!r}).write(sdk_facts())
        c.close()
        """)], cwd=ROOT, check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_") and k not in _PROXIES}
    env["GUARD_DATA_DIR"] = str(tmp)
    guard = [sys.executable, "-m", "healing_guard.cli"]
    key = subprocess.run([*guard, "api-keys", "create", "--repo", REPO], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout.strip()
    port = free_port()
    log_path = tmp / "api.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*guard, "api", "--port", str(port), "--broker", "embedded", "--clickhouse-dsn", dsn,
                                 "--database", DB], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base + "/health", proc, log_path)
            yield {"base": base, "key": key}
        finally:
            stop(proc)


@pytest.mark.integration
@pytest.mark.xdist_group("document_sdk")
def test_python_sdk(guard_api: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> None:
    # as in a CI job: the API's address and the key (a secret) in the environment, the code as documented
    monkeypatch.setenv("GUARD_API_URL", guard_api["base"])
    monkeypatch.setenv("GUARD_API_KEY", guard_api["key"])
    ns = run(block("Python SDK", "python"), {"__name__": "readme"})
    out = capsys.readouterr().out.splitlines()
    assert out == ["Flaky test rate: 25.0%", "Self-healing success: 50.0%", "- retry_backoff: 82.0% confidence"]
    health, analysis = ns["health"], ns["analysis"]
    assert (health.flaky_test_rate, health.healing_success_fraction) == (0.25, 0.5)  # the API's fractions
    assert (analysis.category, analysis.job_id, analysis.confidence) == ("network", "12345", 82.0)
    assert all(re.fullmatch(r"- \w+: \d+(\.\d+)?% confidence", line) for line in out[2:])


def test_the_sdk_example_says_what_to_do_when_no_api_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GUARD_API_URL and nothing listening where ``guard api`` listens by default: the error says so."""
    from healing_guard.sdk import GuardAPIError

    monkeypatch.setenv("GUARD_API_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(GuardAPIError, match=r"cannot reach the guard API at http://127\.0\.0\.1:\d+: .*is `guard api` "
                                            "running there"):
        run(block("Python SDK", "python"), {"__name__": "readme"})
