"""The product document's strategy formats, read into the guard's ``StrategiesConfig``.

Two shapes, both from docs/product-document.md:

* ``healing.strategies`` in ``healing-config.yml``: a list of ``{name, enabled, threshold, action}``;
* ``strategies:`` in ``healing-strategies.yml``: a mapping of a name to ``enabled``, ``ml_model``,
  ``features``, ``thresholds``, ``actions`` (``primary``/``fallback``, or a list of one-key mappings),
  ``patterns`` and ``detection_method``.

A free-form name is matched to a built-in strategy by its words (:data:`NAME_WORDS`: "flaky-test-detector"
is flaky_test_retry, "resource_exhaustion" oom_recovery, "dependency_conflicts" dependency_hell); an
explicit ``strategy:`` key, or a built-in name, wins. Actions are named as people write them
(:data:`ACTION_NAMES`: "retry-with-backoff", "increase-resources", "clear-cache-retry", ...) and become the
guard's actions. What the guard cannot do as written is accepted and said (``notes``), never silently
dropped; anything unknown is refused with the file, line and key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .remediate.catalogue import Strategy
from .settings import ConfigError

__all__ = ["ACTION_NAMES", "NAME_WORDS", "DocStrategies", "parse_healing_strategies", "parse_strategies_mapping",
           "strategy_of_name"]

#: words of a free-form strategy name -> the built-in strategy (first match wins, in this order)
NAME_WORDS: tuple[tuple[str, Strategy], ...] = (
    ("race", Strategy.RACE_CONDITION), ("concurren", Strategy.RACE_CONDITION),
    ("flaky", Strategy.FLAKY_TEST_RETRY), ("flake", Strategy.FLAKY_TEST_RETRY),
    ("oom", Strategy.OOM_RECOVERY), ("memory", Strategy.OOM_RECOVERY), ("resource", Strategy.OOM_RECOVERY),
    ("disk", Strategy.OOM_RECOVERY),
    ("network", Strategy.NETWORK_BACKOFF), ("connect", Strategy.NETWORK_BACKOFF),
    ("rate_limit", Strategy.NETWORK_BACKOFF),
    ("cache", Strategy.CACHE_CORRUPTION), ("checksum", Strategy.CACHE_CORRUPTION),
    ("depend", Strategy.DEPENDENCY_HELL), ("package", Strategy.DEPENDENCY_HELL),
    ("infra", Strategy.INFRA_RETRY), ("runner", Strategy.INFRA_RETRY),
    ("notify", Strategy.SKIP_AND_NOTIFY),
)

#: action names as people write them (``-`` and ``_`` alike) -> the guard's action
ACTION_NAMES: Mapping[str, str] = MappingProxyType({
    "retry": "retry", "retry_with_backoff": "retry_backoff", "exponential_backoff": "retry_backoff",
    "retry_backoff": "retry_backoff",
    "increase_resources": "rerun_more_memory", "increase_memory": "rerun_more_memory",
    "rerun_more_memory": "rerun_more_memory", "larger_runner": "rerun_larger_runner",
    "rerun_larger_runner": "rerun_larger_runner",
    "clear_cache_retry": "clear_cache_retry", "clear_and_rebuild": "clear_cache_retry",
    "retry_with_isolation": "retry_tests_isolated", "retry_tests_isolated": "retry_tests_isolated",
    "sequential_execution": "rerun_sequential", "rerun_sequential": "rerun_sequential",
    "pin_and_isolate": "rerun_clean_dependencies", "rerun_clean_dependencies": "rerun_clean_dependencies",
    "rebuild_without_cache": "rebuild_no_layer_cache", "rebuild_no_layer_cache": "rebuild_no_layer_cache",
    "cleanup_retry": "cleanup_retry",
    "skip_and_notify": "notify", "notify": "notify",
})

#: the one-key entries of an ``actions:`` list (healing-strategies.yml) -> (action, parameters) or advice
_ACTION_ITEMS: Mapping[str, str] = MappingProxyType({
    "increase_memory": "rerun_more_memory",
    "clear_caches": "",  # the disk-full rerun's cleanup already clears ~/.cache: see notes
    "clear_package_cache": "rerun_clean_dependencies",
    "pin_dependencies": "rerun_clean_dependencies",
    "isolate_environment": "rerun_clean_dependencies",
    "scale_horizontally": "",  # accepted, not possible per job: see notes
})

#: ``features:`` of the document -> the failure-context model's features that carry the signal
#: (flaky/context.py); ``test_name`` is the per-test model itself (every test learns its own history), so
#: it adds none. The context model's own names are accepted as they are.
FEATURE_NAMES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "test_name": (), "failure_rate": ("logit_p",), "time_of_day": ("hour_sin", "hour_cos"),
    "recent_commits": ("touches_change",), "message_changed": ("template_changed",), "co_failures": ("co_failed",),
    "duration": ("duration_z",),
    **{f: (f,) for f in ("logit_p", "touches_change", "template_changed", "co_failed", "duration_z", "hour_sin",
                         "hour_cos")},
})

#: ``ml_model:`` of the document -> the failure-context model (``None``: the default, with a note)
_ML_MODELS: Mapping[str, str | None] = MappingProxyType({
    "gradient_boost": "gradient_trees", "gradient_trees": "gradient_trees", "logistic": "logistic",
    "neural_net": None, "flake_filter": None,
})


def _norm(name: Any) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def strategy_of_name(name: str) -> Strategy | None:
    key = _norm(name)
    try:
        return Strategy(key)
    except ValueError:
        pass
    return next((s for word, s in NAME_WORDS if word in key), None)


@dataclass
class DocStrategies:
    """What one file's document-format strategies set (``strategies_config`` builds its config from it)."""

    enabled: dict[Strategy, bool] = field(default_factory=dict)
    confidence: dict[Strategy, float] = field(default_factory=dict)
    action: dict[Strategy, str] = field(default_factory=dict)  # an ACTION_NAMES value ("notify": a person)
    max_retries: dict[Strategy, int] = field(default_factory=dict)
    parameters: dict[Strategy, dict[str, Any]] = field(default_factory=dict)
    flaky_threshold: float | None = None  # P(a retry passes) the flaky tests need
    min_recoveries: int | None = None
    model_type: str | None = None
    features: tuple[str, ...] | None = None
    literal_patterns: dict[Strategy, tuple[str, ...]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class _Where:
    def __init__(self, source: str, lines: Mapping[tuple[str, ...], int]) -> None:
        self.source, self.lines = source, lines

    def err(self, path: tuple[str, ...], reason: str) -> ConfigError:
        line = None
        for n in range(len(path), 0, -1):  # the nearest key with a line
            line = self.lines.get(path[:n])
            if line:
                break
        return ConfigError(self.source, _dotted(path), reason, line)


def _dotted(path: tuple[str, ...]) -> str:
    out = ""
    for p in path:
        out += p if p.startswith("[") or not out else "." + p
    return out


def _bool(w: _Where, path: tuple[str, ...], v: Any) -> bool:
    if not isinstance(v, bool):
        raise w.err(path, f"expected true or false, got {v!r}")
    return v


def _prob(w: _Where, path: tuple[str, ...], v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
        raise w.err(path, f"expected a number between 0 and 1, got {v!r}")
    return float(v)


def _action(w: _Where, path: tuple[str, ...], v: Any) -> str:
    key = _norm(v)
    if key not in ACTION_NAMES:
        raise w.err(path, f"unknown action {v!r}; known: {', '.join(sorted(ACTION_NAMES))}")
    return ACTION_NAMES[key]


def _strategy(w: _Where, path: tuple[str, ...], name: Any, explicit: Any = None) -> Strategy:
    if explicit is not None:
        try:
            return Strategy(_norm(explicit))
        except ValueError:
            raise w.err((*path, "strategy"), f"unknown strategy {explicit!r}; known: "
                                            f"{', '.join(s.value for s in Strategy)}") from None
    s = strategy_of_name(str(name))
    if s is None:
        raise w.err(path, f"{name!r} names no strategy: its words must include one of "
                          f"{', '.join(sorted({word for word, _ in NAME_WORDS}))}, or add strategy: "
                          f"<{'|'.join(s.value for s in Strategy)}>")
    return s


def parse_healing_strategies(items: Any, w: _Where, out: DocStrategies) -> None:
    """``healing.strategies`` of healing-config.yml: a list of ``{name, enabled, threshold, action}``."""
    base = ("healing", "strategies")
    if not isinstance(items, list):
        raise w.err(base, "expected a list of {name, enabled, threshold, action}")
    known = ("name", "strategy", "enabled", "threshold", "action", "max_retries")
    for i, item in enumerate(items):
        path = (*base, f"[{i}]")
        if not isinstance(item, Mapping) or "name" not in item:
            raise w.err(path, "expected a mapping with a name, e.g. {name: flaky-test-detector, enabled: true}")
        for k in item:
            if k not in known:
                raise w.err((*path, str(k)), f"unknown key; known: {', '.join(known)}")
        s = _strategy(w, path, item["name"], item.get("strategy"))
        if "enabled" in item:
            out.enabled[s] = _bool(w, (*path, "enabled"), item["enabled"])
        if "threshold" in item:
            t = _prob(w, (*path, "threshold"), item["threshold"])
            if s in (Strategy.FLAKY_TEST_RETRY, Strategy.RACE_CONDITION):
                # "threshold: 0.3  # 30% failure rate": a test that fails more often than that is not
                # retried as flaky (a retry must pass with at least 1 - 0.3)
                out.flaky_threshold = round(1.0 - t, 6)
            else:
                out.confidence[s] = t
        if "action" in item:
            out.action[s] = _action(w, (*path, "action"), item["action"])
        if "max_retries" in item:
            v = item["max_retries"]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise w.err((*path, "max_retries"), f"expected an integer >= 0, got {v!r}")
            out.max_retries[s] = v


def parse_strategies_mapping(body: Any, w: _Where, out: DocStrategies) -> None:
    """``strategies:`` of healing-strategies.yml (the product document's form)."""
    if not isinstance(body, Mapping):
        raise w.err(("strategies",), "expected a mapping of strategy name to its settings")
    known = ("strategy", "enabled", "ml_model", "features", "thresholds", "actions", "patterns", "detection_method")
    for name, spec in body.items():
        path = ("strategies", str(name))
        if not isinstance(spec, Mapping):
            raise w.err(path, "expected a mapping (enabled, thresholds, actions, ...)")
        for k in spec:
            if k not in known:
                raise w.err((*path, str(k)), f"unknown key; known: {', '.join(known)}")
        s = _strategy(w, path, name, spec.get("strategy"))
        if "enabled" in spec:
            out.enabled[s] = _bool(w, (*path, "enabled"), spec["enabled"])
        if "ml_model" in spec:
            m = _norm(spec["ml_model"])
            if m not in _ML_MODELS:
                raise w.err((*path, "ml_model"), f"unknown model {spec['ml_model']!r}; known: {', '.join(_ML_MODELS)}")
            out.model_type = _ML_MODELS[m] or "logistic"
            where = _dotted((*path, "ml_model"))
            if m == "neural_net":
                out.notes.append(f"{where}: River, the guard's online-learning library, has no neural network "
                                 "classifier (and PyTorch is not a dependency): the failure-context model stays "
                                 "a logistic regression")
            elif out.model_type == "gradient_trees":
                out.notes.append(f"{where}: the failure-context model is River's stochastic gradient tree "
                                 "(tree.SGTClassifier, grown by the gradient of the log-loss), beside each "
                                 "test's own Bayesian filter")
        if "features" in spec:
            feats = spec["features"]
            if not isinstance(feats, list) or not feats:
                raise w.err((*path, "features"), "expected a list of feature names")
            mapped: list[str] = []
            for j, f in enumerate(feats):
                key = _norm(f)
                if key not in FEATURE_NAMES:
                    raise w.err((*path, "features", f"[{j}]"),
                                f"unknown feature {f!r}; known: {', '.join(FEATURE_NAMES)}")
                mapped += [x for x in FEATURE_NAMES[key] if x not in mapped]
            out.features = tuple(mapped) or None
            left = [f for f in ("logit_p", "touches_change", "template_changed", "co_failed", "duration_z",
                                "hour_sin", "hour_cos") if f not in mapped]
            out.notes.append(f"{_dotted((*path, 'features'))}: the failure-context model reads "
                             f"{', '.join(mapped) or 'all its features (test_name is each test own model)'}"
                             + (f" and leaves out {', '.join(left)} (list them, or drop features: to read all)"
                                if left and mapped else ""))
        if "thresholds" in spec:
            th = spec["thresholds"]
            if not isinstance(th, Mapping):
                raise w.err((*path, "thresholds"), "expected a mapping (confidence, historical_failures)")
            for k, v in th.items():
                tp = (*path, "thresholds", str(k))
                if k == "confidence":
                    out.confidence[s] = _prob(w, tp, v)
                elif k == "historical_failures":
                    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                        raise w.err(tp, f"expected an integer >= 1, got {v!r}")
                    out.min_recoveries = v
                else:
                    raise w.err(tp, "unknown key; known: confidence, historical_failures")
        if "actions" in spec:
            _actions(spec["actions"], w, (*path, "actions"), s, out)
        if "patterns" in spec:
            pats = spec["patterns"]
            if not isinstance(pats, list) or not all(isinstance(p, str) and p.strip() for p in pats):
                raise w.err((*path, "patterns"), "expected a list of log messages")
            out.literal_patterns[s] = tuple(pats)
        if "detection_method" in spec:
            dm = _norm(spec["detection_method"])
            if dm not in ("semantic_diff", "log_patterns"):
                raise w.err((*path, "detection_method"), "expected semantic_diff or log_patterns")
            if dm == "semantic_diff":
                out.notes.append(f"{_dotted((*path, 'detection_method'))}: the guard finds dependency failures in "
                                 "the log (resolution and missing-module patterns), not by diffing lockfiles")


def _actions(v: Any, w: _Where, path: tuple[str, ...], s: Strategy, out: DocStrategies) -> None:
    if isinstance(v, Mapping):  # {primary, fallback}
        for k, a in v.items():
            if k not in ("primary", "fallback"):
                raise w.err((*path, str(k)), "unknown key; known: primary, fallback")
            action = _action(w, (*path, str(k)), a)
            if k == "primary":
                out.action[s] = action
            elif action != "notify":
                raise w.err((*path, "fallback"), "the fallback must tell a person (skip_and_notify): when the "
                                                 "primary action may not act, the failure goes to its author or "
                                                 "on-call")
        return
    if not isinstance(v, list):
        raise w.err(path, "expected {primary, fallback} or a list of one-key mappings")
    params: dict[str, Any] = {}
    for j, item in enumerate(v):
        ip = (*path, f"[{j}]")
        if not isinstance(item, Mapping) or len(item) != 1:
            raise w.err(ip, "expected a one-key mapping, e.g. increase_memory: \"+2GB\"")
        (k, val), = item.items()
        key = _norm(k)
        if key not in _ACTION_ITEMS:
            raise w.err((*ip, str(k)), f"unknown action; known: {', '.join(_ACTION_ITEMS)}")
        if key == "increase_memory":
            m = re.fullmatch(r"\+?\s*(\d+(?:\.\d+)?)\s*([GgMm])[Bb]?", str(val))
            if not m:
                raise w.err((*ip, str(k)), f"expected an amount like \"+2GB\" or \"+512MB\", got {val!r}")
            mb = float(m.group(1)) * (1024 if m.group(2).lower() == "g" else 1)
            if not 1 <= mb <= 65536:
                raise w.err((*ip, str(k)), f"expected 1 MB to 64 GB, got {val!r}")
            params["memory_add_mb"] = int(mb)
            out.action[s] = "rerun_more_memory"
            out.notes.append(f"{_dotted((*ip, str(k)))}: the next attempt's heap limits (Node, JVM) grow by "
                             f"{int(mb)} MB through its directive (instead of doubling); a hosted runner's own "
                             "memory cannot grow")
        elif key == "scale_horizontally":
            _bool(w, (*ip, str(k)), val)
            out.notes.append(f"{_dotted((*ip, str(k)))}: a re-run cannot add runners to a job (a workflow's matrix "
                             "or parallelism decides that); the guard reruns with more memory instead")
        elif key == "clear_caches":
            if _bool(w, (*ip, str(k)), val):
                out.notes.append(f"{_dotted((*ip, str(k)))}: a full disk's rerun clears ~/.cache and prunes docker "
                                 "first (cleanup_retry); an out-of-memory rerun keeps the caches")
        else:
            if _bool(w, (*ip, str(k)), val):
                out.action[s] = _ACTION_ITEMS[key]
                if key == "clear_package_cache":
                    params["clear_dependency_cache"] = True
                elif key == "pin_dependencies":
                    params["frozen_lockfile"] = True
                else:  # isolate_environment: a fresh dependency cache is the isolation a re-run can give
                    params["clear_dependency_cache"] = True
    if params:
        out.parameters.setdefault(s, {}).update(params)
