"""Per-test flakiness learning."""

from .model import TestModel

__all__ = ["TestModel"]
