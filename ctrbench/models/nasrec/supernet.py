"""The NASRec supernet (specs/search.md §2.4) as a registered model: every node of a space at its largest width,
trained on sampled paths. Strategy "default" samples the inputs any-path (1-4 sources per block) and the nodes
single-path (one dense, one sparse node per block); "single-path" / "any-path" do both that way; "full-path" always
runs everything. During the first `warmup_steps` training steps the full supernet runs with probability
1 - step / warmup_steps (linear decay). `fix(point)` pins one path (for evaluation and fine-tuning); in eval mode
with no pinned path the full path runs.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from ctrbench.models.base import ModelParams
from ctrbench.models.nasrec.arch import (ARCH_CONFIGS, COUNTS, MERGER_TOKENS, ArchConfig, NASRecPoint, StreamShapes,
                                         draw_field)
from ctrbench.models.nasrec.net import Block, BlockLayouts, BlockPath, NASRecNet
from ctrbench.models.registry import register

STRATEGIES = {"default": ("any", "single"), "single-path": ("single", "single"), "any-path": ("any", "any"),
              "full-path": ("full", "full")}


class NASRecParams(ModelParams):
    """Settings shared by the NASRec supernet and subnet."""

    embedding_dim: int | None = Field(16, gt=0, description="embedding size (NASRec: 16)")


@register("nasrec_supernet")
class NASRecSupernet(NASRecNet):
    """All nodes of `space` at `scale` x the paper's widths; a path sampled per training step."""

    class Params(NASRecParams):
        space: Literal["small", "full", "xlarge_zeros"] = Field("small", description="NASRec-Small, -Full or "
                                                                "xlarge-zeros (node sets of specs/search.md §2.3)")
        scale: float = Field(1.0, gt=0, le=1, description="width multiplier (1 = the paper's widths)")
        num_blocks: int = Field(7, ge=1)
        path_sampling: Literal["default", "single-path", "any-path", "full-path"] = "default"
        anypath_choice: Literal["uniform", "binomial-0.5"] = Field("uniform", description="how many inputs an "
                                                                   "any-path block draws (NASRec)")
        warmup_steps: int = Field(0, ge=0, description="steps over which the full-path probability decays 1 -> 0")
        path_seed: int = Field(0, description="seed of the path sampler")

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        base = ARCH_CONFIGS[p.space]
        self.cfg = ArchConfig(base.dense_nodes, base.sparse_nodes, base.dense_dims, base.sparse_dims,
                              p.num_blocks).scaled(p.scale)
        self.max_d, self.max_t = max(self.cfg.dense_dims), max(self.cfg.sparse_dims)
        emb, n = self.embedding_dim, self.cfg.num_blocks
        self.shapes = StreamShapes(
            (tuple(range(self.n_dense)),) + (tuple(range(self.max_d)),) * n,
            (tuple(range(self.n_sparse)),) + (tuple(range(self.max_t + MERGER_TOKENS)),) * n)
        layouts, blocks = [], []
        for i in range(n):
            src = list(range(i + 1))
            lay = BlockLayouts.of(self.shapes, src, src, src, src)
            layouts.append(lay)
            blocks.append(Block(lay, self.cfg.dense_nodes, self.cfg.sparse_nodes, self.max_d, self.max_t, emb=emb,
                                k=self.cfg.k, merger_slot=True, to_tokens=True, fm=True))
        self.build(layouts, blocks, self.max_d + (self.max_t + MERGER_TOKENS) * emb)
        self.register_buffer("train_steps", torch.zeros((), dtype=torch.long))
        # the step count on the host, so sampling a path reads no device tensor back; None after a state-dict
        # load (then read once from the buffer)
        self._host_steps: int | None = 0
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_host_steps", None))
        self.rng = np.random.default_rng(p.path_seed)
        self.fixed: list[BlockPath] | None = None
        self.last_path: list[BlockPath] | None = None

    def fix(self, point: NASRecPoint | dict | None) -> None:
        """Pin the path of `point` (None: back to sampling); the point must fit this supernet's widths."""
        self.fixed = None if point is None else [BlockPath.of(b) for b in self.check(point).blocks]

    def check(self, point: NASRecPoint | dict) -> NASRecPoint:
        """`point` validated, and checked to be a path of this supernet (nodes, widths, blocks); ValueError if not."""
        point = NASRecPoint.model_validate(point)
        if len(point.blocks) != self.cfg.num_blocks:
            raise ValueError(f"point has {len(point.blocks)} blocks; the supernet has {self.cfg.num_blocks}")
        for i, b in enumerate(point.blocks):
            if b.dense_node not in self.cfg.dense_nodes or b.sparse_node not in self.cfg.sparse_nodes:
                raise ValueError(f"blocks[{i}]: nodes {b.dense_node}/{b.sparse_node} are not in this supernet")
            if b.dense_dim > self.max_d or b.sparse_dim > self.max_t:
                raise ValueError(f"blocks[{i}]: widths {b.dense_dim}/{b.sparse_dim} exceed the supernet's "
                                 f"{self.max_d}/{self.max_t}")
        if point.dp_tokens != self.cfg.k:
            raise ValueError(f"point's dp_tokens {point.dp_tokens} != the supernet's {self.cfg.k}")
        return point

    def full_path(self) -> list[BlockPath]:
        return [BlockPath(tuple(range(i + 1)), tuple(range(i + 1)), tuple(range(i + 1)), tuple(range(i + 1)),
                          self.cfg.dense_nodes, self.cfg.sparse_nodes, self.max_d, self.max_t, 1, 1)
                for i in range(self.cfg.num_blocks)]

    def full_path_probability(self, step: int) -> float:
        """NASRec's warm-up: 1 - step / warmup_steps, then 0."""
        t = self.params.warmup_steps
        return max(0.0, 1.0 - step / t) if t else 0.0

    def sample_path(self, step: int) -> list[BlockPath]:
        macro, micro = STRATEGIES[self.params.path_sampling]
        if macro == "full" or self.rng.random() < self.full_path_probability(step):
            return self.full_path()
        count = COUNTS[self.params.anypath_choice] if macro == "any" else (lambda n, rng: 1)
        return [self._sample_block(i, count, micro) for i in range(self.cfg.num_blocks)]

    def _sample_block(self, i: int, count, micro: str) -> BlockPath:
        v: dict = {}
        for f in ("dense_idx", "sparse_idx", "dense_left_idx", "dense_right_idx", "dense_dim", "sparse_dim",
                  "dense_sparse_interact", "deep_fm"):
            v.update(draw_field(self.cfg, i, f, self.rng, count))
        if micro == "single":
            nodes = draw_field(self.cfg, i, "nodes", self.rng)
            dn, sn = (nodes["dense_node"],), (nodes["sparse_node"],)
        else:
            while True:
                pick = COUNTS[self.params.anypath_choice]
                dn = tuple(sorted(self.rng.choice(self.cfg.dense_nodes, pick(len(self.cfg.dense_nodes), self.rng),
                                                  replace=False).tolist()))
                sn = tuple(sorted(self.rng.choice(self.cfg.sparse_nodes, pick(len(self.cfg.sparse_nodes), self.rng),
                                                  replace=False).tolist()))
                if (dn, sn) != (("zeros",), ("zeros",)):
                    break
        return BlockPath(v["dense_idx"], v["sparse_idx"], (v["dense_left_idx"],), (v["dense_right_idx"],), dn, sn,
                         v["dense_dim"], v["sparse_dim"], v["dense_sparse_interact"], v["deep_fm"])

    def path(self) -> list[BlockPath]:
        if self.fixed is not None:
            self.last_path = self.fixed
        elif self.training:
            if self._host_steps is None:
                self._host_steps = int(self.train_steps)
            self.last_path = self.sample_path(self._host_steps)
            self._host_steps += 1
            self.train_steps += 1
        else:
            self.last_path = self.full_path()
        return self.last_path
