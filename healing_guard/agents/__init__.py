"""Thin Faust agents: decode bytes, call the pure steps in healing_guard.pipeline, send the outputs."""
