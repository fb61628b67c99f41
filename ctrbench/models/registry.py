"""Models by name, so suites can name them: `register(name)`, `get_model_class`, `build_model`."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ctrbench.data.schema import DatasetSpec
from ctrbench.errors import UnknownNameError
from ctrbench.models.base import CTRModel

MODELS: dict[str, type[CTRModel]] = {}


def register(name: str):
    """Class decorator: make a CTRModel subclass available as `name`."""

    def deco(cls: type[CTRModel]) -> type[CTRModel]:
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} registered twice ({MODELS[name].__name__}, {cls.__name__})")
        cls.name = name
        MODELS[name] = cls
        return cls

    return deco


def get_model_class(name: str) -> type[CTRModel]:
    """The model class registered as `name`; an unknown name lists the valid ones."""
    _load_builtin()
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownNameError("model", name, MODELS) from None


def build_model(
    name: str,
    spec: DatasetSpec,
    vocab_sizes: Mapping[str, int],
    params: Mapping[str, Any] | None = None,
    tables: Mapping[str, np.ndarray | torch.Tensor] | None = None,
    *,
    seed: int | None = None,
) -> CTRModel:
    """Build model `name` for a dataset. `params` is validated by the class's pydantic Params (unknown keys
    raise pydantic.ValidationError); `tables` are the cache's pretrained tables (cache.table(name));
    `seed` makes the initialisation reproducible without touching the global RNG."""
    cls = get_model_class(name)
    p = cls.Params(**dict(params or {}))
    if seed is None:
        return cls(spec, vocab_sizes, p, tables)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(spec, vocab_sizes, p, tables)


def model_tables(cache) -> dict[str, np.ndarray]:
    """The pretrained tables a model of `cache`'s dataset needs, read from the cache."""
    return {f.name: cache.table(f.name) for f in cache.spec.pretrained}


def _load_builtin() -> None:
    import ctrbench.models  # noqa: F401  (importing the package registers the built-in models)
