"""The client side of directives: a re-run job's first step obtains the guard's fix and applies it.

``guard directive ...`` (healing_guard/directive_cli.py) is the command line; this module holds the work and
needs only the standard library, so a CI image can run it without the guard's dependencies::

    pip install --no-deps self-healing-pipeline-guard
    python -m healing_guard.directive_client apply

    guard directive apply            # GitHub: writes $GITHUB_ENV; CircleCI: $BASH_ENV
    eval "$(guard directive apply)"  # GitLab before_script, Jenkins sh step: prints export lines
    eval "npx jest $(guard directive args jest)"   # tools that read no variable for it (shell-quoted)
    guard directive show             # what the directive changes, in words

Where the directive comes from, first found wins:

1. ``--file`` (a directive saved by an earlier step);
2. Jenkins build parameters: the executor starts Jenkins re-runs with ``GUARD_*`` parameters, so a
   Jenkins job carries its directive itself, with no guard service to reach;
3. ``GUARD_DIRECTIVE_JSON`` (a pipeline variable holding a directive);
4. the guard's REST API (``--api`` / ``GUARD_API_URL``, ``--key`` / ``GUARD_API_KEY``), asked for this
   job: provider, repository, job name, run / pipeline id, commit and attempt are read from the platform's
   own variables (GitHub ``GITHUB_*``, GitLab ``CI_*``, CircleCI ``CIRCLE_*``).

No directive, an API that cannot be reached, a directive that does not parse: the job runs as it is, with
one line saying why. Applying never fails the job it runs in (exit status 0), except on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Optional

from . import directives as dv

FORMATS = ("auto", "github", "shell", "json")


def _say(msg: str) -> None:
    print(f"guard directive: {msg}", file=sys.stderr)


def job_context(env: dict[str, str]) -> dict[str, Any]:
    """What identifies this job on its platform, from the platform's variables."""
    if env.get("GITHUB_ACTIONS") == "true":
        attempt = env.get("GITHUB_RUN_ATTEMPT")
        return {"provider": "github", "repo": env.get("GITHUB_REPOSITORY"),
                "job_name": env.get("GUARD_JOB_NAME") or env.get("GITHUB_JOB"), "run_id": env.get("GITHUB_RUN_ID"),
                "commit": env.get("GITHUB_SHA"), "attempt": int(attempt) if attempt and attempt.isdigit() else None}
    if env.get("GITLAB_CI") == "true":
        # a retried job is a new job of the same pipeline
        return {"provider": "gitlab", "repo": env.get("CI_PROJECT_PATH"), "job_name": env.get("CI_JOB_NAME"),
                "run_id": env.get("CI_PIPELINE_ID"), "commit": env.get("CI_COMMIT_SHA"), "attempt": None}
    if env.get("CIRCLECI") == "true":
        # "rerun from failed" starts a new workflow (a new id): the commit is what the attempts share
        user, name = env.get("CIRCLE_PROJECT_USERNAME"), env.get("CIRCLE_PROJECT_REPONAME")
        return {"provider": "circleci", "repo": f"{user}/{name}" if user and name else None,
                "job_name": env.get("CIRCLE_JOB"), "run_id": None, "commit": env.get("CIRCLE_SHA1"), "attempt": None}
    return {"provider": env.get("GUARD_PROVIDER"), "repo": env.get("GUARD_REPO"), "job_name": env.get("GUARD_JOB_NAME"),
            "run_id": env.get("GUARD_RUN_ID"), "commit": env.get("GUARD_COMMIT"), "attempt": None}


#: Jenkins build parameters that are numbers, and their type
_NUMBERS: dict[str, type] = {"memory_factor": float, "memory_add_mb": int, "parallelism": int,
                             "timeout_factor": float}


