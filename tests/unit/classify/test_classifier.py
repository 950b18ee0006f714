"""Classifier: realistic small logs land in the right category; precedence and unknown behave."""

from __future__ import annotations

import dataclasses

import pytest

from healing_guard.classify import Diagnosis, EvidenceLine, classify, evidence_from_hits
from healing_guard.patterns import Hit, Matcher, Pattern, load_library
from healing_guard.patterns.library import PATTERN_CATEGORIES

TS = "2024-05-01T10:00:00.0000000Z "

LOGS: dict[str, list[str]] = {
    "test_failure": [
        "============================= test session starts ==============================",
        "collected 3 items",
        "tests/test_math.py ..F",
        "E       assert 3 == 4",
        "=========================== short test summary info ============================",
        "FAILED tests/test_math.py::test_add - assert 3 == 4",
        "========================= 1 failed, 2 passed in 0.12s =========================",
    ],
    "test_timeout": [
        "tests/test_net.py::test_slow ",
        "+++++++++++++++++++++++++++++++++++ Timeout ++++++++++++++++++++++++++++++++++++",
        "~~~~~~~~~~~~~~~~~~~~~ Stack of MainThread (140) ~~~~~~~~~~~~~~~~~~~~~",
        "E       Failed: Timeout >30.0s",
        "FAILED tests/test_net.py::test_slow - Failed: Timeout >30.0s",
    ],
    "compilation_error": [
        "[ 42%] Building C object src/CMakeFiles/app.dir/main.c.o",
        "/home/runner/work/app/src/main.c:17:9: error: 'count' undeclared (first use in this function)",
        "make[2]: *** [src/CMakeFiles/app.dir/build.make:76: src/CMakeFiles/app.dir/main.c.o] Error 1",
        "make: *** [Makefile:136: all] Error 2",
    ],
    "lint_style": [
        "Run ruff check .",
        "src/app/models.py:3:8: F401 [*] `os` imported but unused",
        "src/app/views.py:10:80: E501 Line too long (99 > 79)",
        "Found 2 errors.",
        "[*] 1 fixable with the `--fix` option.",
    ],
    "build_config": [
        "[INFO] Scanning for projects...",
        "[ERROR] Unknown lifecycle phase \"instal\". You must specify a valid lifecycle phase or a goal.",
        "[ERROR] -> [Help 1] http://cwiki.apache.org/confluence/display/MAVEN/LifecyclePhaseNotFoundException",
    ],
    "dependency_resolution": [
        "Collecting requests==2.31.0",
        "ERROR: Cannot install -r requirements.txt (line 2) and urllib3==1.20 because these package versions have conflicting dependencies.",
        "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/",
    ],
    "dependency_missing": [
        "Traceback (most recent call last):",
        '  File "/home/runner/work/app/app/main.py", line 1, in <module>',
        "    import yaml",
        "ModuleNotFoundError: No module named 'yaml'",
    ],
    "network": [
        "Cloning into 'repo'...",
        "fatal: unable to access 'https://github.com/org/repo.git/': Could not resolve host: github.com",
        "The process '/usr/bin/git' failed with exit code 128",
    ],
    "rate_limit": [
        "Fetching release info...",
        "HttpError: API rate limit exceeded for installation ID 1234567.",
    ],
    "docker_registry": [
        "Pulling image ghcr.io/org/builder:2024-01",
        "Error response from daemon: manifest for ghcr.io/org/builder:2024-01 not found: manifest unknown: manifest unknown",
        "Docker pull failed with exit code 1",
    ],
    "cache_corruption": [
        "npm ci",
        "npm ERR! code EINTEGRITY",
        "npm ERR! sha512-abc integrity checksum failed when using sha512: wanted sha512-abc but got sha512-def. (1234 bytes)",
    ],
    "oom": [
        "> webpack --mode production",
        "<--- Last few GCs --->",
        "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
        " 1: 0xb09c10 node::Abort() [node]",
    ],
    "disk_full": [
        "Extracting layer sha256:abc",
        "failed to register layer: write /usr/lib/x86_64-linux-gnu/libLLVM.so: no space left on device",
        "OSError: [Errno 28] No space left on device: '/tmp/build'",
    ],
    "infra_runner_lost": [
        "Run ./scripts/test.sh",
        "Running 300 tests",
        "The runner has received a shutdown signal. This can happen when the runner service is stopped, or a manually started runner is canceled.",
        "The operation was canceled.",
    ],
    "infra_timeout": [
        "Running integration suite",
        "##[error]The job running on runner GitHub Actions 12 has exceeded the maximum execution time of 60 minutes.",
        "##[error]The operation was canceled.",
    ],
    "crash": [
        "Running tests/unit_tests",
        "[ RUN      ] ParserTest.HandlesNull",
        "Segmentation fault (core dumped)",
    ],
}


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher(load_library())


