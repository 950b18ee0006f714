"""Build the real-tool failure corpus: run every case, wrap each job in every platform's log, write labels.

    .venv/bin/python -m benchmarks.corpus.build --out DIR [--only ECOSYSTEM ...] [--cases GLOB ...]
        [--platforms github,gitlab,jenkins,circleci,travis] [--jobs N]

Writes ``DIR/logs/<platform>__<case>.log``, ``DIR/labels.csv`` (file,category,source,project,ecosystem,platform),
``DIR/chunks.csv`` (file,first_line,last_line: the failing step's own output in that log) and
``DIR/manifest.json`` (each case's commands, exit codes and durations, the tool versions, what was left out).
``DIR/logs`` is emptied first: the output is exactly this run's cases.

Tools: a venv (pytest, pytest-timeout, ruff, flake8, mypy) in ``.guard/corpus/venv`` and node tools (jest,
mocha, eslint 8, typescript) in ``.guard/corpus/node``, installed from PyPI / npm with pinned versions when
missing, and reached through ``/tmp/guard-corpus/tools`` so the paths the tools print are the same on every
checkout. Cases run in ``/tmp/guard-corpus/work/<case>``.

A case module that fails to import is skipped with a warning; an ecosystem whose tool is not on this
machine is skipped with a warning naming the tool; a case that does not fail as built (``CaseError``) is
reported and left out, never patched.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import importlib
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import cases as cases_pkg
from .case import CATEGORIES, Case, CaseError, StepResult, Tools, run_case
from .envelopes import PLATFORMS, render

ROOT = Path(__file__).resolve().parents[2]
STORE = ROOT / ".guard" / "corpus"  # where the tools are installed (git-ignored)
FIXED = Path("/tmp/guard-corpus")  # the same path on every checkout: what the logs show
WORK = FIXED / "work"

#: pinned so that a rebuild on a fresh machine prints what this one printed
PY_TOOLS = {"pytest": "9.2.0", "pytest-timeout": "2.4.0", "ruff": "0.17.6", "flake8": "7.5.0", "mypy": "2.4.1"}
NODE_TOOLS = {"eslint": "8.57.1", "jest": "30.5.2", "mocha": "12.0.3", "typescript": "7.0.2"}

#: the machine tools each ecosystem's cases need; a module may add its own with ``REQUIRES = {eco: (...)}``
REQUIRES: dict[str, tuple[str, ...]] = {
    "python": (), "node": ("node", "npm"), "java": ("java", "javac", "mvn"), "go": ("go",),
    "rust": ("cargo", "rustc"), "c": ("gcc", "make"), "cpp": ("g++", "make"), "shell": ("bash", "curl", "tar"),
    "perl": ("perl", "prove"),
}
#: where toolchains live when they are not on PATH (the go and rust cases add these themselves)
EXTRA_PATH = ("/usr/local/go/bin", str(Path.home() / ".cargo" / "bin"))

#: "tool --version" commands for the manifest, by ecosystem
VERSIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "python": (("python", "python --version"), ("pip", "python -m pip --version"), ("pytest", "pytest --version"),
               ("pytest-timeout", "python -c 'import importlib.metadata as m; print(m.version(\"pytest-timeout\"))'"),
               ("ruff", "ruff --version"), ("flake8", "flake8 --version"), ("mypy", "mypy --version")),
    "node": (("node", "node --version"), ("npm", "npm --version")),
    "java": (("java", "java -version"), ("javac", "javac -version"), ("mvn", "mvn -v")),
    "go": (("go", "go version"),),
    "rust": (("rustc", "rustc --version"), ("cargo", "cargo --version")),
    "c": (("gcc", "gcc --version"), ("make", "make --version"), ("cmake", "cmake --version")),
    "cpp": (("g++", "g++ --version"),),
    "shell": (("bash", "bash --version"), ("curl", "curl --version"), ("tar", "tar --version")),
    "perl": (("perl", "perl -e 'print \"perl $^V\\n\"'"), ("prove", "prove --version")),
}


class SetupError(RuntimeError):
    pass


# ------------------------------------------------------------------------------------------------ tools


def _run(cmd: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False, **kw)  # type: ignore[call-overload]


def ensure_python_tools(console: Console) -> Path:
    """The corpus venv with the pinned tools; created or completed with pip (PyPI) when needed."""
    venv = STORE / "venv"
    py = venv / "bin" / "python"
    if not py.exists():
        console.print(f"[cyan]creating {venv}[/cyan]")
        STORE.mkdir(parents=True, exist_ok=True)
        r = _run([sys.executable, "-m", "venv", str(venv)])
        if r.returncode != 0:
            raise SetupError(f"python -m venv {venv} failed:\n{r.stdout}")
    check = ("import importlib.metadata as m, json, sys; want = json.loads(sys.argv[1]); "
             "bad = []\nfor k, v in want.items():\n    try:\n        ok = m.version(k) == v\n"
             "    except m.PackageNotFoundError:\n        ok = False\n    bad += [] if ok else [k]\nprint(' '.join(bad))")
    r = _run([str(py), "-c", check, json.dumps(PY_TOOLS)])
    missing = r.stdout.split() if r.returncode == 0 else list(PY_TOOLS)
    if missing:
        pins = [f"{k}=={v}" for k, v in PY_TOOLS.items()]
        console.print(f"[cyan]installing {' '.join(pins)} into {venv}[/cyan]")
        r = _run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins])
        if r.returncode != 0:
            raise SetupError(f"pip install into {venv} failed:\n{r.stdout[-3000:]}")
    return venv


def ensure_node_tools(console: Console) -> Path | None:
    """node_modules with the pinned tools (npm from the npm registry), or None when npm is not here."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        return None
    prefix = STORE / "node"
    nm = prefix / "node_modules"

    def version(pkg: str) -> str | None:
        try:
            return json.loads((nm / pkg / "package.json").read_text()).get("version")
        except (OSError, ValueError):
            return None

    if any(version(p) != v for p, v in NODE_TOOLS.items()):
        prefix.mkdir(parents=True, exist_ok=True)
        pins = [f"{p}@{v}" for p, v in NODE_TOOLS.items()]
        console.print(f"[cyan]npm install {' '.join(pins)} into {prefix}[/cyan]")
        r = _run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--save-exact", *pins])
        if r.returncode != 0:
            raise SetupError(f"npm install into {prefix} failed:\n{r.stdout[-3000:]}")
    return nm


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.is_symlink() and Path(os.readlink(link)) == target:
            return
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        else:
            link.unlink()
    link.symlink_to(target)


