"""The guard's one engine: a log chunk, a job event or a test result in, a ``Decision`` out.

Pure (no Faust, Kafka, ClickHouse or HTTP): the worker's agents, ``PipelineGuard``, the REST API,
``guard analyze`` and ``guard backtest`` all call it, so a failure is judged one way everywhere.
"""

from .core import Decision, Engine, dead_letter, finding_id, offline_job, schema_dead_letter

__all__ = ["Decision", "Engine", "dead_letter", "finding_id", "offline_job", "schema_dead_letter"]
