"""Batches straight from the cache: an index permutation per epoch, slices gathered block by block.

No per-row Python; each block is gathered with one `np.take` into a fresh array and handed to torch without a
copy (the `offsets` of the single-valued sparse layout are shared between batches of the same size and must
not be modified in place). Shuffling is seeded by (seed, epoch). Last-batch policy: the final partial batch is
kept unless `drop_last=True`. Sharding for data-parallel training: rank r of W takes every W-th row of
the (shuffled) order, and all ranks are cut to the same row count (the at most W-1 leftover rows of an
epoch are dropped, so every rank runs the same number of steps).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ctrbench.data.batch import Batch, EmbeddingIndexError, KeyedJagged
from ctrbench.data.cache import Cache


class BatchLoader:
    """Iterates one split of a cache as `Batch`es; every batch's ids are checked against the vocabularies here,
    on the host, once (EmbeddingIndexError naming the field, the split and the row), so models never read
    device tensors back to check them."""

    def __init__(
        self,
        cache: Cache,
        split: str,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        max_rows: int | None = None,
        validate_ids: bool = True,
    ):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.cache, self.split_name = cache, split
        self.data = cache.split(split)
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.rows = self.data.rows if max_rows is None else min(max_rows, self.data.rows)
        self.epoch = 0
        spec = cache.spec
        self.categorical_keys = [f.name for f in spec.categorical]
        self.pretrained_keys = [f.name for f in spec.pretrained]
        self.sequence_keys = [f.name for f in spec.sequences]
        # plain ndarray views of the memmaps: cheaper indexing than through np.memmap
        self._blocks = {k: np.asarray(v) for k, v in self.data.blocks.items()}
        self._offsets_cache: dict = {}
        self.validate_ids = validate_ids
        vocab = cache.vocab_sizes
        self._cat_bounds = np.array([vocab[k] for k in self.categorical_keys], dtype=np.int64)
        self._seq_bounds = {f.name: vocab[f.vocab_owner] for f in spec.sequences if f.vocab_owner in vocab}
        self._pre_bounds = {k: vocab[k] for k in self.pretrained_keys if k in vocab}

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose permutation the next iteration uses."""
        self.epoch = epoch

    @property
    def shard_rows(self) -> int:
        return self.rows // self.world_size if self.world_size > 1 else self.rows

    def __len__(self) -> int:
        n = self.shard_rows
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def order(self) -> np.ndarray:
        """This rank's row order for the current epoch."""
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            idx = rng.permutation(self.rows)
        else:
            idx = np.arange(self.rows)
        if self.world_size > 1:
            idx = idx[self.rank :: self.world_size][: self.shard_rows]
        return idx

    def __iter__(self):
        contiguous = not self.shuffle and self.world_size == 1
        idx = None if contiguous else self.order()
        for i in range(len(self)):
            lo, hi = i * self.batch_size, min((i + 1) * self.batch_size, self.shard_rows)
            if contiguous:
                yield self.gather(slice(lo, hi))  # in order: plain copies of contiguous ranges
            else:
                rows = idx[lo:hi]
                yield self.gather(np.sort(rows) if self.shuffle else rows)  # same batch, better locality

    def _offsets(self, n: int) -> torch.Tensor:
        key = (len(self.categorical_keys), n)
        if self._offsets_cache.get("key") != key:
            self._offsets_cache = {"key": key, "value": torch.from_numpy(np.arange(key[0] * n + 1, dtype=np.int64))}
        return self._offsets_cache["value"]

    def _check(self, ids: np.ndarray, bounds: np.ndarray, names: list[str], rows: np.ndarray | slice) -> None:
        """EmbeddingIndexError for the first id outside [0, bound) of its column (one name per column, or one
        name for every column of a sequence block), naming the split and the row."""
        if ids.size == 0:
            return
        bounds = np.broadcast_to(bounds, ids.shape[1:]) if ids.ndim > 1 else bounds
        bad = (ids < 0) | (ids >= bounds)
        if not bad.any():
            return
        i, j = (int(v) for v in np.argwhere(bad)[0])
        row = (rows.start or 0) + i if isinstance(rows, slice) else int(rows[i])
        name = names[j] if len(names) > 1 else names[0]
        raise EmbeddingIndexError(name, int(ids[i, j]), int(bounds[j]), f" in split {self.split_name!r}, row {row}")

    def gather(self, rows: np.ndarray | slice) -> Batch:
        """The Batch of the given rows (an index array or a slice)."""
        b = self._blocks
        if isinstance(rows, slice):
            take = lambda name: np.array(b[name][rows])  # noqa: E731
        else:
            take = lambda name: np.take(b[name], rows, axis=0)  # noqa: E731
        label = torch.from_numpy(take("label").astype(np.float32, copy=False))
        n = label.shape[0]
        dense = torch.from_numpy(take("numeric").astype(np.float32, copy=False)) if "numeric" in b else torch.zeros(n, 0)
        if "categorical" in b:  # feature-major int64 values in one pass
            cat = take("categorical")
            if self.validate_ids:
                self._check(cat, self._cat_bounds, self.categorical_keys, rows)
            values = np.ascontiguousarray(cat.T, dtype=np.int64).reshape(-1)
        else:
            values = np.zeros(0, dtype=np.int64)
        sparse = KeyedJagged(self.categorical_keys, torch.from_numpy(values), self._offsets(n), n)
        sequences, lengths = {}, {}
        for name in self.sequence_keys:
            block = f"seq__{name}"
            if block in b:
                seq = take(block)
                if self.validate_ids and name in self._seq_bounds:
                    self._check(seq, np.int64(self._seq_bounds[name]), [name], rows)
                lengths[name] = torch.from_numpy(np.count_nonzero(seq, axis=1).astype(np.int64))
                sequences[name] = torch.from_numpy(seq.astype(np.int64))
        pretrained = {}
        if "pretrained" in b:
            pre = take("pretrained").astype(np.int64)
            if self.validate_ids and len(self._pre_bounds) == len(self.pretrained_keys):
                self._check(pre, np.array(list(self._pre_bounds.values())), self.pretrained_keys, rows)
            pretrained = {k: torch.from_numpy(np.ascontiguousarray(pre[:, j])) for j, k in enumerate(self.pretrained_keys)}
        group_id = torch.from_numpy(take("group_id")) if "group_id" in b else None
        oracle_p = torch.from_numpy(take("oracle_p").astype(np.float32, copy=False)) if "oracle_p" in b else None
        return Batch(dense, sparse, label, sequences, lengths, pretrained, group_id, oracle_p)
