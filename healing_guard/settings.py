"""The one frozen settings object, built at the entry point from defaults, a config file, env and flags.

Precedence, lowest first: built-in defaults < ``healing-config.yml`` (``--config`` or ``GUARD_CONFIG``;
with neither, ``.github/healing-config.yml`` when it exists, as the product document puts it) <
environment variables (``GUARD_*``) < CLI flags. Nothing else in the package reads ``os.environ``.
The file may use the guard's sections (``cost_tracking:``, ``pipeline:``, ...) or the product document's
(``healing:``, ``cost_control:``; translated by ``config_doc.py``), or both: one schema. A bad value is
refused at start with the file, key (and line) and the reason.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from .config_doc import DOC_SECTIONS, apply_convert, known_keys, translate
from .topics import Topics  # the topic names and specs live in topics.py; here only the user's prefix


class ConfigError(ValueError):
    """A setting that cannot be used; the message names where it came from and what to do."""

    def __init__(self, source: str, key: str, reason: str, line: int | None = None) -> None:
        self.source, self.key, self.reason, self.line = source, key, reason, line
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {key}: {reason}")


DEFAULT_PRICES = {"small": 0.008, "medium": 0.016, "large": 0.032, "xlarge": 0.064}


@dataclass(frozen=True)
class Settings:
    broker_url: str = "kafka://127.0.0.1:9092"
    partitions: int = 4
    app_id: str = "healing-guard"
    #: how often a worker commits its consumer offsets (Faust's broker_commit_interval); what it processed
    #: after the last commit is read again after a crash, and the agents make that replay harmless
    commit_interval_seconds: float = 1.0
    topic_prefix: str = ""  # in front of every name of topics.Topics
    clickhouse_dsn: str = "chdb://.guard/chdb"
    clickhouse_database: str = "guard"
    facts_enabled: bool = True
    fact_batch_size: int = 5000
    fact_flush_seconds: float = 1.0
    # pipeline
    max_chunk_bytes: int = 4 << 20
    max_pending_chunks: int = 256
    tail_lines: int = 20
    max_evidence: int = 64
    chunk_grace_seconds: float = 10.0
    test_grace_seconds: float = 2.0
    window_ttl_seconds: float = 6 * 3600.0
    confidence_threshold: float = 0.5
    flaky_retry_threshold: float = 0.6
    flaky_min_runs: int = 5
    #: failures followed by a pass a test needs before the guard retries it as flaky
    flaky_min_recoveries: int = 1
    #: the model of a failure's context (flaky/context.py): logistic or gradient_trees, and the features
    #: it reads (empty: all); healing-strategies.yml's ml_model and features
    context_model: str = "logistic"
    context_features: tuple[str, ...] = ()
    quarantine_enabled: bool = True
    quarantine_threshold: float = 0.3  # P(next run fails) at which a flaky test is quarantined
    quarantine_release_runs: int = 50  # consecutive passes before a quarantined test is released
    # escalation: a burst of failures with one template across repositories is one incident
    incidents_enabled: bool = True
    incident_window_seconds: float = 600.0
    incident_min_jobs: int = 5
    incident_min_repos: int = 2
    pattern_files: tuple[str, ...] = ()
    #: healing-strategies.yml (thresholds, patterns, per-strategy enabled / confidence_threshold); "" for none
    strategies_file: str = ""
    #: per-category confidence an automatic action needs; overrides the measured defaults (gate.yml)
    auto_thresholds: Mapping[str, float] = dataclasses.field(default_factory=dict)
    #: a label model written by `guard learn` (online learner over confirmed labels); "" for none
    label_model: str = ""
    #: the text model over the failure chunk (classify/text_model.py): "packaged" the one that ships, a path
    #: of one trained with benchmarks/train_text_model.py, or "" / "off" for none (the rules alone). The
    #: model is asked only when the rules are unsure (under a millisecond a job; docs/benchmarks.md)
    text_model: str = "packaged"
    # cost
    #: false: no daily or per-repository budget stops an automatic action (cost_control.enabled: false)
    budgets_enabled: bool = True
    daily_budget_usd: float = 200.0
    repo_daily_budget_usd: float = 50.0
    max_retries_per_job: int = 2
    human_response_minutes: float = 30.0
    default_runner_size: str = "medium"
    price_per_minute_usd: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_PRICES))
    #: the day's healing spend (USD) that sends an alert; 0: none (healing.cost_tracking.alert_threshold)
    cost_alert_usd: float = 0.0
    #: budget alert levels, fractions of daily_budget_usd (cost_control.alerts.threshold_percentages)
    budget_alert_levels: tuple[float, ...] = (0.5, 0.8, 0.95)
    budget_alert_channel: str = ""
    # notifications and escalation (the product document's healing.notifications / healing.escalation)
    notify_slack_channel: str = ""
    notify_on_failure: bool = True
    notify_on_recovery: bool = False
    escalation_ticket: bool = True
    escalation_assignee: str = ""
    # optimisation and reporting (cost_control.optimization / .reporting)
    prefer_spot_instances: bool = False
    downgrade_after_failures: int = 0
    cache_aggressive: bool = False
    export_to: str = ""
    #: OTLP/HTTP endpoints by name (reporting.endpoints): export_to may name one
    export_endpoints: Mapping[str, str] = dataclasses.field(default_factory=dict)
    export_granularity: str = "hourly"
    #: the healing-config.yml these settings were read from ("" for none)
    config_file: str = ""
    # REST API (`guard api`) and metrics
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    #: hashed API keys, scoped per repository ("" = <data_dir>/api-keys.json)
    api_keys_file: str = ""
    #: /metrics of the API needs an API key for every repository (it lists them all)
    api_metrics_auth: bool = False
    #: the worker's Prometheus /metrics port (0: not served)
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    # broker credentials (SASL, docs/reliability.md "Signed commands and broker ACLs"); no mechanism: none
    broker_sasl_mechanism: str = ""  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    broker_username: str = ""
    broker_password: str = dataclasses.field(default="", repr=False)
    #: TLS to the broker (SASL_SSL, or SSL without a mechanism), with the system's CA certificates
    broker_tls: bool = False
    # command signatures (healing_guard/signing.py): the worker and the API sign, the executor verifies
    command_key: str = dataclasses.field(default="", repr=False)
    command_key_id: str = "k1"
    #: keyring file of "KEY_ID SECRET" lines; the first signs (unless command_key is set), all are accepted
    command_key_file: str = ""
    # process
    dry_run: bool = True
    log_level: str = "warning"
    data_dir: str = ".guard"
    status_file: str = ""

    @property
    def topics(self) -> Topics:
        """This install's topic names: the defaults of :class:`~healing_guard.topics.Topics` with ``topic_prefix``."""
        return Topics.with_prefix(self.topic_prefix)

    @property
    def bootstrap(self) -> str:
        """``host:port[,host:port]`` without the ``kafka://`` scheme, for aiokafka clients."""
        return ",".join(u.split("://", 1)[-1] for u in self.broker_url.split(";"))

    def price(self, runner_size: str | None) -> float:
        size = runner_size or self.default_runner_size
        return self.price_per_minute_usd.get(size, self.price_per_minute_usd[self.default_runner_size])


