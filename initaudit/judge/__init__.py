"""Judging: pure verdicts on measured weights (noise bands, schemes, the model's policy, the trained review); no I/O."""
