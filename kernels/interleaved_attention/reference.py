"""The definition of `interleaved_attention` in plain PyTorch; every backend is tested against it.

Contract (all backends, forward and backward)
---------------------------------------------
Inputs
  q        [B, H, Nq, Dh] floating. Self-attention (``separate_queries=False``): the same tokens as the
           keys, so Nq == Nk. Separate queries (``separate_queries=True``, e.g. PMA seeds): any Nq >= 0.
  k, v     [B, H, Nk, Dh], same dtype and device as q. Nk = P + T: P always-valid prefix tokens (CLS /
           summary tokens) followed by a LEFT-padded sequence of T slots.
  lengths  integer [B], 0 <= lengths[b] <= T: the number of valid sequence tokens of row b; they are the
           LAST lengths[b] of the T slots (left padding).
  num_prefix  P, 0 <= P <= Nk.
  rope     fused rotary position embedding, rotate-half (GPT-NeoX / Llama) form on Dh (Dh must be even):
           x = [x1 | x2] (halves), angle_i(pos) = pos * rope_base ** (-2 i / Dh), i < Dh/2,
           rot(x) = [x1 cos - x2 sin | x2 cos + x1 sin].
           Positions: prefix token j < P sits at position j; sequence slot s (0-based among the T slots)
           sits at P + s - (T - lengths[b]), i.e. the first VALID token is at position P, so left padding
           never shifts positions. (Padded slots get negative positions; they are masked, so it does not
           matter.) Keys are always rotated when rope=True; queries are rotated only in self-attention
           mode (with the positions of their own tokens). Separate queries (PMA seeds) have no position
           and are NOT rotated.
  rope_base  10000 by default.
  scale    multiplies q·k; default 1/sqrt(Dh).
  No causal mask (InterFormer's sequence attention and PMA are bidirectional).

Mask and output
  Key j of row b is valid iff j < P or j >= P + T - lengths[b].
  Self-attention: query row i is valid iff key i is valid; padded query rows output exactly 0.
  Separate queries: every query row is valid.
  out[b,h,i] = sum_j softmax_j(scale * rot(q_i) · rot(k_j) over valid j) v_j for valid rows that have at
  least one valid key; a row with no valid key (P = 0 and lengths[b] = 0) outputs 0. Rows that output
  0 have zero (finite) gradients, and masked keys get dk = dv = 0.
NaN and inf (every backend, forward and backward)
  Masked slots are never read: whatever a padded key or value slot, a padded query row (self-attention)
  or grad_out at a padded query row holds (NaN and inf included), the outputs and gradients are those of
  zeros there. A NaN in valid input propagates as the formula says: a NaN in valid query row i makes
  out[i] NaN; a NaN in a valid key or value makes every valid query row of its (b, h) NaN; the gradients
  follow the same algebra. Padded query rows still output 0 and get dq = 0, and masked keys still get
  dk = dv = 0, exactly.
  out has q's shape and dtype; the computation runs in float32 (float64 for float64 inputs in the
  reference and C++ backends; the Triton and CUDA backends compute float64 inputs in float32).
Backward gives dq, dk, dv with respect to the UN-rotated q and k (the rotation is inside the op).

Bad input raises `InterleavedAttentionInputError` (a ValueError) naming the argument.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch


class InterleavedAttentionInputError(ValueError):
    """Bad input to interleaved_attention; the message names the argument and the bound it breaks."""


_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_inputs(q, k, v, lengths, num_prefix: int, rope: bool, separate_queries: bool) -> None:
    """Shape/dtype/device checks (static: safe under torch.compile tracing and in fake mode)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise InterleavedAttentionInputError(f"{name} must be a tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise InterleavedAttentionInputError(f"{name} must be 4-D [B, H, N, Dh], got shape {tuple(t.shape)}")
        if t.dtype not in _FLOAT_DTYPES:
            raise InterleavedAttentionInputError(f"{name} must be floating (fp16/bf16/fp32/fp64), got {t.dtype}")
    if not isinstance(lengths, torch.Tensor):
        raise InterleavedAttentionInputError(f"lengths must be a tensor, got {type(lengths).__name__}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise InterleavedAttentionInputError(f"q, k, v must share a dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    if k.device != q.device or v.device != q.device or lengths.device != q.device:
        raise InterleavedAttentionInputError(
            f"q, k, v, lengths must be on one device, got q {q.device}, k {k.device}, v {v.device}, lengths {lengths.device}"
        )
    if k.shape != v.shape:
        raise InterleavedAttentionInputError(f"k and v must have the same shape, got k {tuple(k.shape)}, v {tuple(v.shape)}")
    B, H, Nq, Dh = q.shape
    if Dh == 0:
        raise InterleavedAttentionInputError("q, k, v need a head dim Dh >= 1, got Dh=0")
    if k.shape[0] != B or k.shape[1] != H or k.shape[3] != Dh:
        raise InterleavedAttentionInputError(
            f"k must be [B={B}, H={H}, Nk, Dh={Dh}] to match q {tuple(q.shape)}, got {tuple(k.shape)}"
        )
    Nk = k.shape[2]
    if not separate_queries and Nq != Nk:
        raise InterleavedAttentionInputError(
            f"self-attention needs q and k over the same tokens (Nq == Nk), got Nq={Nq}, Nk={Nk}; "
            "pass separate_queries=True for separate (e.g. PMA) queries"
        )
    if lengths.dim() != 1 or lengths.shape[0] != B:
        raise InterleavedAttentionInputError(f"lengths must be 1-D [B={B}], got shape {tuple(lengths.shape)}")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise InterleavedAttentionInputError(f"lengths must be an integer tensor, got {lengths.dtype}")
    if isinstance(num_prefix, bool) or not isinstance(num_prefix, int) or not 0 <= num_prefix <= Nk:
        raise InterleavedAttentionInputError(f"num_prefix must be an int in [0, Nk={Nk}], got {num_prefix!r}")
    if rope and Dh % 2:
        raise InterleavedAttentionInputError(f"rope=True needs an even head dim Dh, got Dh={Dh}")


def check_lengths(lengths: torch.Tensor, T: int) -> None:
    """Value check 0 <= lengths <= T (data-dependent: runs inside the op's eager implementation)."""
    if lengths.numel() == 0:
        return
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo < 0 or hi > T:
        bad = (lengths < 0) | (lengths > T)
        b = int(bad.nonzero()[0, 0])
        raise InterleavedAttentionInputError(
            f"lengths must lie in [0, T={T}] (T = Nk - num_prefix), got lengths[{b}] = {int(lengths[b])}"
        )


def default_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim) if head_dim > 0 else 1.0


def key_valid_mask(lengths: torch.Tensor, num_prefix: int, num_keys: int) -> torch.Tensor:
    """[B, Nk] bool: prefix tokens and the last lengths[b] sequence slots."""
    T = num_keys - num_prefix
    j = torch.arange(num_keys, device=lengths.device)
    first_valid = num_prefix + T - lengths.to(torch.int64)  # [B]
    return (j[None, :] < num_prefix) | (j[None, :] >= first_valid[:, None])


def token_positions(lengths: torch.Tensor, num_prefix: int, num_keys: int) -> torch.Tensor:
    """[B, Nk] int64 rotary positions: j for prefix tokens, j - (T - lengths[b]) for sequence slots."""
    T = num_keys - num_prefix
    j = torch.arange(num_keys, device=lengths.device)
    shift = (T - lengths.to(torch.int64))[:, None]
    return torch.where(j[None, :] < num_prefix, j[None, :], j[None, :] - shift)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, base: float, dtype: torch.dtype):
    """cos, sin [..., Dh/2] of pos * base^(-2i/Dh), computed in float64 then cast to `dtype`."""
    half = head_dim // 2
    inv_freq = base ** (-torch.arange(half, device=positions.device, dtype=torch.float64) * 2.0 / head_dim)
    ang = positions.to(torch.float64)[..., None] * inv_freq
    return ang.cos().to(dtype), ang.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half rotary embedding; x [B, H, N, Dh], cos/sin [B, N, Dh/2] (broadcast over heads)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[:, None], sin[:, None]
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)