def diagnose(matcher: Matcher, raw: list[str], **kw: object) -> Diagnosis:
    lines = [TS + line for line in raw]  # raw, as chunks arrive: the matcher copes with the decoration
    ev = evidence_from_hits(matcher.match(lines), 1)
    return classify(ev, total_lines=len(lines), **kw)  # type: ignore[arg-type]


def test_every_category_has_a_fixture() -> None:
    assert set(LOGS) == set(PATTERN_CATEGORIES)


@pytest.mark.parametrize("category", sorted(LOGS))
def test_realistic_logs_classify(matcher: Matcher, category: str) -> None:
    d = diagnose(matcher, LOGS[category])
    assert d.category == category, d
    assert 0.5 <= d.confidence <= 1.0
    assert 1 <= len(d.evidence) <= 5
    assert all(e.category == category for e in d.evidence)
    # strongest first; line numbers are 1-based in the whole log
    assert all(1 <= e.line <= len(LOGS[category]) for e in d.evidence)


def test_root_cause_beats_generic_test_failure(matcher: Matcher) -> None:
    raw = [
        "tests/test_big.py::test_load ",
        "FAILED tests/test_big.py::test_load - MemoryError",
        "Killed",
        "java.lang.OutOfMemoryError: Java heap space",
        "Error: 3 tests failed",
    ]
    d = diagnose(matcher, raw)
    assert d.category == "oom"
    raw = [
        "Run npm test",
        "Tests: 1 failed, 12 passed, 13 total",
        "npm ERR! code ENOSPC",
        "npm ERR! syscall write",
        "npm ERR! ENOSPC: no space left on device, write",
    ]
    assert diagnose(matcher, raw).category == "disk_full"


def test_genuine_test_failure_not_retried_as_transient(matcher: Matcher) -> None:
    # A connection-refused message inside a failing test is a weak signal; the assertion decides.
    raw = [
        "tests/test_client.py::test_retry FAILED",
        "E       requests.exceptions.ConnectionError: Connection refused",
        "E       assert response.status_code == 200",
        "FAILED tests/test_client.py::test_retry - assert 500 == 200",
        "==================== 1 failed, 30 passed in 2.10s ====================",
    ]
    assert diagnose(matcher, raw).category == "test_failure"


def test_no_evidence_is_unknown(matcher: Matcher) -> None:
    d = classify([], total_lines=100)
    assert d == Diagnosis("unknown", 1.0, ())
    d = diagnose(matcher, ["building", "done", "Process completed with exit code 1."])
    assert d.category == "unknown"


def test_weak_evidence_is_unknown_but_kept() -> None:
    e = EvidenceLine(line=1, text="Connection refused", pattern="net.econnrefused", category="network", weight=0.45)
    d = classify([e], total_lines=1000)
    assert d.category == "unknown"
    assert d.evidence == (e,)
    assert 0.0 < d.confidence <= 1.0


def test_exit_code_137_supports_oom() -> None:
    killed = EvidenceLine(line=50, text="Killed", pattern="shell.killed", category="oom", weight=0.4)
    without = classify([killed], total_lines=50)
    with_137 = classify([killed], total_lines=50, exit_code=137)
    assert without.category == "unknown"
    assert with_137.category == "oom"
    assert with_137.confidence > 0.5