# --- loading -----------------------------------------------------------------------------------

_Conv = Callable[[Any], Any]


def _pos_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise ValueError(f"expected a positive integer, got {v!r}")
    n = int(v)
    if n < 1:
        raise ValueError(f"must be >= 1, got {n}")
    return n


def _port(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise ValueError(f"expected a port number, got {v!r}")
    try:
        n = int(v)
    except ValueError:
        raise ValueError(f"expected a port number, got {v!r}") from None
    if not 0 <= n <= 65535:
        raise ValueError(f"must be a port number 0..65535, got {n}")
    return n


def _nonneg_float(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError(f"expected a number, got {v!r}")
    try:
        f = float(v)
    except OverflowError:  # an integer with hundreds of digits
        raise ValueError(f"number out of range: {str(v)[:40]}...") from None
    if f != f or f < 0:
        raise ValueError(f"must be a number >= 0, got {v!r}")
    return f


def _pos_float(v: Any) -> float:
    f = _nonneg_float(v)
    if f == 0:
        raise ValueError(f"must be a number > 0, got {v!r}")
    return f


def _prob(v: Any) -> float:
    f = _nonneg_float(v)
    if f > 1:
        raise ValueError(f"must be between 0 and 1, got {v!r}")
    return f


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {v!r}")


def _str(v: Any) -> str:
    if not isinstance(v, (str, int, float)) or isinstance(v, bool):
        raise ValueError(f"expected a string, got {type(v).__name__}")
    s = str(v)
    if "\x00" in s:
        raise ValueError("must not contain NUL characters")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (it holds a lone surrogate)") from None
    return s


def _broker(v: Any) -> str:
    s = _str(v).strip()
    if s == "embedded":
        return s
    for part in s.split(";"):
        if not re.fullmatch(r"kafka://[A-Za-z0-9_.\-\[\]:]+:\d{1,5}", part):
            raise ValueError(f"expected kafka://host:port (or 'embedded'), got {s!r}")
    return s


def _dsn(v: Any) -> str:
    s = _str(v).strip()
    if not re.match(r"^(chdb://|https?://)", s):
        raise ValueError(f"expected chdb://PATH or http(s)://host:port, got {s!r}")
    return s


def _ident(v: Any) -> str:
    s = _str(v)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", s):
        raise ValueError(f"expected a SQL identifier (letters, digits, _), got {s!r}")
    return s


def _prefix(v: Any) -> str:
    s = _str(v)
    if not re.fullmatch(r"[A-Za-z0-9._\-]{0,100}", s):
        raise ValueError(f"topic prefix may hold only letters, digits, '.', '_' and '-', got {s!r}")
    return s


def _level(v: Any) -> str:
    s = _str(v).lower()
    if s not in ("debug", "info", "warning", "error"):
        raise ValueError(f"expected debug, info, warning or error, got {v!r}")
    return s


def _mechanism(v: Any) -> str:
    s = _str(v).strip().upper()
    if s not in ("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        raise ValueError(f"expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (or empty for none), got {v!r}")
    return s


def _key_id(v: Any) -> str:
    from .signing import check_key_id

    return check_key_id(_str(v))


def _command_key(v: Any) -> str:
    from .signing import check_secret

    s = _str(v)
    return check_secret(s) if s else s


def _paths(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        return tuple(p for p in v.split(os.pathsep) if p)
    if not isinstance(v, list) or not all(isinstance(p, str) for p in v):
        raise ValueError("expected a list of file paths")
    return tuple(v)


def _thresholds(v: Any) -> dict[str, float]:
    from .remediate.gate import AUTOMATIC_CATEGORIES

    if not isinstance(v, Mapping):
        raise ValueError("expected a mapping of category to confidence, e.g. {network: 0.8}")
    out: dict[str, float] = {}
    for k, t in v.items():
        if k not in AUTOMATIC_CATEGORIES:
            raise ValueError(f"{k!r} is not a category with an automatic action; one of: {', '.join(AUTOMATIC_CATEGORIES)}")
        out[str(k)] = _prob(t)
    return out


def _prices(v: Any) -> dict[str, float]:
    if not isinstance(v, Mapping) or not v:
        raise ValueError("expected a mapping of runner size to USD per minute, e.g. {small: 0.008}")
    return {str(k): _nonneg_float(p) for k, p in v.items()}


def _nonneg_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise ValueError(f"expected an integer >= 0, got {v!r}")
    n = int(v)
    if n < 0:
        raise ValueError(f"must be >= 0, got {n}")
    return n


def _context_model(v: Any) -> str:
    from .flaky.context import CONTEXT_MODELS

    s = _str(v)
    if s not in CONTEXT_MODELS:
        raise ValueError(f"expected one of {', '.join(CONTEXT_MODELS)}, got {s!r}")
    return s


def _context_features(v: Any) -> tuple[str, ...]:
    from .flaky.context import CONTEXT_FEATURES

    if not isinstance(v, (list, tuple)):
        raise ValueError(f"expected a list of feature names ({', '.join(CONTEXT_FEATURES)})")
    out = tuple(_str(x) for x in v)
    bad = [x for x in out if x not in CONTEXT_FEATURES]
    if bad:
        raise ValueError(f"unknown feature {bad[0]!r}; known: {', '.join(CONTEXT_FEATURES)}")
    return tuple(dict.fromkeys(out))


def _channel(v: Any) -> str:
    """A Slack channel: ``#name`` or a channel id (what ``chat.postMessage`` takes); '' for none."""
    from .executor.core import SLACK_CHANNEL

    s = _str(v).strip()
    if s and not SLACK_CHANNEL.fullmatch(s):
        raise ValueError(f"expected a Slack channel, #name (lower-case letters, digits, -, _) or an id like "
                         f"C0123ABCD; got {s!r}")
    return s


def _levels(v: Any) -> tuple[float, ...]:
    if not isinstance(v, (list, tuple)) or not v:
        raise ValueError("expected a list of fractions of the budget, e.g. [0.5, 0.8, 0.95]")
    out = sorted({_prob(x) for x in v})
    if out[0] == 0:
        raise ValueError("a budget alert level must be > 0")
    return tuple(out)


def _endpoints(v: Any) -> dict[str, str]:
    if not isinstance(v, Mapping) or not v:
        raise ValueError("expected a mapping of a name to an OTLP/HTTP URL, e.g. {lang-observatory: http://collector:4318}")
    out = {}
    for k, url in v.items():
        u = _str(url).strip()
        if not re.match(r"^https?://[^\s/]+", u):
            raise ValueError(f"{k}: expected an http(s) URL, got {u!r}")
        out[str(k)] = u
    return out


def _granularity(v: Any) -> str:
    s = _str(v).strip().lower()
    if s not in ("hourly", "daily"):
        raise ValueError(f"expected hourly or daily, got {v!r}")
    return s


# (file section, file key) -> (settings field, converter, env var)
_SPEC: dict[tuple[str, str], tuple[str, _Conv, str]] = {
    ("broker", "url"): ("broker_url", _broker, "GUARD_BROKER_URL"),
    ("broker", "partitions"): ("partitions", _pos_int, "GUARD_PARTITIONS"),
    ("broker", "app_id"): ("app_id", _prefix, "GUARD_APP_ID"),
    ("broker", "commit_interval_seconds"): (
        "commit_interval_seconds", _pos_float, "GUARD_COMMIT_INTERVAL_SECONDS"),
    ("topics", "prefix"): ("topic_prefix", _prefix, "GUARD_TOPIC_PREFIX"),
    ("clickhouse", "dsn"): ("clickhouse_dsn", _dsn, "GUARD_CLICKHOUSE_DSN"),
    ("clickhouse", "database"): ("clickhouse_database", _ident, "GUARD_CLICKHOUSE_DATABASE"),
    ("clickhouse", "enabled"): ("facts_enabled", _bool, "GUARD_FACTS_ENABLED"),
    ("clickhouse", "batch_size"): ("fact_batch_size", _pos_int, "GUARD_FACT_BATCH_SIZE"),
    ("clickhouse", "flush_seconds"): ("fact_flush_seconds", _nonneg_float, "GUARD_FACT_FLUSH_SECONDS"),
    ("pipeline", "max_chunk_bytes"): ("max_chunk_bytes", _pos_int, "GUARD_MAX_CHUNK_BYTES"),
    ("pipeline", "max_pending_chunks"): ("max_pending_chunks", _pos_int, "GUARD_MAX_PENDING_CHUNKS"),
    ("pipeline", "tail_lines"): ("tail_lines", _pos_int, "GUARD_TAIL_LINES"),
    ("pipeline", "max_evidence"): ("max_evidence", _pos_int, "GUARD_MAX_EVIDENCE"),
    ("pipeline", "chunk_grace_seconds"): ("chunk_grace_seconds", _nonneg_float, "GUARD_CHUNK_GRACE_SECONDS"),
    ("pipeline", "test_grace_seconds"): ("test_grace_seconds", _nonneg_float, "GUARD_TEST_GRACE_SECONDS"),
    ("pipeline", "window_ttl_seconds"): ("window_ttl_seconds", _nonneg_float, "GUARD_WINDOW_TTL_SECONDS"),
    ("pipeline", "confidence_threshold"): ("confidence_threshold", _prob, "GUARD_CONFIDENCE_THRESHOLD"),
    ("pipeline", "flaky_retry_threshold"): ("flaky_retry_threshold", _prob, "GUARD_FLAKY_RETRY_THRESHOLD"),
    ("pipeline", "flaky_min_runs"): ("flaky_min_runs", _pos_int, "GUARD_FLAKY_MIN_RUNS"),
    ("pipeline", "flaky_min_recoveries"): ("flaky_min_recoveries", _pos_int, "GUARD_FLAKY_MIN_RECOVERIES"),
    ("pipeline", "context_model"): ("context_model", _context_model, "GUARD_CONTEXT_MODEL"),
    ("pipeline", "context_features"): ("context_features", _context_features, ""),
    ("pipeline", "quarantine_enabled"): ("quarantine_enabled", _bool, "GUARD_QUARANTINE_ENABLED"),
    ("pipeline", "quarantine_threshold"): ("quarantine_threshold", _prob, "GUARD_QUARANTINE_THRESHOLD"),
    ("pipeline", "quarantine_release_runs"): ("quarantine_release_runs", _pos_int, "GUARD_QUARANTINE_RELEASE_RUNS"),
    ("pipeline", "pattern_files"): ("pattern_files", _paths, "GUARD_PATTERN_FILES"),
    ("pipeline", "auto_thresholds"): ("auto_thresholds", _thresholds, ""),
    ("pipeline", "strategies_file"): ("strategies_file", _str, "GUARD_STRATEGIES"),
    ("pipeline", "label_model"): ("label_model", _str, "GUARD_LABEL_MODEL"),
    ("pipeline", "text_model"): ("text_model", _str, "GUARD_TEXT_MODEL"),
    ("escalation", "incidents"): ("incidents_enabled", _bool, "GUARD_INCIDENTS_ENABLED"),
    ("escalation", "incident_window_seconds"): (
        "incident_window_seconds", _nonneg_float, "GUARD_INCIDENT_WINDOW_SECONDS"),
    ("escalation", "incident_min_jobs"): ("incident_min_jobs", _pos_int, "GUARD_INCIDENT_MIN_JOBS"),
    ("escalation", "incident_min_repos"): ("incident_min_repos", _pos_int, "GUARD_INCIDENT_MIN_REPOS"),
    ("cost_tracking", "daily_budget_usd"): ("daily_budget_usd", _nonneg_float, "GUARD_DAILY_BUDGET_USD"),
    ("cost_tracking", "repo_daily_budget_usd"): (
        "repo_daily_budget_usd", _nonneg_float, "GUARD_REPO_DAILY_BUDGET_USD"),
    ("cost_tracking", "max_retries_per_job"): ("max_retries_per_job", _pos_int, "GUARD_MAX_RETRIES_PER_JOB"),
    ("cost_tracking", "human_response_minutes"): (
        "human_response_minutes", _nonneg_float, "GUARD_HUMAN_RESPONSE_MINUTES"),
    ("cost_tracking", "default_runner_size"): ("default_runner_size", _str, "GUARD_DEFAULT_RUNNER_SIZE"),
    ("cost_tracking", "price_per_minute_usd"): ("price_per_minute_usd", _prices, ""),
    ("cost_tracking", "budgets_enabled"): ("budgets_enabled", _bool, "GUARD_BUDGETS_ENABLED"),
    ("cost_tracking", "alert_usd"): ("cost_alert_usd", _nonneg_float, "GUARD_COST_ALERT_USD"),
    ("cost_tracking", "alert_levels"): ("budget_alert_levels", _levels, ""),
    ("cost_tracking", "alert_channel"): ("budget_alert_channel", _channel, ""),
    ("notifications", "slack_channel"): ("notify_slack_channel", _channel, "GUARD_SLACK_CHANNEL"),
    ("notifications", "on_failure"): ("notify_on_failure", _bool, ""),
    ("notifications", "on_recovery"): ("notify_on_recovery", _bool, ""),
    ("escalation", "create_ticket"): ("escalation_ticket", _bool, ""),
    ("escalation", "assign_to"): ("escalation_assignee", _str, ""),
    ("optimization", "prefer_spot_instances"): ("prefer_spot_instances", _bool, ""),
    ("optimization", "downgrade_after_failures"): ("downgrade_after_failures", _nonneg_int, ""),
    ("optimization", "cache_aggressive"): ("cache_aggressive", _bool, ""),
    ("reporting", "export_to"): ("export_to", _str, "GUARD_EXPORT_TO"),
    ("reporting", "granularity"): ("export_granularity", _granularity, ""),
    ("reporting", "endpoints"): ("export_endpoints", _endpoints, ""),
    ("broker", "sasl_mechanism"): ("broker_sasl_mechanism", _mechanism, "GUARD_BROKER_SASL_MECHANISM"),
    ("broker", "username"): ("broker_username", _str, "GUARD_BROKER_USERNAME"),
    ("broker", "password"): ("broker_password", _str, "GUARD_BROKER_PASSWORD"),
    ("broker", "tls"): ("broker_tls", _bool, "GUARD_BROKER_TLS"),
    ("signing", "key"): ("command_key", _command_key, "GUARD_COMMAND_KEY"),
    ("signing", "key_id"): ("command_key_id", _key_id, "GUARD_COMMAND_KEY_ID"),
    ("signing", "key_file"): ("command_key_file", _str, "GUARD_COMMAND_KEY_FILE"),
    ("executor", "dry_run"): ("dry_run", _bool, "GUARD_DRY_RUN"),
    ("api", "host"): ("api_host", _str, "GUARD_API_HOST"),
    ("api", "port"): ("api_port", _port, "GUARD_API_PORT"),
    ("api", "keys_file"): ("api_keys_file", _str, "GUARD_API_KEYS_FILE"),
    ("api", "metrics_auth"): ("api_metrics_auth", _bool, "GUARD_API_METRICS_AUTH"),
    ("metrics", "port"): ("metrics_port", _port, "GUARD_METRICS_PORT"),
    ("metrics", "host"): ("metrics_host", _str, "GUARD_METRICS_HOST"),
    ("logging", "level"): ("log_level", _level, "GUARD_LOG_LEVEL"),
    ("storage", "data_dir"): ("data_dir", _str, "GUARD_DATA_DIR"),
    ("storage", "status_file"): ("status_file", _str, "GUARD_STATUS_FILE"),
}
_BY_FIELD = {v[0]: (k, v[1]) for k, v in _SPEC.items()}


def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """Line numbers of mapping keys, from the YAML node tree, so errors can point at a line."""
    lines: dict[tuple[str, ...], int] = {}
    seen: set[int] = set()

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        # an alias is the same node object as its anchor: walk it once, or nested aliases (a YAML
        # "billion laughs") make this exponential
        if isinstance(node, yaml.MappingNode) and id(node) not in seen:
            seen.add(id(node))
            for k, v in node.value:
                key = (*path, str(k.value))
                lines[key] = k.start_mark.line + 1
                walk(v, key)
        elif isinstance(node, yaml.SequenceNode) and id(node) not in seen:  # items as "[i]"
            seen.add(id(node))
            for i, v in enumerate(node.value):
                key = (*path, f"[{i}]")
                lines[key] = v.start_mark.line + 1
                walk(v, key)

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return lines


def _from_file(path: Path) -> dict[str, Any]:
    src = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(src, "-", "file not found; pass --config PATH or unset GUARD_CONFIG") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(src, "-", f"cannot read: {exc}") from None
    try:
        data = yaml.safe_load(text)
        lines = _line_index(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(src, "-", f"not valid YAML: {getattr(exc, 'problem', exc)}",
                          mark.line + 1 if mark else None) from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise ConfigError(src, "-", "not valid YAML: nested too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(src, "-", "the top level must be a mapping of sections")
    if "strategies" in data or "actions" in data:
        raise ConfigError(src, "strategies" if "strategies" in data else "actions",
                          "this is a healing-strategies.yml: pass it as the strategies file "
                          "(GUARD_STRATEGIES, pipeline.strategies_file, or .github/healing-strategies.yml)",
                          lines.get(("strategies",)) or lines.get(("actions",)))
    out = _from_document_format(src, data, lines)
    sections = sorted({s for s, _ in _SPEC})
    for section, body in data.items():
        if section in DOC_SECTIONS:
            continue
        if not isinstance(body, dict):
            raise ConfigError(src, str(section), f"expected a mapping; known sections: {', '.join(sections)}",
                              lines.get((str(section),)))
        for key, value in body.items():
            spec = _SPEC.get((str(section), str(key)))
            line = lines.get((str(section), str(key)))
            if spec is None:
                known = sorted(k for s, k in _SPEC if s == section) if section in sections else sections
                raise ConfigError(src, f"{section}.{key}", f"unknown key; known: {', '.join(known)}", line)
            name, conv, _ = spec
            if name in out:
                raise ConfigError(src, f"{section}.{key}", "set twice (also in the healing: / cost_control: "
                                                           "sections)", line)
            try:
                out[name] = conv(value)
            except (ValueError, TypeError) as exc:
                raise ConfigError(src, f"{section}.{key}", str(exc), line) from None
    return out


def _from_document_format(src: str, data: Mapping[str, Any], lines: Mapping[tuple[str, ...], int]) -> dict[str, Any]:
    """The ``healing:`` and ``cost_control:`` sections (the product document's format), as settings."""
    translated, unknown = translate(data, lines)
    if unknown:
        key, line = unknown[0]
        parent = key.rsplit(".", 1)[0] if "." in key else key
        known = known_keys(parent) or known_keys(key.split(".", 1)[0])
        raise ConfigError(src, key, f"unknown key; known: {', '.join(known)}", line)
    out: dict[str, Any] = {}
    for t in translated:
        name, conv, _ = _SPEC[(t.section, t.key)]
        try:
            out[name] = conv(apply_convert(t))
        except (ValueError, TypeError) as exc:
            raise ConfigError(src, t.doc_key, str(exc), t.line) from None
    return out


#: where the product document puts the two files; read when no other file is named
DEFAULT_CONFIG = Path(".github") / "healing-config.yml"
DEFAULT_STRATEGIES = Path(".github") / "healing-strategies.yml"


def load_settings(config: str | Path | None = None, env: Mapping[str, str] | None = None,
                  **overrides: Any) -> Settings:
    """Build the settings; ``overrides`` are CLI flags (``None`` means not given)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    cfg = config if config is not None else env.get("GUARD_CONFIG")
    if cfg is None and DEFAULT_CONFIG.is_file():  # GUARD_CONFIG="" reads none
        cfg = str(DEFAULT_CONFIG)
    if cfg:
        values.update(_from_file(Path(cfg)))
        values["config_file"] = str(cfg)
    if "strategies_file" not in values and "GUARD_STRATEGIES" not in env and DEFAULT_STRATEGIES.is_file():
        values["strategies_file"] = str(DEFAULT_STRATEGIES)
    for name, ((section, key), conv) in _BY_FIELD.items():
        var = _SPEC[(section, key)][2]
        if var and var in env:
            try:
                values[name] = conv(env[var])
            except (ValueError, TypeError) as exc:
                raise ConfigError("environment", var, str(exc)) from None
    for name, value in overrides.items():
        if value is None:
            continue
        if name not in _BY_FIELD:
            raise ConfigError("command line", name, "unknown setting")
        try:
            values[name] = _BY_FIELD[name][1](value)
        except (ValueError, TypeError) as exc:
            raise ConfigError("command line", "--" + name.replace("_", "-"), str(exc)) from None
    s = Settings(**values)
    if s.default_runner_size not in s.price_per_minute_usd:
        raise ConfigError(str(cfg or "settings"), "cost_tracking.default_runner_size",
                          f"{s.default_runner_size!r} has no price in cost_tracking.price_per_minute_usd")
    if s.broker_sasl_mechanism and not (s.broker_username and s.broker_password):
        raise ConfigError(str(cfg or "settings"), "broker.username",
                          f"broker.sasl_mechanism is {s.broker_sasl_mechanism}: set broker.username and "
                          "broker.password too (GUARD_BROKER_USERNAME, GUARD_BROKER_PASSWORD)")
    if not s.broker_sasl_mechanism and (s.broker_username or s.broker_password):
        raise ConfigError(str(cfg or "settings"), "broker.sasl_mechanism",
                          "broker credentials are set but no SASL mechanism: set broker.sasl_mechanism "
                          "(GUARD_BROKER_SASL_MECHANISM) to PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    if s.command_key_file:
        from .signing import keyring_of

        keyring_of(s)  # a missing or malformed key file is refused at start, with its line
    return s
