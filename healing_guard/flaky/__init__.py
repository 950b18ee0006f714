"""Per-test flakiness learning: the per-test model, the population prior, and replay evaluation."""

from .model import FlakeFilter, FlakePrior, TestModel

__all__ = ["FlakeFilter", "FlakePrior", "TestModel"]
