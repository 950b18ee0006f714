"""The product document's ``healing-config.yml`` format, read into the guard's one settings schema.

The product document (docs/product-document.md) writes the configuration as a ``healing:`` section
(strategies, notifications, cost tracking, escalation) and a ``cost_control:`` section (limits,
optimization, alerts, reporting). The guard's own format is sections of settings (``cost_tracking:``,
``pipeline:``, ...). Both are one schema: every key of the document's format is translated here into a
key of the guard's own (:data:`TRANSLATION`), then checked by the same converters, with errors that name
the file, the line and the key as the user wrote it. ``healing.strategies`` is strategy configuration:
``healing_guard.strategies_config`` reads it from the same file.

Where a platform cannot do what an option asks, the option is accepted and :func:`notes` says what the
guard does instead (``guard config check`` prints it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DOC_SECTIONS", "TRANSLATION", "Translated", "notes", "translate"]

#: top-level keys of the document's format
DOC_SECTIONS = ("healing", "cost_control")


def _percent_levels(v: Any) -> list[float]:
    """``[50, 80, 95]`` (percent) -> fractions, ascending."""
    if not isinstance(v, list) or not v:
        raise ValueError("expected a list of percentages, e.g. [50, 80, 95]")
    out = []
    for p in v:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 100:
            raise ValueError(f"each percentage must be a number in (0, 100], got {p!r}")
        out.append(float(p) / 100.0)
    return sorted(set(out))


def _retries_after(v: Any) -> int:
    """``escalation.after_failures: 3``: a person gets the job once it failed 3 times (2 reruns)."""
    if isinstance(v, bool) or not isinstance(v, int) or v < 2:
        raise ValueError(f"expected an integer >= 2 (the first failure and at least one rerun), got {v!r}")
    return v - 1


@dataclass(frozen=True)
class Rule:
    section: str  # the guard's own section and key
    key: str
    convert: Callable[[Any], Any] | None = None  # before the guard's converter


#: document key (dotted) -> the guard's own key
TRANSLATION: Mapping[str, Rule] = {
    "healing.notifications.slack.channel": Rule("notifications", "slack_channel"),
    "healing.notifications.slack.on_failure": Rule("notifications", "on_failure"),
    "healing.notifications.slack.on_recovery": Rule("notifications", "on_recovery"),
    "healing.cost_tracking.enabled": Rule("clickhouse", "enabled"),
    "healing.cost_tracking.alert_threshold": Rule("cost_tracking", "alert_usd"),
    "healing.escalation.after_failures": Rule("cost_tracking", "max_retries_per_job", _retries_after),
    "healing.escalation.create_ticket": Rule("escalation", "create_ticket"),
    "healing.escalation.assign_to": Rule("escalation", "assign_to"),
    "cost_control.enabled": Rule("cost_tracking", "budgets_enabled"),
    "cost_control.limits.daily_budget": Rule("cost_tracking", "daily_budget_usd"),
    "cost_control.limits.per_repo_budget": Rule("cost_tracking", "repo_daily_budget_usd"),
    "cost_control.limits.per_job_retry_limit": Rule("cost_tracking", "max_retries_per_job"),
    "cost_control.optimization.prefer_spot_instances": Rule("optimization", "prefer_spot_instances"),
    "cost_control.optimization.downgrade_after_failures": Rule("optimization", "downgrade_after_failures"),
    "cost_control.optimization.cache_aggressive": Rule("optimization", "cache_aggressive"),
    "cost_control.alerts.slack": Rule("cost_tracking", "alert_channel"),
    "cost_control.alerts.threshold_percentages": Rule("cost_tracking", "alert_levels", _percent_levels),
    "cost_control.reporting.export_to": Rule("reporting", "export_to"),
    "cost_control.reporting.granularity": Rule("reporting", "granularity"),
    "cost_control.reporting.endpoints": Rule("reporting", "endpoints"),
}

#: document keys that are read elsewhere (the strategies in healing.strategies: strategies_config.py)
ELSEWHERE = ("healing.strategies",)


@dataclass(frozen=True)
class Translated:
    """One document key and where it went."""

    doc_key: str  # as the user wrote it, dotted
    section: str
    key: str
    value: Any
    line: int | None


def _walk(node: Any, path: tuple[str, ...], lines: Mapping[tuple[str, ...], int],
          out: list[Translated], unknown: list[tuple[str, int | None]]) -> None:
    dotted = ".".join(path)
    if dotted in ELSEWHERE:
        return
    rule = TRANSLATION.get(dotted)
    if rule is not None:
        out.append(Translated(dotted, rule.section, rule.key, node, lines.get(path)))
        return
    prefixes = {k.rsplit(".", i)[0] for k in (*TRANSLATION, *ELSEWHERE) for i in range(1, k.count(".") + 1)}
    if isinstance(node, Mapping) and dotted in prefixes:
        for k, v in node.items():
            _walk(v, (*path, str(k)), lines, out, unknown)
        return
    unknown.append((dotted, lines.get(path)))


def translate(data: Mapping[str, Any], lines: Mapping[tuple[str, ...], int]
              ) -> tuple[list[Translated], list[tuple[str, int | None]]]:
    """The document-format sections of a parsed file: what each key becomes, and the keys no rule knows
    (dotted, with their line)."""
    out: list[Translated] = []
    unknown: list[tuple[str, int | None]] = []
    for section in DOC_SECTIONS:
        if section in data:
            _walk(data[section], (section,), lines, out, unknown)
    return out, unknown


def known_keys(prefix: str) -> list[str]:
    """The document keys under ``prefix`` (for an "unknown key; known: ..." message)."""
    return sorted(k for k in (*TRANSLATION, *ELSEWHERE) if k.startswith(prefix + ".") or not prefix)


def apply_convert(t: Translated) -> Any:
    rule = TRANSLATION[t.doc_key]
    return rule.convert(t.value) if rule.convert is not None else t.value


def notes(values: Mapping[str, Any]) -> list[str]:
    """What the guard does instead for the options it accepts and cannot carry out as written, and what
    it does not act on yet (``values``: settings field -> value, as read from one file)."""
    out = []
    if values.get("prefer_spot_instances"):
        out.append("optimization.prefer_spot_instances: GitHub-hosted, GitLab SaaS and CircleCI runners offer no "
                   "spot choice per job; the guard prices re-runs at the configured runner prices and prefers "
                   "the cheapest fix that its expected saving covers (self-hosted spot pools: label them and set "
                   "their price in cost_tracking.price_per_minute_usd)")
    if values.get("cache_aggressive"):
        out.append("optimization.cache_aggressive: caches are kept warm; the guard clears one only when the "
                   "diagnosis is a corrupt cache (clear_cache_retry)")
    if values.get("downgrade_after_failures"):
        out.append(f"optimization.downgrade_after_failures: from failure {values['downgrade_after_failures']} of "
                   "a job on, no fix on a larger runner class (an out-of-memory rerun gets more memory on the "
                   "job's own runner instead); the guard never moves a job to a smaller runner than its own")
    target = values.get("export_to")
    if target and not str(target).startswith(("http://", "https://")) and target not in (
            values.get("export_endpoints") or {}):
        out.append(f"reporting.export_to: {target!r} names no endpoint yet: `guard export` needs its OTLP/HTTP "
                   f"URL in reporting.endpoints ({{{target}: http://collector:4318}}) or GUARD_EXPORT_ENDPOINT")
    if values.get("escalation_assignee"):
        out.append("escalation.assign_to: written in the ticket (Jira and ServiceNow assign by account id, not "
                   "by handle)")
    if values.get("budget_alert_channel") or values.get("notify_slack_channel"):
        out.append("slack channels: posted there through Slack's chat.postMessage when the executor has a bot "
                   "token (GUARD_SLACK_BOT_TOKEN, scope chat:write); with only an incoming webhook, messages go "
                   "to the webhook's own channel and each outcome says so")
    return out
