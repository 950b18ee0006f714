"""Remediation: the strategy table and the cost-aware planner."""

from .planner import Ledger, PlanConfig, command_id, plan
from .strategies import STRATEGIES, Strategy

__all__ = ["STRATEGIES", "Ledger", "PlanConfig", "Strategy", "command_id", "plan"]
