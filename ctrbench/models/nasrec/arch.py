"""NASRec architectures as data: a point (one choice per block, validated), the tensor layouts of the dual
dense/sparse streams, and the analytic FLOPs of a point. Shared by the supernet, the standalone subnet and the
search spaces, so the FLOPs a search optimises are the FLOPs the reports show (specs/search.md §2, §9.2).

A point (JSON): {"dp_tokens": K, "blocks": [block, ...]}; block i sees source 0 (the raw dense features and the
sparse field embeddings) and sources 1..i (the outputs of blocks 0..i-1). A block:
  dense_idx, sparse_idx   1-4 distinct sources concatenated as its dense / sparse input
  dense_left_idx, dense_right_idx   the source pair of the binary dense nodes (sum, sigmoid gating)
  dense_node   fc | dp | sg | sum | zeros          sparse_node   efc | attn | zeros
  dense_dim    width of the dense output            sparse_dim    tokens of the sparse output (width = embedding)
  dense_sparse_interact   1: the dense output, projected to 8 tokens, is appended to the sparse output
  deep_fm      1: an FM of the sparse output, projected to dense_dim, is added to the dense output
`dp_tokens` (K) is a space constant, round(sqrt(2 * the space's widest dense dim)): the dot-product node compresses
its sparse input to K tokens (NASRec), so a point carries it to be buildable on its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

DENSE_NODES = ("fc", "dp", "sg", "sum", "zeros")
SPARSE_NODES = ("efc", "attn", "zeros")
MAX_INPUTS = 4  # at most this many dense and sparse inputs per block (NASRec)
MERGER_TOKENS = 8  # the dense->sparse merger's extra tokens (NASRec DS_INTERACT_NUM_SPLITS)
ATTN_HEADS = 8


def dp_tokens(max_dense_dim: int) -> int:
    """NASRec's dot-product token count: round(sqrt(2 * max dense width))."""
    return round(math.sqrt(2 * max_dense_dim))


