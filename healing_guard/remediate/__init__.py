"""Remediation, in one place: the action vocabulary (``actions``), the user-facing strategy names
(``catalogue``), the table cause -> remedies with the race rule (``strategies``), the precision gate
(``gate``) and the cost-aware planner (``planner``)."""

from .actions import NOTIFY_ACTIONS, RERUN_ACTIONS, is_automatic
from .catalogue import CATALOGUE, Strategy, parse_strategy_name
from .planner import Ledger, PlanConfig, command_id, plan
from .strategies import STRATEGIES, Remedy, remedy_for

__all__ = ["CATALOGUE", "NOTIFY_ACTIONS", "RERUN_ACTIONS", "STRATEGIES", "Ledger", "PlanConfig", "Remedy", "Strategy",
           "command_id", "is_automatic", "parse_strategy_name", "plan", "remedy_for"]
