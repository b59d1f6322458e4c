"""Reporting: the report data model every format reads, fingerprints and baselines, and one module per format."""
