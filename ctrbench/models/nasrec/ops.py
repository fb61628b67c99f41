"""NASRec's operators with elastic widths (specs/search.md §2.2). Each op is built at its largest output width and
called with the width in use: only the first `d` output channels (or tokens) are computed, LayerNorm normalises
those `d` with the first `d` of its affine weights, and the rest is zero. That is NASRec's prefix masking, with
one deliberate difference: NASRec's supernet normalises over the full width before masking, so its subnets do not
compute what the supernet computed; here an op at width d computes exactly what a standalone op of width d with
the sliced weights computes (weight inheritance is exact). A standalone subnet builds every op at its own width.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ctrbench.models.nasrec.arch import ATTN_HEADS, MERGER_TOKENS

LN_INIT = 0.17  # NASRec's initial LayerNorm weight inside the attention node


def pad_last(x: torch.Tensor, width: int) -> torch.Tensor:
    return F.pad(x, (0, width - x.shape[-1])) if x.shape[-1] < width else x


def linear_out(lin: nn.Linear, x: torch.Tensor, n: int) -> torch.Tensor:
    """The first n outputs of `lin` (n = out_features: the whole layer)."""
    return F.linear(x, lin.weight[:n], None if lin.bias is None else lin.bias[:n])


def prefix_norm(ln: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over x's last dim (a prefix of ln's width) with that prefix of its weights."""
    n = x.shape[-1]
    return F.layer_norm(x, (n,), ln.weight[:n], ln.bias[:n], ln.eps)


def copy_linear(dst: nn.Linear, src: nn.Linear, rows, cols) -> None:
    """dst <- src restricted to output `rows` and input `cols` (index lists; None = all)."""
    w = src.weight.detach()
    w = w if rows is None else w[list(rows)]
    w = w if cols is None else w[:, list(cols)]
    dst.weight.data.copy_(w)
    if dst.bias is not None:
        dst.bias.data.copy_(src.bias.detach() if rows is None else src.bias.detach()[list(rows)])


def copy_norm(dst: nn.LayerNorm, src: nn.LayerNorm) -> None:
    n = dst.normalized_shape[0]
    dst.weight.data.copy_(src.weight.detach()[:n])
    dst.bias.data.copy_(src.bias.detach()[:n])


class ElasticProjection(nn.Module):
    """A linear map to the first `d` of `out_w` outputs, LayerNorm over those d, optional ReLU, zero-padded to
    out_w: the building block of every node (NASRec's ElasticLinear)."""

    def __init__(self, in_w: int, out_w: int, *, relu: bool = False, bias: bool = False):
        super().__init__()
        self.lin, self.norm, self.out_w, self.relu = nn.Linear(in_w, out_w, bias=bias), nn.LayerNorm(out_w), out_w, relu

    def forward(self, x, d: int | None = None):
        y = prefix_norm(self.norm, linear_out(self.lin, x, self.out_w if d is None else d))
        return pad_last(F.relu(y) if self.relu else y, self.out_w)

    def inherit(self, src: "ElasticProjection", d: int | None, cols) -> None:
        copy_linear(self.lin, src.lin, None if d is None else range(d), cols)
        copy_norm(self.norm, src.norm)


class FC(ElasticProjection):
    """Dense FC: linear (no bias), LayerNorm, ReLU."""

    def __init__(self, in_w: int, out_w: int):
        super().__init__(in_w, out_w, relu=True)


class Sum(ElasticProjection):
    """Binary dense sum: left and right placed in one layout (the same source adds up), projected, LayerNorm."""


