"""Slack, Jira and PagerDuty from the pipeline, with the executor's clients (escaping, masking, retries).

What is sent, per guard run (never more than once per decision):

* Slack (a webhook URL): one message listing the failed jobs, their causes and what was done;
* Jira: an issue for each decision that asks for a ticket (an escalation: the retry limit reached, an
  incident, a quarantined test). A Jira API token alone cannot open an issue: Jira Cloud's REST API also
  needs the site URL, the token's account (e-mail) and the project key. With only some of them nothing is
  sent and the report says which are missing;
* PagerDuty (an Events API v2 routing key): a trigger for each decision that pages (an incident), with
  the command id as ``dedup_key``.

A notification that is not configured, or fails, is reported and never fails the pipeline's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..executor.clients import JiraClient, PagerDutyClient, Response, SlackClient, Transport
from .decide import JobDecision

PAGERDUTY_URL = "https://events.pagerduty.com"


@dataclass(frozen=True)
class NotifyConfig:
    slack_webhook: str = ""
    jira_url: str = ""
    jira_user: str = ""
    jira_token: str = ""
    jira_project: str = ""
    pagerduty_key: str = ""
    pagerduty_url: str = PAGERDUTY_URL

    def secrets(self) -> list[str]:
        return [s for s in (self.slack_webhook, self.jira_token, self.pagerduty_key) if s]


class Notifier:
    def __init__(self, cfg: NotifyConfig, transport: Transport, *, names: dict[str, str] | None = None) -> None:
        """``names``: how the pipeline calls each setting (``jira-url`` in the Action, ``HEALING_JIRA_URL`` in
        GitLab), for the report."""
        self.cfg = cfg
        n = {"jira_url": "jira-url", "jira_user": "jira-user", "jira_token": "jira-token",
             "jira_project": "jira-project", **(names or {})}
        self.slack = SlackClient(cfg.slack_webhook, transport=transport) if cfg.slack_webhook else None
        jira = {k: getattr(cfg, k) for k in ("jira_url", "jira_user", "jira_token", "jira_project")}
        self.jira = (JiraClient(cfg.jira_url, cfg.jira_user, cfg.jira_token, cfg.jira_project, transport=transport)
                     if all(jira.values()) else None)
        self.jira_missing = [n[k] for k, v in jira.items() if not v] if any(jira.values()) else []
        self.pagerduty = (PagerDutyClient(cfg.pagerduty_key, cfg.pagerduty_url or PAGERDUTY_URL, transport=transport)
                          if cfg.pagerduty_key else None)
        self._n = n

    def configuration_notes(self) -> list[str]:
        if not self.jira_missing:
            return []
        given = [self._n[k] for k in ("jira_token", "jira_url", "jira_user", "jira_project")
                 if self._n[k] not in self.jira_missing]
        return [f"Jira: {', '.join(given)} given, but a Jira ticket needs {self._n['jira_url']} (the site), "
                f"{self._n['jira_user']} (the token's account e-mail), {self._n['jira_token']} and "
                f"{self._n['jira_project']} (the project key); missing: {', '.join(self.jira_missing)}. "
                "No ticket is opened until they are set."]

    @property
    def any_configured(self) -> bool:
        return self.slack is not None or self.jira is not None or self.pagerduty is not None

    def send(self, repo: str, decisions: Sequence[JobDecision], slack_message: str, *, post: bool = True) -> list[str]:
        """Tickets and pages for ``decisions`` (the ones made now, never an earlier step's again) and, with
        ``post``, the Slack message; what was done, one line each."""
        done: list[str] = []
        if self.slack is not None and post:
            done.append("Slack message: " + _said(self.slack.post(slack_message)))
        for d in decisions:
            if not d.diagnosed:
                continue
            if d.wants_ticket:
                if self.jira is None:
                    done.append(f"Jira ticket for {d.name}: not opened (Jira is not configured)")
                else:
                    lines = [f"line {n}: {t[:200]}" for n, t in d.evidence]
                    r = self.jira.create_issue(
                        f"[guard] {d.action}: {d.category} in {repo} job {d.name}",
                        f"{d.reason}\n\njob {d.name} (id {d.job_id}) attempt {d.attempt}"
                        + (f"\n\n{d.url}" if d.url else ""),
                        labels=["healing-guard", d.category, d.action], code=lines)
                    key = (r.json() or {}).get("key") if r.ok else None
                    done.append(f"Jira ticket for {d.name}: " + (f"{key} ({_said(r)})" if key else _said(r)))
            if d.wants_page:
                if self.pagerduty is None:
                    done.append(f"PagerDuty page for {d.name}: not sent (PagerDuty is not configured)")
                else:
                    dedup = str((d.command or {}).get("command_id") or f"{repo}/{d.job_id}/{d.attempt}")
                    r = self.pagerduty.trigger(f"[guard] {d.category} in {repo} job {d.name}: {d.action}",
                                               dedup_key=dedup, source=repo, severity="error",
                                               custom_details={"job": d.name, "job_id": d.job_id,
                                                               "attempt": d.attempt, "category": d.category})
                    done.append(f"PagerDuty page for {d.name}: {_said(r)}")
        return done


def _said(r: Response) -> str:
    if r.ok:
        return f"sent (HTTP {r.status})"
    return f"FAILED ({r.message or r.status}); the pipeline goes on"
