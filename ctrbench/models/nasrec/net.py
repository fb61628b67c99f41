"""The NASRec network shared by the supernet and the standalone subnet: a stem (raw dense features, sparse field
embeddings), choice blocks with dense connectivity, and a head on the last block. The supernet builds every node
at its largest width over every earlier source (unchosen sources are zeros); a subnet builds only its chosen nodes
at their widths over its chosen sources. Both run the same forward, so a subnet that inherits the supernet's
weights (`NASRecSubnet.inherit`) computes what the supernet computes on that path.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ctrbench.models.base import CTRModel
from ctrbench.models.nasrec.arch import MERGER_TOKENS, BlockChoice, Layout, StreamShapes
from ctrbench.models.nasrec.ops import (FC, EFC, Attention, DenseToTokens, DotProduct, FMToDense, SigmoidGating,
                                        Sum, copy_linear)


@dataclass(frozen=True)
class BlockPath:
    """What one block runs: its input sources, active nodes, widths and mergers (a point's block, or a supernet
    path where several sources and nodes may be active at once)."""

    dense_idx: tuple[int, ...]
    sparse_idx: tuple[int, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    dense_nodes: tuple[str, ...]
    sparse_nodes: tuple[str, ...]
    d: int
    t: int
    interact: int
    deep_fm: int

    @classmethod
    def of(cls, b: BlockChoice) -> "BlockPath":
        return cls(b.dense_idx, b.sparse_idx, (b.dense_left_idx,), (b.dense_right_idx,), (b.dense_node,),
                   (b.sparse_node,), b.dense_dim, b.sparse_dim, b.dense_sparse_interact, b.deep_fm)


@dataclass(frozen=True)
class BlockLayouts:
    """The concatenated inputs of one block."""

    dense: Layout
    tokens: Layout
    left: Layout
    right: Layout
    pair: Layout  # left and right placed together (sum)

    @classmethod
    def of(cls, shapes: StreamShapes, dense, tokens, left, right) -> "BlockLayouts":
        return cls(shapes.dense_layout(dense), shapes.token_layout(tokens), shapes.dense_layout(left),
                   shapes.dense_layout(right), shapes.dense_layout([*left, *right]))


class Block(nn.Module):
    """One choice block: its dense and sparse nodes (those it may run), and the two mergers."""

    def __init__(self, lay: BlockLayouts, dense_nodes, sparse_nodes, dense_w: int, sparse_w: int, *, emb: int,
                 k: int, merger_slot: bool, to_tokens: bool, fm: bool):
        super().__init__()
        self.lay, self.dense_w, self.sparse_w, self.emb, self.merger_slot = lay, dense_w, sparse_w, emb, merger_slot
        makers = {"fc": lambda: FC(lay.dense.width, dense_w),
                  "dp": lambda: DotProduct(lay.dense.width, lay.tokens.width, k, dense_w, emb),
                  "sum": lambda: Sum(lay.pair.width, dense_w),
                  "sg": lambda: SigmoidGating(lay.left.width, lay.right.width, dense_w),
                  "efc": lambda: EFC(lay.tokens.width, sparse_w),
                  "attn": lambda: Attention(lay.tokens.width, sparse_w, emb)}
        self.nodes = nn.ModuleDict({n: makers[n]() for n in (*dense_nodes, *sparse_nodes) if n != "zeros"})
        self.to_tokens = DenseToTokens(dense_w, emb) if to_tokens else None
        self.fm = FMToDense(emb, dense_w) if fm else None

    def forward(self, x, tok, left, right, pair, p: BlockPath):
        b = x.shape[0]
        dense = []
        for n in p.dense_nodes:
            if n == "fc":
                dense.append(self.nodes[n](x, p.d))
            elif n == "dp":
                dense.append(self.nodes[n](x, tok, p.d))
            elif n == "sum":
                dense.append(self.nodes[n](pair, p.d))
            elif n == "sg":
                dense.append(self.nodes[n](left, right, p.d))
            else:
                dense.append(x.new_zeros(b, self.dense_w))
        sparse = [self.nodes[n](tok, p.t) if n != "zeros" else tok.new_zeros(b, self.sparse_w, self.emb)
                  for n in p.sparse_nodes]
        dense_out, sparse_out = sum(dense[1:], dense[0]), sum(sparse[1:], sparse[0])
        merged = None
        if self.merger_slot:  # the merger tokens come from the dense output before the FM term is added (NASRec)
            merged = self.to_tokens(dense_out) if p.interact else x.new_zeros(b, MERGER_TOKENS, self.emb)
        if p.deep_fm:
            dense_out = dense_out + self.fm(sparse_out, p.d)
        if merged is not None:
            sparse_out = torch.cat([sparse_out, merged], dim=1)
        return dense_out, sparse_out


def place(layout: Layout, sources: list[torch.Tensor], chosen, dim: int) -> torch.Tensor:
    """Concatenate the layout's sources along `dim`; a source not in `chosen` is zeros of its shape."""
    chosen = set(chosen)
    parts = [sources[s.source] if s.source in chosen else torch.zeros_like(sources[s.source]) for s in layout.slots]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=dim)


class NASRecNet(CTRModel):
    """Stem + blocks + head; subclasses build the blocks (`build`) and say which path runs (`path`)."""

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        self.embedding = self.make_embedding(include_numeric=False)
        self.n_dense, self.n_sparse = len(spec.numeric), self.embedding.num_fields
        self.dense_norm = nn.BatchNorm1d(self.n_dense, affine=False) if self.n_dense and self.params.numeric_norm \
            else None

    def build(self, layouts: list[BlockLayouts], blocks: list[Block], head_in: int) -> None:
        self.layouts, self.blocks = layouts, nn.ModuleList(blocks)
        self.head = nn.Linear(head_in, 1)

    def path(self) -> list[BlockPath]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, batch) -> torch.Tensor:
        dense0 = batch.dense if self.dense_norm is None else self.dense_norm(batch.dense)
        ds, ts = [dense0], [self.embedding(batch)]
        for lay, blk, p in zip(self.layouts, self.blocks, self.path()):
            x = place(lay.dense, ds, p.dense_idx, -1)
            tok = place(lay.tokens, ts, p.sparse_idx, 1)
            left = right = pair = None
            if "sg" in p.dense_nodes:
                left, right = place(lay.left, ds, p.left, -1), place(lay.right, ds, p.right, -1)
            if "sum" in p.dense_nodes:
                pair = place(lay.pair, ds, p.left, -1) + place(lay.pair, ds, p.right, -1)
            d_out, t_out = blk(x, tok, left, right, pair, p)
            ds.append(d_out)
            ts.append(t_out)
        return self.head(torch.cat([ds[-1], ts[-1].flatten(1)], dim=1)).squeeze(1)

    def head_parameters(self) -> list[nn.Parameter]:
        """The final linear layer (what the one-shot evaluator fine-tunes)."""
        return list(self.head.parameters())

    def copy_head(self, src: nn.Linear, cols) -> None:
        copy_linear(self.head, src, None, cols)
