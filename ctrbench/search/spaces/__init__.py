"""Search spaces: named sets of hyper-parameter distributions over one registered model."""
from ctrbench.search.spaces.space import Choice, LogUniform, SearchSpace  # noqa: F401
