"""Deterministic ids are persisted and compared across versions: these were computed by the hand-written
hashes that ``healing_guard.ids.stable_id`` replaced, and must never change."""

from __future__ import annotations

import hashlib

import pytest

from healing_guard.engine.core import finding_id
from healing_guard.flaky.context import message_hash
from healing_guard.flaky.quarantine import _id as quarantine_id
from healing_guard.ids import stable_id
from healing_guard.patterns.tokenize import template as message_template
from healing_guard.remediate.incidents import IncidentPolicy, IncidentState, observe, template_key
from healing_guard.remediate.planner import Ledger, PlanConfig, budget_alerts, command_id
from healing_guard.engine.requests import plan_heal
from healing_guard.schemas import JobEvent


def test_stable_id_is_the_old_recipe() -> None:
    assert stable_id("github/acme/web/1", 1, "retry") == "665eb5cf2d3f884e9402058af35c7c01"
    assert stable_id("github/acme/web/1", 1, "finding") == "4b4a0540c21470d8393a0cad946c7eb0"
    assert stable_id("ERROR: connection refused to <host>:<num>") == "d3ba425cfe04b7d2ae86c0b4110457e3"
    assert stable_id("ERROR: registry <host> unavailable", 1700000000.5) == "e949e76a6a2c34ad15907031bc4e79a4"
    assert stable_id("github/acme/web/1", 1, "retry", length=16) == "665eb5cf2d3f884e"
    for parts in (("a",), ("gitlab/grp/sub/api/42", 3, "retry_job"), ("t", "release", 2), ("x", 1.25, None, True),
                  ("Fehler – é 日本", 0)):
        old = hashlib.sha256("|".join(f"{p}" for p in parts).encode()).hexdigest()
        assert stable_id(*parts) == old[:32]
        assert stable_id(*parts, length=64) == old


def test_stable_id_does_not_raise_on_text_utf8_cannot_hold() -> None:
    assert stable_id("bad \udcff key", 1) == stable_id("bad ? key", 1)


def test_command_and_finding_ids() -> None:
    assert command_id("github/acme/web/1", 1, "retry") == "665eb5cf2d3f884e9402058af35c7c01"
    assert command_id("gitlab/grp/sub/api/42", 3, "retry_job") == "92dd0720b6c065c02cc83b933c3a1e05"
    assert finding_id("github/acme/web/1", 1) == "4b4a0540c21470d8393a0cad946c7eb0"


def test_budget_alert_ids() -> None:
    job = JobEvent(provider="github", owner="acme", repo="web", job_id="1", job_name="build", attempt=1,
                   status="completed", conclusion="failure")
    led = Ledger(day="2024-05-01", spent_usd=190.0, repo_spent=(("acme/web", 45.0),))
    _, alerts = budget_alerts(led, job, PlanConfig(), slice_id="3", now=0.0)
    assert {(a.parameters["scope"], a.parameters["level"]): a.command_id for a in alerts} == {
        ("daily", 0.5): "efc6e077b1336ac0c1d35e505d0d3bb3",
        ("daily", 0.8): "f756ba4d49e55ae49749c9642b14065a",
        ("daily", 0.95): "81aa880d4a3c1082b68452c8fe9994cc",
        ("repo:acme/web", 0.5): "516e608fe88f76970217e06e4beca024",
        ("repo:acme/web", 0.8): "7e1d05ee963134ea23c1d63aab3da032",
    }


def test_quarantine_ids() -> None:
    assert quarantine_id("tests/test_x.py::test_y", "quarantine", 1) == "e45a3842fab2792eb9434935430a8271"
    assert quarantine_id("tests/test_x.py::test_y", "release", 2) == "d95fad23aa7337053b272d9160ce3285"


def test_incident_ids() -> None:
    assert template_key("ERROR: connection refused to <host>:<num>") == b"d3ba425cfe04b7d2ae86c0b4110457e3"
    assert template_key("Fehler: Verbindung zu <host> fehlgeschlagen – é 日本") == b"f0893d78f9892994592aaecde1e029bd"
    st, pol = IncidentState(), IncidentPolicy(min_jobs=2, min_repos=2)
    tpl = "ERROR: registry <host> unavailable"
    assert observe(st, template=tpl, repo="a/b", job_key="github/a/b/1", ts=1700000000.5, policy=pol) is None
    opened = observe(st, template=tpl, repo="c/d", job_key="github/c/d/2", ts=1700000001.0, policy=pol)
    assert opened is not None and opened.incident_id == "e949e76a6a2c34ad15907031bc4e79a4"


@pytest.mark.parametrize(("strategy", "action", "cid", "nid"), [
    ("infra_retry", "retry", "665eb5cf2d3f884e9402058af35c7c01", "43323a3f69def0c248d6ef0eb821c338"),
    ("oom_recovery", "rerun_more_memory", "1ae3752553f60bcbfdf98df52ca9c3f0", "b4ba6bd31453dc1e25f2f27c242a21f5"),
    ("network_backoff", "retry_backoff", "5db03d009ee3384c5a942ff6ca116563", "737a07cd88fb31f44c9bced53de831d9"),
])
def test_heal_ids(strategy: str, action: str, cid: str, nid: str) -> None:
    failure = {"job_key": "github/acme/web/1", "attempt": 1, "provider": "github", "owner": "acme", "repo": "web",
               "job_id": "1", "category": "network", "confidence": 0.9}
    p = plan_heal(failure, strategy, ["slack"], requested_by="alice", now=0.0)
    assert p.command.action == action and p.command.command_id == cid
    assert p.notify_command is not None and p.notify_command.command_id == nid


def test_message_hash() -> None:
    msg = "AssertionError: expected 3 got 4"
    assert message_hash(msg) == stable_id(message_template(msg), length=16)
    assert message_hash(msg) == hashlib.sha256(message_template(msg).encode()).hexdigest()[:16]
    assert message_hash("") is None and message_hash(None) is None
