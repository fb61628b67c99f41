"""Triton kernels for interleaved_attention (GPU, or CPU tensors under TRITON_INTERPRET=1).

Forward: flash-style, one program per (batch*head, block of queries), one pass over the keys in tiles
of up to 128 with an online softmax; the whole InterFormer key range (4 CLS + 50/100 tokens) is one or
two tiles. Backward up to MAX_BWD_KEYS keys: one program per (batch*head) that holds every key in one
tile, loops over query blocks recomputing the probabilities (no saved logsumexp), writes dq per block
and dk, dv once at the end. Backward beyond: tiled over keys in two launches, (1) per block of queries
the logsumexp, D = rowsum(dO * O) and dq (two passes over the key tiles), (2) per tile of keys dk and dv
(one pass over the query blocks, reading (1)'s logsumexp and D). No atomics either way: deterministic.

RoPE is fused in rotate-half form: each row is loaded as two halves, so q.k = q1.k1 + q2.k2 is two
`tl.dot`s and the rotation is elementwise on the halves. Without RoPE the same split (ceil(Dh/2) and
the rest) is used, so odd head dims work. Halves are padded to >= 16 columns and every product runs in
fp32 (`tl.dot` with TF32 on the GPU, "ieee" under the interpreter): no fp16/bf16 dot with K < 16, and
bf16 never enters arithmetic (the interpreter gets bf16 arithmetic wrong). fp64 inputs compute in fp32.
Only tl.exp/cos/sin/exp2 (no libdevice), constexpr loop bounds (no loops over loaded values), no
autotune: the same code runs in the triton 3.6 and 3.8 interpreters.
"""
from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from ctrbench.kernels.triton_device import check_launch

MAX_BWD_KEYS = 256  # up to this many keys the backward keeps all keys of a (batch, head) in one tile


@triton.jit
def _load_parts(ptr, rows, row_ok, pos, cols, log2_base, DH: tl.constexpr, HALF: tl.constexpr,
                ROTATE: tl.constexpr):
    """Rows as two column parts [0, HALF) and [HALF, DH), rotated (rotate-half RoPE) when ROTATE."""
    offs = rows.to(tl.int64)[:, None] * DH + cols[None, :]
    m1 = row_ok[:, None] & (cols[None, :] < HALF)
    m2 = row_ok[:, None] & (cols[None, :] < DH - HALF)
    x1 = tl.load(ptr + offs, mask=m1, other=0.0).to(tl.float32)
    x2 = tl.load(ptr + offs + HALF, mask=m2, other=0.0).to(tl.float32)
    if ROTATE:
        inv_freq = tl.exp2(cols.to(tl.float32) * (-2.0 / DH) * log2_base)
        ang = pos.to(tl.float32)[:, None] * inv_freq[None, :]
        c = tl.cos(ang)
        s = tl.sin(ang)
        r1 = x1 * c - x2 * s
        r2 = x2 * c + x1 * s
        x1 = r1
        x2 = r2
    return x1, x2


@triton.jit
def _unrotate(g1, g2, pos, cols, log2_base, DH: tl.constexpr):
    """Gradient w.r.t. the un-rotated halves: R^T g."""
    inv_freq = tl.exp2(cols.to(tl.float32) * (-2.0 / DH) * log2_base)
    ang = pos.to(tl.float32)[:, None] * inv_freq[None, :]
    c = tl.cos(ang)
    s = tl.sin(ang)
    return g1 * c + g2 * s, g2 * c - g1 * s


@triton.jit
def _store_parts(ptr, rows, row_ok, cols, x1, x2, DH: tl.constexpr, HALF: tl.constexpr):
    offs = rows.to(tl.int64)[:, None] * DH + cols[None, :]
    tl.store(ptr + offs, x1.to(ptr.dtype.element_ty), mask=row_ok[:, None] & (cols[None, :] < HALF))
    tl.store(ptr + offs + HALF, x2.to(ptr.dtype.element_ty), mask=row_ok[:, None] & (cols[None, :] < DH - HALF))


@triton.jit
def _tokens(idx, n, P, first, shift):
    """For token indices: in range (< n), valid (a prefix token or a valid sequence slot), rotary position."""
    in_range = idx < n
    valid = in_range & ((idx < P) | (idx >= first))
    pos = tl.where(idx < P, idx, idx - shift)
    return in_range, valid, pos


