"""A NASRec subnet fixed by a space point, built standalone at its own widths (trainable from scratch), or
inheriting a trained supernet's weights (`inherit`) so that it computes what the supernet computes on that path.
"""
from __future__ import annotations

from pydantic import Field

from ctrbench.errors import ParamError
from ctrbench.models.nasrec.arch import NASRecPoint, point_flops, stream_shapes
from ctrbench.models.nasrec.net import Block, BlockLayouts, BlockPath, NASRecNet
from ctrbench.models.nasrec.supernet import NASRecParams, NASRecSupernet
from ctrbench.models.registry import register


def point_layouts(point: NASRecPoint, n_dense: int, n_sparse: int, max_sparse: int | None = None):
    """Each block's input layouts over its chosen sources (positions inside a supernet with `max_sparse` tokens
    per block when given, else compact)."""
    shapes = stream_shapes(point, n_dense, n_sparse, max_sparse)
    lays = [BlockLayouts.of(shapes, b.dense_idx, b.sparse_idx, [b.dense_left_idx], [b.dense_right_idx])
            for b in point.blocks]
    return shapes, lays


@register("nasrec_subnet")
class NASRecSubnet(NASRecNet):
    """The architecture `point` (a NASRec point: dp_tokens and one choice per block), each node at its width."""

    class Params(NASRecParams):
        point: NASRecPoint | None = Field(None, description="the architecture (ctrbench.models.nasrec.arch."
                                          "NASRecPoint); required to build -- a searcher entry's candidates carry it")

        def check_dataset(self, spec) -> None:
            if self.point is None:
                raise ParamError("point", "nasrec_subnet needs a point (the architecture to build)")

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        self.params.check_dataset(spec)
        point, emb = self.params.point, self.embedding_dim
        shapes, lays = point_layouts(point, self.n_dense, self.n_sparse)
        blocks = [Block(lay, (b.dense_node,), (b.sparse_node,), b.dense_dim, b.sparse_dim, emb=emb, k=point.dp_tokens,
                        merger_slot=bool(b.dense_sparse_interact), to_tokens=bool(b.dense_sparse_interact),
                        fm=bool(b.deep_fm))
                  for lay, b in zip(lays, point.blocks)]
        self.build(lays, blocks, point.blocks[-1].dense_dim + len(shapes.tokens[-1]) * emb)
        self._path = [BlockPath.of(b) for b in point.blocks]

    def path(self) -> list[BlockPath]:
        return self._path

    def flops(self) -> int:
        """Analytic FLOPs per example of the blocks and head (arch.point_flops says what is counted)."""
        return point_flops(self.params.point, self.n_dense, self.n_sparse, self.embedding_dim)

    def inherit(self, supernet: NASRecSupernet) -> "NASRecSubnet":
        """Copy the supernet's weights for this point's path (embeddings whole; every op its slice)."""
        point = self.params.point
        supernet.check(point)
        self.embedding.load_state_dict(supernet.embedding.state_dict())
        if self.dense_norm is not None:
            self.dense_norm.load_state_dict(supernet.dense_norm.state_dict())
        shapes, lays = point_layouts(point, self.n_dense, self.n_sparse, supernet.max_t)
        for b, lay, full, blk, src in zip(point.blocks, lays, supernet.layouts, self.blocks, supernet.blocks):
            cols, tcols = lay.dense.index_in(full.dense), lay.tokens.index_in(full.tokens)
            d, t = b.dense_dim, b.sparse_dim
            node, snode = b.dense_node, b.sparse_node
            if node == "fc":
                blk.nodes[node].inherit(src.nodes[node], d, cols)
            elif node == "dp":
                blk.nodes[node].inherit(src.nodes[node], d, cols, tcols)
            elif node == "sum":
                blk.nodes[node].inherit(src.nodes[node], d, lay.pair.index_in(full.pair))
            elif node == "sg":
                blk.nodes[node].inherit(src.nodes[node], d, lay.left.index_in(full.left),
                                        lay.right.index_in(full.right))
            if snode != "zeros":
                blk.nodes[snode].inherit(src.nodes[snode], t, tcols)
            if b.dense_sparse_interact:
                blk.to_tokens.inherit(src.to_tokens, d)
            if b.deep_fm:
                blk.fm.inherit(src.fm, d)
        last, emb = point.blocks[-1], self.embedding_dim
        head_cols = list(range(last.dense_dim)) + [supernet.max_d + p * emb + e for p in shapes.tokens[-1]
                                                   for e in range(emb)]
        self.copy_head(supernet.head, head_cols)
        return self