def interleaved_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lengths: torch.Tensor,
    num_prefix: int = 0,
    rope: bool = False,
    rope_base: float = 10000.0,
    scale: float | None = None,
    separate_queries: bool = False,
) -> torch.Tensor:
    """The contract above in differentiable PyTorch (autograd gives the reference gradients)."""
    x = _prepare(q, k, v, lengths, num_prefix, rope, rope_base, scale, separate_queries)
    out = torch.matmul(_probabilities(x), x.v)
    return _zero_rows(out, x.qvalid).to(q.dtype)  # padded query rows output 0, even beside a NaN value


def unrotate_grad(g: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Gradient w.r.t. x of apply_rope(x) given the gradient g w.r.t. the rotated x (R^T g)."""
    half = g.shape[-1] // 2
    g1, g2 = g[..., :half], g[..., half:]
    c, s = cos[:, None], sin[:, None]
    return torch.cat((g1 * c + g2 * s, g2 * c - g1 * s), dim=-1)


def interleaved_attention_reference_backward(
    grad_out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lengths: torch.Tensor,
    num_prefix: int = 0,
    rope: bool = False,
    rope_base: float = 10000.0,
    scale: float | None = None,
    separate_queries: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv) of the contract in closed form (the tests check it against autograd of the forward;
    the op's reference backend uses it because autograd is off inside a custom op's implementation)."""
    x = _prepare(q, k, v, lengths, num_prefix, rope, rope_base, scale, separate_queries)
    p = _probabilities(x)
    go = _zero_rows(grad_out.to(x.dtype), x.qvalid)  # padded query rows output 0: grad_out there is never read
    dv = torch.matmul(p.transpose(-1, -2), go)
    dp = torch.matmul(go, x.v.transpose(-1, -2))
    ds = p * (dp - (p * dp).sum(-1, keepdim=True))
    # a NaN in valid input reaches the padded rows and masked keys only through products with a zero: zero them
    dq = _zero_rows(torch.matmul(ds, x.k) * x.scale, x.qvalid)
    dk = _zero_rows(torch.matmul(ds.transpose(-1, -2), x.q) * x.scale, x.kvalid)
    dv = _zero_rows(dv, x.kvalid)
    if rope:
        dk = unrotate_grad(dk, x.cos, x.sin)
        if not separate_queries:
            dq = unrotate_grad(dq, x.cos, x.sin)
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


# ------------------------------------------------------------------ shared by the forward and the backward


class _Prepared(NamedTuple):
    """What the reference forward and backward both start from (see _prepare)."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    kvalid: torch.Tensor  # [B, Nk] bool
    qvalid: torch.Tensor  # [B, Nq] bool: kvalid in self-attention, all True for separate queries
    cos: Optional[torch.Tensor]  # None without RoPE
    sin: Optional[torch.Tensor]
    scale: float
    dtype: torch.dtype


def _prepare(q, k, v, lengths, num_prefix, rope, rope_base, scale, separate_queries) -> _Prepared:
    """Check the inputs; q, k, v in the compute dtype (float64 for float64 inputs, else float32) with k rotated
    (and q, unless separate_queries) when rope; the key mask; the scale (default 1/sqrt(Dh))."""
    check_inputs(q, k, v, lengths, num_prefix, rope, separate_queries)
    Dh, Nk = q.shape[-1], k.shape[2]
    check_lengths(lengths, Nk - num_prefix)
    if scale is None:
        scale = default_scale(Dh)
    cdt = torch.float64 if q.dtype == torch.float64 else torch.float32
    kvalid = key_valid_mask(lengths, num_prefix, Nk)  # [B, Nk]
    qvalid = torch.ones(q.shape[0], q.shape[2], dtype=torch.bool, device=q.device) if separate_queries else kvalid
    # masked slots are never read: zeros replace them (torch.where, so NaN / inf there leave no trace)
    qc, kc, vc = _zero_rows(q.to(cdt), qvalid), _zero_rows(k.to(cdt), kvalid), _zero_rows(v.to(cdt), kvalid)
    cos = sin = None
    if rope:
        cos, sin = rope_cos_sin(token_positions(lengths, num_prefix, Nk), Dh, rope_base, cdt)
        kc = apply_rope(kc, cos, sin)
        if not separate_queries:
            qc = apply_rope(qc, cos, sin)
    return _Prepared(qc, kc, vc, kvalid, qvalid, cos, sin, scale, cdt)


def _zero_rows(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """x [B, H, N, Dh] with the rows where valid [B, N] is False set to 0 (NaN and inf included)."""
    return torch.where(valid[:, None, :, None], x, torch.zeros((), dtype=x.dtype, device=x.device))


def _probabilities(x: _Prepared) -> torch.Tensor:
    """[B, H, Nq, Nk] softmax over the valid keys of the scaled scores; 0 on masked keys, padded query rows and
    rows without a valid key (exactly 0, even where a NaN in valid input makes the rest of the row NaN)."""
    m = x.kvalid[:, None, None, :]
    s = (torch.matmul(x.q, x.k.transpose(-1, -2)) * x.scale).masked_fill(~m, float("-inf"))
    has_key = x.kvalid.any(-1)[:, None, None, None]  # [B,1,1,1]
    p = torch.softmax(torch.where(has_key, s, torch.zeros_like(s)), dim=-1)  # where: finite when no key
    return torch.where(m & x.qvalid[:, None, :, None], p, torch.zeros((), dtype=p.dtype, device=p.device))