def _from_jenkins(env: dict[str, str]) -> dv.Directive | None:
    """A Jenkins re-run's build parameters (executor/core.py ``jenkins_parameters``) as a directive."""
    if not (env.get("JENKINS_URL") and env.get("GUARD_COMMAND_ID") and env.get("GUARD_ACTION")):
        return None
    params: dict[str, Any] = {}
    # the executor's table of build parameters (a Jenkinsfile may also set GUARD_TIMEOUT_FACTOR itself)
    for key, name in dv.JENKINS_PARAMETERS.items():
        value = env.get(name)
        if not value:
            continue
        if key in _NUMBERS:
            try:
                params[key] = _NUMBERS[key](value)
            except ValueError:
                pass
        elif key == "tests":
            params[key] = value.split()
        elif key == "cleanup":
            params[key] = value.split(",")  # its steps hold spaces
        elif key in ("isolation", "runner_size"):
            params[key] = value
        elif value == "true":
            params[key] = True
    job = env.get("JOB_NAME", "job")
    owner, _, repo = job.rpartition("/")
    return dv.from_command({"command_id": env["GUARD_COMMAND_ID"], "action": env["GUARD_ACTION"],
                            "provider": "jenkins", "owner": owner or job, "repo": repo or job,
                            "job_id": env.get("BUILD_NUMBER", ""), "attempt": 1, "parameters": params})


def _from_api(api: str, key: str, ctx: dict[str, Any], timeout: float) -> dv.Directive | None:
    repo = ctx.get("repo")
    if not repo or "/" not in repo or not ctx.get("provider") or not (ctx.get("run_id") or ctx.get("commit")):
        _say("cannot tell which job this is (no provider, repository, run id or commit in the environment; "
             "set GUARD_PROVIDER, GUARD_REPO, GUARD_RUN_ID or GUARD_COMMIT): running as it is")
        return None
    owner, _, name = repo.rpartition("/")
    # the run id when there is one (a job forwarded without its commit still matches); the commit otherwise
    commit = None if ctx.get("run_id") else ctx.get("commit")
    q = {k: v for k, v in (("provider", ctx["provider"]), ("job_name", ctx.get("job_name")),
                           ("run_id", ctx.get("run_id")), ("commit", commit),
                           ("attempt", ctx.get("attempt") if (ctx.get("attempt") or 0) >= 2 else None)) if v}
    url = (f"{api.rstrip('/')}/api/v1/repos/{urllib.parse.quote(owner, safe='/')}/{urllib.parse.quote(name, safe='')}"
           f"/directive?{urllib.parse.urlencode(q)}")
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the configured API
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            _say("no directive for this attempt: running as it is")
        else:
            _say(f"the guard's API answered {exc.code} ({exc.reason}): running as it is")
        return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        _say(f"the guard's API at {api} cannot be reached ({exc}): running as it is")
        return None
    return dv.from_dict(body["directive"])


def obtain(file: Optional[Path], api: Optional[str], key: Optional[str], env: dict[str, str],
           timeout: float = 10.0) -> dv.Directive | None:
    """The directive for this job, from the first source that has one (module docstring)."""
    try:
        if file is not None:
            return dv.from_dict(json.loads(file.read_text(encoding="utf-8")))
        d = _from_jenkins(env)
        if d is not None:
            return d
        if env.get("GUARD_DIRECTIVE_JSON"):
            return dv.from_dict(json.loads(env["GUARD_DIRECTIVE_JSON"]))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        _say(f"the directive cannot be read ({exc}): running as it is")
        return None
    api = api or env.get("GUARD_API_URL")
    key = key or env.get("GUARD_API_KEY")
    if not api or not key:
        _say("no directive given and no guard API configured (GUARD_API_URL, GUARD_API_KEY): running as it is")
        return None
    try:
        return _from_api(api, key, job_context(env), timeout)
    except (ValueError, TypeError, KeyError) as exc:
        _say(f"the guard's answer cannot be read ({exc}): running as it is")
        return None


def _write(d: dv.Directive, out_dir: Path) -> str | None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "directive.json").write_text(json.dumps(d.to_dict(), indent=2) + "\n", encoding="utf-8")
    if not d.tests:
        return None
    tests = out_dir / "failed-tests.txt"
    tests.write_text("".join(t + "\n" for t in d.tests), encoding="utf-8")
    return str(tests.resolve())


