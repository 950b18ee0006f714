"""Pattern library loading (strict, with file/line/key errors) and the one-database matcher."""

from __future__ import annotations

from pathlib import Path

import pytest

from healing_guard.patterns import Hit, Matcher, Pattern, PatternError, load_library, parse_library
from healing_guard.patterns.library import PATTERN_CATEGORIES
from healing_guard.schemas.records import CATEGORIES


def write(tmp_path: Path, text: str, name: str = "lib.yml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


GOOD = """\
patterns:
  - id: my.oom
    category: oom
    regex: 'MyTool ran out of memory'
    confidence: 0.9
    indicators: [memory]
    remediation: Use a bigger runner.
"""


# ------------------------------------------------------------------------------------------------
# library
# ------------------------------------------------------------------------------------------------


def test_builtin_loads_and_covers_every_category() -> None:
    lib = load_library()
    assert len(lib) >= 100
    cats = {p.category for p in lib}
    assert cats == set(PATTERN_CATEGORIES)
    assert set(PATTERN_CATEGORIES) == set(CATEGORIES) - {"unknown"}
    assert len({p.id for p in lib}) == len(lib)
    for p in lib:
        assert 0.0 <= p.confidence <= 1.0
        assert p.remediation, p.id
    # at least two patterns per category
    for c in PATTERN_CATEGORIES:
        assert sum(p.category == c for p in lib) >= 2, c


def test_user_file_adds_and_overrides_by_id(tmp_path: Path) -> None:
    builtin = {p.id: p for p in load_library()}
    assert "disk.no_space" in builtin
    f = write(
        tmp_path,
        GOOD
        + """\
  - id: disk.no_space
    category: disk_full
    regex: 'disk is full, sorry'
    confidence: 0.2
""",
    )
    lib = {p.id: p for p in load_library([f])}
    assert lib["my.oom"] == Pattern(
        id="my.oom",
        category="oom",
        regex="MyTool ran out of memory",
        confidence=0.9,
        indicators=("memory",),
        remediation="Use a bigger runner.",
    )
    assert lib["disk.no_space"].regex == "disk is full, sorry"
    assert lib["disk.no_space"].confidence == 0.2
    assert len(lib) == len(builtin) + 1


def test_without_builtin_and_defaults(tmp_path: Path) -> None:
    f = write(tmp_path, "patterns:\n  - id: a\n    category: network\n    regex: 'boom'\n")
    (p,) = load_library([f], include_builtin=False)
    assert p.confidence == 0.8 and p.indicators == () and p.remediation is None and not p.caseless


@pytest.mark.parametrize(
    ("body", "line", "key", "reason"),
    [
        # unknown key on line 5
        ("  - id: a\n    category: network\n    regex: 'x'\n    colour: red\n", 5, "patterns[0].colour", "unknown key"),
        ("  - id: a\n    category: flaky\n    regex: 'x'\n", 3, "patterns[0].category", "unknown category"),
        ("  - category: network\n    regex: 'x'\n", 2, "patterns[0].id", "required"),
        ("  - id: a\n    category: network\n", 2, "patterns[0].regex", "required"),
        ("  - id: a\n    category: network\n    regex: 'x'\n    confidence: 1.5\n", 5, "patterns[0].confidence", "between 0 and 1"),
        ("  - id: a\n    category: network\n    regex: 'x'\n    confidence: high\n", 5, "patterns[0].confidence", "between 0 and 1"),
        ("  - id: a\n    category: network\n    regex: 'x'\n  - id: a\n    category: oom\n    regex: 'y'\n", 5, "patterns[1].id", "duplicate id"),
        ("  - id: a\n    category: network\n    regex: 'foo(bar'\n", 4, "patterns[0].regex", "not a valid regular expression"),
        ("  - id: a\n    category: network\n    regex: '(a)\\1'\n", 4, "patterns[0].regex", "back-references"),
        ("  - id: a\n    category: network\n    regex: 'foo(?=bar)'\n", 4, "patterns[0].regex", "look-around"),
        ("  - id: a\n    category: network\n    regex: '(?<!x)foo'\n", 4, "patterns[0].regex", "look-around"),
        ("  - id: a\n    category: network\n    regex: 'a*'\n", 4, "patterns[0].regex", "hyperscan refuses"),
        ("  - id: a\n    category: network\n    regex: 'x'\n    caseless: maybe\n", 5, "patterns[0].caseless", "true or false"),
        ("  - id: a\n    category: network\n    regex: 'x'\n    indicators: 3\n", 5, "patterns[0].indicators", "list"),
        ("  - id: 'bad id!'\n    category: network\n    regex: 'x'\n", 2, "patterns[0].id", "letters"),
        ("  - id: a\n    id: b\n    category: network\n    regex: 'x'\n", 3, "patterns[0].id", "duplicate key"),
    ],
)
def test_refusals_name_file_line_and_key(tmp_path: Path, body: str, line: int, key: str, reason: str) -> None:
    f = write(tmp_path, "patterns:\n" + body)
    with pytest.raises(PatternError) as ei:
        load_library([f], include_builtin=False)
    err = ei.value
    assert err.file == str(f)
    assert err.line == line
    assert err.key == key
    assert reason in err.reason
    assert str(err).startswith(f"{f}:{line}: {key}: ")


def test_hyperscan_only_refusal(tmp_path: Path) -> None:
    # Valid for Python's re, but matches the empty string: Hyperscan refuses it (and it would flood).
    f = write(tmp_path, "patterns:\n  - id: a\n    category: network\n    regex: '(?:x|)'\n")
    with pytest.raises(PatternError, match="hyperscan refuses"):
        load_library([f], include_builtin=False)


def test_top_level_errors(tmp_path: Path) -> None:
    with pytest.raises(PatternError) as ei:
        load_library([write(tmp_path, "pattern:\n  - id: a\n")], include_builtin=False)
    assert ei.value.line == 1 and ei.value.key == "pattern"
    with pytest.raises(PatternError) as ei:
        load_library([write(tmp_path, "- a\n- b\n")], include_builtin=False)
    assert ei.value.line == 1
    with pytest.raises(PatternError) as ei:
        load_library([write(tmp_path, "patterns:\n  - id: a\n    regex: [unclosed\n")], include_builtin=False)
    assert ei.value.line is not None and "YAML" in ei.value.reason
    with pytest.raises(PatternError, match="cannot read"):
        load_library([tmp_path / "missing.yml"], include_builtin=False)


def test_yaml_is_safe_loaded(tmp_path: Path) -> None:
    f = write(tmp_path, "patterns:\n  - id: a\n    category: !!python/object/apply:os.system ['true']\n    regex: x\n")
    with pytest.raises(PatternError):
        load_library([f], include_builtin=False)


def test_parse_library_empty() -> None:
    assert parse_library("") == []
    assert parse_library("patterns:\n") == []


# ------------------------------------------------------------------------------------------------
# matcher
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def builtin_matcher() -> Matcher:
    return Matcher(load_library())


def pat(pid: str, regex: str, category: str = "network", **kw: object) -> Pattern:
    return Pattern(id=pid, category=category, regex=regex, confidence=0.8, **kw)  # type: ignore[arg-type]


def test_hits_map_to_line_index_sorted_and_unique() -> None:
    m = Matcher([pat("b.reset", "Connection reset"), pat("a.refused", "refused"), pat("c.anchor", "^ERROR")])
    lines = [
        "ok",
        "Connection reset by peer; Connection reset again",
        "Connection refused",
        "no ERROR here",
        "ERROR at start",
        "",
        "Connection reset",
    ]
    hits = m.match(lines)
    assert [(h.index, h.pattern.id) for h in hits] == [
        (1, "b.reset"),
        (2, "a.refused"),
        (4, "c.anchor"),
        (6, "b.reset"),
    ]
    assert all(isinstance(h, Hit) for h in hits)


def test_one_database_for_all_patterns() -> None:
    lib = load_library()
    m = Matcher(lib)
    assert m._db is not None and m._scratch is not None
    assert m.categories() == set(PATTERN_CATEGORIES)


def test_no_cross_line_matches() -> None:
    m = Matcher(
        [
            pat("dot", "foo.*bar"),
            pat("negclass", "foo[^x]*bar"),
            pat("space", r"foo\s+bar"),
            pat("end", "bar$"),
        ]
    )
    hits = m.match(["foo", "bar", "foo   bar"])
    got = {(h.index, h.pattern.id) for h in hits}
    assert got == {(1, "end"), (2, "dot"), (2, "negclass"), (2, "space"), (2, "end")}


def test_caseless() -> None:
    m = Matcher([pat("cs", "No space left"), pat("ci", "rate limit", caseless=True)])
    hits = m.match(["NO SPACE LEFT", "API RATE LIMIT exceeded", "No space left on device"])
    assert [(h.index, h.pattern.id) for h in hits] == [(1, "ci"), (2, "cs")]


def test_non_ascii_and_invalid_text_keep_offsets() -> None:
    m = Matcher([pat("p", "boom")])
    lines = ["ünïcödé ✖ line", "bad \udcff surrogate", "boom ✖", "x", "ééé boom"]
    assert [h.index for h in m.match(lines)] == [2, 4]


def test_bounded_hits_keep_head_and_tail() -> None:
    m = Matcher([pat("p", "error"), pat("q", r"err\s*or")], max_hits_per_pattern=10)
    lines = ["error"] * 1000
    hits = m.match(lines)
    for pid in ("p", "q"):
        idx = [h.index for h in hits if h.pattern.id == pid]
        assert len(idx) == 10
        assert idx[:5] == [0, 1, 2, 3, 4]
        assert idx[5:] == [995, 996, 997, 998, 999]


def test_empty_inputs() -> None:
    assert Matcher([]).match(["anything"]) == []
    assert Matcher([pat("p", "x")]).match([]) == []
    assert Matcher([]).categories() == set()


def test_duplicate_ids_refused() -> None:
    with pytest.raises(ValueError):
        Matcher([pat("p", "x"), pat("p", "y")])


@pytest.mark.parametrize(
    ("line", "category"),
    [
        ("FAILED tests/test_a.py::test_b - AssertionError: 1 != 2", "test_failure"),
        ("--- FAIL: TestParse (0.00s)", "test_failure"),
        ("test result: FAILED. 3 passed; 1 failed; 0 ignored", "test_failure"),
        ("Tests run: 12, Failures: 2, Errors: 0, Skipped: 0", "test_failure"),
        ("Tests:       2 failed, 40 passed, 42 total", "test_failure"),
        ("E       Failed: Timeout >60.0s", "test_timeout"),
        ("src/main.c:12:5: error: 'x' undeclared (first use in this function)", "compilation_error"),
        ("error[E0425]: cannot find value `x` in this scope", "compilation_error"),
        ("src/app.ts(3,7): error TS2322: Type 'string' is not assignable to type 'number'.", "compilation_error"),
        ("app/models.py:10:1: F401 'os' imported but unused", "lint_style"),
        ("would reformat src/app.py", "lint_style"),
        ("✖ 3 problems (3 errors, 0 warnings)", "lint_style"),
        ("[ERROR] Unknown lifecycle phase \"biuld\". You must specify a valid lifecycle phase", "build_config"),
        ("ERROR: ResolutionImpossible: for help visit https://pip.pypa.io", "dependency_resolution"),
        ("npm ERR! code ERESOLVE", "dependency_resolution"),
        ("ModuleNotFoundError: No module named 'requests'", "dependency_missing"),
        ("fatal: unable to access 'https://github.com/o/r/': Could not resolve host: github.com", "network"),
        ("API rate limit exceeded for installation ID 123.", "rate_limit"),
        ("Error response from daemon: manifest for alpine:nope not found: manifest unknown: manifest unknown", "docker_registry"),
        ("npm ERR! code EINTEGRITY", "cache_corruption"),
        ("FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory", "oom"),
        ("OSError: [Errno 28] No space left on device", "disk_full"),
        ("The runner has received a shutdown signal.", "infra_runner_lost"),
        ("The job running on runner GitHub Actions 2 has exceeded the maximum execution time of 360 minutes.", "infra_timeout"),
        ("Segmentation fault (core dumped)", "crash"),
        # configuration files that do not parse or validate
        ("Error: config compilation failed", "build_config"),
        ("# ERROR IN CONFIG FILE:", "build_config"),
        ("org.codehaus.groovy.control.MultipleCompilationErrorsException: startup failed:", "build_config"),
        ("WorkflowScript: 12: Expected a stage @ line 12, column 11.", "build_config"),
        ("ValueError: invalid pyproject.toml config: `project`.", "build_config"),
        ("  configuration error: `project` must not contain {'dependecies'} properties", "build_config"),
        ("error: failed to parse manifest at `/src/app/Cargo.toml`", "build_config"),
        ("go: errors parsing go.mod:", "build_config"),
        ("/src/app/go.mod:6: unknown directive: requre", "build_config"),
        ("/usr/bin/bash: line 3: ./scripts/build.sh: Permission denied", "build_config"),
        ("npm ERR! code EJSONPARSE", "build_config"),
        ("[ERROR] Rule 0: org.apache.maven.enforcer.rules.dependency.DependencyConvergence failed with message:", "build_config"),  # the build's own enforcer rules
        # version conflicts
        ("The following packages have unmet dependencies:", "dependency_resolution"),
        ("E: Unable to correct problems, you have held broken packages.", "dependency_resolution"),
        ("go: inconsistent vendoring in /src/app:", "dependency_resolution"),
        # transport errors in the shapes Go, Gradle and Maven print them
        ('go: x/y@v1.0.0: Get "https://proxy.golang.org/x/y/@v/v1.0.0.mod": dial tcp: lookup proxy.golang.org on 127.0.0.53:53: server misbehaving', "network"),
        ('go: x@v1: Get "https://proxy.golang.org/x/@v/v1.mod": read tcp 10.0.0.2:5->1.2.3.4:443: read: connection reset by peer', "network"),
        ("> Connection reset", "network"),
        ("[ERROR] Failed to execute goal on project p: Could not resolve dependencies for project g:p:jar:1: Could not transfer artifact g:a:pom:1 from/to central (https://repo.maven.apache.org/maven2): Connection reset", "network"),
        ("ERROR: HTTP error 429 while getting https://files.pythonhosted.org/packages/x/idna-3.7.tar.gz", "rate_limit"),
        ("blob upload unknown: blob upload unknown to registry", "docker_registry"),
        ("[ERROR] Error reading /root/.m2/repository/g/a/1/a-1.jar; zip file is empty", "cache_corruption"),
        ("Unexpected infrastructure failure: the machine executing this job was terminated (spot instance reclaimed)", "infra_runner_lost"),
        # SIGKILL of a build step: the OOM killer
        ("#9 68.850 Killed", "oom"),
        ('ERROR: failed to solve: process "/bin/sh -c make" did not complete successfully: exit code: 137', "oom"),
        ("process didn't exit successfully: `rustc --crate-name app src/lib.rs` (signal: 9, SIGKILL: kill)", "oom"),
        ("thread 'main' panicked at src/main.rs:3:5:", "crash"),
        ("src/lib.c:4:1: error: code should be clang-formatted [-Wclang-format-violations]", "lint_style"),
        # runner messages of the CI platforms
        ("There has been a timeout failure or the job got stuck. Check your timeout limits or try again", "infra_timeout"),
        ("Caused: java.io.IOException: Backing channel 'agent-7' is disconnected.", "infra_runner_lost"),
        ("Too long with no output (exceeded 10m0s): context deadline exceeded", "infra_timeout"),
        ("      Reason:       OOMKilled", "oom"),
        ("Warning  Failed  3s  kubelet  Error: ImagePullBackOff", "docker_registry"),
        # stale build state restored from a cache
        ("error[E0786]: found invalid metadata files for crate `serde`", "cache_corruption"),
        (" ERR_PNPM_TARBALL_INTEGRITY  Got unexpected checksum for \"https://registry.npmjs.org/a/-/a-1.0.0.tgz\".", "cache_corruption"),
        ("[ERROR] src/main/java/a/B.java:[65,5] (whitespace) WhitespaceAround: '{' is not preceded with whitespace. [WhitespaceAround]", "lint_style"),
    ],
)
def test_builtin_library_recognises(builtin_matcher: Matcher, line: str, category: str) -> None:
    m = builtin_matcher
    cats = {h.pattern.category for h in m.match([line])}
    assert category in cats, (line, cats)


@pytest.mark.parametrize(
    "line",
    [
        "collected 120 items",
        "===== 120 passed in 3.2s =====",
        "Tests run: 12, Failures: 0, Errors: 0, Skipped: 0",
        "Downloading https://files.pythonhosted.org/packages/x/requests-2.31.0.tar.gz",
        "Cache hits rate 0.00 %",
        "Secret source: Actions",
        "[INFO] You have 0 Checkstyle violations.",
        "You have 0 PMD violations.",
        "Connection reset",  # only Gradle's "> " cause-chain shape is specific enough
        "test tests::parses ... ok",
        "Found 0 errors.",
        '            "OOMKilled": false,',
        "Cache not found for input keys: Linux-pip-3f2a1b",
    ],
)
def test_builtin_library_quiet_on_normal_lines(builtin_matcher: Matcher, line: str) -> None:
    assert builtin_matcher.match([line]) == []


@pytest.mark.parametrize(
    ("line", "absent"),
    [
        # a Checkstyle finding in Maven's location format is not a javac error
        ("[ERROR] src/main/java/a/B.java:[198] (sizes) LineLength: Line is longer than 120 characters (found 131). [LineLength]", "javac.error"),
        # a core dump after an abort is not a segfault
        ("Aborted (core dumped)", "native.segfault"),
        # cargo's wrapper line is weak evidence on its own, not the rustc error itself
        ("error: could not compile `app` (lib) due to 1 previous error", "rustc.error"),
        # a refused or missing repository is not a transport error
        ("fatal: unable to access 'https://github.com/o/private.git/': The requested URL returned error: 403", "net.git_remote"),
        # a stale apt index (404) is not the network
        ("E: Failed to fetch http://archive.ubuntu.com/ubuntu/pool/main/c/curl/curl_7.81_amd64.deb  404  Not Found", "net.download_failed"),
        # tar's closing line follows any tar error, not only a truncated archive
        ("tar: Error is not recoverable: exiting now", "archive.truncated"),
        # EPIPE is as often a local pipe as the network
        ("Error: EPIPE: broken pipe, write", "net.errno"),
    ],
)
def test_builtin_library_does_not_misread(builtin_matcher: Matcher, line: str, absent: str) -> None:
    assert absent not in {h.pattern.id for h in builtin_matcher.match([line])}
