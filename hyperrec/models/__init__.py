"""Recommenders: baselines now; sequence, two-tower and ranking models behind the same interface."""
