"""Runs action.yml's composite steps as the runner would: ``${{ }}`` expressions and ``if:`` conditions
evaluated over ``inputs`` (with their defaults), ``github``, ``secrets`` and ``steps.<id>.outputs``, each
``run:`` script executed by ``bash --noprofile --norc -eo pipefail`` with the step's ``env:`` on top of
GitHub's variables, and each step's ``$GITHUB_OUTPUT`` read back. ``uses:`` steps (setup-python,
upload-artifact) are not run: their evaluated ``with:`` is returned, so a test can check what they would get.

The expression language is GitHub's subset that action.yml and the product document use: contexts with
dotted (and dashed) names, ``'strings'``, ``==`` / ``!=`` (strings compared ignoring case), ``!``, ``&&`` /
``||`` (returning an operand, as GitHub does) and parentheses."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|&&|\|\||!|\(|\))|(?P<name>[A-Za-z_][\w.-]*))")


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot read the expression {expr!r} at {expr[pos:]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(expr) and expr[pos].isspace():
            pos += 1
    return out


class _Parser:
    def __init__(self, expr: str, ctx: Mapping[str, Any]) -> None:
        self.toks = _tokens(expr)
        self.i = 0
        self.ctx = ctx

    def parse(self) -> Any:
        v = self._or()
        if self.i != len(self.toks):
            raise ValueError(f"unexpected {self.toks[self.i]}")
        return v

    def _peek(self) -> str | None:
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def _or(self) -> Any:
        v = self._and()
        while self._peek() == "||":
            self.i += 1
            w = self._and()
            v = v if _truthy(v) else w
        return v

    def _and(self) -> Any:
        v = self._cmp()
        while self._peek() == "&&":
            self.i += 1
            w = self._cmp()
            v = w if _truthy(v) else v
        return v

    def _cmp(self) -> Any:
        v = self._unary()
        while self._peek() in ("==", "!="):
            op = self.toks[self.i][1]
            self.i += 1
            w = self._unary()
            same = str(v).lower() == str(w).lower()
            v = same if op == "==" else not same
        return v

    def _unary(self) -> Any:
        if self._peek() == "!":
            self.i += 1
            return not _truthy(self._unary())
        if self._peek() == "(":
            self.i += 1
            v = self._or()
            if self._peek() != ")":
                raise ValueError("missing )")
            self.i += 1
            return v
        kind, text = self.toks[self.i]
        self.i += 1
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if text in ("true", "false"):
            return text == "true"
        value: Any = self.ctx
        for part in text.split("."):
            value = value.get(part, "") if isinstance(value, Mapping) else ""
        return value


def _truthy(v: Any) -> bool:
    return bool(v) and v != "0"


def evaluate(expr: str, ctx: Mapping[str, Any]) -> Any:
    return _Parser(expr, ctx).parse()


def substitute(text: str, ctx: Mapping[str, Any]) -> str:
    """Every ``${{ expr }}`` in ``text`` replaced by its value."""
    def one(m: re.Match[str]) -> str:
        v = evaluate(m.group(1), ctx)
        return ("true" if v else "false") if isinstance(v, bool) else str(v)
    return re.sub(r"\$\{\{(.*?)\}\}", one, text)


@dataclass
class StepRun:
    id: str
    name: str
    ran: bool
    uses: str = ""
    with_: dict[str, str] = field(default_factory=dict)
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class ActionRun:
    steps: list[StepRun]
    outputs: dict[str, str]

    def step(self, step_id: str) -> StepRun:
        return next(s for s in self.steps if s.id == step_id)


def run_action(action: Mapping[str, Any], with_: Mapping[str, str], env: Mapping[str, str], workdir: Path, *,
               github: Mapping[str, str] | None = None, skip: tuple[str, ...] = ("install",),
               timeout: float = 180) -> ActionRun:
    """Run the composite ``action`` with the workflow step's ``with_`` (already evaluated) in ``workdir``.

    ``env``: the runner's environment (GITHUB_*, RUNNER_TEMP, PATH...); ``skip``: step ids not run (the
    install step: the tests use the guard already installed)."""
    gh = {"token": env.get("GITHUB_TOKEN_DEFAULT", ""), **(github or {})}
    inputs: dict[str, str] = {}
    for name, spec in (action.get("inputs") or {}).items():
        given = with_.get(name)
        default = str(spec.get("default", "")) if spec else ""
        inputs[name] = str(given) if given is not None else substitute(default, {"github": gh})
    unknown = set(with_) - set(inputs)
    if unknown:
        raise AssertionError(f"the workflow passes inputs action.yml does not declare: {sorted(unknown)}")
    steps_ctx: dict[str, Any] = {}
    done: list[StepRun] = []
    for n, step in enumerate(action["runs"]["steps"]):
        sid = step.get("id") or f"__{n}"
        ctx = {"inputs": inputs, "github": gh, "steps": steps_ctx, "env": env}
        cond = step.get("if")
        ran = bool(_truthy(evaluate(str(cond), ctx))) if cond is not None else True
        if "uses" in step:
            w = {k: substitute(str(v), ctx) for k, v in (step.get("with") or {}).items()}
            done.append(StepRun(sid, step.get("name", ""), ran, uses=step["uses"], with_=w))
            steps_ctx[sid] = {"outputs": {}}
            continue
        if not ran or sid in skip:
            done.append(StepRun(sid, step.get("name", ""), False))
            steps_ctx[sid] = {"outputs": {}}
            continue
        out_file = workdir / f".github_output_{n}"
        out_file.write_text("")
        step_env = {**env, "GITHUB_OUTPUT": str(out_file),
                    **{k: substitute(str(v), ctx) for k, v in (step.get("env") or {}).items()}}
        script = workdir / f".step_{n}.sh"
        script.write_text(substitute(step["run"], ctx))
        r = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=workdir,
                           env=step_env, capture_output=True, text=True, timeout=timeout)
        outputs = dict(line.split("=", 1) for line in out_file.read_text().splitlines() if "=" in line)
        steps_ctx[sid] = {"outputs": outputs}
        done.append(StepRun(sid, step.get("name", ""), True, returncode=r.returncode, stdout=r.stdout,
                            stderr=r.stderr, outputs=outputs))
        if r.returncode != 0:
            break  # a failed step ends the composite (the later steps' default if is success())
    ctx = {"inputs": inputs, "github": gh, "steps": steps_ctx}
    outputs = {k: substitute(str(v.get("value", "")), ctx) for k, v in (action.get("outputs") or {}).items()}
    return ActionRun(done, outputs)


def runner_env(tmp: Path, guard_bin: Path, **extra: str) -> dict[str, str]:
    """GitHub's variables for a step, RUNNER_TEMP holding the path of the installed guard (what the
    Action's install step writes)."""
    temp = tmp / "runner_temp"
    temp.mkdir(exist_ok=True)
    (temp / "healing-guard-path").write_text(str(guard_bin))
    summary = tmp / "step_summary.md"
    summary.touch()
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    return {**keep, "CI": "true", "GITHUB_ACTIONS": "true", "RUNNER_TEMP": str(temp),
            "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_WORKSPACE": str(tmp), "GUARD_CONFIG": "", **extra}
