"""Batches straight from the cache: an index permutation per epoch, slices gathered block by block.

No per-row Python. Shuffling is seeded by (seed, epoch). Last-batch policy: the final partial batch is
kept unless `drop_last=True`. Sharding for data-parallel training: rank r of W takes every W-th row of
the (shuffled) order, and all ranks are cut to the same row count (the at most W-1 leftover rows of an
epoch are dropped, so every rank runs the same number of steps).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ctrbench.data.batch import Batch, KeyedJagged
from ctrbench.data.cache import Cache


class BatchLoader:
    """Iterates one split of a cache as `Batch`es."""

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
        idx = self.order()
        for i in range(len(self)):
            rows = idx[i * self.batch_size : (i + 1) * self.batch_size]
            if self.shuffle:
                rows = np.sort(rows)  # same batch, better locality on the memmaps
            yield self.gather(rows)

    def gather(self, rows: np.ndarray | slice) -> Batch:
        """The Batch of the given rows (an index array or a slice)."""
        d = self.data
        label = torch.from_numpy(np.asarray(d["label"][rows], dtype=np.float32))
        b = label.shape[0]
        if "numeric" in d:
            dense = torch.from_numpy(np.asarray(d["numeric"][rows], dtype=np.float32))
        else:
            dense = torch.zeros(b, 0)
        if "categorical" in d:
            cat = torch.from_numpy(np.asarray(d["categorical"][rows]).astype(np.int64))
        else:
            cat = torch.zeros(b, 0, dtype=torch.int64)
        sparse = KeyedJagged.from_single_valued(self.categorical_keys, cat)
        sequences, lengths = {}, {}
        for name in self.sequence_keys:
            block = f"seq__{name}"
            if block in d:
                seq = torch.from_numpy(np.asarray(d[block][rows]).astype(np.int64))
                sequences[name] = seq
                lengths[name] = (seq != 0).sum(dim=1)
        pretrained = {}
        if "pretrained" in d:
            pre = torch.from_numpy(np.asarray(d["pretrained"][rows]).astype(np.int64))
            pretrained = {k: pre[:, j] for j, k in enumerate(self.pretrained_keys)}
        group_id = torch.from_numpy(np.asarray(d["group_id"][rows])) if "group_id" in d else None
        oracle_p = torch.from_numpy(np.asarray(d["oracle_p"][rows], dtype=np.float32)) if "oracle_p" in d else None
        return Batch(dense, sparse, label, sequences, lengths, pretrained, group_id, oracle_p)
