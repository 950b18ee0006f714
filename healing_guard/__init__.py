"""Self-healing pipeline guard."""
__version__ = "0.1.0"

# The Python API (healing_guard/pipeline_guard.py), imported on first use: `import healing_guard.<module>` stays
# light (no pattern compiler, no River) for the worker's modules and the CLI.
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from .pipeline_guard import CustomStrategy, Failure, HealResult, PipelineGuard, RemediationAction, Strategy, StrategyState
    from .sdk import GuardClient

_API_NAMES = ("CustomStrategy", "Failure", "HealResult", "PipelineGuard", "RemediationAction", "Strategy",
              "StrategyState")
__all__ = ["__version__", *_API_NAMES, "GuardClient"]


def __getattr__(name: str) -> _Any:
    if name in _API_NAMES:
        from . import pipeline_guard as api

        return getattr(api, name)
    if name == "GuardClient":  # the REST API's client (healing_guard/sdk.py, standard library only)
        from .sdk import GuardClient

        return GuardClient
    raise AttributeError(f"module 'healing_guard' has no attribute {name!r}")
