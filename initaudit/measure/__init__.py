"""Measuring: streaming statistics of the planned weights (moments, per-unit sums, histograms), bounded in memory."""