def test_conclusion_timed_out_supports_infra_timeout() -> None:
    e = EvidenceLine(line=10, text="The operation was canceled.", pattern="x", category="infra_runner_lost", weight=0.55)
    assert classify([e], total_lines=10).category == "infra_runner_lost"
    assert classify([e], total_lines=10, conclusion="timed_out").category == "infra_timeout"


def test_later_lines_weigh_more() -> None:
    early = EvidenceLine(line=1, text="a", pattern="p1", category="network", weight=0.8)
    late = EvidenceLine(line=1000, text="b", pattern="p2", category="disk_full", weight=0.8)
    d = classify([early, late], total_lines=1000)
    assert d.category == "disk_full"


def test_repetition_has_diminishing_returns() -> None:
    def many(n: int) -> float:
        ev = [EvidenceLine(line=i + 1, text="x", pattern="p", category="network", weight=0.6) for i in range(n)]
        return classify(ev, total_lines=n).confidence

    one, ten, thousand = many(1), many(10), many(1000)
    assert one < ten <= thousand < 0.9
    # one precise line beats a thousand weak ones of another category
    weak = [EvidenceLine(line=i + 1, text="x", pattern="w", category="test_failure", weight=0.3) for i in range(1000)]
    strong = EvidenceLine(line=1000, text="No space left on device", pattern="d", category="disk_full", weight=0.95)
    assert classify([*weak, strong], total_lines=1000).category == "disk_full"


def test_evidence_limit_order_and_dedup() -> None:
    ev = [EvidenceLine(line=i, text=str(i), pattern=f"p{i % 2}", category="crash", weight=0.9) for i in range(1, 20)]
    ev += [EvidenceLine(line=19, text="19", pattern="p9", category="crash", weight=0.5)]
    d = classify(ev, total_lines=19)
    assert d.category == "crash"
    assert len(d.evidence) == 5
    assert [e.line for e in d.evidence] == [19, 18, 17, 16, 15]
    assert d.evidence[0].pattern == "p1"  # the stronger of the two patterns on line 19


def test_confidence_bounded() -> None:
    ev = [EvidenceLine(line=i, text="x", pattern="p", category="oom", weight=1.0) for i in range(1, 100)]
    d = classify(ev, total_lines=99, exit_code=137)
    assert 0.0 <= d.confidence <= 1.0


def test_evidence_from_hits_numbers_redacts_and_truncates() -> None:
    p = Pattern(id="p", category="network", regex="x", confidence=0.7)
    lines = ["a", "password=hunter2 ECONNRESET", "b" * 2000]
    ev = evidence_from_hits([Hit(1, p, lines[1]), Hit(2, p, lines[2])], first_line_no=101)
    assert [e.line for e in ev] == [102, 103]
    assert "hunter2" not in ev[0].text and "[REDACTED]" in ev[0].text
    assert len(ev[1].text) == 500
    assert ev[0].weight == 0.7 and ev[0].pattern == "p" and ev[0].category == "network"


def test_precedence_root_cause_near_end_wins_close_call() -> None:
    tf = EvidenceLine(line=99, text="3 tests failed", pattern="t", category="test_failure", weight=0.85)
    net = EvidenceLine(line=98, text="ECONNRESET", pattern="n", category="network", weight=0.7)
    assert classify([tf, net], total_lines=100).category == "network"
    # said after the tests were already reported failed, it did not fail them
    after = dataclasses.replace(net, line=100)
    assert classify([tf, after], total_lines=100).category == "test_failure"
    # ...but not when it is far weaker
    weak = EvidenceLine(line=100, text="Connection refused", pattern="n", category="network", weight=0.5)
    assert classify([tf, weak], total_lines=100).category == "test_failure"
    # ...nor when it is far from the end
    early = EvidenceLine(line=2, text="ECONNRESET", pattern="n", category="network", weight=0.7)
    assert classify([tf, early], total_lines=1000).category == "test_failure"


