"""A failing CI job built by running real tools on a small broken project, labelled by construction.

A :class:`Case` is a tiny project (its files) and the CI steps run on it, in order, with ``bash``; the last
step must fail, the others must pass. :func:`run_case` runs it in a fresh directory and returns what each
step printed (stdout and stderr merged, as a CI log shows them) and its exit code. ``envelopes.py`` then
wraps the steps in each platform's log format and ``build.py`` writes the corpus.

Cases live in ``cases/<ecosystem>.py``, each module exporting ``cases(tools: Tools) -> list[Case]``.
Nothing here names a project, repository or file of any dataset: the projects are made up.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CATEGORIES", "Case", "CaseError", "Step", "StepResult", "Tools", "run_case"]

#: the guard's taxonomy (healing_guard/schemas/records.py CATEGORIES), repeated so the corpus needs no import
CATEGORIES = ("test_failure", "test_timeout", "compilation_error", "lint_style", "build_config",
              "dependency_resolution", "dependency_missing", "network", "rate_limit", "docker_registry",
              "cache_corruption", "oom", "disk_full", "infra_runner_lost", "infra_timeout", "crash", "unknown")


@dataclass(frozen=True)
class Step:
    """One CI step: a name as the platform shows it and the shell command it runs."""

    name: str  # "Install dependencies", "Run tests"
    run: str  # bash command line, run in the project directory; shown in the log as typed
    timeout: float = 300.0  # seconds; a step over it is killed (exit 124), as `timeout` does
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """A small broken project and the CI steps run on it; the last step fails with ``category``."""

    name: str  # unique, e.g. "python-pytest-assertion"
    ecosystem: str  # python | node | java | go | rust | c | cpp | shell | perl
    category: str  # one of CATEGORIES: what a person would say the job failed of
    project: str  # the made-up project (leave-one-project-out groups by it)
    files: Mapping[str, str]  # relative path -> text, written before the steps run
    steps: tuple[Step, ...]
    #: optional context manager run around the steps (a local server, say): gets the project directory,
    #: yields extra environment variables for the steps (e.g. {"PORT": "41234"})
    around: Callable[[Path], contextlib.AbstractContextManager[Mapping[str, str]]] | None = None
    note: str = ""  # why this is labelled so, when it is not obvious
    #: how the job ends in the platform's log: "exit" (the last step's exit code, as usual), "job_timeout"
    #: (the platform's own time limit stopped the job: its message follows the step's output) or
    #: "runner_lost" (the runner vanished mid-step: the output stops and the platform says so)
    ends: str = "exit"
    #: optional regex (multiline) the last step's output must match, or the case did not fail as built
    #: (a pip error that is really a network error, a "command not found" for the tool under test, ...)
    expect: str = ""

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"{self.name}: unknown category {self.category!r}")
        if not self.steps:
            raise ValueError(f"{self.name}: no steps")
        if self.ends not in ("exit", "job_timeout", "runner_lost"):
            raise ValueError(f"{self.name}: ends must be exit, job_timeout or runner_lost")


@dataclass(frozen=True)
class StepResult:
    step: Step
    output: str  # merged stdout/stderr, decoded as UTF-8 with replacement
    exit_code: int
    seconds: float


class CaseError(RuntimeError):
    """The case did not behave as built: an early step failed, or the last one passed."""


@dataclass(frozen=True)
class Tools:
    """Where the corpus's tools are (installed once by build.py, shared by every case)."""

    python: str  # a Python with pytest, ruff, flake8, mypy, pytest-timeout installed
    bin_path: str  # directories to put first on PATH (the venv's bin, node_modules/.bin, ...)
    node_modules: str  # a node_modules directory with jest, mocha, eslint, typescript (NODE_PATH)
    work: Path  # where case directories are made


#: variables of this machine that would change what the tools print (a local wheel directory pip reads)
_DROP = ("GUARD_", "PYTEST_", "VIRTUAL_ENV", "PIP_FIND_LINKS", "PIP_DEFAULT_TIMEOUT")


def _env(tools: Tools, extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP)}
    env["PATH"] = tools.bin_path + os.pathsep + env.get("PATH", "")
    env["NODE_PATH"] = tools.node_modules
    env.setdefault("LANG", "C.UTF-8")
    env["TERM"] = "dumb"
    env["NO_COLOR"] = "1"
    env["PYTHONUNBUFFERED"] = "1"  # stdout and stderr interleave as they happen, as on a CI runner
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"  # "a new release of pip is available" depends on the day
    env.update(extra)
    return env


@contextlib.contextmanager
def _nothing(_: Path) -> Iterator[Mapping[str, str]]:
    yield {}


def run_case(case: Case, tools: Tools, *, check: bool = True) -> list[StepResult]:
    """Run ``case`` in a fresh ``tools.work/<name>`` directory (the same path every time, so logs repeat)."""
    where = tools.work / case.name
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    for rel, text in case.files.items():
        p = where / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        if rel.endswith(".sh") or text.startswith("#!"):
            p.chmod(0o755)
    out: list[StepResult] = []
    with (case.around or _nothing)(where) as extra:
        for i, step in enumerate(case.steps):
            env = _env(tools, {**extra, **step.env})
            t0 = time.monotonic()
            text, code = _run(step, where, env)
            out.append(StepResult(step, text, code, time.monotonic() - t0))
            last = i == len(case.steps) - 1
            if check and not last and code != 0:
                raise CaseError(f"{case.name}: step {step.name!r} failed early (exit {code}):\n{text[-2000:]}")
            if code != 0:
                break
    if check and out[-1].exit_code == 0:
        raise CaseError(f"{case.name}: the last step passed; it must fail with {case.category}")
    if check and case.expect and not re.search(case.expect, out[-1].output, re.M):
        raise CaseError(f"{case.name}: the last step failed (exit {out[-1].exit_code}) but its output does not match "
                        f"{case.expect!r}:\n{out[-1].output[-2000:]}")
    return out


def _run(step: Step, where: Path, env: Mapping[str, str]) -> tuple[str, int]:
    """Run one step in its own process group, so a step over its timeout is killed with all its children
    (a hung test runner's workers would otherwise keep the output pipe open)."""
    proc = subprocess.Popen(["bash", "-c", step.run], cwd=where, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        data, _ = proc.communicate(timeout=step.timeout)
        # killed by a signal: report it as a shell (and so a CI runner) does, 128 + the signal
        code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        if code < 0:  # killed by a signal: the code a CI shell reports (128 + signal: 134, 137, 139)
            code = 128 - code
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        data, _ = proc.communicate()
        code = 124
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the step left running in the background
    return data.decode("utf-8", "replace"), code
