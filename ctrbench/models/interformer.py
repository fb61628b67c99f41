"""InterFormer (Zeng et al., arXiv 2411.09852; specs/models.md §1): interleaved learning of non-sequence field
tokens X and a behaviour sequence S, exchanging small gated summaries both ways in every layer.

Per layer l (tokens are rows, X [B, n, d], S [B, P+T, d]):
- Cross Arch: X_sum = Gating(TokenMLP(X)) (n -> n_cls tokens; LCE when `summary_hidden` is empty);
  S_sum = Gating([S_CLS ‖ PMA(S) ‖ S_recent]) = n_cls CLS positions, n_pma seed-query summaries, the
  num_recent most recent VALID behaviour tokens (left padding: the last slots, padded slots zeroed).
- Interaction Arch: X' = LayerNorm(X + MLP(LCE(DHEN([X ‖ S_sum])))) — DHEN with dot + DCN modules by
  default ("dot" or "dcnv2" alone with `interaction`); LCE maps the n + |S_sum| tokens back to n.
- Sequence Arch: U = RMSNorm(S + GELU(S W_bᵀ)) with W_b = PFFN(X_sum) a per-sample d×d matrix, then
  S' = LayerNorm(U + MHA(U)) with rotary embeddings, through the `interleaved_attention` op (the CLS tokens
  are its always-valid prefix; padded rows are masked and zeroed).
- Layer 1 prepends X_sum^(1) to S as the CLS tokens; later layers read them back from those positions.
Input: categorical fields and pretrained (frozen table -> Linear) fields are one token each; all numeric
fields together one token W_dense·BN(x) (the paper's x_dense; a BatchNorm without affine first, because BARS
feeds raw values — TaobaoAd's price is in the hundreds). The k sequence fields are merged by MaskNet
(layers/masknet.py) into one sequence; its length per row is the longest of the k.
Head: logit = MLP([X_sum ‖ S_sum]).

Interleaving modes (`mode`, the paper's ablation): "int" both flows; "s2n" only S_sum -> Interaction Arch;
"n2s" only X_sum -> Sequence Arch (PFFN + CLS); "sep" neither; "sole" no Sequence Arch, each sequence
mean-pooled early into one extra X token. Without the n2s flow the CLS tokens and the PFFN's summary are a
learned constant (same shapes, no information from X); without s2n the Interaction Arch sees X alone.

Choices where the paper is silent (specs §4), each a hyper-parameter:
- Q1 `head_input`: "final" (default) adds a Cross Arch after the last layer so X^(L+1), S^(L+1) feed the head;
  "layer" reads the layer-L summaries literally (then the last layer's Interaction/Sequence Archs are not built).
- Q2 DHEN ensemble "concat" (+ LCE back to the token count) or "sum"; LayerNorm; identity shortcut
  (layers/dhen.py); [X ‖ S_sum] is mapped back to n tokens by an LCE.
- Q3 `gating`: "self" X ⊙ σ(Linear X) (default) or "paper" σ(X ⊙ Linear X) as printed.
- Q4 `pffn`: "low_rank" W_b = X_sumᵀW (appendix, rank ≤ n_cls) or "mlp" (full d×d from a Linear); the
  GELU + RMSNorm + residual around it follow the production form. Sizes: `preset` "cpu" (small, for 2 cores)
  or "paper" (BARS embedding dims, 3 layers, 4 heads, DCN rank 32, classifier 1024-512-256).
- Q5 residual + norm placement as above; padded tokens masked in MHA and PMA; CLS tokens get rotary
  positions 0..P-1; `pma_over_cls` (default True) lets PMA read CLS + behaviour tokens (False: behaviour only).
- Q6 MaskNet stacks the k sequences per position (left padding aligns their recent ends).
`max_seq_len` keeps only the most recent slots; columns that are padding in every row of a batch are dropped
before the Sequence Arch (exact: positions count from the first valid token).
"""
from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, model_validator
from torch import nn

