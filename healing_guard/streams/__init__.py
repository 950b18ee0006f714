"""Faust application, topic and table declarations (adapters: the only place Faust is configured)."""
