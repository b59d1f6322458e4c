"""Tracing: each weight to the op that consumes it, its role, layout and fans, and what to measure (the op table is ``ops``)."""
