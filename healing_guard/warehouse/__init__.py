"""ClickHouse side of the guard: fact rows, migrations, the batching writer and ROI queries.

``facts`` is pure (agents import it); the rest take a clickhouse-connect client from
:func:`connect`; ``read.WarehouseReader`` answers the ROI report, the API and the dashboard. Importing this package does not import clickhouse-connect or chDB.
"""

from .client import WarehouseConnectionError, connect, mask_dsn
from .facts import (
    TABLE_COLUMNS,
    TABLES,
    Fact,
    command_fact,
    diagnosis_fact,
    fact_from_json,
    facts_from_json,
    facts_to_json_many,
    fact_to_json,
    job_run_fact,
    outcome_fact,
    test_result_fact,
)
from .migrate import MigrationError, migrate
from .writer import FactWriter

__all__ = [
    "TABLES", "TABLE_COLUMNS", "Fact", "FactWriter", "MigrationError",
    "WarehouseConnectionError", "command_fact", "connect", "diagnosis_fact", "fact_from_json", "fact_to_json", "facts_from_json", "facts_to_json_many",
    "job_run_fact", "mask_dsn", "migrate", "outcome_fact", "test_result_fact",
]
