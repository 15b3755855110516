"""Synthetic ground-truth scenes and landmark sets used as test oracles."""
