"""CETNet (Liu et al., arXiv 2411.13700; specs/models.md §2): K distinct CTR models, each with its own
embedding tables, trained together and fused per sample by their confidence.

THIS IS OUR INTERPRETATION. The paper's method section could not be read here (specs §2.4, §2.6, Q8); only
the abstract is verified: distinct members with their own embeddings, "collaborative learning", and fusion by a
"general softmax" of "negation entropy". Every choice below is ours and a hyper-parameter:

- Members (`members`): any registered models by name with their own params, default InterFormer + DHEN
  (the secondary sources' pair). Each member is a full CTRModel built from the registry, with its own
  EmbeddingCollection (`shared_embeddings: true` is the ablation where all members read ONE set of tables:
  the first member's packed table, pretrained projections and numeric vectors; the dims must then match).
  Member k is built k-th from the model's seed, so member 0 starts exactly as the same model trained alone.
- Fusion (`fusion`): "entropy" = the `entropy_weighted_fusion` op (through the kernel backend switch):
  c_k = −H(p_k), w_k = softmax_k(c_k / τ), fused = Σ_k w_k p_k (`space: prob`) or Σ_k w_k x_k (`space: logit`);
  τ starts at `tau` and is learned when `learn_tau` (as log τ); `detach_weights` stops gradients through w.
  "mean" (ablation) = equal weights 1/K in the same space.
- Collaborative learning (`loss`): BCE(fused, y) + α·Σ_k BCE(p_k, y) + λ·Σ_k KL(sg(p_fused) ‖ p_k), with
  α = `member_loss_weight`, λ = `distill_weight` (mutual distillation: each member is pulled towards the
  detached fused prediction, Bernoulli KL = soft-target BCE minus the target's entropy, so it is 0 at
  agreement). Sums over members, so with α = 1 each member gets the gradient it would get alone. α = 0 or
  λ = 0 drops that term. One joint step per batch ("iterative refinement" read as per-step mutual learning).
- The model's prediction is the fused one; each member's test metrics (`component_logits`) and the mean
  fusion weights and τ (`diagnostics`) go into the run record.
"""
from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from torch import nn

from ctrbench.kernels.entropy_fusion.module import EntropyWeightedFusion
from ctrbench.errors import ParamError, UnknownNameError
from ctrbench.models.base import CTRModel, ModelParams
from ctrbench.models.embedding import EmbeddingCollection
from ctrbench.models.registry import get_model_class, register

# CETNet's own ModelParams fields handed down to the members that do not set them (when not at their default).
_INHERITED = ("embedding_dim", "embedding_backend", "kernel_backend", "embedding_init", "embedding_init_std")


