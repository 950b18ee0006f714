"""Directives: what the next attempt of a job changes, and how each tool is told.

When the guard re-runs a job *with a fix* (more memory, only the failed tests, one at a time, a fresh cache,
no layer cache, a cleanup), a platform's plain re-run API cannot carry the fix: only Jenkins takes build
parameters. So the fix travels as a **directive** for the job's next attempt, which the job's first step
obtains and applies (``guard directive``, the Action's ``prepare`` mode, the GitLab and CircleCI templates):

- :func:`from_command` turns a re-run command into a :class:`Directive` (``None`` for a plain retry);
- :func:`environment` gives the variables that make the tools people use apply it by themselves (pytest via
  this package's plugin (``pytest_directive``), ``NODE_OPTIONS``, ``MAVEN_OPTS``/``JAVA_TOOL_OPTIONS``, ``GOFLAGS``,
  ``RUST_TEST_THREADS``, the cache-key suffix, ...);
- :func:`arguments` gives the command-line arguments for the tools that read no variable for it (jest,
  mocha, Maven Surefire, Gradle, ``go test``, ``cargo test``, ``docker build``);
- :func:`cleanups` gives the cleanup commands to run, from a fixed vocabulary only: a directive is data,
  never a shell script, so a forged one cannot run anything.

Test ids are the guard's (``platforms/junit.py``): pytest node ids (``tests/test_a.py::test_x[1]``), Java
``pkg.Class#method``, jest ``describe › name``; Go and Rust tests reported through JUnit arrive in the Java
form (``package#TestName``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["CLEANUPS", "Directive", "JENKINS_PARAMETERS", "TOOLS", "arguments", "cache_suffix", "cleanups", "environment", "from_command", "from_dict"]

#: the tools :func:`arguments` knows
TOOLS = ("pytest", "jest", "mocha", "maven", "gradle", "go", "cargo", "docker")

#: cleanups a directive may ask for, by the command the strategy names; anything else is ignored
CLEANUPS: dict[str, list[str]] = {
    "docker system prune -af": ["docker", "system", "prune", "-af"],
    "rm -rf ~/.cache": ["rm", "-rf", os.path.expanduser("~/.cache")],
    "git clean -ffdx": ["git", "clean", "-ffdx"],
}

#: command parameter -> the Jenkins build parameter that carries it: the executor starts Jenkins re-runs
#: with them (executor/core.py ``jenkins_parameters``), and a Jenkins job's first step reads them back
#: (directive_client.py). Lists go space-separated (``tests``) or comma-separated (``cleanup``).
JENKINS_PARAMETERS = {
    "memory_factor": "GUARD_MEMORY_FACTOR", "memory_add_mb": "GUARD_MEMORY_ADD_MB", "runner_size": "GUARD_RUNNER_SIZE",
    "timeout_factor": "GUARD_TIMEOUT_FACTOR", "tests": "GUARD_TESTS",
    "failed_tests_only": "GUARD_FAILED_TESTS_ONLY", "isolation": "GUARD_ISOLATION", "parallelism": "GUARD_PARALLELISM",
    "no_cache": "GUARD_NO_CACHE", "clear_cache": "GUARD_CLEAR_CACHE", "cleanup": "GUARD_CLEANUP",
    "clear_dependency_cache": "GUARD_CLEAR_DEPENDENCY_CACHE", "frozen_lockfile": "GUARD_FROZEN_LOCKFILE"}

#: a directive asks for at most this many tests (a bigger selection is a full re-run)
MAX_TESTS = 500
#: memory factors are capped (a directive is data from the network)
MAX_MEMORY_FACTOR = 8.0
MAX_MEMORY_ADD_MB = 65536
MAX_TIMEOUT_FACTOR = 10.0


@dataclasses.dataclass
class Directive:
    """What the next attempt of one job changes. Only set fields change anything."""

    command_id: str
    action: str
    provider: str
    owner: str
    repo: str
    job_id: str
    attempt: int  # the attempt the command reacted to: the directive is for ``attempt + 1``
    run_id: str | None = None
    tests: list[str] = dataclasses.field(default_factory=list)  # run only these
    sequential: bool = False  # one at a time (no xdist, jest --maxWorkers=1, -p 1, --test-threads=1)
    isolated: bool = False  # each test (class) in a fresh process where the tool can
    memory_factor: float | None = None  # times the default heap / memory limit
    memory_add_mb: int | None = None  # MB more than the default heap ("+2GB"); replaces memory_factor
    timeout_factor: float | None = None  # times the test timeout
    runner_size: str | None = None  # "next" or a runner class name (where the platform allows choosing)
    cache_suffix: str | None = None  # appended to cache keys: a fresh cache
    no_cache: bool = False  # docker build --no-cache
    clear_dependency_cache: bool = False
    frozen_lockfile: bool = False
    cleanup: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def grows_memory(self) -> bool:
        return bool(self.memory_factor or self.memory_add_mb)

    @property
    def changes(self) -> list[str]:
        """What this directive changes, in words (for logs and the API)."""
        out = []
        if self.tests:
            out.append(f"only {len(self.tests)} failed test(s)")
        if self.sequential:
            out.append("tests one at a time")
        if self.isolated:
            out.append("each test in a fresh process")
        if self.memory_add_mb:
            out.append(f"+{self.memory_add_mb} MB memory")
        elif self.memory_factor:
            out.append(f"{self.memory_factor:g}x memory")
        if self.timeout_factor:
            out.append(f"{self.timeout_factor:g}x test timeout")
        if self.runner_size:
            out.append(f"runner {self.runner_size}")
        if self.cache_suffix:
            out.append("a fresh cache")
        if self.no_cache:
            out.append("no layer cache")
        if self.clear_dependency_cache:
            out.append("a clean dependency cache")
        if self.frozen_lockfile:
            out.append("the frozen lockfile")
        if self.cleanup:
            out.append("cleanup first")
        return out


def _factor(v: Any, cap: float) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 1.0:
        return None
    return float(min(v, cap))


def _tests(v: Any) -> list[str]:
    if not isinstance(v, list):
        return []
    return [t for t in v if isinstance(t, str) and 0 < len(t) <= 1000 and "\n" not in t and "\0" not in t][:MAX_TESTS]


def cache_suffix(command_id: str) -> str:
    """A fresh cache key part for one command: the same for every reader of its directive (and the
    executor's CircleCI project variable), a new one for each command."""
    return "guard-" + hashlib.sha256(command_id.encode()).hexdigest()[:12]


def from_command(cmd: Any) -> Directive | None:
    """The directive a re-run command implies (``None``: a plain retry changes nothing, or not a re-run).

    ``cmd``: a :class:`~healing_guard.schemas.Command` or its dict."""
    from .remediate.actions import RERUN_ACTIONS  # here: a job's first step imports this module alone

    c = cmd if isinstance(cmd, Mapping) else cmd.to_dict()
    if c.get("action") not in RERUN_ACTIONS:
        return None
    p = c.get("parameters") or {}
    if not isinstance(p, Mapping):
        p = {}
    d = Directive(command_id=str(c["command_id"]), action=str(c["action"]), provider=str(c["provider"]),
                  owner=str(c["owner"]), repo=str(c["repo"]), job_id=str(c["job_id"]), attempt=int(c["attempt"]),
                  run_id=None if c.get("run_id") is None else str(c["run_id"]))
    if p.get("failed_tests_only") or p.get("tests"):
        d.tests = _tests(p.get("tests"))
    d.sequential = p.get("parallelism") == 1 or c["action"] == "rerun_sequential"
    d.isolated = p.get("isolation") == "fresh_process"
    d.memory_factor = _factor(p.get("memory_factor"), MAX_MEMORY_FACTOR)
    if c["action"] in ("rerun_more_memory", "rerun_larger_runner"):
        d.memory_add_mb = _add_mb(p.get("memory_add_mb"))
    d.timeout_factor = _factor(p.get("timeout_factor"), MAX_TIMEOUT_FACTOR)
    size = p.get("runner_size")
    d.runner_size = size if isinstance(size, str) and re.fullmatch(r"[\w.-]{1,64}", size) else None
    d.no_cache = p.get("no_cache") is True
    d.clear_dependency_cache = p.get("clear_dependency_cache") is True
    d.frozen_lockfile = p.get("frozen_lockfile") is True
    if p.get("clear_cache") is True or d.clear_dependency_cache:
        d.cache_suffix = cache_suffix(d.command_id)
    cleanup = p.get("cleanup")
    d.cleanup = [x for x in cleanup if isinstance(x, str) and x in CLEANUPS] if isinstance(cleanup, list) else []
    return d if d.changes else None


def from_dict(d: Mapping[str, Any]) -> Directive:
    """A directive as :meth:`Directive.to_dict` wrote it (from the API or a file); unknown keys are ignored,
    and every value is checked again (a directive is data from the network)."""
    names = {f.name for f in dataclasses.fields(Directive)}
    raw = {k: v for k, v in d.items() if k in names}
    for k in ("command_id", "action", "provider", "owner", "repo", "job_id", "attempt"):
        if k not in raw:
            raise ValueError(f"directive: missing field {k!r}")
    for k in ("command_id", "action", "provider", "owner", "repo", "job_id"):
        # these reach variables (GUARD_DIRECTIVE, GUARD_ACTION) and $GITHUB_ENV lines: plain words only
        if not isinstance(raw[k], str) or not re.fullmatch(r"[\w.:@+/-]{1,300}", raw[k]):
            raise ValueError(f"directive: {k} must be a plain id, got {str(raw[k])[:80]!r}")
    try:
        raw["attempt"] = int(raw["attempt"])
    except (TypeError, ValueError):
        raise ValueError(f"directive: attempt must be a number, got {str(raw['attempt'])[:80]!r}") from None
    out = Directive(**raw)
    out.tests = _tests(out.tests)
    out.memory_factor = _factor(out.memory_factor, MAX_MEMORY_FACTOR)
    out.memory_add_mb = _add_mb(out.memory_add_mb)
    out.timeout_factor = _factor(out.timeout_factor, MAX_TIMEOUT_FACTOR)
    out.cleanup = [x for x in out.cleanup if isinstance(x, str) and x in CLEANUPS] if isinstance(out.cleanup, list) else []
    for k in ("sequential", "isolated", "no_cache", "clear_dependency_cache", "frozen_lockfile"):
        setattr(out, k, getattr(out, k) is True)
    if out.cache_suffix is not None and not re.fullmatch(r"[\w.-]{1,64}", str(out.cache_suffix)):
        out.cache_suffix = None
    if out.runner_size is not None and not re.fullmatch(r"[\w.-]{1,64}", str(out.runner_size)):
        out.runner_size = None
    return out


# --- memory --------------------------------------------------------------------------------------

def _total_memory_mb() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 20))
    except (ValueError, OSError, AttributeError):
        return 8192


