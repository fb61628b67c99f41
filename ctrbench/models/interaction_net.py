"""A DistDNAS-style interaction network (specs/search.md §6, §9.8): a stem, `num_blocks` stacked blocks, a head.
Each block picks one dense interaction module and one sparse one; every module keeps its stream's shape, so
blocks stack and a module can be skipped. The dense stream is [B, D], the sparse stream the field embeddings
[B, T, E] (T = the dataset's sparse fields).

  stem     x0 = FC(raw numeric ⊕ flattened embeddings -> D)   (LayerNorm, ReLU; NASRec's FC)
  dense    fc (FC D->D) | dp (NASRec dot product of x and the tokens -> D) | dcn (a DCN cross layer
           x0 ⊙ (W x + b) + x, so block l adds interaction order l+1) | fm (FM vector of the tokens -> D) |
           gating (NASRec sigmoid gating of x by x) | skip (x)
  sparse   efc (NASRec EFC over the token axis, T->T) | attn (NASRec attention, 8 heads) | skip (tokens)
  head     Linear(D ⊕ flattened last tokens -> 1)

The paper's module list is NOT FOUND (spec §6.2): this list, the chain wiring and the fixed widths are
ctrbench's choice. `dnas_supernet` holds every module of every block and mixes their outputs with Gumbel-softmax
weights of its architecture logits; `dnas_subnet` builds one point (one module per slot), trainable from scratch.
Analytic FLOPs (`op_flops`, `point_flops`) count every matrix product at 2 per multiply-add, exactly what
torch.utils.flop_counter counts; the same numbers feed the search's expected-FLOPs cost and the reports.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from ctrbench.errors import ParamError
from ctrbench.models.base import CTRModel, ModelParams
from ctrbench.models.layers.gumbel import ArchParameters, gumbel_softmax
from ctrbench.models.layers.mlp import init_linear
from ctrbench.models.nasrec.arch import ATTN_HEADS, dp_tokens
from ctrbench.models.nasrec.ops import FC, EFC, Attention, DotProduct, FMToDense, SigmoidGating
from ctrbench.models.registry import register

DENSE_OPS = ("fc", "dp", "dcn", "fm", "gating", "skip")
SPARSE_OPS = ("efc", "attn", "skip")
SLOTS = {"dense": DENSE_OPS, "sparse": SPARSE_OPS}


class BlockOps(BaseModel):
    """One block's choice: its dense and its sparse module."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dense: Literal["fc", "dp", "dcn", "fm", "gating", "skip"]
    sparse: Literal["efc", "attn", "skip"]


class InteractionPoint(BaseModel):
    """A whole architecture: one BlockOps per block."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    blocks: tuple[BlockOps, ...] = Field(min_length=1)

    def to_json_dict(self) -> dict:
        return self.model_dump(mode="json")


# --- analytic FLOPs ---------------------------------------------------------------------------------------------
def op_flops(slot: str, op: str, d: int, t: int, e: int) -> int:
    """Matmul FLOPs per example of one module (2 per multiply-add; element-wise work, norms and biases 0)."""
    if slot == "dense":
        k = dp_tokens(d)
        return {"fc": 2 * d * d, "dcn": 2 * d * d, "fm": 2 * e * d, "gating": 4 * d * d, "skip": 0,
                "dp": 2 * d * e + 2 * e * t * k + 2 * (k + 1) ** 2 * e + 2 * (k * (k + 1) // 2) * d}[op]
    return {"efc": 2 * e * t * t, "skip": 0,  # attn: token projection, qkv, scores, weighted values, out, 2-layer FFN
            "attn": 2 * e * t * t + 6 * t * e * e + 4 * t * t * e + 2 * t * e * e + 4 * t * e * e}[op]


def fixed_flops(n_dense: int, t: int, e: int, d: int) -> int:
    """The stem and the head, which every point has."""
    return 2 * (n_dense + t * e) * d + 2 * (d + t * e)


def point_flops(point: InteractionPoint, n_dense: int, t: int, e: int, d: int) -> int:
    """FLOPs per example of a point's standalone network (what flop_counter counts of its forward)."""
    blocks = sum(op_flops("dense", b.dense, d, t, e) + op_flops("sparse", b.sparse, d, t, e) for b in point.blocks)
    return fixed_flops(n_dense, t, e, d) + blocks


# --- modules ----------------------------------------------------------------------------------------------------
class Cross(nn.Module):
    """One DCN-V2 cross layer against the stem output: x0 ⊙ (W x + b) + x."""

    def __init__(self, d: int):
        super().__init__()
        self.lin = nn.Linear(d, d)
        init_linear(self.lin)

    def forward(self, x, x0):
        return x0 * self.lin(x) + x