def _shims(venv: Path, shim_dir: Path, python: Path) -> None:
    """Copies of the venv's Python console scripts whose ``#!`` names the venv by its fixed path, so a tool
    that prints its interpreter (``pytest -v``) shows the same path on every checkout."""
    shim_dir.mkdir(parents=True, exist_ok=True)
    for script in sorted((venv / "bin").iterdir()):
        if script.name.startswith(("python", "activate", "Activate")) or not script.is_file():
            continue
        try:
            head, sep, rest = script.read_bytes().partition(b"\n")
        except OSError:
            continue
        if not (head.startswith(b"#!") and b"python" in head and sep):
            continue  # a binary (ruff) or a shell script: used from the venv as it is
        target = shim_dir / script.name
        data = f"#!{python}".encode() + sep + rest
        if not target.exists() or target.read_bytes() != data:
            target.write_bytes(data)
            target.chmod(0o755)


def make_tools(console: Console) -> tuple[Tools, bool]:
    """(the Tools every case gets, whether the node tools are there)."""
    venv = ensure_python_tools(console)
    nm = ensure_node_tools(console)
    _link(FIXED / "tools" / "venv", venv)
    if nm is not None:
        _link(FIXED / "tools" / "node_modules", nm)
    _shims(venv, FIXED / "tools" / "bin", FIXED / "tools" / "venv" / "bin" / "python")
    bin_path = os.pathsep.join([str(FIXED / "tools" / "bin"), str(FIXED / "tools" / "venv" / "bin"),
                                str(FIXED / "tools" / "node_modules" / ".bin")])
    WORK.mkdir(parents=True, exist_ok=True)
    return Tools(python=str(FIXED / "tools" / "venv" / "bin" / "python"), bin_path=bin_path,
                 node_modules=str(FIXED / "tools" / "node_modules"), work=WORK), nm is not None


