"""Packages of a monorepo: which ones a change touched, which ones a failed job's log names.

The helpers behind ``CustomStrategy.get_changed_packages`` / ``extract_failed_packages`` /
``get_affected_packages``. A *package* is a directory below the repository root (posix, relative to it,
e.g. ``packages/api``): the nearest one holding a build manifest (:data:`MANIFESTS`), or else, under a
conventional root (:data:`ROOTS`), the first two path components (``services/billing``). The root itself
is not a package: in a monorepo its manifest is the workspace's, and a file there belongs to no package.

Both sides read the working tree of the git repository around a directory (default: the current one),
because a log's paths and a change's paths only mean something against the checkout the job ran in.
Nothing here raises on a missing git or an unknown commit range: a custom strategy that cannot tell which
packages changed should decide on what it has (an empty set), and a warning says why.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import warnings
from collections.abc import Iterable, Iterator, Mapping
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import TypeGuard

__all__ = [
    "DEFAULT_COMMIT_RANGE",
    "MANIFESTS",
    "ROOTS",
    "MonorepoWarning",
    "Workspace",
    "affected_packages",
    "changed_packages",
    "ci_commit_range",
    "failed_packages",
    "is_commit_range",
]

#: files that make a directory a package (npm/yarn/pnpm, Python, Go, Rust, Maven, Gradle)
MANIFESTS = ("package.json", "pyproject.toml", "setup.py", "go.mod", "Cargo.toml", "pom.xml", "build.gradle",
             "build.gradle.kts")
#: directories whose children are packages by convention, manifest or not
ROOTS = frozenset({"packages", "libs", "apps", "services", "modules", "crates"})
#: the change of a job when neither the caller nor the CI environment says: the last commit
DEFAULT_COMMIT_RANGE = "HEAD~1..HEAD"

_GIT_TIMEOUT = 30.0
_LINE_MAX = 4096  # a log line longer than this is cut: paths sit at the start of failing lines
_SKIP_DIRS = frozenset({".git", "node_modules", "vendor", "target", "dist", "build", ".venv", "venv",
                        "__pycache__", ".tox", ".gradle"})
_WALK_LIMIT = 200_000  # directory entries looked at when the tree is not a git repository
_SHA = re.compile(r"[0-9a-f]{7,64}")
_RANGE = re.compile(r"[^\s-][^\s]*")  # no whitespace, no leading '-' (git would read an option)


class MonorepoWarning(UserWarning):
    """Git, the repository or the commit range is not available: the changed packages are unknown."""


# --- the commit range of a CI job --------------------------------------------------------------------

def ci_commit_range(env: Mapping[str, str]) -> str | None:
    """The change a CI job runs for, from the platform's environment, or None when it does not say.

    GitHub Actions: the event file (``GITHUB_EVENT_PATH``) of a push (``before..after``) or a pull request
    (``base...head``: the changes on the branch since it left its base). GitLab CI: a merge request's
    ``CI_MERGE_REQUEST_DIFF_BASE_SHA...CI_COMMIT_SHA``, else ``CI_COMMIT_BEFORE_SHA..CI_COMMIT_SHA``. A
    first push of a branch has no "before" (all zeros): None.
    """
    path = env.get("GITHUB_EVENT_PATH")
    if path:
        try:
            event = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            event = None
        if isinstance(event, dict):
            pr = event.get("pull_request")
            if isinstance(pr, dict):
                base, head = _sha((pr.get("base") or {}).get("sha")), _sha((pr.get("head") or {}).get("sha"))
                if base and head:
                    return f"{base}...{head}"
            before, after = _sha(event.get("before")), _sha(event.get("after"))
            if before and after:
                return f"{before}..{after}"
    head = _sha(env.get("CI_COMMIT_SHA"))
    if head:
        base = _sha(env.get("CI_MERGE_REQUEST_DIFF_BASE_SHA"))
        if base:
            return f"{base}...{head}"
        before = _sha(env.get("CI_COMMIT_BEFORE_SHA"))
        if before:
            return f"{before}..{head}"
    return None


def _sha(v: object) -> str | None:
    """A commit id, or None for anything else (including the all-zero id of "no commit")."""
    if not isinstance(v, str) or not _SHA.fullmatch(v) or not v.strip("0"):
        return None
    return v


def is_commit_range(value: object) -> TypeGuard[str]:
    """Whether ``value`` can be handed to ``git diff`` as a revision range: no whitespace, and no leading
    ``-`` that git would read as an option."""
    return isinstance(value, str) and _RANGE.fullmatch(value) is not None


# --- the working tree ----------------------------------------------------------------------------------

def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, timeout=_GIT_TIMEOUT, check=False)


def _toplevel(cwd: Path) -> Path | None:
    try:
        res = _git(cwd, "rev-parse", "--show-toplevel")
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    return Path(os.fsdecode(res.stdout.rstrip(b"\n")))


class Workspace:
    """The repository around ``cwd`` (its git top level; ``cwd`` itself outside git): where its packages
    are, and the names their manifests give them."""

    def __init__(self, cwd: str | os.PathLike[str] | None = None) -> None:
        here = Path(cwd if cwd is not None else os.getcwd()).resolve()
        top = _toplevel(here)
        self.in_git = top is not None
        self.root: Path = top.resolve() if top is not None else here
        self._dirs: dict[str, str | None] = {}

    def package_of(self, path: str) -> str | None:
        """The package a repository-relative path belongs to (the file itself need not exist)."""
        parts = PurePosixPath(path).parts
        if not parts or parts[0] in ("/", "..") or ".." in parts:
            return None
        for n in range(len(parts) - 1, 0, -1):
            found = self._manifest_dir("/".join(parts[:n]))
            if found is not None:
                return found
        if len(parts) >= 3 and parts[0] in ROOTS:
            return f"{parts[0]}/{parts[1]}"
        return None

    def _manifest_dir(self, rel: str) -> str | None:
        if rel not in self._dirs:
            d = self.root / rel
            self._dirs[rel] = rel if any((d / m).is_file() for m in MANIFESTS) else None
        return self._dirs[rel]

    def exists(self, rel: str) -> bool:
        return bool(rel) and not rel.startswith(("/", "../")) and (self.root / rel).exists()

    # --- manifests and their names ---------------------------------------------------------------
    def manifests(self) -> Iterator[str]:
        """Repository-relative paths of the manifests, the root's included (tracked ones in a git
        repository; outside one, a bounded walk that skips dependency and build directories)."""
        if self.in_git:
            try:
                res = _git(self.root, "ls-files", "-z", "--", *(f"*{m}" for m in MANIFESTS))
            except (OSError, subprocess.SubprocessError):
                res = None
            if res is not None and res.returncode == 0:
                for raw in res.stdout.split(b"\0"):
                    rel = os.fsdecode(raw)
                    if rel.rpartition("/")[2] in MANIFESTS:
                        yield rel
                return
        seen = 0
        for top, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
            seen += len(dirs) + len(files)
            rel_top = Path(top).relative_to(self.root).as_posix()
            for f in files:
                if f in MANIFESTS:
                    yield f if rel_top == "." else f"{rel_top}/{f}"
            if seen > _WALK_LIMIT:
                return

    @cached_property
    def names(self) -> dict[str, str]:
        """Package name -> package directory, from ``package.json`` ``name`` and ``Cargo.toml``
        ``[package] name`` (what npm workspaces and cargo print instead of paths). The root's manifest
        names the workspace, not a package: left out."""
        out: dict[str, str] = {}
        for rel in self.manifests():
            d, _, base = rel.rpartition("/")
            if not d:
                continue
            if base == "package.json":
                name = _json_name(self.root / rel)
            elif base == "Cargo.toml":
                name = _cargo_name(self.root / rel)
            else:
                continue
            if name:
                out.setdefault(name, d)
        return out

    @cached_property
    def go_modules(self) -> list[tuple[str, str]]:
        """(module path, directory) of every ``go.mod`` (the root's too: a Go monorepo is often one
        module), longest module path first."""
        out = []
        for rel in self.manifests():
            d, _, base = rel.rpartition("/")
            if base == "go.mod":
                mod = _go_module(self.root / rel)
                if mod:
                    out.append((mod, d))
        return sorted(out, key=lambda m: -len(m[0]))


def _read(path: Path, limit: int = 1 << 20) -> str:
    try:
        with path.open("rb") as fp:
            return fp.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def _json_name(path: Path) -> str | None:
    try:
        data = json.loads(_read(path))
    except ValueError:
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else None


_CARGO_NAME = re.compile(r'^\[package\][^\[]*?^name\s*=\s*"([^"]+)"', re.M | re.S)
_GO_MODULE = re.compile(r'^module\s+"?([^\s"]+)"?', re.M)


def _cargo_name(path: Path) -> str | None:
    m = _CARGO_NAME.search(_read(path))
    return m.group(1) if m else None


def _go_module(path: Path) -> str | None:
    m = _GO_MODULE.search(_read(path))
    return m.group(1) if m else None


# --- what a change touched -----------------------------------------------------------------------------

def changed_packages(commit_range: str | None, cwd: str | os.PathLike[str] | None = None) -> set[str]:
    """The packages holding a file that ``git diff --name-only <commit_range>`` lists (both sides of a
    rename). Empty, with one :class:`MonorepoWarning`, when git, the repository or the range is not
    available (a shallow clone often lacks ``HEAD~1``: fetch more history)."""
    if commit_range is not None and not isinstance(commit_range, str):
        raise TypeError(f"commit_range: expected a git revision range such as 'HEAD~1..HEAD', "
                        f"got {type(commit_range).__name__}")
    if not is_commit_range(commit_range):
        return _unknown(f"commit range {commit_range!r} is not a git revision range (e.g. 'HEAD~1..HEAD')")
    ws = Workspace(cwd)
    if not ws.in_git:
        return _unknown(f"{ws.root} is not in a git repository (or git is not installed)")
    try:
        res = _git(ws.root, "diff", "--name-only", "--no-renames", "-z", commit_range, "--")
    except (OSError, subprocess.SubprocessError) as exc:
        return _unknown(f"git diff {commit_range} did not run: {exc}")
    if res.returncode != 0:
        why = res.stderr.decode("utf-8", "replace").strip().splitlines()
        return _unknown(f"git diff {commit_range} failed in {ws.root}: {why[0] if why else res.returncode} "
                        "(a shallow clone lacks older commits: fetch with more depth)")
    out = set()
    for raw in res.stdout.split(b"\0"):
        if raw:
            pkg = ws.package_of(os.fsdecode(raw))
            if pkg is not None:
                out.add(pkg)
    return out


def _unknown(why: str) -> set[str]:
    warnings.warn(f"changed packages unknown: {why}", MonorepoWarning, stacklevel=3)
    return set()


# --- what a log says failed ----------------------------------------------------------------------------

# a line that reports a failure: test runners (FAIL, FAILED, ERROR, ✕), compilers (error:, error[E0308]),
# build tools ([ERROR], > Task :x:test FAILED)
_FAILING = re.compile(r"(?:^|[\s\[(|:>])(?:FAIL(?:ED|URE)?|ERROR|[Ee]rror(?:\[\w+\])?|✕|✖|×)(?=$|[\s:\]|)!,.])")
_PASSING = re.compile(r"^\s*(?:PASS|ok)\b")
_PATH = re.compile(r"(?<![\w:/.@~+-])(?:[A-Za-z]:)?[\w@.+~-]*(?:[/\\][\w@.+~-]+)+")
_GO_FAIL = re.compile(r"^\s*FAIL\s+(\S+?)(?:\s|$)")  # go test: "FAIL\t<import path>\t0.01s" / "[build failed]"
_RUST_LOCATION = re.compile(r"^\s*-->\s*(\S+)")  # the line after rustc's "error[...]: ..."
_LOCATION_SUFFIX = re.compile(r"(?::\d+)+$")  # path:12:5 -> path
_GRADLE_TASK = re.compile(r"Task\s+((?::[\w.-]+)+):[\w.-]+\s+FAILED")
# npm/yarn/pnpm: "> @acme/api@1.2.0 test" before a workspace's script, and npm's error footer
_NPM_HEADER = re.compile(r"^\s*> ((?:@[\w.-]+/)?[\w.-]+)@\S+ [\w:.-]+")
# "npm ERR! workspace a@1.0.0" (npm 9+), "npm ERR!   in workspace: a@1.0.0" / "at location: /..." (npm 7-8)
_NPM_FOOTER = re.compile(r"^npm (?:ERR!|error)\s+(?:in |at )?(workspace|location|path):?\s+(\S+)")
_NPM_SCRIPT_FAILED = re.compile(r"^npm (?:ERR!|error) .*(?:[Ll]ifecycle script|command failed)")
_CARGO = re.compile(r"could not compile `([\w-]+)`|to rerun pass `-p ([\w-]+)`")
# turbo / nx / lerna prefix a workspace's output with its name: "@acme/api:test: FAIL src/x.test.ts"
_PREFIX = re.compile(r"^((?:@[\w.-]+/)?[\w.-]+)(?::[\w:.-]+)?: ")


def failed_packages(logs: str | Iterable[str], cwd: str | os.PathLike[str] | None = None) -> set[str]:
    """The packages a failed job's log names in its failing lines.

    Read from each failing line (FAIL / FAILED / ERROR / error: ... and compilers' locations): the paths
    of test files and sources (relative to the repository, to the workspace whose script printed them,
    or absolute), go's ``FAIL <import path>`` (through the ``go.mod`` module paths), Gradle's
    ``Task :libs:core:test FAILED``, cargo's ``could not compile `name```, and npm's workspace headers
    (``> @scope/name@1.2.0 test``) and error footers (``npm ERR! workspace @scope/name@1.2.0``), through
    the manifests' names. Only packages of the working tree count: a path that does not exist there
    names nothing.
    """
    lines = logs.splitlines() if isinstance(logs, str) else logs
    ws = Workspace(cwd)
    found: set[str] = set()
    section: str | None = None  # the workspace whose script prints the lines that follow
    after_error = 0  # rustc prints the location on a line of its own after the error

    def add_path(token: str, base: str | None) -> None:
        rel = _resolve(ws, token.replace("\\", "/"), base)
        if rel is not None:
            # a file, or a directory (a package's own: npm's location, a Gradle project)
            pkg = ws.package_of(f"{rel}/_" if (ws.root / rel).is_dir() else rel)
            if pkg is not None:
                found.add(pkg)

    def add_name(name: str) -> None:
        name = _npm_name(name)
        d = ws.names.get(name)
        if d is not None:
            found.add(d)

    for raw in lines:
        line = raw[:_LINE_MAX]
        header = _NPM_HEADER.match(line)
        if header:
            section = ws.names.get(header.group(1))
            continue
        base = section
        prefix = _PREFIX.match(line)
        if prefix and prefix.group(1) in ws.names:
            base = ws.names[prefix.group(1)]
            line = line[prefix.end():]
        footer = _NPM_FOOTER.match(line)
        if footer:
            kind, value = footer.groups()
            if kind == "workspace":
                add_name(value)
            else:
                add_path(value, None)
            continue
        if _NPM_SCRIPT_FAILED.match(line):
            if section is not None:
                found.add(section)
            continue
        rust = _RUST_LOCATION.match(line)
        if rust and after_error:
            add_path(_LOCATION_SUFFIX.sub("", rust.group(1)), base)
            after_error = 0
            continue
        after_error = max(0, after_error - 1)
        if _PASSING.match(line) or not _FAILING.search(line):
            continue
        after_error = 3
        for m in _CARGO.finditer(line):
            add_name(m.group(1) or m.group(2))
        task = _GRADLE_TASK.search(line)
        if task:
            add_path(task.group(1).strip(":").replace(":", "/"), None)
        go = _GO_FAIL.match(line)
        if go and "/" in go.group(1):
            rel = _go_dir(ws, go.group(1))
            if rel is not None:
                add_path(rel, None)
        for m in _PATH.finditer(line):
            add_path(m.group(0), base)
    return found


def _npm_name(value: str) -> str:
    """``@scope/name@1.2.0`` -> ``@scope/name``."""
    at = value.rfind("@")
    return value[:at] if at > 0 else value


def _resolve(ws: Workspace, token: str, base: str | None) -> str | None:
    """A log's path as a path relative to the repository root that exists in the working tree."""
    token = token.rstrip("/.")
    if not token:
        return None
    parts = [p for p in token.split("/") if p not in ("", ".")]
    if ".." in parts or not parts:
        return None
    if token.startswith("/") or re.match(r"[A-Za-z]:", token):
        # an absolute path of the CI machine (/home/runner/work/repo/repo/packages/api/...): the longest
        # tail of it that exists here
        for i in range(1, len(parts)):
            rel = "/".join(parts[i:])
            if ws.exists(rel) and "/" in rel:
                return rel
        return None
    rel = "/".join(parts)
    if base is not None and ws.exists(f"{base}/{rel}"):
        return f"{base}/{rel}"
    return rel if ws.exists(rel) else None


def _go_dir(ws: Workspace, import_path: str) -> str | None:
    for mod, d in ws.go_modules:
        if import_path == mod or import_path.startswith(mod + "/"):
            rest = import_path[len(mod):].strip("/")
            rel = "/".join(p for p in (d, rest) if p)
            return rel if ws.exists(rel) else None
    return None


# --- both --------------------------------------------------------------------------------------------

def affected_packages(failed: Iterable[str], changed: Iterable[str]) -> list[str]:
    """The failed packages that the change touched; when it touched none of them (or the change is
    unknown), every failed package. Sorted."""
    failed_set, changed_set = set(failed), set(changed)
    both = failed_set & changed_set
    return sorted(both or failed_set)
