"""Search spaces as data (the Space API in space.py); each module registers its spaces by decorator."""
from ctrbench.search.spaces.space import Choice, LogUniform, SearchSpace, Space, SpacePointError  # noqa: F401