from ctrbench.kernels.interleaved_attention.module import InterleavedMultiheadAttention
from ctrbench.errors import ParamError
from ctrbench.models.base import CTRModel, ModelParams, require_heads
from ctrbench.models.layers.dhen import DHEN
from ctrbench.models.layers.lce import LCE, SelfGating, TokenMLP
from ctrbench.models.layers.masknet import MaskNetMerge
from ctrbench.models.layers.mlp import MLP, activation, init_linear
from ctrbench.models.layers.pffn import PFFNBlock
from ctrbench.models.layers.pma import PMA
from ctrbench.models.layers.pooling import masked_average_pool
from ctrbench.models.registry import register

MODES = ("int", "sep", "s2n", "n2s", "sole")
INTERACTION_MODULES = {"dhen": ("dot", "dcn"), "dot": ("dot",), "dcnv2": ("dcn",)}
Activation = Literal["relu", "tanh", "sigmoid", "leaky_relu", "gelu", "silu", "prelu"]

# The paper's sizes (App. B; BARS embedding dims via embedding_dim=None; depth 3 as the industrial model).
PAPER_PRESET: dict[str, Any] = {
    "embedding_dim": None, "num_layers": 3, "num_heads": 4, "num_cls": 4, "num_pma": 2, "num_recent": 2,
    "dcn_low_rank": 32, "head_units": [1024, 512, 256],
}


def valid_mask(lengths: torch.Tensor, num_prefix: int, num_slots: int) -> torch.Tensor:
    """[B, P+T] bool: P always-valid prefix tokens, then the last lengths[b] of T left-padded slots."""
    j = torch.arange(num_prefix + num_slots, device=lengths.device)
    first = num_prefix + num_slots - lengths.to(torch.int64)
    return (j[None, :] < num_prefix) | (j[None, :] >= first[:, None])


def recent_tokens(seq: torch.Tensor, lengths: torch.Tensor, k: int) -> torch.Tensor:
    """The k most recent slots of a left-padded [B, T, d] (T >= k) with invalid ones zeroed -> [B, k, d]."""
    t = seq.shape[1]
    slot = torch.arange(t - k, t, device=seq.device)
    ok = slot[None, :] >= (t - lengths.to(torch.int64))[:, None]
    return seq[:, t - k:] * ok.unsqueeze(-1).to(seq.dtype)


class CrossArch(nn.Module):
    """Summaries of one layer: X_sum [B, n_cls, d] and S_sum [B, n_cls + n_pma + n_recent, d]."""

    def __init__(self, n_tokens: int, dim: int, p, has_sequence: bool):
        super().__init__()
        self.num_cls, self.num_recent, self.pma_over_cls = p.num_cls, p.num_recent, p.pma_over_cls
        self.x_compress = TokenMLP(n_tokens, p.num_cls, p.summary_hidden, p.hidden_activations)
        self.x_gate = SelfGating(dim, p.gating)
        self.pma = (PMA(dim, p.num_pma, p.num_heads, p.num_cls if p.pma_over_cls else 0, p.kernel_backend)
                    if has_sequence and p.num_pma else None)
        self.s_gate = SelfGating(dim, p.gating) if has_sequence else None

    def x_summary(self, x: torch.Tensor) -> torch.Tensor:
        return self.x_gate(self.x_compress(x))

    def s_summary(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        p = self.num_cls
        parts = [seq[:, :p]]
        if self.pma is not None:
            parts.append(self.pma(seq if self.pma_over_cls else seq[:, p:], lengths))
        if self.num_recent:
            parts.append(recent_tokens(seq[:, p:], lengths, self.num_recent))
        return self.s_gate(torch.cat(parts, dim=1))


class InteractionArch(nn.Module):
    """X' = LayerNorm(X + MLP(LCE(Interaction([X ‖ S_sum])))), n tokens in and out."""

    def __init__(self, n_tokens: int, n_extra: int, dim: int, p):
        super().__init__()
        m = n_tokens + n_extra
        self.block = DHEN(m, dim, p.dhen_layers, INTERACTION_MODULES[p.interaction], p.dhen_ensemble,
                          p.dcn_cross_layers, p.dcn_low_rank)
        self.back = LCE(m, n_tokens)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), activation(p.hidden_activations), nn.Linear(dim, dim))
        for lin in (self.mlp[0], self.mlp[2]):
            init_linear(lin)
        self.drop = nn.Dropout(p.net_dropout)
        self.norm = nn.LayerNorm(dim)
        self.pre_norm = p.norm_placement == "pre"

    def forward(self, x: torch.Tensor, s_sum: torch.Tensor | None) -> torch.Tensor:
        z = x if s_sum is None else torch.cat([x, s_sum], dim=1)
        if self.pre_norm:
            return x + self.drop(self.mlp(self.back(self.block(self.norm(z)))))
        return self.norm(x + self.drop(self.mlp(self.back(self.block(z)))))


