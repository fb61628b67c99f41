"""Build the feature-major jagged (KJT / TBE) inputs -- indices and offsets -- from dense id matrices.

`offsets` has F*B+1 entries; bag (f, b) is indices[offsets[f*B+b]:offsets[f*B+b+1]]. Everything is
vectorised (no Python loop over samples or ids).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor


def _offsets_from_lengths(lengths: Tensor) -> Tensor:
    return torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])


def kjt_from_ids(ids: Tensor, padding_idx: Optional[int] = None) -> tuple[Tensor, Tensor]:
    """[B, F] single-valued ids -> (indices [nnz], offsets [F*B+1]) in feature-major order.

    With padding_idx set, ids equal to it are dropped (their bags are empty, so they pool to 0, like
    FuxiCTR's padding_idx); otherwise every bag holds exactly one id.
    """
    if ids.dim() != 2:
        raise ValueError(f"kjt_from_ids: ids must be [B, F], got shape {tuple(ids.shape)}")
    fm = ids.t().reshape(-1)  # feature-major flatten: bag f*B + b
    if padding_idx is None:
        return fm.contiguous(), torch.arange(fm.shape[0] + 1, device=ids.device, dtype=torch.int64)
    keep = fm != padding_idx
    return fm[keep], _offsets_from_lengths(keep.to(torch.int64))


def kjt_from_sequences(seqs: Tensor, padding_idx: Optional[int] = 0) -> tuple[Tensor, Tensor]:
    """[B, L] (left- or right-padded) id sequences of ONE feature -> (indices, offsets [B+1]).

    Entries equal to padding_idx are dropped, so each bag holds the row's real ids in their order.
    """
    if seqs.dim() != 2:
        raise ValueError(f"kjt_from_sequences: seqs must be [B, L], got shape {tuple(seqs.shape)}")
    if padding_idx is None:
        B, L = seqs.shape
        return seqs.reshape(-1).contiguous(), torch.arange(0, B * L + 1, L, device=seqs.device, dtype=torch.int64)
    keep = seqs != padding_idx
    return seqs[keep], _offsets_from_lengths(keep.sum(1).to(torch.int64))


def concat_kjt(parts: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Concatenate feature groups (each (indices, offsets) for the same B) into one KJT, features in order."""
    if not parts:
        raise ValueError("concat_kjt: nothing to concatenate")
    idx = [p[0] for p in parts]
    dtype = torch.int64 if any(i.dtype == torch.int64 for i in idx) else idx[0].dtype
    offs, base = [], 0
    for k, (i, o) in enumerate(parts):
        o = o.to(torch.int64)
        offs.append((o if k == len(parts) - 1 else o[:-1]) + base)
        base += i.shape[0]
    return torch.cat([i.to(dtype) for i in idx]), torch.cat(offs)


def lengths_from_offsets(offsets: Tensor) -> Tensor:
    return offsets[1:] - offsets[:-1]