class MemberSpec(BaseModel):
    """One member: a registered model name and its params (validated by that model's own Params)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    params: dict[str, Any] = Field(default_factory=dict)
    name: str | None = Field(None, description="label in the record; None = the model name (+ index if repeated)")

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        if v == "cetnet":
            raise ValueError("a CETNet member cannot be a CETNet")
        try:
            get_model_class(v)
        except UnknownNameError as exc:
            raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _valid_params(self):
        try:  # the member's own Params: unknown keys and bad values are caught when the suite is loaded
            get_model_class(self.model).Params(**self.params)
        except ValidationError as exc:
            raise ValueError(f"member {self.model!r} params: {exc}") from None
        return self


def _default_members() -> list[MemberSpec]:
    return [MemberSpec(model="interformer"), MemberSpec(model="dhen")]


def member_names(members: list[MemberSpec]) -> list[str]:
    """Unique labels: the given name, else the model name, with an index where a model repeats."""
    out = []
    for i, m in enumerate(members):
        base = m.name or m.model
        repeated = m.name is None and sum(x.model == m.model for x in members) > 1
        out.append(f"{base}{i}" if repeated else base)
    if len(set(out)) != len(out):
        raise ValueError(f"CETNet member names must be unique, got {out}")
    return out


def share_tables(owner: EmbeddingCollection, other: EmbeddingCollection) -> None:
    """Make `other` read `owner`'s lookup tables: the packed categorical table, the pretrained projections and
    (where both embed numeric fields) the numeric vectors. Both must cover the same fields at the same dim."""
    if owner.dim != other.dim:
        raise ValueError(f"shared_embeddings needs one embedding dim across members, got {owner.dim} and {other.dim}")
    if owner.cat_names != other.cat_names or owner.table_sizes != other.table_sizes:
        raise ValueError("shared_embeddings: members' categorical tables differ")
    other.tables = owner.tables
    other.projections = owner.projections
    if other.numeric is not None:
        if owner.numeric is None or owner.num_names != other.num_names:
            raise ValueError("shared_embeddings: a member embeds numeric fields the table owner does not")
        other.numeric = owner.numeric


@register("cetnet")
class CETNet(CTRModel):
    """Collaborative ensemble of distinct members with entropy-weighted fusion (our interpretation; see module)."""

    class Params(ModelParams):
        members: list[MemberSpec] = Field(default_factory=_default_members, min_length=1, description=(
            "[{model, params, name}] registered models with their own params; embedding_dim, embedding_backend, "
            "kernel_backend, embedding_init(_std) set here (not at default) are handed to members that do not set them"))
        fusion: Literal["entropy", "mean"] = Field("entropy", description="'mean' = equal weights (ablation)")
        space: Literal["prob", "logit"] = Field("prob", description="fuse probabilities or logits")
        tau: float = Field(1.0, gt=0, allow_inf_nan=False,
                           description="softmax temperature (initial value when learned)")
        learn_tau: bool = Field(True, description="learn τ (as log τ) with the dense parameters")
        detach_weights: bool = Field(False, description="no gradient through the fusion weights")
        eps: float = Field(1e-6, gt=0, lt=0.5, description="probabilities are clamped to [eps, 1 - eps]")
        member_loss_weight: float = Field(1.0, ge=0, allow_inf_nan=False,
                                          description="α: weight of each member's own BCE")
        distill_weight: float = Field(1.0, ge=0, allow_inf_nan=False,
                                      description="λ: weight of KL(detached fused ‖ member)")
        shared_embeddings: bool = Field(False, description="ablation: all members read one set of tables")

        @field_validator("members")
        @classmethod
        def _unique_names(cls, v):
            member_names(v)
            return v

        def member_params(self) -> list[ModelParams]:
            """Each member's validated Params, with CETNet's inherited settings under the member's own."""
            inherited = {k: getattr(self, k) for k in _INHERITED
                         if getattr(self, k) != ModelParams.model_fields[k].default}
            return [get_model_class(m.model).Params(**{**inherited, **m.params}) for m in self.members]

        def check_dataset(self, spec) -> None:
            for i, (m, mp) in enumerate(zip(self.members, self.member_params())):
                try:
                    mp.check_dataset(spec)
                except ParamError as exc:
                    raise ParamError("members", f"member {i} ({m.model}): {exc}") from None

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        self.member_names = member_names(p.members)
        members = []
        for m, mp in zip(p.members, p.member_params()):  # in order from the caller's RNG: member 0 inits as alone
            members.append(get_model_class(m.model)(spec, vocab_sizes, mp, tables))
        self.members = nn.ModuleList(members)
        if p.shared_embeddings:
            colls = [next(m.embedding_collections()) for m in self.members]
            if any(sum(1 for _ in m.embedding_collections()) != 1 for m in self.members):
                raise ValueError("shared_embeddings needs members with exactly one embedding collection each")
            owner = next((c for c in colls if c.numeric is not None), colls[0])
            for c in colls:
                if c is not owner:
                    share_tables(owner, c)
        self.fusion = (EntropyWeightedFusion(p.tau, p.learn_tau, p.space, p.detach_weights, p.eps, p.kernel_backend)
                       if p.fusion == "entropy" else None)
        self._last: dict[str, torch.Tensor] = {}

    # -- forward and fusion ------------------------------------------------------------------------
    def fuse(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Member logits [B, K] -> (fused logit [B], weights [B, K])."""
        p = self.params
        if self.fusion is not None:
            fused, weights = self.fusion(logits)
            return self.fusion.logit(fused), weights
        k = logits.shape[1]
        weights = torch.full_like(logits, 1.0 / k)
        bound = math.log1p(-p.eps) - math.log(p.eps)
        if p.space == "logit":
            return logits.clamp(-bound, bound).mean(dim=1), weights
        return torch.logit(torch.sigmoid(logits).mean(dim=1), eps=p.eps), weights

    def forward(self, batch) -> torch.Tensor:
        logits = torch.stack([m(batch) for m in self.members], dim=1)
        fused, weights = self.fuse(logits)
        self._last = {"member_logits": logits, "weights": weights}
        return fused

    # -- collaborative loss -----------------------------------------------------------------------
    def loss_terms(self, logits: torch.Tensor, batch) -> dict[str, torch.Tensor]:
        """The unweighted terms of the last forward: "fused" BCE, "members" Σ_k BCE_k and "distill"
        Σ_k KL(sg(p_fused) ‖ p_k); a term whose weight is 0 is not computed."""
        p = self.params
        y = batch.label
        member = self._last["member_logits"]
        terms = {"fused": F.binary_cross_entropy_with_logits(logits, y)}
        if p.member_loss_weight > 0:
            yk = y.unsqueeze(1).expand_as(member)
            terms["members"] = F.binary_cross_entropy_with_logits(member, yk, reduction="none").mean(0).sum()
        if p.distill_weight > 0:
            t = torch.sigmoid(logits.detach()).clamp(p.eps, 1 - p.eps).unsqueeze(1).expand_as(member)
            entropy = -(t * t.log() + (1 - t) * (1 - t).log())
            kl = F.binary_cross_entropy_with_logits(member, t, reduction="none") - entropy
            terms["distill"] = kl.mean(0).sum()
        return terms

    def loss(self, logits: torch.Tensor, batch) -> torch.Tensor:
        p = self.params
        terms = self.loss_terms(logits, batch)
        total = terms["fused"]
        if "members" in terms:
            total = total + p.member_loss_weight * terms["members"]
        if "distill" in terms:
            total = total + p.distill_weight * terms["distill"]
        return total

    # -- what the record gets ----------------------------------------------------------------------
    def component_logits(self) -> dict[str, torch.Tensor]:
        logits = self._last.get("member_logits")
        return {} if logits is None else {n: logits[:, k] for k, n in enumerate(self.member_names)}

    def diagnostics(self) -> dict[str, torch.Tensor]:
        w = self._last.get("weights")
        if w is None:
            return {}
        out = {f"weight/{n}": w[:, k] for k, n in enumerate(self.member_names)}
        if self.fusion is not None:
            out["tau"] = self.fusion.tau.detach()
        return out

    # -- shared tables counted once --------------------------------------------------------------
    def embedding_parameters(self) -> list[nn.Parameter]:
        seen, out = set(), []
        for prm in super().embedding_parameters():
            if id(prm) not in seen:
                seen.add(id(prm))
                out.append(prm)
        return out

    def embedding_sq_norm(self, batch) -> torch.Tensor:
        seen, terms = set(), []
        for c in self.embedding_collections():
            if c.weight is not None and id(c.weight) not in seen:
                seen.add(id(c.weight))
                terms.append(c.touched_sq_norm(batch))
        return torch.stack(terms).sum() if terms else torch.zeros(())