def make_op(slot: str, op: str, d: int, t: int, e: int) -> nn.Module | None:
    """The module of one choice (None for skip)."""
    if op == "skip":
        return None
    if slot == "sparse":
        return EFC(t, t) if op == "efc" else Attention(t, t, e)
    return {"fc": lambda: FC(d, d), "dp": lambda: DotProduct(d, t, dp_tokens(d), d, e), "dcn": lambda: Cross(d),
            "fm": lambda: FMToDense(e, d), "gating": lambda: SigmoidGating(d, d, d)}[op]()


def run_dense(op: str, mod, x, tok, x0, d: int):
    if op == "skip":
        return x
    if op == "fc":
        return mod(x)
    if op == "dp":
        return mod(x, tok, d)
    if op == "dcn":
        return mod(x, x0)
    if op == "fm":
        return mod(tok, d)
    return mod(x, x, d)  # gating: x gated by itself


def run_sparse(op: str, mod, tok, t: int):
    return tok if op == "skip" else mod(tok, t)


def mix(outs: list[torch.Tensor], weights: torch.Tensor | None) -> torch.Tensor:
    """One output as is; several weighted by `weights` [B, n] (per example) or [n] (per batch)."""
    if weights is None:
        return outs[0]
    stacked = torch.stack(outs, dim=-1)  # [B, ..., n]
    w = weights if weights.dim() == 1 else weights.view(weights.shape[0], *([1] * (stacked.dim() - 2)), -1)
    return (stacked * w).sum(-1)


class Block(nn.Module):
    """The modules a block may run (one per slot in a subnet, all of them in the supernet)."""

    def __init__(self, dense_ops, sparse_ops, d: int, t: int, e: int):
        super().__init__()
        self.dense_ops, self.sparse_ops, self.d, self.t = tuple(dense_ops), tuple(sparse_ops), d, t
        mods = {f"dense_{op}": make_op("dense", op, d, t, e) for op in self.dense_ops}
        mods.update({f"sparse_{op}": make_op("sparse", op, d, t, e) for op in self.sparse_ops})
        self.ops = nn.ModuleDict({k: m for k, m in mods.items() if m is not None})

    def forward(self, x, tok, x0, w_dense=None, w_sparse=None):
        dense = [run_dense(op, self.ops[f"dense_{op}"] if op != "skip" else None, x, tok, x0, self.d)
                 for op in self.dense_ops]
        sparse = [run_sparse(op, self.ops[f"sparse_{op}"] if op != "skip" else None, tok, self.t)
                  for op in self.sparse_ops]
        return mix(dense, w_dense), mix(sparse, w_sparse)


class InteractionParams(ModelParams):
    embedding_dim: int | None = Field(16, gt=0, description=f"embedding size E (attention: a multiple of "
                                      f"{ATTN_HEADS} heads)")
    dense_dim: int = Field(64, gt=0, description="width D of the dense stream")

    def check_dataset(self, spec) -> None:
        if self.resolved_dim(spec) % ATTN_HEADS and "attn" in self.ops_used():
            raise ParamError("embedding_dim", f"embedding_dim {self.resolved_dim(spec)} does not split into the "
                             f"attention module's {ATTN_HEADS} heads")

    def ops_used(self) -> set[str]:  # pragma: no cover - overridden
        return set()


class InteractionNet(CTRModel):
    """Stem, blocks, head; subclasses give each block's modules and mixing weights."""

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        self.params.check_dataset(spec)

    def setup(self, block_ops: list[tuple[tuple[str, ...], tuple[str, ...]]]) -> None:
        self.embedding = self.make_embedding(include_numeric=False)
        self.n_dense, self.t = len(self.spec.numeric), self.embedding.num_fields
        d, t, e = self.params.dense_dim, self.t, self.embedding_dim
        self.dense_norm = nn.BatchNorm1d(self.n_dense, affine=False) if self.n_dense and self.params.numeric_norm \
            else None
        self.stem = FC(self.n_dense + t * e, d)
        self.blocks = nn.ModuleList(Block(dn, sp, d, t, e) for dn, sp in block_ops)
        self.head = nn.Linear(d + t * e, 1)

    def mixing_weights(self, batch_size: int) -> list[tuple[torch.Tensor | None, torch.Tensor | None]]:
        return [(None, None)] * len(self.blocks)

    def forward(self, batch) -> torch.Tensor:
        dense = batch.dense if self.dense_norm is None else self.dense_norm(batch.dense)
        tok = self.embedding(batch)
        x0 = self.stem(torch.cat([dense, tok.flatten(1)], dim=1))
        x = x0
        for blk, (wd, ws) in zip(self.blocks, self.mixing_weights(tok.shape[0])):
            x, tok = blk(x, tok, x0, wd, ws)
        return self.head(torch.cat([x, tok.flatten(1)], dim=1)).squeeze(1)


