"""Dataset registry: every dataset spec by name."""
from __future__ import annotations

from ctrbench.data import (amazonelectronics_x1, avazu, avazu_x1, criteo, criteo_terabyte, criteo_x1,
                           kuaivideo_x1, taobaoad_x1)
from ctrbench.data.schema import DatasetSpec
from ctrbench.errors import UnknownNameError

DATASETS: dict[str, DatasetSpec] = {
    m.SPEC.name: m.SPEC
    for m in (criteo_x1, criteo, criteo_terabyte, avazu_x1, avazu, amazonelectronics_x1, taobaoad_x1, kuaivideo_x1)
}


def get_spec(name: str) -> DatasetSpec:
    """The spec of a dataset; an unknown name lists the valid ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownNameError("dataset", name, DATASETS) from None
