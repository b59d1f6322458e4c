"""The pipeline: wires reading, tracing, measuring, judging into a ``Report``; the only stage the options travel through."""