@triton.jit
def _program(len_ptr, H, Nq, Nk, P, T, DH: tl.constexpr):
    """This program's (batch * head) slab: its index, L valid sequence tokens, the left padding, the first valid
    slot, and the offsets of its q and k / v rows."""
    pid_bh = tl.program_id(0)
    L = tl.load(len_ptr + pid_bh // H).to(tl.int32)
    shift = T - L
    return pid_bh, L, shift, P + shift, pid_bh.to(tl.int64) * Nq * DH, pid_bh.to(tl.int64) * Nk * DH


@triton.jit
def _base2(q1, q2, scale):
    """Query parts scaled so that q . k are base-2 softmax logits (tl.exp2)."""
    return q1 * (scale * 1.4426950408889634), q2 * (scale * 1.4426950408889634)


@triton.jit
def _load_rows(ptr, rows, row_ok, cd, DH: tl.constexpr):
    """[rows, BLOCK_D] fp32; rows that are not ok (masked slots) are never read and come back 0."""
    offs = rows.to(tl.int64)[:, None] * DH + cd[None, :]
    return tl.load(ptr + offs, mask=row_ok[:, None] & (cd[None, :] < DH), other=0.0).to(tl.float32)


@triton.jit
def _queries(q_ptr, rows, Nq, P, first, shift, ch, log2_base, DH: tl.constexpr, HALF: tl.constexpr,
             ROPE: tl.constexpr, SEPQ: tl.constexpr):
    """A block of query rows: in range, valid (all in range for separate queries), position, rotated parts."""
    in_q, q_ok, q_pos = _tokens(rows, Nq, P, first, shift)
    if SEPQ:
        q_ok = in_q
    q1, q2 = _load_parts(q_ptr, rows, q_ok, q_pos, ch, log2_base, DH, HALF, ROPE and not SEPQ)
    return in_q, q_ok, q_pos, q1, q2


@triton.jit
def _keys(k_ptr, v_ptr, keys, Nk, P, first, shift, ch, cd, log2_base, DH: tl.constexpr, HALF: tl.constexpr,
          ROPE: tl.constexpr):
    """A tile of keys: in range, valid, position, rotated key parts and value rows (masked ones read as 0)."""
    in_k, k_ok, k_pos = _tokens(keys, Nk, P, first, shift)
    k1, k2 = _load_parts(k_ptr, keys, k_ok, k_pos, ch, log2_base, DH, HALF, ROPE)
    return in_k, k_ok, k_pos, k1, k2, _load_rows(v_ptr, keys, k_ok, cd, DH)


@triton.jit
def _scores(q1, q2, k1, k2, PRECISION: tl.constexpr):
    """q . k over both column parts: [queries, keys]."""
    s = tl.dot(q1, tl.trans(k1), input_precision=PRECISION)
    return s + tl.dot(q2, tl.trans(k2), input_precision=PRECISION)


@triton.jit
def _online_softmax_step(s, v, m_i, l_i, acc, PRECISION: tl.constexpr):
    """One key tile of the flash forward (base-2 scores s, masked ones -inf): the new (m, l, acc)."""
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    return m_new, l_i * alpha + tl.sum(p, axis=1), acc * alpha[:, None] + tl.dot(p, v, input_precision=PRECISION)


@triton.jit
def _grad_scores(p, dp, delta, pair_ok):
    """dS = P * (dP - D) with dP = dO V^T, exactly 0 off the valid (query, key) pairs."""
    return tl.where(pair_ok, p * (dp - delta[:, None]), 0.0)


@triton.jit
def _store_query_grads(dq_ptr, rows, in_q, q_ok, q_pos, ch, dq1, dq2, scale, log2_base, DH: tl.constexpr,
                       HALF: tl.constexpr, ROTATE: tl.constexpr):
    """dq = scale * dS K, un-rotated; padded rows exactly 0 (0 * NaN of valid input otherwise)."""
    dq1 = tl.where(q_ok[:, None], dq1 * scale, 0.0)
    dq2 = tl.where(q_ok[:, None], dq2 * scale, 0.0)
    if ROTATE:
        dq1, dq2 = _unrotate(dq1, dq2, q_pos, ch, log2_base, DH)
    _store_parts(dq_ptr, rows, in_q, ch, dq1, dq2, DH, HALF)


@triton.jit
def _store_key_grads(dk_ptr, dv_ptr, keys, in_k, k_ok, k_pos, ch, cd, dk1, dk2, dv, scale, log2_base,
                     DH: tl.constexpr, HALF: tl.constexpr, ROPE: tl.constexpr):
    """dk = scale * dS^T Q un-rotated, and dv; masked keys exactly 0 (0 * NaN of valid input otherwise)."""
    dk1 = tl.where(k_ok[:, None], dk1 * scale, 0.0)
    dk2 = tl.where(k_ok[:, None], dk2 * scale, 0.0)
    dv = tl.where(k_ok[:, None], dv, 0.0)
    if ROPE:
        dk1, dk2 = _unrotate(dk1, dk2, k_pos, ch, log2_base, DH)
    _store_parts(dk_ptr, keys, in_k, ch, dk1, dk2, DH, HALF)
    offs = keys.to(tl.int64)[:, None] * DH + cd[None, :]
    tl.store(dv_ptr + offs, dv.to(dv_ptr.dtype.element_ty), mask=in_k[:, None] & (cd[None, :] < DH))


@triton.jit
def interleaved_attention_fwd_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, len_ptr, H, Nq, Nk, P, T, scale, log2_base,
    DH: tl.constexpr, HALF: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, N_TILES: tl.constexpr,
    ROPE: tl.constexpr, SEPQ: tl.constexpr, PRECISION: tl.constexpr,
):
    pid_bh, L, shift, first, q_off, k_off = _program(len_ptr, H, Nq, Nk, P, T, DH)
    ch = tl.arange(0, BLOCK_H)
    cd = tl.arange(0, BLOCK_D)
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    in_q, q_ok, q_pos, q1, q2 = _queries(q_ptr + q_off, rows, Nq, P, first, shift, ch, log2_base, DH, HALF, ROPE,
                                         SEPQ)
    q1, q2 = _base2(q1, q2, scale)

    m_i = tl.full([BLOCK_M], -1.0e30, tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for t in range(N_TILES):
        keys = t * BLOCK_N + tl.arange(0, BLOCK_N)
        in_k, k_ok, k_pos, k1, k2, v = _keys(k_ptr + k_off, v_ptr + k_off, keys, Nk, P, first, shift, ch, cd,
                                             log2_base, DH, HALF, ROPE)
        s = tl.where(k_ok[None, :], _scores(q1, q2, k1, k2, PRECISION), float("-inf"))
        m_i, l_i, acc = _online_softmax_step(s, v, m_i, l_i, acc, PRECISION)
    has = q_ok & (P + L > 0)  # from the counts, not l_i: a NaN in valid input must reach the output
    out = tl.where(has[:, None], acc / tl.where(has, l_i, 1.0)[:, None], 0.0)
    o_offs = rows.to(tl.int64)[:, None] * DH + cd[None, :]
    tl.store(o_ptr + q_off + o_offs, out.to(o_ptr.dtype.element_ty), mask=in_q[:, None] & (cd[None, :] < DH))


@triton.jit
def interleaved_attention_bwd_kernel(
    go_ptr, q_ptr, k_ptr, v_ptr, dq_ptr, dk_ptr, dv_ptr, len_ptr, H, Nq, Nk, P, T, scale, log2_base,
    DH: tl.constexpr, HALF: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, M_TILES: tl.constexpr,
    ROPE: tl.constexpr, SEPQ: tl.constexpr, PRECISION: tl.constexpr,
):
    """The backward up to BLOCK_N >= Nk keys: all keys in one tile, probabilities recomputed per query block."""
    pid_bh, L, shift, first, q_off, k_off = _program(len_ptr, H, Nq, Nk, P, T, DH)
    ch = tl.arange(0, BLOCK_H)
    cd = tl.arange(0, BLOCK_D)
    keys = tl.arange(0, BLOCK_N)
    in_k, k_ok, k_pos, k1, k2, v = _keys(k_ptr + k_off, v_ptr + k_off, keys, Nk, P, first, shift, ch, cd, log2_base,
                                         DH, HALF, ROPE)
    dk1 = tl.zeros([BLOCK_N, BLOCK_H], tl.float32)
    dk2 = tl.zeros([BLOCK_N, BLOCK_H], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)

    for mt in range(M_TILES):
        rows = mt * BLOCK_M + tl.arange(0, BLOCK_M)
        in_q, q_ok, q_pos, q1, q2 = _queries(q_ptr + q_off, rows, Nq, P, first, shift, ch, log2_base, DH, HALF,
                                             ROPE, SEPQ)
        s = tl.where(k_ok[None, :], _scores(q1, q2, k1, k2, PRECISION) * scale, float("-inf"))
        m = tl.max(s, axis=1)
        m = tl.where(m == float("-inf"), 0.0, m)
        e = tl.exp(s - m[:, None])
        l = tl.sum(e, axis=1)
        pair_ok = q_ok[:, None] & k_ok[None, :]
        # not `l > 0`: a NaN sum must stay NaN; exactly 0 off the valid pairs, even in a row made NaN
        p = tl.where(pair_ok, e / tl.where(P + L > 0, l, 1.0)[:, None], 0.0)
        do = _load_rows(go_ptr + q_off, rows, q_ok, cd, DH)
        dv += tl.dot(tl.trans(p), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = _grad_scores(p, dp, tl.sum(p * dp, axis=1), pair_ok)
        _store_query_grads(dq_ptr + q_off, rows, in_q, q_ok, q_pos, ch, tl.dot(ds, k1, input_precision=PRECISION),
                           tl.dot(ds, k2, input_precision=PRECISION), scale, log2_base, DH, HALF, ROPE and not SEPQ)
        dk1 += tl.dot(tl.trans(ds), q1, input_precision=PRECISION)
        dk2 += tl.dot(tl.trans(ds), q2, input_precision=PRECISION)
    _store_key_grads(dk_ptr + k_off, dv_ptr + k_off, keys, in_k, k_ok, k_pos, ch, cd, dk1, dk2, dv, scale, log2_base,
                     DH, HALF, ROPE)


@triton.jit
def interleaved_attention_bwd_rows_kernel(
    go_ptr, q_ptr, k_ptr, v_ptr, dq_ptr, lse_ptr, delta_ptr, len_ptr, H, Nq, Nk, P, T, scale, log2_base,
    DH: tl.constexpr, HALF: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, N_TILES: tl.constexpr,
    ROPE: tl.constexpr, SEPQ: tl.constexpr, PRECISION: tl.constexpr,
):
    """Key-tiled backward, per (batch*head, block of queries): base-2 logsumexp and D = rowsum(dO * O) (stored
    for the keys kernel), then dq."""
    pid_bh, L, shift, first, q_off, k_off = _program(len_ptr, H, Nq, Nk, P, T, DH)
    ch = tl.arange(0, BLOCK_H)
    cd = tl.arange(0, BLOCK_D)
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    in_q, q_ok, q_pos, q1, q2 = _queries(q_ptr + q_off, rows, Nq, P, first, shift, ch, log2_base, DH, HALF, ROPE,
                                         SEPQ)
    q1, q2 = _base2(q1, q2, scale)
    do = _load_rows(go_ptr + q_off, rows, q_ok, cd, DH)

    m_i = tl.full([BLOCK_M], -1.0e30, tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for t in range(N_TILES):  # pass 1: the forward, for the logsumexp and the output
        keys = t * BLOCK_N + tl.arange(0, BLOCK_N)
        in_k, k_ok, k_pos, k1, k2, v = _keys(k_ptr + k_off, v_ptr + k_off, keys, Nk, P, first, shift, ch, cd,
                                             log2_base, DH, HALF, ROPE)
        s = tl.where(k_ok[None, :], _scores(q1, q2, k1, k2, PRECISION), float("-inf"))
        m_i, l_i, acc = _online_softmax_step(s, v, m_i, l_i, acc, PRECISION)
    l_safe = tl.where(P + L > 0, l_i, 1.0)  # not `l > 0`: a NaN sum must stay NaN
    lse = m_i + tl.log(l_safe) * 1.4426950408889634
    delta = tl.where(q_ok, tl.sum(do * (acc / l_safe[:, None]), axis=1), 0.0)
    tl.store(lse_ptr + pid_bh.to(tl.int64) * Nq + rows, lse, mask=in_q)
    tl.store(delta_ptr + pid_bh.to(tl.int64) * Nq + rows, delta, mask=in_q)

    dq1 = tl.zeros([BLOCK_M, BLOCK_H], tl.float32)
    dq2 = tl.zeros([BLOCK_M, BLOCK_H], tl.float32)
    for t in range(N_TILES):  # pass 2: dq = dS K
        keys = t * BLOCK_N + tl.arange(0, BLOCK_N)
        in_k, k_ok, k_pos, k1, k2, v = _keys(k_ptr + k_off, v_ptr + k_off, keys, Nk, P, first, shift, ch, cd,
                                             log2_base, DH, HALF, ROPE)
        pair_ok = q_ok[:, None] & k_ok[None, :]
        p = tl.where(pair_ok, tl.exp2(_scores(q1, q2, k1, k2, PRECISION) - lse[:, None]), 0.0)
        ds = _grad_scores(p, tl.dot(do, tl.trans(v), input_precision=PRECISION), delta, pair_ok)
        dq1 += tl.dot(ds, k1, input_precision=PRECISION)
        dq2 += tl.dot(ds, k2, input_precision=PRECISION)
    _store_query_grads(dq_ptr + q_off, rows, in_q, q_ok, q_pos, ch, dq1, dq2, scale, log2_base, DH, HALF,
                       ROPE and not SEPQ)


@triton.jit
def interleaved_attention_bwd_keys_kernel(
    go_ptr, q_ptr, k_ptr, v_ptr, dk_ptr, dv_ptr, lse_ptr, delta_ptr, len_ptr, H, Nq, Nk, P, T, scale, log2_base,
    DH: tl.constexpr, HALF: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, M_TILES: tl.constexpr,
    ROPE: tl.constexpr, SEPQ: tl.constexpr, PRECISION: tl.constexpr,
):
    """Key-tiled backward, per (batch*head, tile of keys): dk and dv over every query block, with the logsumexp
    and D the rows kernel stored."""
    pid_bh, L, shift, first, q_off, k_off = _program(len_ptr, H, Nq, Nk, P, T, DH)
    ch = tl.arange(0, BLOCK_H)
    cd = tl.arange(0, BLOCK_D)
    keys = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    in_k, k_ok, k_pos, k1, k2, v = _keys(k_ptr + k_off, v_ptr + k_off, keys, Nk, P, first, shift, ch, cd, log2_base,
                                         DH, HALF, ROPE)
    dk1 = tl.zeros([BLOCK_N, BLOCK_H], tl.float32)
    dk2 = tl.zeros([BLOCK_N, BLOCK_H], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    for mt in range(M_TILES):
        rows = mt * BLOCK_M + tl.arange(0, BLOCK_M)
        in_q, q_ok, q_pos, q1, q2 = _queries(q_ptr + q_off, rows, Nq, P, first, shift, ch, log2_base, DH, HALF,
                                             ROPE, SEPQ)
        do = _load_rows(go_ptr + q_off, rows, q_ok, cd, DH)
        lse = tl.load(lse_ptr + pid_bh.to(tl.int64) * Nq + rows, mask=q_ok, other=0.0)
        delta = tl.load(delta_ptr + pid_bh.to(tl.int64) * Nq + rows, mask=q_ok, other=0.0)
        s1, s2 = _base2(q1, q2, scale)
        s = _scores(s1, s2, k1, k2, PRECISION)
        pair_ok = q_ok[:, None] & k_ok[None, :]
        p = tl.where(pair_ok, tl.exp2(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p), do, input_precision=PRECISION)
        ds = _grad_scores(p, tl.dot(do, tl.trans(v), input_precision=PRECISION), delta, pair_ok)
        dk1 += tl.dot(tl.trans(ds), q1, input_precision=PRECISION)
        dk2 += tl.dot(tl.trans(ds), q2, input_precision=PRECISION)
    _store_key_grads(dk_ptr + k_off, dv_ptr + k_off, keys, in_k, k_ok, k_pos, ch, cd, dk1, dk2, dv, scale, log2_base,
                     DH, HALF, ROPE)


# ------------------------------------------------------------------------------------------ launchers


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _precision(device: torch.device) -> str:
    return "ieee" if device.type != "cuda" or _interpreting() else "tf32"


def _widths(dh: int, rope: bool) -> tuple[int, int, int]:
    """(HALF, BLOCK_H, BLOCK_D): the first part's width and the padded (>= 16) part and row widths."""
    half = dh // 2 if rope else (dh + 1) // 2
    return half, max(16, triton.next_power_of_2(max(half, 1))), max(16, triton.next_power_of_2(dh))


def _common(q, k, lengths, num_prefix):
    B, H, Nq, Dh = q.shape
    Nk = k.shape[2]
    return B, H, Nq, Nk, Dh, num_prefix, Nk - num_prefix, lengths.contiguous()


def forward(q, k, v, lengths, num_prefix: int, rope: bool, rope_base: float, scale: float,
            separate_queries: bool) -> torch.Tensor:
    """out [B, H, Nq, Dh] in q's dtype; one launch. Inputs are checked by the caller (op.py)."""
    check_launch("interleaved_attention (triton forward)", interleaved_attention_fwd_kernel, q=q, k=k, v=v,
                 lengths=lengths)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    B, H, Nq, Nk, Dh, P, T, lengths = _common(q, k, lengths, num_prefix)
    out = torch.empty_like(q)
    if out.numel() == 0:
        return out
    half, block_h, block_d = _widths(Dh, rope)
    block_m = 64 if Nq > 32 else max(16, triton.next_power_of_2(Nq))
    block_n = min(128, max(16, triton.next_power_of_2(max(Nk, 1))))
    grid = (B * H, triton.cdiv(Nq, block_m))
    interleaved_attention_fwd_kernel[grid](
        q, k, v, out, lengths, H, Nq, Nk, P, T, float(scale), math.log2(rope_base),
        DH=Dh, HALF=half, BLOCK_H=block_h, BLOCK_D=block_d, BLOCK_M=block_m, BLOCK_N=block_n,
        N_TILES=triton.cdiv(Nk, block_n), ROPE=bool(rope), SEPQ=bool(separate_queries),
        PRECISION=_precision(q.device), num_warps=4,
    )
    return out


def backward(grad_out, q, k, v, lengths, num_prefix: int, rope: bool, rope_base: float, scale: float,
             separate_queries: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv) in the inputs' dtype: one launch up to MAX_BWD_KEYS keys, two (tiled over keys) beyond."""
    check_launch("interleaved_attention (triton backward)", interleaved_attention_bwd_kernel, grad_out=grad_out,
                 q=q, k=k, v=v, lengths=lengths)
    q, k, v, go = q.contiguous(), k.contiguous(), v.contiguous(), grad_out.contiguous()
    B, H, Nq, Nk, Dh, P, T, lengths = _common(q, k, lengths, num_prefix)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    if B * H == 0 or Dh == 0:
        return dq, dk, dv
    if Nk == 0:
        return dq.zero_(), dk, dv
    half, block_h, block_d = _widths(Dh, rope)
    if Nk > MAX_BWD_KEYS:
        _backward_key_tiled(go, q, k, v, dq, dk, dv, lengths, P, T, rope, rope_base, scale, separate_queries,
                            half, block_h, block_d)
        return dq, dk, dv
    block_n = max(16, triton.next_power_of_2(Nk))
    block_m = 16 if block_n * block_d > 4096 else 32
    interleaved_attention_bwd_kernel[(B * H,)](
        go, q, k, v, dq, dk, dv, lengths, H, Nq, Nk, P, T, float(scale), math.log2(rope_base),
        DH=Dh, HALF=half, BLOCK_H=block_h, BLOCK_D=block_d, BLOCK_M=block_m, BLOCK_N=block_n,
        M_TILES=triton.cdiv(Nq, block_m), ROPE=bool(rope), SEPQ=bool(separate_queries),
        PRECISION=_precision(q.device), num_warps=4 if block_n <= 64 else 8,
    )
    return dq, dk, dv


def _backward_key_tiled(go, q, k, v, dq, dk, dv, lengths, P, T, rope, rope_base, scale, separate_queries,
                        half, block_h, block_d) -> None:
    """The backward beyond MAX_BWD_KEYS keys: the rows kernel (logsumexp, D, dq), then the keys kernel (dk, dv)."""
    B, H, Nq, Dh = q.shape
    Nk = k.shape[2]
    lse = torch.empty(B * H * Nq, dtype=torch.float32, device=q.device)
    delta = torch.empty_like(lse)
    block_m, block_n = _tiled_blocks(block_d)
    common = (lengths, H, Nq, Nk, P, T, float(scale), math.log2(rope_base))
    constexprs = dict(DH=Dh, HALF=half, BLOCK_H=block_h, BLOCK_D=block_d, BLOCK_M=block_m, BLOCK_N=block_n,
                      ROPE=bool(rope), SEPQ=bool(separate_queries), PRECISION=_precision(q.device), num_warps=4)
    if Nq > 0:
        interleaved_attention_bwd_rows_kernel[(B * H, triton.cdiv(Nq, block_m))](
            go, q, k, v, dq, lse, delta, *common, N_TILES=triton.cdiv(Nk, block_n), **constexprs)
    interleaved_attention_bwd_keys_kernel[(B * H, triton.cdiv(Nk, block_n))](
        go, q, k, v, dk, dv, lse, delta, *common, M_TILES=triton.cdiv(Nq, block_m), **constexprs)


def _tiled_blocks(block_d: int) -> tuple[int, int]:
    """(BLOCK_M, BLOCK_N) of the key-tiled backward: query blocks x key tiles small enough for registers."""
    return (32, 64) if block_d <= 64 else (16, 64)


# ------------------------------------------------------------------------------------------ AOT gate


def _aot_specs() -> list[tuple]:
    """Representative (kernel, signature, constexprs) compiled ahead of time for sm_90 in the tests."""
    ints = {"H": "i32", "Nq": "i32", "Nk": "i32", "P": "i32", "T": "i32", "scale": "fp32", "log2_base": "fp32"}

    def cx(dh, rope, sepq, block_m, block_n, tiles_key, tiles):
        half, block_h, block_d = _widths(dh, rope)
        return {"DH": dh, "HALF": half, "BLOCK_H": block_h, "BLOCK_D": block_d, "BLOCK_M": block_m,
                "BLOCK_N": block_n, tiles_key: tiles, "ROPE": rope, "SEPQ": sepq, "PRECISION": "tf32"}

    def fwd(ptr, dh, rope, sepq, block_m, block_n, tiles):
        c = cx(dh, rope, sepq, block_m, block_n, "N_TILES", tiles)
        sig = {"q_ptr": ptr, "k_ptr": ptr, "v_ptr": ptr, "o_ptr": ptr, "len_ptr": "*i64", **ints,
               **{name: "constexpr" for name in c}}
        return interleaved_attention_fwd_kernel, sig, c

    def bwd(ptr, dh, rope, sepq, block_m, block_n, tiles):
        c = cx(dh, rope, sepq, block_m, block_n, "M_TILES", tiles)
        sig = {"go_ptr": ptr, "q_ptr": ptr, "k_ptr": ptr, "v_ptr": ptr, "dq_ptr": ptr, "dk_ptr": ptr,
               "dv_ptr": ptr, "len_ptr": "*i64", **ints, **{name: "constexpr" for name in c}}
        return interleaved_attention_bwd_kernel, sig, c

    def tiled(ptr, dh, rope, sepq, n_tiles, m_tiles):
        block_m, block_n = _tiled_blocks(_widths(dh, rope)[2])
        rows_c = cx(dh, rope, sepq, block_m, block_n, "N_TILES", n_tiles)
        keys_c = cx(dh, rope, sepq, block_m, block_n, "M_TILES", m_tiles)
        ws = {"lse_ptr": "*fp32", "delta_ptr": "*fp32", "len_ptr": "*i64"}
        rows_sig = {"go_ptr": ptr, "q_ptr": ptr, "k_ptr": ptr, "v_ptr": ptr, "dq_ptr": ptr, **ws, **ints,
                    **{name: "constexpr" for name in rows_c}}
        keys_sig = {"go_ptr": ptr, "q_ptr": ptr, "k_ptr": ptr, "v_ptr": ptr, "dk_ptr": ptr, "dv_ptr": ptr, **ws,
                    **ints, **{name: "constexpr" for name in keys_c}}
        return [(interleaved_attention_bwd_rows_kernel, rows_sig, rows_c),
                (interleaved_attention_bwd_keys_kernel, keys_sig, keys_c)]

    return [
        *tiled("*fp32", 32, True, False, 9, 17),      # 4 CLS + 512 tokens: beyond MAX_BWD_KEYS
        *tiled("*bf16", 128, False, True, 9, 1),      # PMA seeds over 512 keys, Dh 128
        fwd("*fp32", 32, True, False, 64, 128, 1),    # 4 CLS + 64 tokens, Dh 32, RoPE
        fwd("*bf16", 16, True, False, 64, 64, 2),     # Dh 16 -> halves of 8 padded to 16
        fwd("*fp16", 5, False, True, 16, 128, 1),     # PMA seeds, odd head dim
        bwd("*fp32", 32, True, False, 32, 128, 4),
        bwd("*fp16", 64, False, True, 16, 128, 1),
    ]


AOT_SPECS = _aot_specs()
