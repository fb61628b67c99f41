"""Day slices of a twin with days (criteo_terabyte: 24 days with drift; the `day` block of its train split holds
each row's day, rows in time order). DistDNAS searches one day at a time (specs/search.md §6.1), so a search sees
a view of the cache holding only its days' rows:

  train   the first (1 - valid_fraction) of each chosen day's first `day_rows` rows (the weight steps)
  valid   the rest of those rows (the architecture steps)

Both come from the training days only: the cache's own valid/test split (the last day) stays untouched for the
retrained model's early stopping and test. Several days pooled give the sequential baseline's data (the same rows
as the per-day searches together). The slices are copied into memory (`day_rows` keeps them small).
"""
from __future__ import annotations

import numpy as np

from ctrbench.data.cache import Cache, SplitData
from ctrbench.errors import DataError


def day_ranges(cache: Cache) -> dict[int, tuple[int, int]]:
    """day -> (first row, end row) in the cache's train split (each day's rows are contiguous, in time order)."""
    train = cache.split("train")
    if "day" not in train:
        raise DataError(f"dataset {cache.spec.name!r} has no day block in its train split: DistDNAS searches the days "
                        "of a twin with days (criteo_terabyte, source synthetic)", file=str(cache.path))
    day = np.asarray(train["day"])
    if len(day) and (np.diff(day) < 0).any():
        raise DataError("the train split's days are not in time order", file=str(cache.path))
    days, first = np.unique(day, return_index=True)
    ends = list(first[1:]) + [len(day)]
    return {int(d): (int(lo), int(hi)) for d, lo, hi in zip(days, first, ends)}


class DaySlice:
    """A read-only cache view with the rows of some training days as its train and valid splits (see module doc).
    Quacks like a Cache for BatchLoader, build_model and the DNAS search (spec, vocab_sizes, split, table)."""

    def __init__(self, cache: Cache, days: list[int], day_rows: int | None, valid_fraction: float):
        if not days:
            raise ValueError("a day slice needs at least one day")
        if not 0 < valid_fraction < 1:
            raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
        if day_rows is not None and day_rows < 2:
            raise ValueError(f"day_rows must be >= 2 (a train and a valid row), got {day_rows}")
        ranges = day_ranges(cache)
        missing = [d for d in days if d not in ranges]
        if missing:
            raise DataError(f"day {missing[0]} is not a training day of {cache.spec.name}; it has days "
                            f"{min(ranges)}..{max(ranges)}", file=str(cache.path))
        self.cache, self.days = cache, list(days)
        self.spec, self.vocab_sizes, self.path = cache.spec, cache.vocab_sizes, cache.path
        rows = {"train": [], "valid": []}
        for d in self.days:
            lo, hi = ranges[d]
            hi = min(hi, lo + day_rows) if day_rows else hi
            cut = lo + int(round((hi - lo) * (1 - valid_fraction)))
            if not lo < cut < hi:
                raise DataError(f"day {d} has {hi - lo} rows: too few to split {valid_fraction:.0%} off for the "
                                "architecture steps", file=str(cache.path))
            rows["train"].append(np.arange(lo, cut))
            rows["valid"].append(np.arange(cut, hi))
        source = cache.split("train")
        self._splits = {}
        for name, parts in rows.items():
            idx = np.concatenate(parts)
            blocks = {k: np.take(np.asarray(v), idx, axis=0) for k, v in source.blocks.items()}
            self._splits[name] = SplitData(name, len(idx), blocks)

    @property
    def split_names(self) -> list[str]:
        return list(self._splits)

    def split(self, name: str) -> SplitData:
        if name not in self._splits:
            raise DataError(f"split {name!r} not in a day slice; has {self.split_names}", file=str(self.path))
        return self._splits[name]

    def table(self, name: str) -> np.ndarray:
        return self.cache.table(name)

    def positive_rate(self, split: str) -> float:
        return float(np.mean(self.split(split)["label"]))