def _search_path(tools: Tools) -> str:
    return os.pathsep.join([tools.bin_path, os.environ.get("PATH", ""), *EXTRA_PATH])


def tool_versions(ecosystems: Iterable[str], tools: Tools) -> dict[str, str]:
    env = {**os.environ, "PATH": _search_path(tools), "NO_COLOR": "1"}
    out: dict[str, str] = {}
    for eco in sorted(set(ecosystems)):
        for name, cmd in VERSIONS.get(eco, ()):
            try:
                r = subprocess.run(["bash", "-c", cmd], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, timeout=60, cwd=tools.work)
            except subprocess.TimeoutExpired:
                continue
            text = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout)
            line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
            if r.returncode == 0 and line:
                out[name] = line
        if eco == "node":
            nm = Path(tools.node_modules)
            for pkg in NODE_TOOLS:
                try:
                    out[pkg] = json.loads((nm / pkg / "package.json").read_text())["version"]
                except (OSError, ValueError, KeyError):
                    pass
    return out


# ------------------------------------------------------------------------------------------------ cases


@dataclass
class Collected:
    cases: list[Case] = field(default_factory=list)
    requires: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    warnings: list[str] = field(default_factory=list)
    modules: dict[str, int] = field(default_factory=dict)


def collect(tools: Tools) -> Collected:
    """Every case of every module in cases/ that exports ``cases(tools)``."""
    got = Collected()
    for eco, req in REQUIRES.items():
        got.requires[eco].update(req)
    seen: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(cases_pkg.__path__), key=lambda m: m.name):
        name = f"{cases_pkg.__name__}.{info.name}"
        try:
            mod = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any import failure skips the module, loudly
            got.warnings.append(f"case module {info.name} failed to import, skipped: {type(exc).__name__}: {exc}")
            continue
        fn = getattr(mod, "cases", None)
        if not callable(fn):
            continue
        for eco, req in dict(getattr(mod, "REQUIRES", {}) or {}).items():
            got.requires[eco].update(req)
        try:
            made = list(fn(tools))
        except Exception as exc:  # noqa: BLE001
            got.warnings.append(f"case module {info.name}: cases() raised, skipped: {type(exc).__name__}: {exc}")
            continue
        got.modules[info.name] = len(made)
        for c in made:
            if c.name in seen:
                got.warnings.append(f"case {c.name} of {info.name} has the name of one in {seen[c.name]}: left out")
                continue
            seen[c.name] = info.name
            got.cases.append(c)
    return got


def missing_tools(ecosystems: Iterable[str], requires: Mapping[str, set[str]], tools: Tools,
                  node_ok: bool) -> dict[str, list[str]]:
    path = _search_path(tools)
    out: dict[str, list[str]] = {}
    for eco in sorted(set(ecosystems)):
        miss = sorted(t for t in requires.get(eco, ()) if shutil.which(t, path=path) is None)
        if eco == "node" and not node_ok:
            miss = sorted(set(miss) | {"npm"})
        if miss:
            out[eco] = miss
    return out


@dataclass
class Outcome:
    case: Case
    results: list[StepResult] | None
    error: str | None
    seconds: float


def verify(case: Case, results: list[StepResult]) -> None:
    """What run_case cannot know: exit 127 is the shell's "command not found", so unless the case is about a
    missing dependency the tool under test is not on this machine and the label would be wrong."""
    last = results[-1]
    if case.ends == "exit" and last.exit_code == 127 and case.category != "dependency_missing":
        raise CaseError(f"{case.name}: exit 127 (command not found) but labelled {case.category}: a tool is missing:\n"
                        f"{last.output[-1500:]}")