class DotProduct(nn.Module):
    """Dense-sparse dot product: the dense input projected to one token, the sparse tokens compressed to K, the
    strictly-lower triangle of their (K+1)x(K+1) dot products projected to the dense width, LayerNorm."""

    def __init__(self, in_w: int, tokens_in: int, k: int, out_w: int, emb: int):
        super().__init__()
        self.dense_proj, self.token_proj = ElasticProjection(in_w, emb), ElasticProjection(tokens_in, k)
        self.out = ElasticProjection(k * (k + 1) // 2, out_w)
        li, lj = torch.tril_indices(k + 1, k + 1, offset=-1)
        self.register_buffer("li", li, persistent=False)
        self.register_buffer("lj", lj, persistent=False)

    def forward(self, x, tokens, d: int):
        t = torch.cat([self.dense_proj(x).unsqueeze(1), self.token_proj(tokens.transpose(1, 2)).transpose(1, 2)], 1)
        return self.out(torch.bmm(t, t.transpose(1, 2))[:, self.li, self.lj], d)

    def inherit(self, src: "DotProduct", d: int, cols, token_cols) -> None:
        self.dense_proj.inherit(src.dense_proj, None, cols)
        self.token_proj.inherit(src.token_proj, None, token_cols)
        self.out.inherit(src.out, d, None)


class SigmoidGating(nn.Module):
    """Binary dense gating (NASRec 09/2022 form): proj(right * sigmoid(linear(left))), LayerNorm."""

    def __init__(self, left_w: int, right_w: int, out_w: int):
        super().__init__()
        self.gate, self.proj = nn.Linear(left_w, right_w), ElasticProjection(right_w, out_w, bias=True)

    def forward(self, left, right, d: int):
        return self.proj(right * torch.sigmoid(self.gate(left)), d)

    def inherit(self, src: "SigmoidGating", d: int, left_cols, right_cols) -> None:
        copy_linear(self.gate, src.gate, right_cols, left_cols)
        self.proj.inherit(src.proj, d, right_cols)


class EFC(nn.Module):
    """Sparse EFC: a linear map over the token axis to t tokens, LayerNorm (over tokens), ReLU."""

    def __init__(self, tokens_in: int, out_t: int):
        super().__init__()
        self.proj = ElasticProjection(tokens_in, out_t, relu=True)

    def forward(self, tokens, t: int):
        return self.proj(tokens.transpose(1, 2), t).transpose(1, 2)

    def inherit(self, src: "EFC", t: int, token_cols) -> None:
        self.proj.inherit(src.proj, t, token_cols)


class Attention(nn.Module):
    """Sparse attention: tokens projected to t (LayerNorm), 8-head self-attention among those t with residual and
    LayerNorm, a 2-layer FFN with residual and LayerNorm (both LayerNorm weights start at 0.17, NASRec)."""

    def __init__(self, tokens_in: int, out_t: int, emb: int):
        super().__init__()
        self.proj, self.out_t = ElasticProjection(tokens_in, out_t), out_t
        self.qkv, self.o = nn.Linear(emb, 3 * emb), nn.Linear(emb, emb)
        self.fc1, self.fc2 = nn.Linear(emb, emb), nn.Linear(emb, emb)
        self.attn_norm, self.ffn_norm = nn.LayerNorm(emb), nn.LayerNorm(emb)
        nn.init.constant_(self.attn_norm.weight, LN_INIT)
        nn.init.constant_(self.ffn_norm.weight, LN_INIT)

    def forward(self, tokens, t: int):
        p = self.proj(tokens.transpose(1, 2), t)[..., :t].transpose(1, 2)  # attention among the t tokens only
        b, n, e = p.shape
        q, k, v = (z.reshape(b, n, ATTN_HEADS, e // ATTN_HEADS).transpose(1, 2) for z in self.qkv(p).chunk(3, -1))
        att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(e // ATTN_HEADS), dim=-1)
        a = self.o(torch.matmul(att, v).transpose(1, 2).reshape(b, n, e))
        h = self.attn_norm(a + p)
        h = self.ffn_norm(h + self.fc2(F.relu(self.fc1(h))))
        return F.pad(h, (0, 0, 0, self.out_t - n)) if n < self.out_t else h

    def inherit(self, src: "Attention", t: int, token_cols) -> None:
        self.proj.inherit(src.proj, t, token_cols)
        for name in ("qkv", "o", "fc1", "fc2"):
            copy_linear(getattr(self, name), getattr(src, name), None, None)
        copy_norm(self.attn_norm, src.attn_norm)
        copy_norm(self.ffn_norm, src.ffn_norm)


class FMToDense(nn.Module):
    """Sparse->dense merger: the FM vector (sum e)^2 - sum e^2 projected to the dense width, LayerNorm."""

    def __init__(self, emb: int, out_w: int):
        super().__init__()
        self.proj = ElasticProjection(emb, out_w)

    def forward(self, tokens, d: int):
        s = tokens.sum(1)
        return self.proj(s * s - (tokens * tokens).sum(1), d)

    def inherit(self, src: "FMToDense", d: int) -> None:
        self.proj.inherit(src.proj, d, None)


class DenseToTokens(nn.Module):
    """Dense->sparse merger: the dense output projected to 8 x emb, LayerNorm, reshaped to 8 extra tokens."""

    def __init__(self, dense_w: int, emb: int):
        super().__init__()
        self.proj, self.emb = ElasticProjection(dense_w, MERGER_TOKENS * emb), emb

    def forward(self, dense):
        return self.proj(dense).view(dense.shape[0], MERGER_TOKENS, self.emb)

    def inherit(self, src: "DenseToTokens", d: int) -> None:
        self.proj.inherit(src.proj, None, range(d))