class SequenceArch(nn.Module):
    """post-norm: S' = LayerNorm(U + MHA(U)), U = RMSNorm(S + GELU(PFFN(X_sum, S)));
    pre-norm: S' = U + MHA(LayerNorm(U)), U = S + GELU(PFFN(X_sum, RMSNorm(S))); padded rows zeroed."""

    def __init__(self, dim: int, p):
        super().__init__()
        self.pre_norm = p.norm_placement == "pre"
        self.pffn = PFFNBlock(p.num_cls, dim, p.pffn, pre_norm=self.pre_norm)
        self.mha = InterleavedMultiheadAttention(dim, p.num_heads, num_prefix=p.num_cls, rope=p.rope,
                                                 rope_base=p.rope_base, backend=p.kernel_backend)
        self.drop = nn.Dropout(p.net_dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, seq, summary, lengths, valid: torch.Tensor) -> torch.Tensor:
        u = self.pffn(seq, summary)
        if self.pre_norm:
            out = u + self.drop(self.mha(self.norm(u), lengths))
        else:
            out = self.norm(u + self.drop(self.mha(u, lengths)))
        return out * valid.unsqueeze(-1).to(out.dtype)


@register("interformer")
class InterFormer(CTRModel):
    """InterFormer; see the module docstring for the architecture and every choice the paper leaves open."""

    class Params(ModelParams):
        preset: Literal["cpu", "paper"] = Field("cpu", description="'paper' fills unset sizes with PAPER_PRESET")
        embedding_dim: int | None = Field(16, gt=0, description="token width d; None = the dataset's BARS dim")
        mode: Literal["int", "sep", "s2n", "n2s", "sole"] = "int"
        num_layers: int = Field(2, ge=1)
        num_heads: int = Field(2, ge=1)
        num_cls: int = Field(4, ge=1, description="CLS tokens = n_sum, the X summary's token count")
        num_pma: int = Field(2, ge=0)
        num_recent: int = Field(2, ge=0)
        interaction: Literal["dhen", "dot", "dcnv2"] = "dhen"
        dhen_layers: int = Field(1, ge=1, description="DHEN layers inside one Interaction Arch")
        dhen_ensemble: Literal["concat", "sum"] = "concat"
        dcn_cross_layers: int = Field(1, ge=1)
        dcn_low_rank: int | None = Field(16, gt=0, description="None = full-rank cross layer")
        gating: Literal["self", "paper"] = "self"
        summary_hidden: list[PositiveInt] = Field(default_factory=list,
                                                  description="token-axis hidden sizes ([] = LCE)")
        pffn: Literal["low_rank", "mlp"] = "low_rank"
        rope: bool = True
        rope_base: float = Field(10000.0, gt=1.0, allow_inf_nan=False)
        pma_over_cls: bool = True
        norm_placement: Literal["post", "pre"] = Field(
            "post", description="Sequence/Interaction Arch norms after the residual add (post) or on the branch input (pre)")
        head_input: Literal["final", "layer"] = "final"
        head_units: list[PositiveInt] = Field(default_factory=lambda: [64])
        hidden_activations: Activation = "silu"
        net_dropout: float = Field(0.0, ge=0.0, lt=1.0)
        masknet_hidden: int | None = Field(None, gt=0, description="MaskNet mask width; None = k·d")
        max_seq_len: int | None = Field(None, gt=0, description="keep only the most recent slots; None = all")

        @model_validator(mode="before")
        @classmethod
        def _apply_preset(cls, data):
            if isinstance(data, dict) and data.get("preset") == "paper":
                data = {**PAPER_PRESET, **data}
            return data

        def check_dataset(self, spec) -> None:
            d = self.resolved_dim(spec)
            require_heads("num_heads", d, self.num_heads, "embedding_dim")
            if self.rope and (d // self.num_heads) % 2:
                raise ParamError("num_heads", f"rotary embeddings need an even head width; embedding_dim {d} / "
                                 f"num_heads {self.num_heads} = {d // self.num_heads}")

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        d = self.embedding_dim
        if d % p.num_heads or (p.rope and (d // p.num_heads) % 2):
            raise ValueError(f"embedding_dim {d} must split into {p.num_heads} heads of even width (rotary)")
        self.embedding = self.make_embedding(include_numeric=False, unpooled=[f.name for f in spec.sequences])
        self.seq_names = [f.name for f in spec.sequences]
        self.seq_max_len = {f.name: f.max_len for f in spec.sequences}
        self.has_sequence = bool(self.seq_names) and p.mode != "sole"
        self.s2n = self.has_sequence and p.mode in ("int", "s2n")
        self.n2s = self.has_sequence and p.mode in ("int", "n2s")
        n_num = len(spec.numeric)
        self.dense_norm = nn.BatchNorm1d(n_num, affine=False) if n_num else None
        self.dense_proj = nn.Linear(n_num, d) if n_num else None
        if self.dense_proj is not None:
            init_linear(self.dense_proj)
        n = len(self.embedding.cat_names) + len(self.embedding.pre_names) + (1 if n_num else 0)
        if p.mode == "sole":
            n += len(self.seq_names)
        if n < 1:
            raise ValueError(f"{spec.name} has no non-sequence field to build X from")
        self.num_tokens = n
        n_ssum = p.num_cls + p.num_pma + p.num_recent
        n_cross = p.num_layers + 1 if p.head_input == "final" else p.num_layers
        self.num_body = n_cross - 1
        self.cross = nn.ModuleList(CrossArch(n, d, p, self.has_sequence) for _ in range(n_cross))
        self.interaction = nn.ModuleList(InteractionArch(n, n_ssum if self.s2n else 0, d, p)
                                         for _ in range(self.num_body))
        if self.has_sequence:
            self.merge = MaskNetMerge(len(self.seq_names), d, p.masknet_hidden)
            self.sequence = nn.ModuleList(SequenceArch(d, p) for _ in range(self.num_body))
            # without the n2s flow: learned constant CLS tokens / PFFN summary instead of X_sum
            self.static_summary = None if self.n2s else nn.Parameter(torch.randn(p.num_cls, d) / d ** 0.5)
        head_in = (p.num_cls + (n_ssum if self.has_sequence else 0)) * d
        self.head = MLP(head_in, p.head_units, 1, activation_name=p.hidden_activations, dropout=p.net_dropout)

    # -- inputs --------------------------------------------------------------------------------------
    def _keep(self, batch) -> tuple[int, dict[str, int]]:
        """How many recent slots the sequence arch reads (T': the batch's longest valid run, capped by
        max_seq_len, at least 1; from the host lengths, no device read) and each field's slice of them."""
        p = self.params
        widths = {n: batch.sequences[n].shape[1] for n in self.seq_names}
        lmax = max((int(min(batch.host_length(n).max(initial=0), w)) for n, w in widths.items()), default=0)
        keep = max(widths.values()) if p.max_seq_len is None else min(max(widths.values()), p.max_seq_len)
        keep = min(keep, max(lmax, 1))
        return keep, {n: min(keep, w) for n, w in widths.items()}

    def _lookup(self, batch) -> tuple[list[torch.Tensor], dict[str, torch.Tensor], int]:
        """One lookup: X's field tokens [B, 1, d] each (categorical, pretrained, the standardised numeric token)
        and every sequence field's most recent slots [B, keep_n, d] (all of them in 'sole' mode)."""
        if self.has_sequence:
            keep, per_field = self._keep(batch)
        else:  # 'sole' pools every sequence field whole; a dataset without sequences reads none
            keep, per_field = 0, {n: batch.sequences[n].shape[1] for n in self.seq_names}
        ids = {n: batch.sequences[n][:, batch.sequences[n].shape[1] - k:] for n, k in per_field.items()}
        fields, tokens = self.embedding.lookup(batch, ids)
        parts = [fields]
        if self.dense_proj is not None:
            parts.append(self.dense_proj(self.dense_norm(batch.dense)).unsqueeze(1))
        return parts, tokens, keep

    def _merged_sequence(self, batch, tokens: dict[str, torch.Tensor], keep: int) -> tuple[torch.Tensor, torch.Tensor]:
        """MaskNet-merged S [B, T', d] (padded slots zero) and its lengths [B]. T' = `keep` drops the slots that
        are padding in every row (and, with max_seq_len, the older ones), but keeps at least num_recent."""
        p = self.params
        lengths = torch.stack([batch.lengths[n].to(torch.int64).clamp(0, batch.sequences[n].shape[1])
                               for n in self.seq_names]).amax(0).clamp(max=keep)
        width = max(keep, p.num_recent)  # room for the recent slots even in very short batches
        seqs = []
        for n in self.seq_names:  # each field's own padded slots are zeroed (fields may differ in length)
            s = tokens[n]
            own = batch.lengths[n].to(torch.int64).clamp(0, s.shape[1])
            seqs.append(s * valid_mask(own, 0, s.shape[1]).unsqueeze(-1).to(s.dtype))
        stacked = torch.stack([F.pad(s, (0, 0, width - s.shape[1], 0)) if s.shape[1] < width else s
                               for s in seqs], dim=2)  # left-pad shorter fields
        merged = self.merge(stacked)
        return merged * valid_mask(lengths, 0, width).unsqueeze(-1).to(merged.dtype), lengths

    def _pooled_sequences(self, batch, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """'sole' mode: every sequence field mean-pooled over its valid slots -> [B, k, d]."""
        out = []
        for name in self.seq_names:
            s = tokens[name]
            out.append(masked_average_pool(s, valid_mask(batch.lengths[name], 0, s.shape[1])))
        return torch.stack(out, dim=1)

    # -- forward -------------------------------------------------------------------------------------
    def forward(self, batch) -> torch.Tensor:
        parts, tokens, keep = self._lookup(batch)
        if self.params.mode == "sole" and self.seq_names:
            parts.append(self._pooled_sequences(batch, tokens))
        x = torch.cat(parts, dim=1)
        b = x.shape[0]
        seq = lengths = valid = None
        num_prefix = self.params.num_cls
        if self.has_sequence:
            seq, lengths = self._merged_sequence(batch, tokens, keep)
            valid = valid_mask(lengths, num_prefix, seq.shape[1])
        x_sum = s_sum = None
        for layer in range(len(self.cross)):
            cross = self.cross[layer]
            x_sum = cross.x_summary(x)
            if self.has_sequence:
                static = None if self.n2s else self.static_summary.unsqueeze(0).expand(b, -1, -1)
                if layer == 0:
                    seq = torch.cat([x_sum if self.n2s else static, seq], dim=1)
                s_sum = cross.s_summary(seq, lengths)
            if layer == self.num_body:
                break
            x_next = self.interaction[layer](x, s_sum if self.s2n else None)
            if self.has_sequence:
                seq = self.sequence[layer](seq, x_sum if self.n2s else static, lengths, valid)
            x = x_next
        head_in = x_sum if s_sum is None else torch.cat([x_sum, s_sum], dim=1)
        return self.head(head_in.flatten(1)).squeeze(1)
