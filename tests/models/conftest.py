"""Tiny caches for model/trainer tests: the real twin generator on small row counts."""
