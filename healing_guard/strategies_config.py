"""``healing-strategies.yml``, the guard's second config file, which tunes the remediation strategies.

The strategies themselves (``Strategy``, the categories each answers) live in ``remediate/catalogue.py``
and the actions in ``remediate/strategies.py``: this module only reads the file that tunes them.

``healing-strategies.yml`` is refused strictly, like ``healing-config.yml`` (``settings.py``): a
misspelt key would otherwise silently leave a strategy at its default, and a strategy that retries
when the team thought it was off costs money and hides regressions. Every refusal names the file, the
line, the dotted key and the reason::

    healing-strategies.yml:7: actions.oom_recovery.confidence_treshold: unknown key; known: ...
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from .remediate.catalogue import CATALOGUE, Strategy, StrategyInfo, parse_strategy_name
from .settings import ConfigError

__all__ = [
    "CATALOGUE",
    "apply_to_settings",
    "FEATURES",
    "MODEL_TYPES",
    "ActionConfig",
    "ModelConfig",
    "Strategy",
    "StrategiesConfig",
    "StrategyInfo",
    "Thresholds",
    "check_parameters",
    "load_strategies",
    "load_strategy_sources",
    "parse_strategies",
    "parse_strategy_name",
    "policy_of",
]


#: ``ml_model.type`` values: the per-test flakiness models the guard has. ``flake_filter`` is the
#: Bayesian filter over each test's failure rate with a population prior (``flaky/model.py``).
MODEL_TYPES = ("flake_filter",)

#: Feature names the per-test model computes (``features:`` must pick from these). The flaky model may
#: publish its own list as ``FEATURE_NAMES``; then that list is the authority.
_DEFAULT_FEATURES: tuple[str, ...] = ("last_failed", "streak_fail", "streak_pass", "fail_rate", "fail_ewm", "flip_rate")


def _feature_names() -> tuple[str, ...]:
    from .flaky import model

    names = getattr(model, "FEATURE_NAMES", None)
    return tuple(names) if names else _DEFAULT_FEATURES


FEATURES: tuple[str, ...] = _DEFAULT_FEATURES


# --- the parsed file ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelConfig:
    """``ml_model``: the per-test flakiness model's kind and hyper-parameter.

    ``prior_strength``: how many tests' worth of weight the generic prior keeps against the population
    prior fitted across the tests seen (higher: new tests look like the generic suite for longer).
    """

    type: str = "flake_filter"
    prior_strength: float = 20.0


@dataclass(frozen=True)
class Thresholds:
    """``thresholds``: ``None`` leaves the value of ``healing-config.yml`` (or the default) in force."""

    flaky: float | None = None  # P(a retry passes) every failed test needs before the tests are retried
    quarantine: float | None = None  # P(fail) at which a test becomes a quarantine candidate
    confidence: float | None = None  # diagnoses below it are "unknown" and go to a person
    min_runs: int | None = None  # runs of history a test needs before it can count as flaky
    #: failures followed by a pass a test needs before it can count as flaky (the document's
    #: ``thresholds.historical_failures``)
    min_recoveries: int | None = None


@dataclass(frozen=True)
class ActionConfig:
    """``actions.<strategy>``: ``None`` leaves the strategy's default."""

    enabled: bool | None = None
    confidence_threshold: float | None = None
    max_retries: int | None = None
    parameters: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: the action this strategy takes instead of the planner's choice ("notify": a person decides)
    action: str | None = None


