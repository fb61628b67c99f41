"""The one entry point the harness uses: `open_dataset(name, source)` -> a ready Cache.

source "synthetic" builds (once) and opens the dataset's twin; source "real" opens the cache that
`ctrbench data prepare NAME --source PATH` wrote. A twin built with generator options (a suite's `twin:`)
lives in its own folder (twin_tag). Caches live under the data root
(--data-root, else $CTRBENCH_DATA_ROOT, else ~/.cache/ctrbench).
"""
from __future__ import annotations

import hashlib
import json
import os

from ctrbench.data.cache import Cache, cache_dir
from ctrbench.data.registry import get_spec
from ctrbench.errors import DataError

SOURCES = ("synthetic", "real")


TWIN_OPTIONS = ("card_ratio", "kappa", "auc_margin", "shares")  # generate_twin's generator options


def twin_options(twin: dict | None) -> dict:
    """Generator options in canonical form (known keys only, floats), so equal options name one cache."""
    twin = dict(twin or {})
    unknown = [k for k in twin if k not in TWIN_OPTIONS]
    if unknown:
        raise DataError(f"unknown twin option {unknown[0]!r}; valid: {', '.join(TWIN_OPTIONS)}")
    out = {k: float(v) for k, v in twin.items() if k != "shares" and v is not None}
    if twin.get("shares") is not None:
        out["shares"] = {k: float(v) for k, v in twin["shares"].items()}
    return out


def twin_tag(rows: int, seed: int, twin: dict | None = None) -> str:
    """Cache folder of a twin: the generator version is part of it, so a changed generator never reuses old twins;
    generator options (if any) add a hash of their canonical JSON, so two variants never share a cache."""
    from ctrbench.data.synthetic import GENERATOR_VERSION

    tag = f"twin-v{GENERATOR_VERSION}-{rows}r-seed{seed}"
    opts = twin_options(twin)
    if opts:
        digest = hashlib.sha256(json.dumps(opts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        tag += f"-o{digest[:8]}"
    return tag


def open_dataset(
    name: str,
    source: str = "synthetic",
    *,
    rows: int | None = None,
    seed: int = 0,
    data_root: str | os.PathLike | None = None,
    twin: dict | None = None,
) -> Cache:
    """Open (building a twin on first use) the cache of dataset `name` from `source`; `twin`: generator options
    of the synthetic twin (card_ratio, kappa, auc_margin, shares; generate_twin's defaults where unset)."""
    spec = get_spec(name)
    opts = twin_options(twin)
    if source == "synthetic":
        from ctrbench.data.synthetic import generate_twin

        rows = rows or spec.twin.default_rows
        path = cache_dir(data_root, name, twin_tag(rows, seed, opts))
        if not Cache.exists(path):
            return generate_twin(spec, path, rows=rows, seed=seed, **opts)
        return Cache.open(path)
    if source == "real":
        if opts:
            raise DataError(f"twin options {sorted(opts)} apply to source synthetic only; {name} was asked from real")
        path = cache_dir(data_root, name, "real")
        if not Cache.exists(path):
            raise DataError(
                f"{name} has not been prepared from its real files: run `ctrbench data prepare {name} --source PATH` "
                f"(files {sorted(set(spec.splits.values()))}; published at {spec.published_at})",
                file=str(path),
            )
        return Cache.open(path)
    raise DataError(f"unknown source {source!r}; valid: {', '.join(SOURCES)}")