def apply(file: Optional[Path], api: Optional[str], key: Optional[str], out_dir: Path, fmt: str = "auto",
          cleanup: bool = True, timeout: float = 10.0, env: dict[str, str] | None = None) -> None:
    """Obtain this attempt's directive and make the job's tools apply it (variables, the failed tests'
    list, the pytest plugin, cleanups). Writes nothing on stdout when there is none."""
    if fmt not in FORMATS:
        raise ValueError(f"--format: one of {', '.join(FORMATS)}, got {fmt!r}")
    env = dict(os.environ) if env is None else env
    d = obtain(file, api, key, env, timeout)
    if d is None:
        return
    tests_file = _write(d, out_dir)
    # pytest finds the directive's plugin in whatever environment the job's tests run in (copied, not
    # imported: this module runs without pytest)
    shutil.copyfile(Path(__file__).with_name("pytest_directive.py"), out_dir / "guard_pytest_directive.py")
    variables = dv.environment(d, tests_file=tests_file, base=env, plugin_dir=str(out_dir.resolve()))
    if cleanup:
        for argv in dv.cleanups(d):
            _say("cleanup: " + " ".join(argv))
            try:
                subprocess.run(argv, check=False, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as exc:
                _say(f"cleanup {argv[0]} failed ({exc}); going on")
    if fmt == "auto":
        fmt = "github" if env.get("GITHUB_ENV") else "bash_env" if env.get("CIRCLECI") and env.get("BASH_ENV") else "shell"
    if fmt == "github":
        target = env.get("GITHUB_ENV")
        if not target:
            raise ValueError("--format github: GITHUB_ENV is not set (not in a GitHub Actions step?)")
        with open(target, "a", encoding="utf-8") as fh:
            # one NAME=value line each: a value with a line break would set another variable
            fh.writelines(f"{k}={v}\n" for k, v in variables.items() if "\n" not in v and "\r" not in v)
    elif fmt == "bash_env":
        with open(env["BASH_ENV"], "a", encoding="utf-8") as fh:
            fh.write(dv.shell_exports(variables))
    elif fmt == "json":
        sys.stdout.write(json.dumps({"directive": d.to_dict(), "environment": variables}) + "\n")
    else:
        sys.stdout.write(dv.shell_exports(variables))
    _say(f"{d.action} ({d.command_id}): " + ", ".join(d.changes))


def args(tool: str, file: Path) -> str:
    """The shell-quoted arguments that make ``tool`` apply the directive saved in ``file`` ("" when there
    is none): ``eval "npx jest $(guard directive args jest)"``."""
    if tool not in dv.TOOLS:
        raise ValueError(f"TOOL: one of {', '.join(dv.TOOLS)}, got {tool!r}")
    if not file.exists():
        return ""
    try:
        d = dv.from_dict(json.loads(file.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        _say(f"{file}: {exc}; no arguments")
        return ""
    return " ".join(shlex.quote(a) for a in dv.arguments(d, tool))


def show(file: Optional[Path], api: Optional[str], key: Optional[str]) -> str:
    """This attempt's directive as JSON ("" when there is none)."""
    d = obtain(file, api, key, dict(os.environ))
    return "" if d is None else json.dumps({"changes": d.changes, "directive": d.to_dict()}, indent=2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m healing_guard.directive_client",
                                description="Obtain and apply the guard's fix in a re-run job's first step.")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("apply")
    s = sub.add_parser("show")
    for q in (a, s):
        q.add_argument("--file", type=Path)
        q.add_argument("--api")
        q.add_argument("--key")
    a.add_argument("--out-dir", type=Path, default=Path(".guard"))
    a.add_argument("--format", default="auto", choices=FORMATS)
    a.add_argument("--no-cleanup", action="store_true")
    a.add_argument("--timeout", type=float, default=10.0)
    g = sub.add_parser("args")
    g.add_argument("tool", choices=dv.TOOLS)
    g.add_argument("--file", type=Path, default=Path(".guard/directive.json"))
    ns = p.parse_args(argv)
    if ns.cmd == "apply":
        apply(ns.file, ns.api, ns.key, ns.out_dir, ns.format, not ns.no_cleanup, ns.timeout)
    elif ns.cmd == "args":
        print(args(ns.tool, ns.file))
    else:
        out = show(ns.file, ns.api, ns.key)
        if out:
            print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
