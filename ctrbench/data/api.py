"""The one entry point the harness uses: `open_dataset(name, source)` -> a ready Cache.

source "synthetic" builds (once) and opens the dataset's twin; source "real" opens the cache that
`ctrbench data prepare NAME --source PATH` wrote. Caches live under the data root
(--data-root, else $CTRBENCH_DATA_ROOT, else ~/.cache/ctrbench).
"""
from __future__ import annotations

import os

from ctrbench.data.cache import Cache, cache_dir
from ctrbench.data.registry import get_spec
from ctrbench.errors import DataError

SOURCES = ("synthetic", "real")


def twin_tag(rows: int, seed: int) -> str:
    """Cache folder of a twin: the generator version is part of it, so a changed generator never reuses old twins."""
    from ctrbench.data.synthetic import GENERATOR_VERSION

    return f"twin-v{GENERATOR_VERSION}-{rows}r-seed{seed}"


def open_dataset(
    name: str,
    source: str = "synthetic",
    *,
    rows: int | None = None,
    seed: int = 0,
    data_root: str | os.PathLike | None = None,
) -> Cache:
    """Open (building a twin on first use) the cache of dataset `name` from `source`."""
    spec = get_spec(name)
    if source == "synthetic":
        from ctrbench.data.synthetic import generate_twin

        rows = rows or spec.twin.default_rows
        path = cache_dir(data_root, name, twin_tag(rows, seed))
        if not Cache.exists(path):
            return generate_twin(spec, path, rows=rows, seed=seed)
        return Cache.open(path)
    if source == "real":
        path = cache_dir(data_root, name, "real")
        if not Cache.exists(path):
            raise DataError(
                f"{name} has not been prepared from its real files: run `ctrbench data prepare {name} --source PATH` "
                f"(files {sorted(set(spec.splits.values()))}; published at {spec.published_at})",
                file=str(path),
            )
        return Cache.open(path)
    raise DataError(f"unknown source {source!r}; valid: {', '.join(SOURCES)}")
