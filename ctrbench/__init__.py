"""ctrbench: CTR-prediction benchmark suite — datasets and twins, models, searchers, harness, kernels."""
__version__ = "0.1.0"
