"""Triton kernels for embedding_bag_collection (GPU, or CPU tensors under TRITON_INTERPRET=1).

- forward: one program per (bag, column block); the bag is walked BLOCK_L ids at a time with a
  `while` loop over its loaded bounds (triton 3.6's interpreter cannot `range` over loaded bounds).
- backward: the launcher linearises ids to global rows and sorts them (stable when deterministic),
  then one program per unique row sums that row's gradient in sorted order and writes it (sparse
  gradient) or applies SGD / row-wise Adagrad in place -- each row once, no atomics.
- psw_grad: one program per block of positions, a dot product per position.
All arithmetic is fp32 (loads are cast), stores cast back to the output's dtype.
`AOT_SPECS` lists every kernel with representative constexprs for the sm_90 ahead-of-time compile test.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ctrbench.kernels.embedding_bag import reference
from ctrbench.kernels.triton_device import check_launch

MODE_GRADS, MODE_SGD, MODE_ADAGRAD = 0, 1, 2


@triton.jit
def _ebc_fwd_kernel(W, TO, FT, IDX, OFFS, PSW, OUT, B, F, D,
                    HAS_FT: tl.constexpr, HAS_PSW: tl.constexpr, MEAN: tl.constexpr,
                    BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr):
    bag = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < D
    f = bag // B
    b = bag - f * B
    if HAS_FT:
        t = tl.load(FT + f)
    else:
        t = f
    base = tl.load(TO + t)
    s = tl.load(OFFS + bag).to(tl.int64)
    e = tl.load(OFFS + bag + 1).to(tl.int64)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    j = s
    while j < e:
        pos = j + tl.arange(0, BLOCK_L)
        m = pos < e
        ids = tl.load(IDX + pos, mask=m, other=0).to(tl.int64)
        vals = tl.load(W + (base + ids)[:, None] * D + cols[None, :], mask=m[:, None] & cmask[None, :],
                       other=0.0).to(tl.float32)
        if HAS_PSW:
            pw = tl.load(PSW + pos, mask=m, other=0.0).to(tl.float32)
            vals = vals * pw[:, None]
        acc += tl.sum(vals, axis=0)
        j += BLOCK_L
    if MEAN:
        acc = acc / tl.maximum(e - s, 1).to(tl.float32)
    tl.store(OUT + b * F * D + f * D + cols, acc.to(OUT.dtype.element_ty), mask=cmask)


@triton.jit
def _ebc_segment_kernel(SEG, ROWS, GROW, SCALE, G, W, M, OUT, D, lr, eps,
                        HAS_SCALE: tl.constexpr, MODE: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr):
    u = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    cmask = cols < D
    s = tl.load(SEG + u)
    e = tl.load(SEG + u + 1)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    j = s
    while j < e:
        pos = j + tl.arange(0, BLOCK_L)
        m = pos < e
        gr = tl.load(GROW + pos, mask=m, other=0)
        g = tl.load(G + gr[:, None] * D + cols[None, :], mask=m[:, None] & cmask[None, :], other=0.0).to(tl.float32)
        if HAS_SCALE:
            sc = tl.load(SCALE + pos, mask=m, other=0.0).to(tl.float32)
            g = g * sc[:, None]
        acc += tl.sum(g, axis=0)
        j += BLOCK_L
    if MODE == 0:
        tl.store(OUT + u * D + cols, acc.to(OUT.dtype.element_ty), mask=cmask)
    else:
        row = tl.load(ROWS + u)
        wp = W + row * D + cols
        w = tl.load(wp, mask=cmask, other=0.0).to(tl.float32)
        if MODE == 1:
            w = w - lr * acc
        else:
            mom = tl.load(M + row).to(tl.float32) + tl.sum(acc * acc, axis=0) / D
            tl.store(M + row, mom.to(M.dtype.element_ty))
            w = w - (lr / (tl.sqrt(mom) + eps)) * acc
        tl.store(wp, w.to(W.dtype.element_ty), mask=cmask)


@triton.jit
def _ebc_psw_grad_kernel(GROW, WROW, INV, G, W, OUT, nnz, D,
                         MEAN: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_D: tl.constexpr):
    pos = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    m = pos < nnz
    cols = tl.arange(0, BLOCK_D)
    mm = m[:, None] & (cols < D)[None, :]
    gr = tl.load(GROW + pos, mask=m, other=0)
    wr = tl.load(WROW + pos, mask=m, other=0)
    g = tl.load(G + gr[:, None] * D + cols[None, :], mask=mm, other=0.0).to(tl.float32)
    w = tl.load(W + wr[:, None] * D + cols[None, :], mask=mm, other=0.0).to(tl.float32)
    dot = tl.sum(g * w, axis=1)
    if MEAN:
        dot = dot * tl.load(INV + pos, mask=m, other=0.0).to(tl.float32)
    tl.store(OUT + pos, dot.to(OUT.dtype.element_ty), mask=m)


# ------------------------------------------------------------------------------------------ launchers

def _num_features(to, ft):
    return ft.shape[0] if ft is not None else to.shape[0] - 1


def _blocks(D: int, tile: int = 4096, max_l: int = 32):
    bd = triton.next_power_of_2(max(D, 1))
    return bd, max(1, min(max_l, tile // bd))


def forward(w, to, ft, idx, offs, psw, pooling):
    check_launch("embedding_bag_collection (triton forward)", _ebc_fwd_kernel, weights=w, table_offsets=to,
                 feature_table=ft, indices=idx, offsets=offs, per_sample_weights=psw)
    F = _num_features(to, ft)
    B = (offs.shape[0] - 1) // F
    D = w.shape[1]
    out = torch.empty(B, F * D, dtype=w.dtype, device=w.device)
    if B == 0 or D == 0:
        return out.zero_()
    block_d = min(triton.next_power_of_2(D), 128)
    block_l = max(1, min(32, 4096 // block_d))
    grid = (F * B, triton.cdiv(D, block_d))
    _ebc_fwd_kernel[grid](w, to, ft if ft is not None else to, idx, offs, psw if psw is not None else w, out, B, F, D,
                          HAS_FT=ft is not None, HAS_PSW=psw is not None, MEAN=pooling == "mean",
                          BLOCK_L=block_l, BLOCK_D=block_d)
    return out


def _sorted_segments(g, to, ft, idx, offs, psw, pooling, deterministic):
    """Sort the positions by global row: (unique rows, segment starts [U+1], grad rows, scales) in row order."""
    F = _num_features(to, ft)
    B = (offs.shape[0] - 1) // F
    bag, feat, grow, lengths = reference.positions(to, ft, offs, idx, B)
    grad_row = (bag - feat * B) * F + feat  # row of grad_out viewed as [B*F, D]
    scale = reference.position_scale(psw, pooling, lengths, bag, torch.float32)
    srt, perm = torch.sort(grow, stable=deterministic)
    rows, counts = torch.unique_consecutive(srt, return_counts=True)
    seg = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    return rows, seg, grad_row[perm].contiguous(), None if scale is None else scale[perm].contiguous()


def _segment_launch(g, to, ft, idx, offs, psw, pooling, deterministic, mode, w, m, out_dtype, lr=0.0, eps=0.0):
    check_launch("embedding_bag_collection (triton backward)", _ebc_segment_kernel, grad_out=g, table_offsets=to,
                 feature_table=ft, indices=idx, offsets=offs, per_sample_weights=psw, weights=w, momentum=m)
    F = _num_features(to, ft)
    D = g.shape[1] // F
    rows, seg, grad_row, scale = _sorted_segments(g, to, ft, idx, offs, psw, pooling, deterministic)
    U = rows.shape[0]
    out = torch.empty(U if mode == MODE_GRADS else 0, D, dtype=out_dtype, device=g.device)
    if U == 0 or D == 0:
        return rows, out.zero_()
    block_d, block_l = _blocks(D)
    _ebc_segment_kernel[(U,)](seg, rows, grad_row, scale if scale is not None else g, g,
                              w if w is not None else g, m if m is not None else g, out if mode == MODE_GRADS else g,
                              D, float(lr), float(eps), HAS_SCALE=scale is not None, MODE=mode,
                              BLOCK_L=block_l, BLOCK_D=block_d)
    return rows, out


def grad_rows(g, to, ft, idx, offs, psw, pooling, deterministic):
    acc = torch.float64 if g.dtype == torch.float64 else torch.float32
    rows, out = _segment_launch(g, to, ft, idx, offs, psw, pooling, deterministic, MODE_GRADS, None, None, acc)
    return rows, out.to(g.dtype)


def fused_update_(w, m, g, to, ft, idx, offs, psw, pooling, optimizer, lr, eps, deterministic):
    mode = MODE_SGD if optimizer == "sgd" else MODE_ADAGRAD
    _segment_launch(g, to, ft, idx, offs, psw, pooling, deterministic, mode, w, m if mode == MODE_ADAGRAD else None,
                    w.dtype, lr, eps)


def psw_grad(g, w, to, ft, idx, offs, pooling):
    check_launch("embedding_bag_collection (triton psw_grad)", _ebc_psw_grad_kernel, grad_out=g, weights=w,
                 table_offsets=to, feature_table=ft, indices=idx, offsets=offs)
    F = _num_features(to, ft)
    B = (offs.shape[0] - 1) // F
    D = w.shape[1]
    nnz = idx.shape[0]
    out = torch.empty(nnz, dtype=w.dtype, device=w.device)
    if nnz == 0:
        return out
    bag, feat, grow, lengths = reference.positions(to, ft, offs, idx, B)
    grad_row = (bag - feat * B) * F + feat
    inv = (1.0 / lengths.clamp(min=1).to(torch.float32))[bag] if pooling == "mean" else g
    block_d, block_p = _blocks(D, tile=4096, max_l=64)
    _ebc_psw_grad_kernel[(triton.cdiv(nnz, block_p),)](grad_row, grow, inv, g, w, out, nnz, D,
                                                      MEAN=pooling == "mean", BLOCK_P=block_p, BLOCK_D=block_d)
    return out


# ------------------------------------------------------------------------------------------ AOT specs

def _fwd_spec(idx_t: str, w_t: str, has_ft: bool, has_psw: bool, mean: bool, block_l: int, block_d: int):
    sig = {"W": f"*{w_t}", "TO": "*i64", "FT": "*i64", "IDX": f"*{idx_t}", "OFFS": f"*{idx_t}", "PSW": "*fp32",
           "OUT": f"*{w_t}", "B": "i32", "F": "i32", "D": "i32", "HAS_FT": "constexpr", "HAS_PSW": "constexpr",
           "MEAN": "constexpr", "BLOCK_L": "constexpr", "BLOCK_D": "constexpr"}
    return (_ebc_fwd_kernel, sig, {"HAS_FT": has_ft, "HAS_PSW": has_psw, "MEAN": mean, "BLOCK_L": block_l,
                                   "BLOCK_D": block_d})


def _seg_spec(w_t: str, has_scale: bool, mode: int, block_l: int, block_d: int):
    sig = {"SEG": "*i64", "ROWS": "*i64", "GROW": "*i64", "SCALE": "*fp32", "G": f"*{w_t}", "W": f"*{w_t}",
           "M": "*fp32", "OUT": "*fp32", "D": "i32", "lr": "fp32", "eps": "fp32", "HAS_SCALE": "constexpr",
           "MODE": "constexpr", "BLOCK_L": "constexpr", "BLOCK_D": "constexpr"}
    return (_ebc_segment_kernel, sig, {"HAS_SCALE": has_scale, "MODE": mode, "BLOCK_L": block_l, "BLOCK_D": block_d})


def _psw_spec(mean: bool, block_p: int, block_d: int):
    sig = {"GROW": "*i64", "WROW": "*i64", "INV": "*fp32", "G": "*fp32", "W": "*fp32", "OUT": "*fp32", "nnz": "i32",
           "D": "i32", "MEAN": "constexpr", "BLOCK_P": "constexpr", "BLOCK_D": "constexpr"}
    return (_ebc_psw_grad_kernel, sig, {"MEAN": mean, "BLOCK_P": block_p, "BLOCK_D": block_d})


AOT_SPECS = [
    _fwd_spec("i64", "fp32", False, False, False, 32, 64),
    _fwd_spec("i32", "fp32", True, True, True, 32, 128),
    _fwd_spec("i64", "bf16", False, False, False, 32, 16),
    _fwd_spec("i32", "fp16", False, True, False, 8, 128),
    _seg_spec("fp32", False, MODE_GRADS, 32, 64),
    _seg_spec("fp32", True, MODE_SGD, 32, 128),
    _seg_spec("fp32", True, MODE_ADAGRAD, 16, 256),
    _seg_spec("bf16", False, MODE_ADAGRAD, 32, 64),
    _psw_spec(False, 64, 64),
    _psw_spec(True, 32, 128),
]
