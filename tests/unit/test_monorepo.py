"""Monorepo packages: what a change touched (real git repositories in tmp_path) and what a log names."""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from collections.abc import Mapping
from pathlib import Path

import pytest

from healing_guard import CustomStrategy, Failure, RemediationAction
from healing_guard.monorepo import (
    MonorepoWarning,
    Workspace,
    affected_packages,
    changed_packages,
    ci_commit_range,
    failed_packages,
)

pytestmark = pytest.mark.skipif(subprocess.run(["git", "--version"], capture_output=True).returncode != 0,
                                reason="git is not installed")

_GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git_repo(root: Path, *commits: Mapping[str, str | None]) -> Path:
    """A git repository at ``root`` with one commit per mapping of path -> content (None deletes it)."""
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **_GIT_ENV}

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(root), *args], env=env, check=True, capture_output=True, timeout=60)

    git("init", "-q", "-b", "main")
    for i, files in enumerate(commits):
        for rel, text in files.items():
            p = root / rel
            if text is None:
                p.unlink()
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(text, encoding="utf-8")
        git("add", "-A")
        git("commit", "-q", "--no-gpg-sign", "-m", f"commit {i}")
    return root


def _pkg(name: str) -> str:
    return json.dumps({"name": name, "version": "1.0.0", "scripts": {"test": "jest"}})


BASE = {
    "package.json": json.dumps({"name": "mono", "private": True, "workspaces": ["packages/*"]}),
    "go.mod": "module github.com/acme/mono\n\ngo 1.22\n",
    "README.md": "# mono\n",
    "packages/api/package.json": _pkg("@acme/api"),
    "packages/api/src/index.js": "module.exports = 1\n",
    "packages/api/src/index.test.js": "test('x', () => {})\n",
    "packages/web/package.json": _pkg("@acme/web"),
    "packages/web/src/app.test.js": "test('y', () => {})\n",
    "packages/web/src/nested/util/pkg.json": "{}\n",
    "services/billing/main.go": "package main\n",
    "services/billing/tax/tax.go": "package tax\n",
    "libs/core/pyproject.toml": '[project]\nname = "core"\n',
    "libs/core/tests/test_core.py": "def test_parse(): pass\n",
    "crates/parser/Cargo.toml": '[package]\nname = "parser"\nversion = "0.1.0"\n\n[dependencies]\nname = "x"\n',
    "crates/parser/src/lib.rs": "pub fn f() {}\n",
    "tools/gen/go.mod": 'module "example.com/gen"\n',
    "tools/gen/internal/x/x.go": "package x\n",
    "docs/guide/intro.md": "hi\n",
}


