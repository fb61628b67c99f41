"""Predictors of evaluation outcomes from feature vectors (space encodings, system configs)."""
from ctrbench.search.predictors.ensemble import EnsemblePredictor, pairwise_margin_loss  # noqa: F401
