"""CPU tensors on transparent huge pages, for big embedding tables.

Random rows of a table much larger than the TLB's reach (2048 entries x 4 KB = 8 MB) cost a page walk
each, before the row's own cache miss; on this 2-core VM the forward kernel spends most of its time
there. With 2 MB pages a 665 MB table needs 333 TLB entries. The memory is an anonymous mmap advised
MADV_HUGEPAGE before any page is touched, so the kernel backs it with huge pages at first touch (THP in
"madvise" or "always" mode); elsewhere (THP off, not Linux) callers get None and use torch.empty.
"""
from __future__ import annotations

import mmap
import warnings
from typing import Optional

import torch

MIN_BYTES = 32 << 20  # below this 4 KB pages already mostly hit the TLB


def thp_mode() -> str:
    """The kernel's THP setting ('always', 'madvise', 'never'), or 'unavailable'."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as fh:
            text = fh.read()
    except OSError:
        return "unavailable"
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else "unavailable"


def empty_huge(rows: int, dim: int, dtype: torch.dtype) -> Optional[torch.Tensor]:
    """An uninitialised [rows, dim] CPU tensor on memory advised for huge pages, or None where that is not
    possible or not worth it (small tensors, THP off). The tensor keeps its mapping alive."""
    nbytes = rows * dim * torch.empty((), dtype=dtype).element_size()
    if nbytes < MIN_BYTES or not hasattr(mmap, "MADV_HUGEPAGE") or thp_mode() not in ("always", "madvise"):
        return None
    try:
        mm = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        mm.madvise(mmap.MADV_HUGEPAGE)
    except (OSError, ValueError):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # frombuffer warns about buffers it cannot prove writable
        flat = torch.frombuffer(mm, dtype=dtype)  # holds a reference to mm
    return flat.view(rows, dim)