@dataclass(frozen=True)
class StrategiesConfig:
    source: str = "<defaults>"
    ml_model: ModelConfig = field(default_factory=ModelConfig)
    features: tuple[str, ...] = FEATURES
    thresholds: Thresholds = field(default_factory=Thresholds)
    patterns: tuple[str, ...] = ()  # resolved against the file's directory
    actions: Mapping[Strategy, ActionConfig] = field(default_factory=lambda: MappingProxyType({}))
    #: log messages a strategy names (the document's ``patterns:`` list), checked by ``guard config check``
    literal_patterns: Mapping[Strategy, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    #: what the guard does instead of options it cannot carry out as written
    notes: tuple[str, ...] = ()
    #: the failure-context model and its features (the document's ``ml_model`` / ``features`` of a
    #: strategy; flaky/context.py); None: the settings' own
    context_model: str | None = None
    context_features: tuple[str, ...] | None = None


#: "strategies" (healing-strategies.yml) and "healing" (healing-config.yml's strategies) are the product
#: document's formats (strategies_doc.py); in a healing-config.yml only healing.strategies is read here
_TOP = ("version", "ml_model", "features", "thresholds", "patterns", "actions", "strategies", "healing")
_MODEL_KEYS = ("type", "prior_strength")
_THRESHOLD_KEYS = ("flaky", "quarantine", "confidence", "min_runs")
_ACTION_KEYS = ("enabled", "confidence_threshold", "max_retries", "parameters")
_PARAM_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: parameters the guard computes itself; a config may not overwrite them
RESERVED_PARAMETERS = frozenset({"tests"})


class _Doc:
    """The composed YAML tree of one file, turned into values with errors that point at lines."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._loader = yaml.SafeLoader("")

    def err(self, node: yaml.Node | None, key: str, reason: str) -> ConfigError:
        return ConfigError(self.source, key, reason, node.start_mark.line + 1 if node is not None else None)

    def value(self, node: yaml.Node, key: str) -> Any:
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self.err(node, key, f"bad value: {exc}") from None
        except RecursionError:
            raise self.err(node, key, "bad value: nested too deeply") from None

    def items(self, node: yaml.Node, key: str, known: tuple[str, ...] | None,
              what: str = "a mapping") -> list[tuple[str, yaml.Node, yaml.Node]]:
        """The entries of a mapping node; duplicate and (when ``known`` is given) unknown keys refused."""
        if _is_null(node):
            return []
        if not isinstance(node, yaml.MappingNode):
            raise self.err(node, key or "-", f"expected {what}")
        seen: set[str] = set()
        out: list[tuple[str, yaml.Node, yaml.Node]] = []
        for knode, vnode in node.value:
            name = str(knode.value) if isinstance(knode, yaml.ScalarNode) else "?"
            dotted = f"{key}.{name}" if key else (name or "''")  # an empty key still names a place
            if not isinstance(knode, yaml.ScalarNode):
                raise self.err(knode, key or "-", "keys must be plain strings")
            if name in seen:
                raise self.err(knode, dotted, "duplicate key (YAML would silently keep only the last one)")
            seen.add(name)
            if known is not None and name not in known:
                raise self.err(knode, dotted, f"unknown key; known: {', '.join(known)}")
            out.append((name, knode, vnode))
        return out

    def seq(self, node: yaml.Node, key: str) -> list[yaml.Node]:
        if _is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise self.err(node, key, "expected a list")
        return list(node.value)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"expected a number, got {v!r}")
    try:
        f = float(v)
    except OverflowError:  # an integer with hundreds of digits
        raise ValueError(f"number out of range: {str(v)[:40]}...") from None
    if math.isnan(f):
        raise ValueError(f"expected a number, got {v!r}")
    return f


def _prob(v: Any) -> float:
    f = _number(v)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"must be between 0 and 1, got {v!r}")
    return f


def _int(v: Any, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"expected a whole number >= {minimum}, got {v!r}")
    if v < minimum:
        raise ValueError(f"must be >= {minimum}, got {v}")
    return v


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


def check_parameters(v: Any) -> dict[str, Any]:
    """Action parameters: a mapping of identifiers to JSON-like values (they travel in commands).

    Errors are relative to the parameters (``backoff_seconds[1]: ...``); callers add where they are.
    """
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise ValueError("expected a mapping of parameter name to value, e.g. {memory_factor: 2}")
    out: dict[str, Any] = {}
    for k, val in v.items():
        if not isinstance(k, str) or not _PARAM_KEY.fullmatch(k):
            raise ValueError(f"parameter names must be identifiers (letters, digits, _), got {k!r}")
        if k in RESERVED_PARAMETERS:
            raise ValueError(f"{k!r} is set by the guard itself; it cannot be configured")
        _check_json(val, k, [0])
        out[k] = val
    return out


#: bounds on one parameter value: parameters travel in every command, and YAML aliases can build a
#: recursive value or an exponentially large one (a "billion laughs") from a few lines
MAX_PARAMETER_DEPTH = 32
MAX_PARAMETER_VALUES = 10_000


def _check_json(v: Any, key: str, count: list[int], depth: int = 0) -> None:
    count[0] += 1
    if count[0] > MAX_PARAMETER_VALUES:
        raise ValueError(f"{key}: more than {MAX_PARAMETER_VALUES} values (YAML aliases that expand too much?)")
    if depth > MAX_PARAMETER_DEPTH:
        raise ValueError(f"{key}: nested deeper than {MAX_PARAMETER_DEPTH} levels (a recursive YAML alias?)")
    if isinstance(v, str):
        if "\x00" in v:
            raise ValueError(f"{key}: must not contain NUL characters")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{key}: must be valid Unicode (it holds a lone surrogate)") from None
        return
    if isinstance(v, int) and not isinstance(v, bool) and not -(1 << 63) <= v < (1 << 64):
        raise ValueError(f"{key}: integer out of the 64-bit range")
    if v is None or isinstance(v, (bool, int)):
        return
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"{key}: must be a finite number, got {v!r}")
        return
    if isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            _check_json(x, f"{key}[{i}]", count, depth + 1)
        return
    if isinstance(v, Mapping):
        for k, x in v.items():
            if not isinstance(k, str):
                raise ValueError(f"{key}: keys must be strings, got {k!r}")
            _check_json(x, f"{key}.{k}", count, depth + 1)
        return
    raise ValueError(f"{key}: expected a string, number, boolean, list or mapping, got {type(v).__name__}")


def parse_strategies(text: str, source: str = "<string>", base_dir: str | Path | None = None) -> StrategiesConfig:
    """Parse the text of a ``healing-strategies.yml``; ``source`` names it in errors.

    Pattern files are resolved against ``base_dir`` (the file's directory) and must exist.
    """
    doc = _Doc(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(source, "-", f"not valid YAML: {exc.problem or exc}",
                          mark.line + 1 if mark is not None else None) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, "-", f"not valid YAML: {exc}") from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise ConfigError(source, "-", "not valid YAML: nested too deeply") from None
    if root is None:
        return StrategiesConfig(source=source)
    if not isinstance(root, yaml.MappingNode):
        raise doc.err(root, "-", f"the top level must be a mapping with keys: {', '.join(_TOP)}")
    base = Path(base_dir) if base_dir is not None else Path(".")

    def conv(node: yaml.Node, key: str, fn: Any) -> Any:
        try:
            return fn(doc.value(node, key))
        except (ValueError, TypeError) as exc:
            raise doc.err(node, key, str(exc)) from None

    model = ModelConfig()
    features = FEATURES
    thresholds = Thresholds()
    patterns: list[str] = []
    actions: dict[Strategy, ActionConfig] = {}
    tops = {str(k.value) for k, _ in root.value if isinstance(k, yaml.ScalarNode)}
    if "healing" in tops:  # a healing-config.yml: its other sections are settings (settings.py)
        return _with_document_format(StrategiesConfig(source=source), text, source)
    for top, _knode, vnode in doc.items(root, "", _TOP):
        if top == "strategies":
            continue
        if top == "version":
            conv(vnode, "version", _version)
        elif top == "ml_model":
            kw: dict[str, Any] = {}
            for k, _kn, vn in doc.items(vnode, "ml_model", _MODEL_KEYS):
                key = f"ml_model.{k}"
                if k == "type":
                    kw[k] = conv(vn, key, _model_type)
                else:
                    kw[k] = conv(vn, key, _positive)
            model = ModelConfig(**kw)
        elif top == "features":
            known = _feature_names()
            names: list[str] = []
            items = doc.seq(vnode, "features")
            if not items:
                raise doc.err(vnode, "features", f"must name at least one feature; known: {', '.join(known)}")
            for i, n in enumerate(items):
                key = f"features[{i}]"
                name = conv(n, key, lambda v: _choice(v, known, "feature"))
                if name in names:
                    raise doc.err(n, key, f"{name!r} is listed twice")
                names.append(name)
            features = tuple(names)
        elif top == "thresholds":
            tkw: dict[str, Any] = {}
            for k, _kn, vn in doc.items(vnode, "thresholds", _THRESHOLD_KEYS):
                tkw[k] = conv(vn, f"thresholds.{k}", (lambda v: _int(v, 1)) if k == "min_runs" else _prob)
            thresholds = Thresholds(**tkw)
        elif top == "patterns":
            for i, n in enumerate(doc.seq(vnode, "patterns")):
                key = f"patterns[{i}]"
                p = conv(n, key, _path_str)
                path = Path(p) if Path(p).is_absolute() else base / p
                if not path.is_file():
                    raise doc.err(n, key, f"pattern file not found: {path} (paths are relative to this file)")
                patterns.append(str(path))
        else:  # actions
            for name, kn, body in doc.items(vnode, "actions", None):
                key = f"actions.{name}"
                try:
                    strategy = Strategy(name)
                except ValueError:
                    raise doc.err(kn, key, f"unknown strategy; known: {', '.join(s.value for s in Strategy)}") from None
                akw: dict[str, Any] = {}
                for k, _kk, vn in doc.items(body, key, _ACTION_KEYS):
                    akey = f"{key}.{k}"
                    if k == "enabled":
                        akw[k] = conv(vn, akey, _bool)
                        if strategy is Strategy.SKIP_AND_NOTIFY and not akw[k]:
                            raise doc.err(vn, akey, "the fallback cannot be disabled: something must tell a person")
                    elif strategy is Strategy.SKIP_AND_NOTIFY and k != "parameters":
                        raise doc.err(vn, akey, "the fallback takes no automatic action; only parameters apply")
                    elif k == "confidence_threshold":
                        akw[k] = conv(vn, akey, _prob)
                    elif k == "max_retries":
                        akw[k] = conv(vn, akey, lambda v: _int(v, 0))
                    else:
                        akw[k] = MappingProxyType(conv(vn, akey, check_parameters))
                actions[strategy] = ActionConfig(**akw)
    own = StrategiesConfig(source=source, ml_model=model, features=features, thresholds=thresholds,
                           patterns=tuple(patterns), actions=MappingProxyType(actions))
    return _with_document_format(own, text, source) if "strategies" in tops else own


def _with_document_format(own: StrategiesConfig, text: str, source: str) -> StrategiesConfig:
    """``own`` with the product document's strategies of the same file (``strategies:`` or
    ``healing.strategies``) added; a value set in both forms is refused."""
    from .settings import _line_index
    from .strategies_doc import DocStrategies, _Where, parse_healing_strategies, parse_strategies_mapping

    data = yaml.safe_load(text) or {}
    w = _Where(source, _line_index(text))
    d = DocStrategies()
    if "strategies" in data:
        parse_strategies_mapping(data["strategies"], w, d)
    healing = data.get("healing")
    if isinstance(healing, Mapping) and "strategies" in healing:
        parse_healing_strategies(healing["strategies"], w, d)
    actions = dict(own.actions)
    for s in {*d.enabled, *d.confidence, *d.action, *d.parameters, *d.max_retries}:
        old = actions.get(s, ActionConfig())
        if any(v is not None for v in (old.enabled, old.confidence_threshold, old.max_retries, old.action)):
            raise ConfigError(source, f"actions.{s.value}", "set twice: in actions: and in the strategies of the "
                                                            "product document's format")
        actions[s] = ActionConfig(enabled=d.enabled.get(s), confidence_threshold=d.confidence.get(s),
                                  max_retries=d.max_retries.get(s), action=d.action.get(s),
                                  parameters=MappingProxyType({**old.parameters, **d.parameters.get(s, {})}))
    t = own.thresholds
    if d.flaky_threshold is not None or d.min_recoveries is not None:
        if (d.flaky_threshold is not None and t.flaky is not None) or (
                d.min_recoveries is not None and t.min_recoveries is not None):
            raise ConfigError(source, "thresholds", "set twice: in thresholds: and in the strategies")
        t = Thresholds(flaky=t.flaky if d.flaky_threshold is None else d.flaky_threshold, quarantine=t.quarantine,
                       confidence=t.confidence, min_runs=t.min_runs,
                       min_recoveries=t.min_recoveries if d.min_recoveries is None else d.min_recoveries)
    return StrategiesConfig(source=source, ml_model=own.ml_model, features=own.features, thresholds=t,
                            patterns=own.patterns, actions=MappingProxyType(actions),
                            literal_patterns=MappingProxyType(dict(d.literal_patterns)),
                            notes=(*own.notes, *d.notes), context_model=d.model_type,
                            context_features=d.features)


def load_strategy_sources(settings: Any) -> StrategiesConfig:
    """The strategies the settings name: ``healing.strategies`` of the healing-config.yml they were read
    from (the product document's format), then the strategies file. A strategy set in both is refused."""
    parts = []
    if settings.config_file:
        p = Path(settings.config_file)
        text = p.read_text(encoding="utf-8")  # read once already by load_settings: it is valid YAML
        data = yaml.safe_load(text)
        if isinstance(data, dict) and isinstance(data.get("healing"), dict) and "strategies" in data["healing"]:
            parts.append(parse_strategies(text, str(p), p.parent))
    if settings.strategies_file:
        parts.append(load_strategies(settings.strategies_file))
    if not parts:
        return StrategiesConfig()
    if len(parts) == 1:
        return parts[0]
    a, b = parts
    both = set(a.actions) & set(b.actions)
    if both:
        raise ConfigError(b.source, f"actions.{sorted(x.value for x in both)[0]}",
                          f"also set in {a.source} (healing.strategies): set each strategy in one file")
    return dataclasses.replace(
        b, actions=MappingProxyType({**a.actions, **b.actions}), notes=(*a.notes, *b.notes),
        context_model=b.context_model or a.context_model,
        context_features=b.context_features if b.context_features is not None else a.context_features,
        thresholds=Thresholds(**{f.name: getattr(b.thresholds, f.name) if getattr(b.thresholds, f.name) is not None
                                 else getattr(a.thresholds, f.name) for f in dataclasses.fields(Thresholds)}))


def _version(v: Any) -> int:
    if isinstance(v, bool) or v != 1:
        raise ValueError(f"only version 1 is understood, got {v!r}")
    return 1


def _choice(v: Any, options: tuple[str, ...], what: str = "value") -> str:
    if not isinstance(v, str) or v not in options:
        raise ValueError(f"unknown {what} {v!r}; one of: {', '.join(options)}")
    return v


def _model_type(v: Any) -> str:
    if v == "river_logistic":
        raise ValueError("'river_logistic' is no longer the per-test model (a logistic regression over history "
                         f"features was replaced by a Bayesian filter); use one of: {', '.join(MODEL_TYPES)}")
    return _choice(v, MODEL_TYPES, "model type")


def _positive(v: Any) -> float:
    f = _number(v)
    if f <= 0 or not math.isfinite(f):
        raise ValueError(f"must be a number > 0, got {v!r}")
    return f


def _path_str(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("expected a file path")
    return v


def load_strategies(path: str | Path) -> StrategiesConfig:
    """Read and validate a ``healing-strategies.yml``."""
    p = Path(path)
    src = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(src, "-", "file not found; check the path passed as strategies=") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(src, "-", f"cannot read: {exc}") from None
    return parse_strategies(text, src, p.parent)


def policy_of(cfg: StrategiesConfig) -> Any:
    """The :class:`~healing_guard.remediate.policy.Policy` this file sets: each ``actions.<strategy>`` on
    top of the catalogue's defaults (what both the worker's engine and ``PipelineGuard`` decide with)."""
    from .remediate.policy import Policy

    policy = Policy()
    for s, a in cfg.actions.items():
        policy = policy.updated(s, enabled=a.enabled, threshold=a.confidence_threshold, max_retries=a.max_retries,
                                parameters=a.parameters, action=a.action)
    return policy


def apply_to_settings(s: Any, cfg: StrategiesConfig, *, gates: bool = True) -> Any:
    """A ``Settings`` with this file's thresholds, pattern files and per-strategy gates applied: what the
    stream worker reads of ``healing-strategies.yml`` besides its strategy policy (:func:`policy_of`, which
    the engine and the Python API both apply). A disabled strategy's categories never act automatically;
    its ``confidence_threshold`` becomes their gate."""
    import dataclasses

    from .remediate.gate import NEVER

    t = cfg.thresholds
    # the file's value (when it sets one) -> the settings field it overrides
    given = {"flaky_retry_threshold": t.flaky, "confidence_threshold": t.confidence, "flaky_min_runs": t.min_runs,
             "quarantine_threshold": t.quarantine, "flaky_min_recoveries": t.min_recoveries,
             "context_model": cfg.context_model, "context_features": cfg.context_features}
    changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if cfg.patterns:
        changes["pattern_files"] = tuple(s.pattern_files) + tuple(p for p in cfg.patterns if p not in s.pattern_files)
    if not gates:  # the Python API applies the actions itself (add_strategy)
        return dataclasses.replace(s, **changes) if changes else s
    gate_map = dict(s.auto_thresholds)
    for strategy, action in cfg.actions.items():
        for cat in CATALOGUE[strategy].categories:
            if strategy in (Strategy.FLAKY_TEST_RETRY, Strategy.RACE_CONDITION, Strategy.DEPENDENCY_HELL):
                continue  # decided by the test history / opt-in, not by a category gate
            if action.enabled is False:
                gate_map[cat] = NEVER
            elif action.confidence_threshold is not None:
                gate_map[cat] = action.confidence_threshold
    if gate_map != dict(s.auto_thresholds):
        changes["auto_thresholds"] = gate_map
    return dataclasses.replace(s, **changes) if changes else s
