"""Thin Faust agents and timers, one small module each: read the tables, call a pure step of
``healing_guard.engine.step``, carry out the effects it returns (``effects.apply``).

Agents: ``ingest`` (guard.ingest: logs, job events, test risks, ticks, outcomes), ``test_results``
(guard.tests), ``incidents`` (guard.incidents). ``facts`` is a task beside them (guard.facts into
ClickHouse with its own consumer). Timers: ``deadlines``, ``deadline_scan``, ``status``. ``streams/worker.py`` registers them.
"""