@pytest.fixture(scope="module")
def mono(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return git_repo(tmp_path_factory.mktemp("mono") / "repo", BASE, {
        "packages/api/src/index.js": "module.exports = 2\n",  # a package with a manifest
        "services/billing/tax/tax.go": "package tax // changed\n",  # under a conventional root, no manifest
        "README.md": "# mono!\n",  # the root: no package
        "docs/guide/intro.md": "hello\n",  # neither
    })


# --- changed packages ------------------------------------------------------------------------------

def test_changed_packages_of_the_last_commit(mono: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a working git and range: no warning
        assert changed_packages("HEAD~1..HEAD", mono) == {"packages/api", "services/billing"}
        assert changed_packages("HEAD~1...HEAD", mono / "packages" / "web") == {"packages/api", "services/billing"}
        monkeypatch.chdir(mono / "libs")  # the current directory's repository by default
        assert changed_packages("HEAD~1..HEAD") == {"packages/api", "services/billing"}
        assert changed_packages("HEAD..HEAD") == set()  # a range with no change is known and empty


def test_a_rename_touches_both_packages_and_a_deleted_package_still_counts(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "r", BASE, {
        "packages/web/src/app.test.js": None, "packages/api/src/app.test.js": "moved\n",
        "packages/old/index.js": "x\n"}, {"packages/old/index.js": None})
    assert changed_packages("HEAD~2..HEAD~1", repo) == {"packages/api", "packages/web", "packages/old"}
    assert changed_packages("HEAD~1..HEAD", repo) == {"packages/old"}  # gone, but under packages/


@pytest.mark.parametrize("commit_range, said", [
    ("0123456789abcdef..HEAD", "git diff 0123456789abcdef..HEAD failed"),  # not in this (shallow?) clone
    ("HEAD~5..HEAD", "git diff HEAD~5..HEAD failed"),
    ("--output=/tmp/x", "is not a git revision range"),
    ("HEAD~1 HEAD", "is not a git revision range"),
    ("", "is not a git revision range"),
    (None, "is not a git revision range"),
])
def test_an_unavailable_range_gives_an_empty_set_and_one_warning(mono: Path, commit_range: str | None,
                                                                 said: str) -> None:
    with pytest.warns(MonorepoWarning) as record:
        assert changed_packages(commit_range, mono) == set()
    assert len(record) == 1 and said in str(record[0].message)
    with pytest.raises(TypeError, match="^commit_range: "):
        changed_packages(42, mono)  # type: ignore[arg-type]


def test_no_git_repository_or_no_git_gives_an_empty_set_and_one_warning(tmp_path: Path, mono: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.warns(MonorepoWarning, match="is not in a git repository") as record:
        assert changed_packages("HEAD~1..HEAD", tmp_path) == set()
    assert len(record) == 1
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable anywhere
    with pytest.warns(MonorepoWarning, match="or git is not installed") as record:
        assert changed_packages("HEAD~1..HEAD", mono) == set()
    assert len(record) == 1


def test_package_of_a_path(mono: Path) -> None:
    ws = Workspace(mono / "packages")
    assert ws.root == mono.resolve() and ws.in_git
    assert ws.package_of("packages/web/src/nested/util/pkg.json") == "packages/web"  # the nearest manifest
    assert ws.package_of("libs/core/tests/test_core.py") == "libs/core"
    assert ws.package_of("tools/gen/internal/x/x.go") == "tools/gen"  # not a conventional root: its go.mod
    assert ws.package_of("services/billing/tax/tax.go") == "services/billing"
    for rel in ("README.md", "package.json", "docs/guide/intro.md", "packages/README.md", "../x/y/z", "/etc/x/y"):
        assert ws.package_of(rel) is None, rel
    # the root's package.json names the workspace ("mono"), not a package
    assert ws.names == {"@acme/api": "packages/api", "@acme/web": "packages/web", "parser": "crates/parser"}
    assert ws.go_modules == [("github.com/acme/mono", ""), ("example.com/gen", "tools/gen")]


# --- failed packages ---------------------------------------------------------------------------------

LOGS = {
    "jest from the root": ("PASS packages/web/src/app.test.js\n"
                           "FAIL packages/api/src/index.test.js (5.12 s)\n"
                           "  ● index › adds\n", {"packages/api"}),
    "an npm workspace's script (npm 8)": (
        "> @acme/web@1.0.0 test\n> jest\n\n"
        "FAIL src/app.test.js\n"  # relative to the workspace
        "npm ERR! Lifecycle script `test` failed with error:\n"
        "npm ERR! Error: command failed\n"
        "npm ERR!   in workspace: @acme/web@1.0.0\n"
        "npm ERR!   at location: /home/runner/work/mono/mono/packages/web\n", {"packages/web"}),
    "an npm workspace's footer (npm 10) only": (
        "> @acme/api@1.0.0 test\n> jest --ci\n\n  ● index › adds\n\n"
        "npm error Lifecycle script `test` failed with error:\nnpm error code 1\n"
        "npm error workspace @acme/api@1.0.0\n", {"packages/api"}),
    "turbo's prefixed output": ("@acme/web:test: FAIL src/app.test.js\n@acme/api:test: PASS src/index.test.js\n",
                                {"packages/web"}),
    "absolute paths of the CI machine": (
        "FAIL /home/runner/work/mono/mono/packages/web/src/app.test.js\n", {"packages/web"}),
    "pytest": ("libs/core/tests/test_core.py F.\n"
               "FAILED libs/core/tests/test_core.py::test_parse - AssertionError: assert 1 == 2\n"
               "=== 1 failed, 1 passed in 0.2s ===\n", {"libs/core"}),
    "go test": ("--- FAIL: TestTax (0.00s)\n    tax_test.go:12: got 3, want 4\n"
                "FAIL\tgithub.com/acme/mono/services/billing/tax\t0.012s\n"
                "ok  \tgithub.com/acme/mono/services/other\t0.010s\n"
                "FAIL\texample.com/gen/internal/x [build failed]\nFAIL\n", {"services/billing", "tools/gen"}),
    "cargo": ("error[E0308]: mismatched types\n  --> crates/parser/src/lib.rs:4:5\n   |\n"
              "error: could not compile `parser` (lib) due to 1 previous error\n", {"crates/parser"}),
    "gradle": ("> Task :libs:core:compileJava\n> Task :libs:core:test FAILED\n", {"libs/core"}),
    "a compiler's path:line: error": ("packages/api/src/index.js:3:7: error: unexpected token\n", {"packages/api"}),
    "nothing failed, or nothing of this checkout": (
        "PASS packages/api/src/index.test.js\n"
        "FAIL packages/gone/src/x.test.js\n"  # not in the working tree
        "error: README.md:1: trailing whitespace\n"  # the root belongs to no package
        "npm ERR! network request to https://registry.npmjs.org/packages/api failed\n"  # a URL, not a path
        "see packages/web/src/app.test.js for details\n", set()),  # a path on a line that reports no failure
}


@pytest.mark.parametrize("kind", list(LOGS))
def test_failed_packages_from_log_lines(mono: Path, kind: str) -> None:
    text, expected = LOGS[kind]
    assert failed_packages(text, mono) == expected
    assert failed_packages(text.splitlines(), mono / "packages" / "api") == expected  # lines, and any cwd inside


def test_failed_packages_outside_git_read_the_directory(tmp_path: Path) -> None:
    for rel, text in BASE.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    (tmp_path / "node_modules" / "x").mkdir(parents=True)
    (tmp_path / "node_modules" / "x" / "package.json").write_text(_pkg("@acme/web"))  # never a workspace
    log = LOGS["an npm workspace's footer (npm 10) only"][0] + LOGS["turbo's prefixed output"][0]
    assert failed_packages(log, tmp_path) == {"packages/api", "packages/web"}


def test_affected_packages() -> None:
    assert affected_packages({"packages/web", "packages/api"}, {"packages/api", "libs/core"}) == ["packages/api"]
    assert affected_packages({"packages/web", "packages/api"}, set()) == ["packages/api", "packages/web"]
    assert affected_packages(set(), {"packages/api"}) == []


# --- the commit range of a CI job --------------------------------------------------------------------

A, B = "a" * 40, "b" * 40


def test_ci_commit_range(tmp_path: Path) -> None:
    def event(data: object) -> dict[str, str]:
        p = tmp_path / "event.json"
        p.write_text(json.dumps(data))
        return {"GITHUB_EVENT_PATH": str(p)}

    assert ci_commit_range(event({"before": A, "after": B})) == f"{A}..{B}"
    assert ci_commit_range(event({"pull_request": {"base": {"sha": A}, "head": {"sha": B}}})) == f"{A}...{B}"
    assert ci_commit_range(event({"before": "0" * 40, "after": B})) is None  # a branch's first push
    assert ci_commit_range(event({"before": "$(reboot)", "after": B})) is None
    assert ci_commit_range(event(["not", "an", "event"])) is None
    assert ci_commit_range({"GITHUB_EVENT_PATH": str(tmp_path / "missing.json")}) is None
    assert ci_commit_range({"CI_COMMIT_BEFORE_SHA": A, "CI_COMMIT_SHA": B}) == f"{A}..{B}"
    assert ci_commit_range({"CI_COMMIT_BEFORE_SHA": "0" * 40, "CI_COMMIT_SHA": B}) is None
    assert ci_commit_range({"CI_MERGE_REQUEST_DIFF_BASE_SHA": A, "CI_COMMIT_BEFORE_SHA": "0" * 40,
                            "CI_COMMIT_SHA": B}) == f"{A}...{B}"
    assert ci_commit_range({}) is None


# --- through a custom strategy -----------------------------------------------------------------------

class Selective(CustomStrategy):
    def detect(self, failure: Failure) -> bool:
        return bool(self.extract_failed_packages(failure.logs) & self.get_changed_packages(failure.commit_range))

    def remediate(self, failure: Failure) -> RemediationAction:
        return RemediationAction(type="selective-rebuild", params={"packages": self.get_affected_packages(failure)})


def test_the_helpers_of_a_custom_strategy_read_its_workdir(mono: Path) -> None:
    from healing_guard import PipelineGuard

    s = Selective()
    s.workdir = mono
    assert s.get_changed_packages("HEAD~1..HEAD") == {"packages/api", "services/billing"}
    assert s.extract_failed_packages(LOGS["jest from the root"][0]) == {"packages/api"}
    guard = PipelineGuard(ci_provider="github", repo="acme/mono", env={})
    guard.register_strategy(s)
    both = "FAIL packages/api/src/index.test.js\nFAIL packages/web/src/app.test.js\n"
    r = guard.heal(guard.analyze_failure(job_id="1", logs=both))
    assert (r.strategy, r.action, dict(r.command.parameters)) == (
        "Selective", "selective-rebuild", {"packages": ["packages/api"]})  # the failed one the change touched
    r = guard.heal(guard.analyze_failure(job_id="2", logs="FAIL packages/web/src/app.test.js\n"))
    assert r.strategy != "Selective"  # failed where nothing changed: not this strategy's case
