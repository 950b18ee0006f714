"""The guard inside a CI pipeline with only the platform's token: no guard service, no broker.

``guard action github`` (the GitHub Action's step), ``guard action github-rerun`` (its companion workflow
on ``workflow_run: completed``) and ``guard action gitlab`` (the GitLab template's ``.post`` job) read the
failed jobs' logs through the platform's API, diagnose them with the same engine as the worker
(:class:`~healing_guard.pipeline_guard.PipelineGuard`), carry out what they decided through the same API
within the pipeline's retry limit, notify, and write a report.

Modules: ``http`` (a small reader that follows the platforms' download redirects without the token),
``decide`` (diagnosis, the run's plan, the report and the decision record: no I/O), ``notify`` (Slack,
Jira, PagerDuty), ``github`` and ``gitlab`` (each platform's API as these commands use it). The commands
themselves are ``healing_guard/action_run.py``. See docs/platforms.md, "The Action with only a token".
"""