def test_rust_test_panic_is_a_test_failure(matcher: Matcher) -> None:
    raw = [
        "running 2 tests",
        "test tests::adds ... FAILED",
        "---- tests::adds stdout ----",
        "thread 'tests::adds' panicked at src/lib.rs:10:9:",
        "assertion `left == right` failed",
        "test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
        "error: test failed, to rerun pass `--lib`",
    ]
    assert diagnose(matcher, raw).category == "test_failure"


# ------------------------------------------------------------------------------------------------
# one line, one cause; which consequence a root cause explains
# ------------------------------------------------------------------------------------------------


def test_linter_output_in_compiler_shape_is_lint(matcher: Matcher) -> None:
    # clang-format and Checkstyle print their findings in the compiler's diagnostic format
    raw = [
        "+ clang-format --dry-run --Werror src/limits.c",
        "src/limits.c:47:11: error: code should be clang-formatted [-Wclang-format-violations]",
        "script returned exit code 1",
    ]
    assert diagnose(matcher, raw).category == "lint_style"
    raw = [
        "[INFO] --- checkstyle:3.4.0:check (validate) @ app ---",
        "[ERROR] src/main/java/a/Client.java:[65,5] (whitespace) WhitespaceAround: '{' is not preceded with whitespace. [WhitespaceAround]",
        "[ERROR] src/main/java/a/Client.java:[198] (sizes) LineLength: Line is longer than 120 characters (found 131). [LineLength]",
        "[ERROR] Failed to execute goal org.apache.maven.plugins:maven-checkstyle-plugin:3.4.0:check (validate) on project app: You have 2 Checkstyle violations. -> [Help 1]",
    ]
    assert diagnose(matcher, raw).category == "lint_style"


def test_clippy_denial_is_lint_not_compile(matcher: Matcher) -> None:
    raw = [
        "error: this `if` has identical blocks",
        "  = note: `-D clippy::if-same-then-else` implied by `-D warnings`",
        "error: could not compile `app` (lib) due to 1 previous error",
    ]
    assert diagnose(matcher, raw).category == "lint_style"
    raw = [
        "error[E0425]: cannot find value `x` in this scope",
        "error: could not compile `app` (lib) due to 1 previous error",
    ]
    assert diagnose(matcher, raw).category == "compilation_error"


def test_killed_compiler_is_oom(matcher: Matcher) -> None:
    raw = [
        "Compiling app v0.4.0 (/src/app)",
        "error: could not compile `app` (lib)",
        "Caused by:",
        "  process didn't exit successfully: `rustc --crate-name app src/lib.rs` (signal: 9, SIGKILL: kill)",
    ]
    assert diagnose(matcher, raw, exit_code=101).category == "oom"


def test_sigkill_beats_crash(matcher: Matcher) -> None:
    # Surefire's "forked VM terminated" is what a fork killed by the OOM killer looks like
    raw = [
        "[INFO] Running com.example.LedgerTest",
        "[ERROR] ExecutionException The forked VM terminated without properly saying goodbye. VM crash or System.exit called?",
        "Process completed with exit code 137.",
    ]
    assert diagnose(matcher, raw, exit_code=137).category == "oom"
    # "Killed" + 137 explains a crash report printed around it
    killed = EvidenceLine(line=99, text="Killed", pattern="shell.killed", category="oom", weight=0.55)
    crash = EvidenceLine(line=98, text="Fatal Python error: Aborted", pattern="runtime.fatal", category="crash", weight=0.85)
    assert classify([crash, killed], total_lines=100, exit_code=137).category == "oom"
    assert classify([crash, killed], total_lines=100, exit_code=1).category == "crash"


def test_heap_oom_abort_is_oom(matcher: Matcher) -> None:
    raw = [
        "<--- Last few GCs --->",
        "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
        " 1: 0xb09c10 node::Abort() [node]",
        "Aborted (core dumped)",
    ]
    assert diagnose(matcher, raw, exit_code=134).category == "oom"