def run_one(case: Case, tools: Tools) -> Outcome:
    t0 = time.monotonic()
    try:
        results = run_case(case, tools)
        verify(case, results)
        return Outcome(case, results, None, time.monotonic() - t0)
    except CaseError as exc:
        return Outcome(case, None, str(exc), time.monotonic() - t0)
    except Exception as exc:  # noqa: BLE001 - a broken case must not stop the build
        tb = traceback.format_exception_only(type(exc), exc)
        return Outcome(case, None, f"{case.name}: {''.join(tb).strip()}", time.monotonic() - t0)


# ------------------------------------------------------------------------------------------------ write


def write_corpus(out: Path, outcomes: Sequence[Outcome], platforms: Sequence[str], versions: Mapping[str, str],
                 extra: Mapping[str, object]) -> int:
    logs = out / "logs"
    if logs.exists():
        shutil.rmtree(logs)
    logs.mkdir(parents=True)
    labels: list[tuple[str, str, str, str, str, str]] = []
    chunks: list[tuple[str, int, int]] = []
    manifest_cases: list[dict[str, object]] = []
    dropped: list[dict[str, str]] = []
    for o in sorted(outcomes, key=lambda o: o.case.name):
        c = o.case
        if o.results is None:
            dropped.append({"name": c.name, "ecosystem": c.ecosystem, "category": c.category,
                            "reason": o.error or ""})
            continue
        for p in platforms:
            r = render(p, c, o.results)
            fname = f"{p}__{c.name}.log"
            (logs / fname).write_bytes(r.text.encode("utf-8"))
            labels.append((fname, c.category, "corpus", c.project, c.ecosystem, p))
            chunks.append((fname, r.first_line, r.last_line))
        manifest_cases.append({
            "name": c.name, "ecosystem": c.ecosystem, "category": c.category, "project": c.project, "ends": c.ends,
            "note": c.note, "expect": c.expect, "files": sorted(c.files),
            "steps": [{"name": s.step.name, "run": s.step.run, "exit_code": s.exit_code,
                       "seconds": round(s.seconds, 3), "output_lines": s.output.count("\n")} for s in o.results],
            "seconds": round(o.seconds, 3),
        })
    labels.sort()
    chunks.sort()
    with (out / "labels.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "category", "source", "project", "ecosystem", "platform"])
        w.writerows(labels)
    with (out / "chunks.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "first_line", "last_line"])
        w.writerows(chunks)
    manifest = {"generator": "benchmarks.corpus.build", "platforms": list(platforms), "work": str(WORK),
                "tools": dict(sorted(versions.items())), "cases": manifest_cases, "dropped": dropped, **extra}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return len(labels)


def summary(console: Console, outcomes: Sequence[Outcome], skipped: Mapping[str, int]) -> None:
    ok = [o for o in outcomes if o.results is not None]
    bad = [o for o in outcomes if o.results is None]
    cats = [c for c in CATEGORIES if any(o.case.category == c for o in outcomes)]
    ecos = sorted({o.case.ecosystem for o in outcomes})
    t = Table(title="corpus cases by category and ecosystem (+N: dropped, did not fail as built)")
    t.add_column("category")
    for e in ecos:
        t.add_column(e, justify="right")
    t.add_column("total", justify="right", style="bold")
    good = Counter((o.case.category, o.case.ecosystem) for o in ok)
    dropped = Counter((o.case.category, o.case.ecosystem) for o in bad)

    def cell(n: int, d: int) -> str:
        return (str(n) if n else "") + (f" [red]+{d}[/red]" if d else "")

    for c in cats:
        t.add_row(c, *[cell(good[(c, e)], dropped[(c, e)]) for e in ecos],
                  cell(sum(good[(c, e)] for e in ecos), sum(dropped[(c, e)] for e in ecos)))
    t.add_row("total", *[cell(sum(good[(c, e)] for c in cats), sum(dropped[(c, e)] for c in cats)) for e in ecos],
              cell(len(ok), len(bad)), style="bold")
    console.print(t)
    for e, n in sorted(skipped.items()):
        console.print(f"[yellow]skipped ecosystem {e}: {n} case(s), tool missing[/yellow]")
    if bad:
        d = Table(title="dropped cases", show_lines=True)
        d.add_column("case", no_wrap=True)
        d.add_column("why")
        for o in sorted(bad, key=lambda o: o.case.name):
            d.add_row(o.case.name, (o.error or "").strip()[:800])
        console.print(d)


def venv_dists(tools: Tools) -> set[str]:
    """The distributions in the tools venv (a case's pip must never install into it)."""
    r = _run([tools.python, "-c", "import importlib.metadata as m; print('\\n'.join(sorted({d.metadata['Name'].lower() "
              "for d in m.distributions()})))"], cwd=tools.work)
    return set(r.stdout.split()) if r.returncode == 0 else set()


# ------------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.corpus.build", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder (logs/, labels.csv, chunks.csv, manifest.json)")
    ap.add_argument("--only", nargs="+", metavar="ECOSYSTEM", help="only these ecosystems (python, node, java, ...)")
    ap.add_argument("--cases", nargs="+", metavar="GLOB", help="only cases whose name matches one of these globs")
    ap.add_argument("--platforms", default=",".join(PLATFORMS), help=f"comma-separated, of {','.join(PLATFORMS)}")
    ap.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    args = ap.parse_args(argv)
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    platforms = [p.strip() for p in args.platforms.split(",") if p.strip()]
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown or not platforms:
        ap.error(f"unknown platform(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(PLATFORMS)}")
    t_start = time.monotonic()
    try:
        tools, node_ok = make_tools(console)
    except SetupError as exc:
        console.print(f"[red]tool setup failed:[/red] {exc}")
        return 2
    got = collect(tools)
    for w in got.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    chosen = got.cases
    if args.only:
        chosen = [c for c in chosen if c.ecosystem in set(args.only)]
    if args.cases:
        chosen = [c for c in chosen if any(fnmatch.fnmatchcase(c.name, g) for g in args.cases)]
    missing = missing_tools((c.ecosystem for c in chosen), got.requires, tools, node_ok)
    skipped: dict[str, int] = {}
    for eco, tools_missing in missing.items():
        n = sum(1 for c in chosen if c.ecosystem == eco)
        skipped[eco] = n
        console.print(f"[yellow]warning:[/yellow] skipping the {n} {eco} case(s): "
                      f"{', '.join(tools_missing)} not found on this machine")
    chosen = [c for c in chosen if c.ecosystem not in missing]
    if not chosen:
        console.print("[red]no cases to run[/red]")
        return 1
    console.print(f"running {len(chosen)} cases from {', '.join(f'{m} ({n})' for m, n in got.modules.items())} "
                  f"with {args.jobs} at once; work dir {WORK}")
    before = venv_dists(tools)
    outcomes: list[Outcome] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("[dim]{task.fields[last]}"), console=console, transient=False) as prog:
        task = prog.add_task("cases", total=len(chosen), last="")
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futs: list[Future[Outcome]] = [pool.submit(run_one, c, tools) for c in chosen]
            for fut in futs:
                o = fut.result()
                outcomes.append(o)
                mark = "ok" if o.results is not None else "[red]DROPPED[/red]"
                prog.update(task, advance=1, last=f"{o.case.name} {mark} ({o.seconds:.1f}s)")
    intruders = sorted(venv_dists(tools) - before)
    if intruders:  # a case installed into the tools venv: undo it, and say so (cases after it may be affected)
        console.print(f"[red]warning:[/red] a case installed {', '.join(intruders)} into the tools venv; removing")
        got.warnings.append(f"a case installed {', '.join(intruders)} into the tools venv (removed after the run)")
        _run([tools.python, "-m", "pip", "uninstall", "-y", "-q", *intruders])
    versions = tool_versions((o.case.ecosystem for o in outcomes), tools)
    n_logs = write_corpus(args.out, outcomes, platforms, versions,
                          {"skipped_ecosystems": skipped, "warnings": got.warnings})
    summary(console, outcomes, skipped)
    n_ok = sum(1 for o in outcomes if o.results is not None)
    console.print(f"{n_ok} cases x {len(platforms)} platforms = {n_logs} logs in {args.out / 'logs'} "
                  f"({time.monotonic() - t_start:.0f}s)")
    return 0 if n_ok else 1


if __name__ == "__main__":
    sys.exit(main())
