"""Microscopy time-lapse analysis: metadata, per-FOV workflow, merge, synthetic data."""
