"""InterleavedMultiheadAttention: projections around torch.ops.ctrbench.interleaved_attention.

InterFormer's Sequence Arch attends over [CLS tokens | left-padded behaviour sequence] with RoPE (self-
attention), and its PMA summarises the same tokens with learnable seed queries (separate queries).
"""
from __future__ import annotations

import torch
from torch import nn

from ctrbench.kernels.interleaved_attention.op import interleaved_attention
from ctrbench.kernels.interleaved_attention.reference import InterleavedAttentionInputError


class InterleavedMultiheadAttention(nn.Module):
    """Multi-head attention over x = [num_prefix always-valid tokens | left-padded sequence].

    forward(x [B, P+T, d_model], lengths [B], queries=None) -> [B, Nq, d_model]:
      queries None: self-attention, Nq = P+T; padded positions get 0 from the attention (then the output
        projection's bias), so mask them downstream as usual.
      queries [Nq, d_model] (shared seeds, e.g. PMA) or [B, Nq, d_model]: separate queries, no RoPE on them.
    RoPE positions are counted from the first valid token (see reference.py), so left padding does not
    shift them. `backend` picks the kernel ("reference" | "triton" | "cpp" | "cuda" | None = auto).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        head_dim: int | None = None,
        num_prefix: int = 0,
        rope: bool = True,
        rope_base: float = 10000.0,
        bias: bool = True,
        backend: str | None = None,
    ):
        super().__init__()
        if head_dim is None:
            if d_model % num_heads:
                raise InterleavedAttentionInputError(
                    f"d_model={d_model} is not divisible by num_heads={num_heads}; pass head_dim"
                )
            head_dim = d_model // num_heads
        if rope and head_dim % 2:
            raise InterleavedAttentionInputError(f"rope=True needs an even head_dim, got {head_dim}")
        if num_prefix < 0:
            raise InterleavedAttentionInputError(f"num_prefix must be >= 0, got {num_prefix}")
        self.d_model, self.num_heads, self.head_dim = d_model, num_heads, head_dim
        self.num_prefix, self.rope, self.rope_base, self.backend = num_prefix, rope, rope_base, backend
        inner = num_heads * head_dim
        self.q_proj = nn.Linear(d_model, inner, bias=bias)
        self.kv_proj = nn.Linear(d_model, 2 * inner, bias=bias)
        self.out_proj = nn.Linear(inner, d_model, bias=bias)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # [B, N, H*Dh] -> [B, H, N, Dh]
        B, N, _ = t.shape
        return t.view(B, N, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, queries: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise InterleavedAttentionInputError(f"x must be [B, N, d_model={self.d_model}], got {tuple(x.shape)}")
        B = x.shape[0]
        k, v = self.kv_proj(x).chunk(2, dim=-1)
        if queries is None:
            q = self.q_proj(x)
        else:
            if queries.dim() == 2:
                queries = queries.unsqueeze(0).expand(B, -1, -1)
            if queries.dim() != 3 or queries.shape[0] != B or queries.shape[-1] != self.d_model:
                raise InterleavedAttentionInputError(
                    f"queries must be [Nq, d_model={self.d_model}] or [B={B}, Nq, d_model], got {tuple(queries.shape)}"
                )
            q = self.q_proj(queries)
        out = interleaved_attention(
            self._heads(q), self._heads(k), self._heads(v), lengths, self.num_prefix,
            rope=self.rope, rope_base=self.rope_base, separate_queries=queries is not None, backend=self.backend,
        )
        out = out.transpose(1, 2).reshape(B, -1, self.num_heads * self.head_dim)
        return self.out_proj(out)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, num_heads={self.num_heads}, head_dim={self.head_dim}, "
                f"num_prefix={self.num_prefix}, rope={self.rope}, backend={self.backend!r}")