def test_rust_main_thread_panic_is_a_crash(matcher: Matcher) -> None:
    # libtest names each test's thread after the test: 'main' panicking is the binary itself
    raw = [
        "test metrics::tests::updates_many_shards ... ok",
        "thread 'main' panicked at src/flash.rs:333:6:",
        "called `Option::unwrap()` on a `None` value",
        "error: test failed, to rerun pass `--test integration`",
    ]
    assert diagnose(matcher, raw, exit_code=101).category == "crash"


def test_go_test_panic_is_a_test_failure(matcher: Matcher) -> None:
    raw = [
        "=== RUN   TestParse",
        "--- FAIL: TestParse (0.00s)",
        "panic: runtime error: invalid memory address or nil pointer dereference [recovered]",
        "goroutine 7 [running]:",
        "FAIL\texample.com/app/parser\t0.012s",
    ]
    assert diagnose(matcher, raw).category == "test_failure"


@pytest.mark.parametrize(
    ("cause", "category"),
    [
        ("Could not find artifact com.example:sdk:jar:1.18.9 in central (https://repo.maven.apache.org/maven2)", "dependency_resolution"),
        ("Could not find artifact com.example:sdk:jar:9.2.0-SNAPSHOT", "dependency_resolution"),
        ("Failed to collect dependencies at org.x:y:jar:1.0: Failed to read artifact descriptor for org.x:y:jar:1.0: "
         "Could not transfer artifact org.x:y:pom:1.0 from/to central (https://repo.maven.apache.org/maven2): Connection reset", "network"),
    ],
)
def test_maven_wrapper_defers_to_the_cause_on_its_line(matcher: Matcher, cause: str, category: str) -> None:
    raw = [
        "[INFO] BUILD FAILURE",
        f"[ERROR] Failed to execute goal on project app: Could not resolve dependencies for project com.example:app:jar:1.0: {cause} -> [Help 1]",
    ]
    assert diagnose(matcher, raw).category == category


def test_repository_auth_failure_is_not_network(matcher: Matcher) -> None:
    raw = [
        "[ERROR] Failed to execute goal on project app: Could not resolve dependencies for project com.example:app:jar:1.0: "
        "Failed to collect dependencies at com.corp:lib:jar:2.0: Failed to read artifact descriptor for com.corp:lib:jar:2.0: "
        "Could not transfer artifact com.corp:lib:pom:2.0 from/to corp (https://maven.corp.example/repo): status code: 401, reason phrase: Unauthorized (401) -> [Help 1]",
    ]
    assert diagnose(matcher, raw).category != "network"


def test_one_line_counts_once_for_its_strongest_reading() -> None:
    strong = EvidenceLine(line=10, text="x", pattern="a", category="lint_style", weight=0.95)
    weak = EvidenceLine(line=10, text="x", pattern="b", category="compilation_error", weight=0.9)
    d = classify([strong, weak], total_lines=10)
    assert d.category == "lint_style"
    # the weaker reading does not even survive as support for its category
    other = EvidenceLine(line=9, text="y", pattern="c", category="compilation_error", weight=0.4)
    assert classify([strong, weak, other], total_lines=10).category == "lint_style"
    # equal readings both stay: the other line then decides
    tie = EvidenceLine(line=10, text="x", pattern="b", category="compilation_error", weight=0.95)
    assert classify([strong, tie, other], total_lines=10).category == "compilation_error"


def test_weak_test_panics_do_not_override_test_failure() -> None:
    # several Rust test-thread panics (0.5 each) must not turn a test failure into a crash
    panics = [EvidenceLine(line=90 + i, text="thread 't' panicked", pattern="rust.panic", category="crash", weight=0.5)
              for i in range(5)]
    tf = EvidenceLine(line=99, text="test result: FAILED.", pattern="cargo.test_result", category="test_failure", weight=0.85)
    assert classify([*panics, tf], total_lines=100).category == "test_failure"


