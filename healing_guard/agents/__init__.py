"""Thin Faust agents: decode bytes, call the pure steps in healing_guard.engine.core, send the outputs."""
