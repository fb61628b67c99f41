"""Searchers (random search here; the paper searchers come later)."""
