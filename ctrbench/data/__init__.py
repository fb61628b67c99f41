"""Datasets: specs, readers of the real files, the columnar cache, the loader and the synthetic twins."""
