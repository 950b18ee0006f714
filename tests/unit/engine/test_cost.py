"""What a job attempt costs: its minutes at the price of its runner size."""

from __future__ import annotations

import dataclasses

from healing_guard.engine import Engine, offline_job
from healing_guard.settings import Settings


def test_a_webhook_jobs_runner_labels_price_it() -> None:
    """A job event from a webhook carries labels, not a size: the priced size a label names prices it (GitLab's
    saas-linux-large-amd64 -> large), a label that names none leaves the default, and an explicit size wins."""
    s = Settings()
    e = Engine(s)
    job = offline_job("1", duration_minutes=10.0)
    tagged = dataclasses.replace(job, runner_labels=["saas-linux-large-amd64"])
    assert e.size_of(tagged) == "large" and e.job_cost(tagged) == round(10 * s.price("large"), 4)
    assert e.size_of(dataclasses.replace(job, runner_labels=["ubuntu-latest"])) is None
    assert e.job_cost(dataclasses.replace(job, runner_labels=["ubuntu-latest"])) == round(10 * s.price(None), 4)
    assert e.size_of(dataclasses.replace(tagged, runner_size="small")) == "small"
    assert s.price("large") != s.price(None)
