"""Records on every topic, their strict decoding and their JSON Schema export."""

from .base import Record, SchemaError
from .records import (
    CATEGORIES,
    PROVIDERS,
    TOPIC_RECORDS,
    BudgetSnapshot,
    Command,
    DeadLetter,
    Evidence,
    Finding,
    JobEvent,
    LogChunk,
    Outcome,
    TestResult,
    TestRisk,
    job_key,
)

__all__ = [
    "CATEGORIES", "PROVIDERS", "TOPIC_RECORDS", "BudgetSnapshot", "Command", "DeadLetter", "Evidence",
    "Finding", "JobEvent", "LogChunk", "Outcome", "Record", "SchemaError", "TestResult", "TestRisk", "job_key",
]