class BlockChoice(BaseModel):
    """One block's macro (inputs) and micro (nodes, widths, mergers) choice."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dense_idx: tuple[int, ...] = Field(min_length=1, max_length=MAX_INPUTS)
    sparse_idx: tuple[int, ...] = Field(min_length=1, max_length=MAX_INPUTS)
    dense_left_idx: int = Field(ge=0)
    dense_right_idx: int = Field(ge=0)
    dense_node: Literal["fc", "dp", "sg", "sum", "zeros"]
    sparse_node: Literal["efc", "attn", "zeros"]
    dense_dim: PositiveInt
    sparse_dim: PositiveInt
    dense_sparse_interact: Literal[0, 1]
    deep_fm: Literal[0, 1]

    @field_validator("dense_idx", "sparse_idx")
    @classmethod
    def _distinct_sorted(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(v)) != len(v):
            raise ValueError(f"repeated source in {list(v)}")
        if min(v) < 0:
            raise ValueError(f"negative source in {list(v)}")
        return tuple(sorted(v))

    @model_validator(mode="after")
    def _not_both_zero(self):
        if self.dense_node == "zeros" and self.sparse_node == "zeros":
            raise ValueError("a block's dense and sparse nodes cannot both be 'zeros'")
        return self

    def sources(self) -> set[int]:
        return {*self.dense_idx, *self.sparse_idx, self.dense_left_idx, self.dense_right_idx}


class NASRecPoint(BaseModel):
    """A whole architecture; block i may only read sources 0..i."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dp_tokens: PositiveInt
    blocks: tuple[BlockChoice, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _sources_exist(self):
        for i, b in enumerate(self.blocks):
            bad = sorted(s for s in b.sources() if s > i)
            if bad:
                raise ValueError(f"blocks[{i}] reads source {bad[0]}, but block {i} sees sources 0..{i} only")
        return self

    def to_json_dict(self) -> dict:
        return self.model_dump(mode="json")


# --- layouts: where each source's values sit in a block's concatenated input ----------------------------------
@dataclass(frozen=True)
class Slot:
    """One source inside a concatenated input: the positions (within the source's supernet slot) it occupies."""

    source: int
    positions: tuple[int, ...]


@dataclass(frozen=True)
class Layout:
    """A concatenated input: slots in order. The supernet's layouts hold every source at full width (unchosen
    ones are zero); a subnet's hold only its chosen sources at their actual widths."""

    slots: tuple[Slot, ...]

    @property
    def width(self) -> int:
        return sum(len(s.positions) for s in self.slots)

    def index_in(self, full: "Layout") -> list[int]:
        """For each position of this layout, its index in `full` (a supernet layout holding every slot)."""
        offset, start = 0, {}
        for s in full.slots:
            start[s.source] = (offset, {p: k for k, p in enumerate(s.positions)})
            offset += len(s.positions)
        out = []
        for s in self.slots:
            base, pos = start[s.source]
            out.extend(base + pos[p] for p in s.positions)
        return out


@dataclass(frozen=True)
class StreamShapes:
    """Per source: dense positions (of the supernet's dense slot) and sparse token positions (of its token slot)."""

    dense: tuple[tuple[int, ...], ...]
    tokens: tuple[tuple[int, ...], ...]

    def dense_layout(self, sources) -> Layout:
        return Layout(tuple(Slot(j, self.dense[j]) for j in sorted(set(sources))))

    def token_layout(self, sources) -> Layout:
        return Layout(tuple(Slot(j, self.tokens[j]) for j in sorted(set(sources))))


def stream_shapes(point: NASRecPoint, n_dense: int, n_sparse: int, max_sparse: int | None = None) -> StreamShapes:
    """The active positions of every source of `point`. A block's sparse slot in the supernet is `max_sparse`
    tokens then the 8 merger tokens; a subnet keeps the first `sparse_dim` and the merger tokens if it merges."""
    dense = [tuple(range(n_dense))]
    tokens = [tuple(range(n_sparse))]
    for b in point.blocks:
        dense.append(tuple(range(b.dense_dim)))
        base = b.sparse_dim if max_sparse is None else max_sparse
        merged = tuple(range(base, base + MERGER_TOKENS)) if b.dense_sparse_interact else ()
        tokens.append(tuple(range(b.sparse_dim)) + merged)
    return StreamShapes(tuple(dense), tuple(tokens))


# --- analytic FLOPs --------------------------------------------------------------------------------------------
def block_flops(b: BlockChoice, shapes: StreamShapes, emb: int, k: int) -> int:
    """Matmul FLOPs per example of one block (2 per multiply-add; see `point_flops`)."""
    din = shapes.dense_layout(b.dense_idx).width
    tin = shapes.token_layout(b.sparse_idx).width
    d, t = b.dense_dim, b.sparse_dim
    dl = len(shapes.dense[b.dense_left_idx])
    dr = len(shapes.dense[b.dense_right_idx])
    if b.dense_node == "fc":
        f = 2 * din * d
    elif b.dense_node == "dp":  # dense -> emb, tokens -> K, (K+1)x(K+1) dots, lower triangle -> d
        f = 2 * din * emb + 2 * emb * tin * k + 2 * (k + 1) ** 2 * emb + 2 * (k * (k + 1) // 2) * d
    elif b.dense_node == "sum":  # one source (l == r) or both side by side, projected
        f = 2 * (dl if b.dense_left_idx == b.dense_right_idx else dl + dr) * d
    elif b.dense_node == "sg":  # gate: left -> right's width, then the gated right projected
        f = 2 * dl * dr + 2 * dr * d
    else:
        f = 0
    if b.sparse_node == "efc":
        f += 2 * emb * tin * t
    elif b.sparse_node == "attn":  # token projection, qkv, scores, weighted values, out-proj, 2-layer FFN
        f += 2 * emb * tin * t + 2 * t * emb * 3 * emb + 2 * 2 * t * t * emb + 2 * t * emb * emb + 2 * 2 * t * emb * emb
    if b.dense_sparse_interact:
        f += 2 * d * MERGER_TOKENS * emb
    if b.deep_fm:
        f += 2 * emb * d
    return f


def point_flops(point: NASRecPoint, n_dense: int, n_sparse: int, emb: int) -> int:
    """FLOPs per example of the dense/interaction part of a point's standalone subnet: every matrix product of
    the blocks and the head, at 2 FLOPs per multiply-add -- exactly what torch.utils.flop_counter counts (mm,
    addmm, bmm). Not counted: embedding lookups, LayerNorm, activations, softmax, element-wise products and sums
    (the FM's squares included) and bias adds."""
    shapes = stream_shapes(point, n_dense, n_sparse)
    total = sum(block_flops(b, shapes, emb, point.dp_tokens) for b in point.blocks)
    last = point.blocks[-1]
    return total + 2 * (last.dense_dim + len(shapes.tokens[-1]) * emb)


# --- the named spaces' operator sets and widths, and sampling -------------------------------------------------
PAPER_DENSE_DIMS = (16, 32, 64, 128, 256, 512, 768, 1024)
PAPER_SPARSE_DIMS = (16, 32, 48, 64)


@dataclass(frozen=True)
class ArchConfig:
    """The choices of one NASRec space (specs/search.md §2.3): node sets, widths, block count."""

    dense_nodes: tuple[str, ...]
    sparse_nodes: tuple[str, ...]
    dense_dims: tuple[int, ...] = PAPER_DENSE_DIMS
    sparse_dims: tuple[int, ...] = PAPER_SPARSE_DIMS
    num_blocks: int = 7

    @property
    def k(self) -> int:
        return dp_tokens(max(self.dense_dims))

    def scaled(self, scale: float) -> "ArchConfig":
        """Every width times `scale` (rounded, at least 1). The widths must stay distinct, so a scaled space has
        as many choices as the paper's; `scale` 1 is the paper's space."""
        if not 0 < scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {scale}")
        dd = tuple(max(1, round(w * scale)) for w in self.dense_dims)
        sd = tuple(max(1, round(w * scale)) for w in self.sparse_dims)
        if len(set(dd)) < len(dd) or len(set(sd)) < len(sd):
            raise ValueError(f"scale {scale} merges widths (dense {list(dd)}, sparse {list(sd)}); use a larger scale")
        return ArchConfig(self.dense_nodes, self.sparse_nodes, dd, sd, self.num_blocks)


ARCH_CONFIGS = {
    "small": ArchConfig(("fc", "dp"), ("efc",)),  # NASRec autoctr = NASRec-Small (the space SiGeo searches)
    "full": ArchConfig(("fc", "dp", "sg", "sum"), ("attn", "efc")),  # NASRec xlarge = NASRec-Full
    "xlarge_zeros": ArchConfig(("fc", "dp", "sg", "sum", "zeros"), ("attn", "efc", "zeros")),
}


def uniform_count(n_sources: int, rng) -> int:
    """NASRec's 'uniform' input count: 1..min(n, 4) with equal probability."""
    return 1 + int(rng.integers(min(n_sources, MAX_INPUTS)))


def binomial_count(n_sources: int, rng) -> int:
    """NASRec's 'binomial-0.5' input count: 1 + Binomial(min(n-1, 3), 0.5)."""
    return 1 + int(rng.binomial(min(n_sources - 1, MAX_INPUTS - 1), 0.5))


COUNTS = {"uniform": uniform_count, "binomial-0.5": binomial_count}

MACRO_FIELDS = ("dense_idx", "sparse_idx", "dense_left_idx", "dense_right_idx")
MICRO_FIELDS = ("nodes", "dense_dim", "sparse_dim", "dense_sparse_interact", "deep_fm")


def draw_field(cfg: ArchConfig, i: int, field: str, rng, count=uniform_count) -> dict:
    """A fresh draw of one field of block i (as block keys -> values); 'nodes' draws the dense and sparse node
    together and never both 'zeros'."""
    n = i + 1
    if field in ("dense_idx", "sparse_idx"):
        return {field: tuple(sorted(int(x) for x in rng.choice(n, count(n, rng), replace=False)))}
    if field in ("dense_left_idx", "dense_right_idx"):
        return {field: int(rng.integers(n))}
    if field == "nodes":
        while True:
            dn = cfg.dense_nodes[int(rng.integers(len(cfg.dense_nodes)))]
            sn = cfg.sparse_nodes[int(rng.integers(len(cfg.sparse_nodes)))]
            if not (dn == "zeros" and sn == "zeros"):
                return {"dense_node": dn, "sparse_node": sn}
    if field == "dense_dim":
        return {field: int(cfg.dense_dims[int(rng.integers(len(cfg.dense_dims)))])}
    if field == "sparse_dim":
        return {field: int(cfg.sparse_dims[int(rng.integers(len(cfg.sparse_dims)))])}
    if field in ("dense_sparse_interact", "deep_fm"):
        return {field: int(rng.integers(2))}
    raise KeyError(field)


def sample_block(cfg: ArchConfig, i: int, rng, count=uniform_count) -> BlockChoice:
    """Block i drawn field by field (macro any-path with `count` inputs, micro single-path)."""
    values: dict = {}
    for f in MACRO_FIELDS + MICRO_FIELDS:
        values.update(draw_field(cfg, i, f, rng, count))
    return BlockChoice(**values)


def sample_point(cfg: ArchConfig, rng, count=uniform_count) -> NASRecPoint:
    return NASRecPoint(dp_tokens=cfg.k, blocks=tuple(sample_block(cfg, i, rng, count) for i in range(cfg.num_blocks)))
