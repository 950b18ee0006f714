"""``guard config check FILE``: validate any of the guard's config files and say what the guard understood.

The kind of file is told by its top-level keys: a pattern file (``patterns:`` holding patterns, as a list
or the product document's named mapping), a ``healing-strategies.yml`` (``strategies:``, ``actions:``,
``thresholds:``, ...) or a ``healing-config.yml`` (``healing:``, ``cost_control:`` or the guard's own
sections). Each is read by the same code the guard runs with, so a file this accepts is one the worker,
the API and ``PipelineGuard`` accept. What a key set is printed as the guard's own setting with its new
value, followed by notes on what the guard does instead of options it cannot carry out as written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Report", "check", "kind_of"]

_STRATEGY_KEYS = {"version", "ml_model", "features", "thresholds", "actions", "strategies"}


@dataclass
class Report:
    path: str
    kind: str  # config | strategies | patterns
    understood: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def kind_of(data: Any) -> str:
    """``patterns``, ``strategies`` or ``config`` for a parsed file (its top-level mapping)."""
    if not isinstance(data, dict):
        return "config"
    keys = set(data)
    pats = data.get("patterns")
    holds_patterns = isinstance(pats, dict) or (isinstance(pats, list) and any(isinstance(p, dict) for p in pats))
    if keys == {"patterns"} and holds_patterns or keys <= {"patterns", "version"} and holds_patterns:
        return "patterns"
    if keys & _STRATEGY_KEYS or keys == {"patterns"}:
        return "strategies"
    return "config"


def check(path: str | Path) -> Report:
    """The report of one file; raises ``ConfigError`` / ``PatternError`` with file:line:key when it is refused."""
    from .settings import ConfigError

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(p), "-", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), "-", f"cannot read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(str(p), "-", f"not valid YAML: {getattr(exc, 'problem', exc)}",
                          mark.line + 1 if mark else None) from None
    kind = kind_of(data)
    if kind == "patterns":
        return _patterns(p)
    if kind == "strategies":
        return _strategies(p)
    return _config(p, data)


def _config(p: Path, data: Any) -> Report:
    from .config_doc import notes
    from .settings import Settings, _from_file
    from .strategies_config import parse_strategies

    values = _from_file(p)
    r = Report(str(p), "config")
    defaults = Settings()
    for name, value in values.items():
        old = getattr(defaults, name)
        r.understood.append(f"{name} = {_show(value)}" + ("" if value != old else " (the default)"))
    if isinstance(data, dict) and isinstance(data.get("healing"), dict) and "strategies" in data["healing"]:
        cfg = parse_strategies(p.read_text(encoding="utf-8"), str(p), p.parent)
        r.understood += _describe_strategies(cfg)
        r.notes += list(cfg.notes)
    r.notes += notes(values)
    return r


def _strategies(p: Path) -> Report:
    from .strategies_config import load_strategies

    cfg = load_strategies(p)
    r = Report(str(p), "strategies", _describe_strategies(cfg), list(cfg.notes))
    r.notes += _literal_checks(cfg)
    return r


def _describe_strategies(cfg: Any) -> list[str]:
    from .remediate.catalogue import CATALOGUE

    out = []
    for s, a in cfg.actions.items():
        parts = []
        if a.enabled is not None:
            parts.append("enabled" if a.enabled else "disabled: its failures go to a person")
        if a.action:
            parts.append("a person decides" if a.action == "notify" else f"action {a.action}")
        if a.confidence_threshold is not None:
            parts.append(f"acts from confidence {a.confidence_threshold:g}")
        if a.max_retries is not None:
            parts.append(f"at most {a.max_retries} rerun(s) per job")
        if a.parameters:
            parts.append("parameters " + ", ".join(f"{k}={_show(v)}" for k, v in a.parameters.items()))
        out.append(f"strategy {s.value} ({', '.join(CATALOGUE[s].categories)}): {'; '.join(parts) or 'defaults'}")
    t = cfg.thresholds
    if t.flaky is not None:
        out.append(f"flaky_retry_threshold = {t.flaky:g} (a failed test is retried when a retry passes with at "
                   f"least this probability: it fails at most {1 - t.flaky:.0%} of its runs)")
    if t.confidence is not None:
        out.append(f"confidence_threshold = {t.confidence:g}")
    if t.min_runs is not None:
        out.append(f"flaky_min_runs = {t.min_runs}")
    if t.min_recoveries is not None:
        out.append(f"flaky_min_recoveries = {t.min_recoveries} (failures followed by a pass before a test counts "
                   "as flaky)")
    if t.quarantine is not None:
        out.append(f"quarantine_threshold = {t.quarantine:g}")
    if cfg.context_model is not None:
        out.append(f"context_model = {cfg.context_model} (P(a failed test passes on retry) from the failure's "
                   "context, learned across tests)")
    if cfg.context_features is not None:
        out.append(f"context_features = {', '.join(cfg.context_features)}")
    for f in cfg.patterns:
        out.append(f"pattern file {f}")
    return out


def _literal_checks(cfg: Any) -> list[str]:
    """Whether the library already recognises each log message a strategy names, as that strategy's."""
    if not cfg.literal_patterns:
        return []
    from .patterns.library import load_library
    from .patterns.matcher import Matcher
    from .remediate.catalogue import CATALOGUE

    matcher = Matcher(load_library(cfg.patterns))
    out = []
    for s, texts in cfg.literal_patterns.items():
        for text in texts:
            mine = [h.pattern for h in matcher.match([text]) if h.pattern.category in CATALOGUE[s].categories]
            if mine:
                out.append(f"{s.value}: {text!r} is recognised by pattern {mine[0].id} ({mine[0].category})")
            else:
                out.append(f"{s.value}: {text!r} is not recognised as {'/'.join(CATALOGUE[s].categories)} by the "
                           "pattern library: add it to a pattern file (patterns: in this file) to act on it")
    return out


def _patterns(p: Path) -> Report:
    from .patterns.library import load_library

    mine = load_library((p,), include_builtin=False)
    r = Report(str(p), "patterns")
    for pat in mine:
        line = f"pattern {pat.id}: {pat.category} at confidence {pat.confidence:g}"
        remedy = getattr(pat, "remediation", "")
        if remedy:
            line += f"; {remedy}"
        r.understood.append(line)
    return r


def _show(v: Any) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    if isinstance(v, float) and v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return str(v)
