"""Evaluators: how a candidate of each evaluation kind gets its score. The `train` kind is the harness's own run
path; the others register here by decorator (ctrbench.search.registry.register_evaluator)."""