#: Node's default old-space limit is about a quarter of memory, at most 4 GiB (V8 on 64-bit since Node 12;
#: 2 GiB on older versions)
def _add_mb(v: Any) -> int | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1 <= v <= MAX_MEMORY_ADD_MB:
        return None
    return int(v)


def _grown(default: float, d: Directive, total_mb: int) -> int:
    """A heap limit of ``default`` MB grown as ``d`` asks (an absolute increase replaces the factor)."""
    grown = default + d.memory_add_mb if d.memory_add_mb else default * (d.memory_factor or 1.0)
    return int(min(grown, total_mb * 0.9))


def _node_heap_mb(d: Directive, total_mb: int) -> int:
    return _grown(min(total_mb // 4, 4096), d, total_mb)


def _jvm_heap_mb(d: Directive, total_mb: int) -> int:
    """The JVM's default maximum heap is a quarter of memory (MaxRAMPercentage=25)."""
    return _grown(total_mb * 0.25, d, total_mb)


# --- test selection per tool ---------------------------------------------------------------------

def _leaf(test_id: str) -> str:
    """A test's own name: the part after ``#``, ``::`` or the last dot."""
    for sep in ("#", "::"):
        if sep in test_id:
            return test_id.rsplit(sep, 1)[1]
    return test_id.rsplit(".", 1)[-1]


def _alternation(names: Iterable[str]) -> str:
    return "^(" + "|".join(re.escape(n) for n in dict.fromkeys(names)) + ")$"


def _jest_name(test_id: str) -> str:
    return test_id.replace(" › ", " ")


def _cargo_filter(test_id: str) -> str:
    cls, sep, name = test_id.rpartition("#")
    if not sep:
        return test_id
    inner = re.split(r"::|\.", cls)[-1] if cls else ""
    return f"{inner}::{name}" if inner else name


def _surefire(tests: list[str]) -> str:
    """``-Dtest=`` value: ``pkg.Class#a+b,pkg.Other`` (Surefire's syntax: methods of one class joined by +)."""
    by_class: dict[str, list[str]] = {}
    for t in tests:
        cls, _, method = t.partition("#")
        by_class.setdefault(cls, [])
        if method:
            by_class[cls].append(method)
    return ",".join(cls + ("#" + "+".join(ms) if ms else "") for cls, ms in by_class.items())


_JAVA_ID = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*(?:#[\w$]+)?")
_GO_TEST = re.compile(r"(?:Test|Benchmark|Example|Fuzz)\w*")


def _ids_for(tool: str, tests: list[str]) -> list[str]:
    """The test ids a tool can select: a job may report tests of several tools (pytest and jest, say);
    each tool gets only the ids of its own form."""
    if tool in ("maven", "gradle"):
        return [t for t in tests if _JAVA_ID.fullmatch(t)]
    if tool == "go":
        return [t for t in tests if _GO_TEST.fullmatch(_leaf(t))]
    if tool == "cargo":
        return [t for t in tests if ("#" in t or "::" in t) and ".py" not in t]
    if tool in ("jest", "mocha"):
        return [t for t in tests if ".py::" not in t and not _JAVA_ID.fullmatch(t)]
    return list(tests)


def arguments(d: Directive, tool: str, *, total_mb: int | None = None) -> list[str]:
    """Command-line arguments that make ``tool`` apply ``d`` (add them to the tool's own command line).
    Only the directive's test ids of the tool's own form select tests; when none is, every test runs."""
    if tool not in TOOLS:
        raise ValueError(f"unknown tool {tool!r}: one of {', '.join(TOOLS)}")
    mem = total_mb or _total_memory_mb()
    d = dataclasses.replace(d, tests=_ids_for(tool, d.tests))
    out: list[str] = []
    if tool == "pytest":  # the plugin does it all from the environment; for a pytest run without it:
        out += ["-p", "healing_guard.pytest_directive"]
    elif tool == "jest":  # (jest gives each test file its own module registry: nothing to do for isolated)
        if d.sequential:
            # one worker, the tests one at a time. Not --runInBand: jest refuses it beside a --maxWorkers
            # on the job's own command line (which fails the job); --maxWorkers=1 wins over the config
            # file's maxWorkers, while a --maxWorkers earlier on the command line wins over it
            out.append("--maxWorkers=1")
        if d.tests:
            out += ["--testNamePattern", _alternation(_jest_name(t) for t in d.tests)]
    elif tool == "mocha":
        if d.sequential:
            out.append("--no-parallel")
        if d.tests:
            out += ["--grep", _alternation(_jest_name(t) for t in d.tests)]
    elif tool == "maven":
        if d.tests:
            out.append("-Dtest=" + _surefire(d.tests))
            out.append("-Dsurefire.failIfNoSpecifiedTests=false")
        if d.sequential:
            out += ["-DforkCount=1", "-Dparallel=none", "-DthreadCount=1"]
        if d.isolated:
            out += ["-DforkCount=1", "-DreuseForks=false"]
        if d.grows_memory:
            out.append(f"-DargLine=-Xmx{_jvm_heap_mb(d, mem)}m")
    elif tool == "gradle":
        for t in d.tests:
            cls, _, method = t.partition("#")
            out += ["--tests", f"{cls}.{method}" if method else cls]
        if d.sequential:
            out += ["--max-workers=1", "-Dorg.gradle.parallel=false"]
        if d.grows_memory:
            out.append(f"-Dorg.gradle.jvmargs=-Xmx{_jvm_heap_mb(d, mem)}m")
    elif tool == "go":
        if d.tests:
            out.append("-run=" + _alternation(_leaf(t) for t in d.tests))
        if d.sequential:
            out += ["-p=1", "-parallel=1"]
    elif tool == "cargo":
        # cargo test -- [FILTERS] [libtest options]: cargo itself takes one filter, libtest several. A
        # filter matches test paths containing it; "module::test" (the innermost module) finds the test
        # whatever crate path its report gave
        filters = [_cargo_filter(t) for t in d.tests]
        libtest = filters + (["--test-threads=1"] if d.sequential else [])
        if libtest:
            out += ["--", *libtest]
    elif tool == "docker":
        if d.no_cache:
            out += ["--no-cache", "--pull"]
    return out


def environment(d: Directive, *, tests_file: str | None = None, base: Mapping[str, str] | None = None,
                total_mb: int | None = None, plugin_dir: str | None = None) -> dict[str, str]:
    """Variables that make the tools apply ``d`` with no change to their command lines.

    ``base``: the current environment (options are appended to ``NODE_OPTIONS``, ``MAVEN_OPTS``, ...,
    not replaced); ``tests_file``: where the selected test ids were written, one per line (test ids may
    hold spaces, so they do not go in a variable); ``plugin_dir``: where ``guard directive apply`` copied
    the pytest plugin (healing_guard/pytest_directive.py as ``guard_pytest_directive.py``), so that
    pytest finds it in any environment; without it, the installed ``healing_guard.pytest_directive``."""
    env = dict(base or {})
    mem = total_mb or _total_memory_mb()
    out = {"GUARD_DIRECTIVE": d.command_id, "GUARD_ACTION": d.action}

    def add(name: str, value: str) -> None:
        cur = env.get(name, "").strip()
        out[name] = f"{cur} {value}".strip() if cur and value not in cur else (cur or value)

    if d.tests and tests_file:
        out["GUARD_TESTS_FILE"] = tests_file
    if d.tests:
        out["GUARD_FAILED_TESTS_ONLY"] = "true"
    if d.sequential:
        out["GUARD_SEQUENTIAL"] = "true"
        out["RUST_TEST_THREADS"] = "1"
        add("GOFLAGS", "-p=1")
    if d.isolated:
        out["GUARD_ISOLATION"] = "fresh_process"
    if d.timeout_factor:
        out["GUARD_TIMEOUT_FACTOR"] = f"{d.timeout_factor:g}"
    if d.grows_memory:
        if d.memory_add_mb:
            out["GUARD_MEMORY_ADD_MB"] = str(d.memory_add_mb)
        else:
            out["GUARD_MEMORY_FACTOR"] = f"{d.memory_factor:g}"
        add("NODE_OPTIONS", f"--max-old-space-size={_node_heap_mb(d, mem)}")
        jvm = _jvm_heap_mb(d, mem)
        add("MAVEN_OPTS", f"-Xmx{jvm}m")
        add("GRADLE_OPTS", f"-Dorg.gradle.jvmargs=-Xmx{jvm}m")
        # every other JVM the job starts (Surefire's forks, Gradle's test workers) unless it sets -Xmx itself
        add("JAVA_TOOL_OPTIONS", f"-XX:MaxRAMPercentage={min(round(100 * jvm / mem, 1), 90):g}")
    if d.tests or d.sequential or d.timeout_factor:
        if plugin_dir:
            add("PYTEST_ADDOPTS", "-p guard_pytest_directive")
            cur = env.get("PYTHONPATH", "")
            out["PYTHONPATH"] = plugin_dir + (os.pathsep + cur if cur else "")
        else:
            add("PYTEST_ADDOPTS", "-p healing_guard.pytest_directive")
    if d.cache_suffix:
        out["GUARD_CACHE_SUFFIX"] = d.cache_suffix
    if d.no_cache:
        out["GUARD_NO_CACHE"] = "true"
        out["GUARD_DOCKER_BUILD_ARGS"] = "--no-cache --pull"
    if d.clear_dependency_cache:
        out["GUARD_CLEAR_DEPENDENCY_CACHE"] = "true"
        out["PIP_NO_CACHE_DIR"] = "1"
        out["npm_config_cache"] = os.path.join(env.get("RUNNER_TEMP") or "/tmp", f"npm-{d.cache_suffix}")
    if d.frozen_lockfile:
        out["GUARD_FROZEN_LOCKFILE"] = "true"
        out["npm_config_frozen_lockfile"] = "true"
    if d.runner_size:
        out["GUARD_RUNNER_SIZE"] = d.runner_size
    return out


def cleanups(d: Directive) -> list[list[str]]:
    """The cleanup commands to run before the job's work, as argument lists (no shell)."""
    return [CLEANUPS[c] for c in d.cleanup if c in CLEANUPS]


def shell_exports(env: Mapping[str, str]) -> str:
    """``export NAME='value'`` lines, for ``eval "$(guard directive env)"``."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