# ------------------------------------------------------------------------------------------------
# transient words only count where a tool says them about the machine
# ------------------------------------------------------------------------------------------------

AUTO_GATE = 0.75  # the default automatic-action threshold (healing_guard/remediate/gate.py)


def test_passing_test_lines_are_no_evidence(matcher: Matcher) -> None:
    raw = [
        "PASS src/net/retry.test.ts",
        "  ✓ retries on ECONNRESET (12 ms)",
        "  ✓ returns 429 when the rate limit exceeded (3 ms)",
        "tests/test_disk.py::test_no_space_left_on_device PASSED [ 50%]",
        "test io::tests::maps_no_space_left_on_device ... ok",
    ]
    d = diagnose(matcher, raw)
    assert d.category == "unknown" and d.evidence == ()


def test_retry_announcements_are_support_only(matcher: Matcher) -> None:
    retry = "WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection " \
            "broken by 'ReadTimeoutError(\"HTTPSConnectionPool(host='pypi.org', port=443): Read timed out.\")': /simple/x/"
    assert diagnose(matcher, ["Collecting x", retry, "Successfully installed x-1.0"]).category == "unknown"
    # ...but they support the final error when the retries ran out
    final = "ERROR: Could not install packages due to an OSError: HTTPSConnectionPool(host='pypi.org', port=443): " \
            "Max retries exceeded with url: /simple/x/ (Caused by ReadTimeoutError(\"Read timed out.\"))"
    d = diagnose(matcher, ["Collecting x", retry, retry, final])
    assert d.category == "network" and d.evidence[0].line == 4


def test_source_listings_quote_messages(matcher: Matcher) -> None:
    raw = [
        "+ grep -rn 'No space left' src/",
        'src/storage/writer.go:88:\t// returns ErrNoSpace when the write fails with "No space left on device"',
        'src/http/client.ts:41:  if (err.code === "ECONNRESET") {',
    ]
    assert diagnose(matcher, raw).category == "unknown"


def test_a_test_owns_its_assertion_line(matcher: Matcher) -> None:
    raw = [
        "tests/test_errors.py::test_message FAILED",
        "E       AssertionError: expected 'No space left on device' in output",
        "FAILED tests/test_errors.py::test_message - AssertionError: expected 'No space left on device' in output",
        "========================= 1 failed, 12 passed in 0.52s =========================",
    ]
    d = diagnose(matcher, raw)
    assert d.category == "test_failure"
    assert all(e.category == "test_failure" for e in d.evidence)


def test_transient_cause_inside_a_code_step_failure_is_not_automatic(matcher: Matcher) -> None:
    # the compiler plugin reports the full disk as its own reason to fail: disk_full, but a person decides
    wrapped = ("[ERROR] Failed to execute goal org.apache.maven.plugins:maven-compiler-plugin:3.11.0:testCompile "
               "(default-testCompile) on project app: Error while storing the mojo status: /app/target/maven-status/"
               "createdFiles.lst (No space left on device) -> [Help 1]")
    d = diagnose(matcher, ["[INFO] BUILD FAILURE", wrapped])
    assert d.category == "disk_full"
    assert d.confidence < AUTO_GATE
    # said on its own line, the same cause is certain
    d = diagnose(matcher, ["[INFO] BUILD FAILURE", wrapped, "[ERROR] No space left on device",
                           "java.io.IOException: No space left on device"])
    assert d.category == "disk_full" and d.confidence >= 0.9
    # a dependency resolver reporting a transport error is not a code step: no cap
    resolve = ("[ERROR] Failed to execute goal on project app: Could not resolve dependencies for project g:app:jar:1.0: "
               "Could not transfer artifact g:a:pom:1.0 from/to central (https://repo.maven.apache.org/maven2): "
               "Connection reset -> [Help 1]")
    d = diagnose(matcher, ["[INFO] BUILD FAILURE", resolve])
    assert d.category == "network" and d.confidence >= AUTO_GATE