@register("dnas_subnet")
class InteractionSubnet(InteractionNet):
    """One architecture of the DistDNAS-style space (its `point`), each block running its two modules only."""

    class Params(InteractionParams):
        point: InteractionPoint | None = Field(None, description="the architecture: {blocks: [{dense, sparse}, ...]} "
                                               "(ctrbench.models.interaction_net); a DNAS search's result carries it")

        def check_dataset(self, spec) -> None:
            if self.point is None:
                raise ParamError("point", "dnas_subnet needs a point (the architecture to build)")
            super().check_dataset(spec)

        def ops_used(self) -> set[str]:
            return {b.sparse for b in self.point.blocks}

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        self.setup([((b.dense,), (b.sparse,)) for b in self.params.point.blocks])

    def flops(self) -> int:
        """Analytic FLOPs per example (point_flops)."""
        return point_flops(self.params.point, self.n_dense, self.t, self.embedding_dim, self.params.dense_dim)

    def inherit(self, supernet: "InteractionSupernet") -> "InteractionSubnet":
        """Copy the supernet's weights of this point's modules (the same names in both), the stem, head and
        tables; a supernet whose mixing weights are this point's one-hot then computes what this subnet does."""
        mine, theirs = self.state_dict(), supernet.state_dict()
        missing = sorted(k for k in mine if k not in theirs or theirs[k].shape != mine[k].shape)
        if missing:
            raise ValueError(f"the supernet lacks this point's weights (first: {missing[0]}); build both from one "
                             "space's options")
        self.load_state_dict({k: theirs[k] for k in mine})
        return self


@register("dnas_supernet")
class InteractionSupernet(ArchParameters, InteractionNet):
    """Every module of every block; a block's output is the mix of its modules' outputs weighted by a
    Gumbel-softmax sample of its architecture logits (one logit vector per block and slot: `arch_logits()`).
    The search sets the temperature (`tau`). In eval mode the weights are the plain softmax (no noise)."""

    class Params(InteractionParams):
        num_blocks: int = Field(4, ge=1)
        dense_ops: tuple[Literal["fc", "dp", "dcn", "fm", "gating", "skip"], ...] = Field(DENSE_OPS, min_length=1)
        sparse_ops: tuple[Literal["efc", "attn", "skip"], ...] = Field(SPARSE_OPS, min_length=1)
        hard: bool = Field(False, description="straight-through Gumbel-softmax: one-hot forward, soft gradient "
                           "(ours; FBNet and the DNAS reference mix softly)")
        sample_per: Literal["example", "batch"] = Field("example", description="one Gumbel sample per example (the "
                                                        "DNAS reference) or one per batch")
        gumbel_seed: int = Field(0, description="seed of the Gumbel noise")

        @field_validator("dense_ops", "sparse_ops")
        @classmethod
        def _distinct(cls, v):
            if len(set(v)) != len(v):
                raise ValueError(f"repeated module in {list(v)}")
            return v

        def ops_used(self) -> set[str]:
            return set(self.sparse_ops)

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        self.setup([(p.dense_ops, p.sparse_ops)] * p.num_blocks)
        self.alpha = nn.ParameterDict({"dense": nn.Parameter(torch.zeros(p.num_blocks, len(p.dense_ops))),
                                       "sparse": nn.Parameter(torch.zeros(p.num_blocks, len(p.sparse_ops)))})
        self.tau = 1.0
        self.generator = torch.Generator().manual_seed(p.gumbel_seed)

    def ops(self, slot: str) -> tuple[str, ...]:
        return self.params.dense_ops if slot == "dense" else self.params.sparse_ops

    def arch_logits(self) -> dict[str, torch.Tensor]:
        """slot -> logits [num_blocks, n_ops] (a detached copy)."""
        return {k: v.detach().clone() for k, v in self.alpha.items()}

    def op_costs(self) -> dict[str, torch.Tensor]:
        """slot -> analytic FLOPs of each of its modules [n_ops] (the same in every block)."""
        d, t, e = self.params.dense_dim, self.t, self.embedding_dim
        return {slot: torch.tensor([float(op_flops(slot, op, d, t, e)) for op in self.ops(slot)])
                for slot in self.alpha}

    def fixed_flops(self) -> int:
        return fixed_flops(self.n_dense, self.t, self.embedding_dim, self.params.dense_dim)

    def mixing_weights(self, batch_size: int):
        if not self.training:
            probs = {k: F.softmax(v, dim=-1) for k, v in self.alpha.items()}
            return list(zip(probs["dense"], probs["sparse"]))
        n = batch_size if self.params.sample_per == "example" else 1
        w = {}
        for k, logits in self.alpha.items():
            noisy = gumbel_softmax(logits.unsqueeze(1).expand(-1, n, -1), self.tau, hard=self.params.hard,
                                   generator=self.generator)  # [blocks, n, ops]
            w[k] = noisy if n > 1 else noisy[:, 0]
        return list(zip(w["dense"], w["sparse"]))
