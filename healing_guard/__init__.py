"""Self-healing pipeline guard."""
__version__ = "0.1.0"