def test_cause_printed_right_before_the_failure_explains_it() -> None:
    # a wrapper's timeout, then "the test file failed", then a long epilogue (cache statistics, uploads)
    timeout = EvidenceLine(line=35, text="Got exit code 124", pattern="t", category="test_timeout", weight=0.6)
    failed = [EvidenceLine(line=n, text="test_x 1/1 failed!", pattern="f", category="test_failure", weight=0.6)
              for n in (45, 57)]
    assert classify([timeout, *failed], total_lines=100).category == "test_timeout"
    # far before the failure it explains nothing
    early = EvidenceLine(line=5, text="Got exit code 124", pattern="t", category="test_timeout", weight=0.6)
    assert classify([early, *failed], total_lines=100).category == "test_failure"
    # a transient cause found this way is reported, not acted on
    net = EvidenceLine(line=40, text="ECONNRESET", pattern="n", category="network", weight=0.75)
    d = classify([net, *failed], total_lines=100)
    assert d.category == "network" and d.confidence < AUTO_GATE


def test_local_services_are_setup_not_network(matcher: Matcher) -> None:
    for line in [
        "Error: connect ECONNREFUSED 127.0.0.1:5432",
        "requests.exceptions.ConnectionError: HTTPConnectionPool(host='localhost', port=8000): Max retries exceeded "
        "with url: /health (Caused by NewConnectionError('Failed to establish a new connection: [Errno 111] Connection refused'))",
        "dial tcp: lookup postgres on 127.0.0.11:53: no such host",
        'psycopg2.OperationalError: could not translate host name "postgres" to address: Name or service not known',
    ]:
        assert diagnose(matcher, ["Run pytest", line]).category == "build_config", line


def test_a_connection_error_in_a_test_report_is_not_retried_by_itself(matcher: Matcher) -> None:
    """Tests already reported failed, then their tracebacks say the service they call did not answer:
    that is the tests' own failure report: a test failure, for a person to read."""
    conn = ("E           requests.exceptions.ConnectionError: HTTPConnectionPool(host='api.example.com', port=80): "
            "Max retries exceeded with url: /port (Caused by NewConnectionError('Failed to establish a new "
            "connection: [Errno 110] Connection timed out'))")
    report = ["tests/test_proxy.py::test_redirect FAILED", "tests/test_proxy.py::test_served FAILED",
              "=================================== FAILURES ===================================",
              "_______________________________ test_redirect ________________________________", conn,
              "_______________________________ test_served __________________________________", conn]
    d = diagnose(matcher, report)
    assert d.category == "test_failure"
    # the same error with no test reported failed before it is the machine's network: acted on
    d = diagnose(matcher, ["Run pytest", conn, conn])
    assert d.category == "network" and d.confidence >= AUTO_GATE


def test_a_name_only_a_local_network_resolves_is_not_the_ci_network() -> None:
    local = EvidenceLine(line=90, text="ConnectTimeout: HTTPConnectionPool(host='web.proxy.local', port=80)",
                         pattern="n", category="network", weight=0.9)
    public = dataclasses.replace(local, text="ConnectTimeout: HTTPConnectionPool(host='pypi.org', port=443)")
    assert classify([local], total_lines=100).confidence < AUTO_GATE
    assert classify([public], total_lines=100).confidence >= AUTO_GATE


def test_a_go_checksum_mismatch_is_named_but_left_to_a_person(matcher: Matcher) -> None:
    """A module whose content does not match go.sum: a corrupt module cache or a re-tagged module."""
    raw = ["go: downloading github.com/acme/lib v1.6.0",
           "verifying github.com/acme/lib@v1.6.0: checksum mismatch",
           "\tdownloaded: h1:AAAA", "\tgo.sum:     h1:BBBB", "", "SECURITY ERROR",
           "This download does NOT match an earlier download recorded in go.sum."]
    d = diagnose(matcher, raw)
    assert d.category == "cache_corruption" and d.confidence < AUTO_GATE
