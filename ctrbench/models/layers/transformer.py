"""A transformer encoder over jagged behaviour sequences (BST, TransAct): torch's nn.TransformerEncoder with a
key-padding mask, run on length buckets.

Input and output are jagged: N tokens [N, D] with their row and their distance from the row's end (0 = most
recent), the rows' lengths [B]. Rows are sorted by length and encoded in chunks of `chunk_rows`, each laid out
dense only as wide as its own longest row (left-padded), so the cost follows the real lengths rather than the
batch's longest history and no [B, T_max, D] tensor is built (exact: a row's outputs depend on its own tokens
only). A row's padded slots are masked out of the attention; a row without tokens has nothing to attend to
and gives no output.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FFN_ACTIVATIONS: dict[str, Callable] = {"relu": F.relu, "gelu": F.gelu, "leaky_relu": F.leaky_relu, "silu": F.silu}


class SequenceEncoder(nn.Module):
    """`num_layers` post-norm transformer layers (MHA + FFN, residuals, LayerNorm) over jagged tokens of width dim."""

    def __init__(self, dim: int, num_heads: int = 1, num_layers: int = 1, ffn_dim: int | None = None,
                 dropout: float = 0.0, activation: str = "relu", chunk_rows: int = 256):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"transformer width {dim} is not divisible by num_heads={num_heads}")
        if activation not in FFN_ACTIVATIONS:
            raise ValueError(f"unknown FFN activation {activation!r}; valid: {', '.join(FFN_ACTIVATIONS)}")
        layer = nn.TransformerEncoderLayer(dim, num_heads, ffn_dim or dim, dropout,
                                           activation=FFN_ACTIVATIONS[activation], batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.chunk_rows = chunk_rows

    def forward(self, tokens: torch.Tensor, rows: torch.Tensor, recency: torch.Tensor, lengths: torch.Tensor,
                host_lengths: np.ndarray | None = None) -> torch.Tensor:
        """tokens [N, D] of rows [N] at distance recency [N] from their row's end -> outputs [N, D], same order
        (`host_lengths`: the lengths on the host, see run_chunked)."""

        def encode(dense: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
            pad = pad.clone()
            pad[:, -1] = False  # a row without tokens attends to one (zero) slot: finite, and never read
            return self.encoder(dense, src_key_padding_mask=pad)

        return run_chunked(tokens, rows, recency, lengths, encode, tokens.shape[1], self.chunk_rows, host_lengths)


def run_chunked(tokens: torch.Tensor, rows: torch.Tensor, recency: torch.Tensor, lengths: torch.Tensor,
                fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], out_dim: int,
                chunk_rows: int = 256, host_lengths: np.ndarray | None = None) -> torch.Tensor:
    """Apply a per-row sequence function to jagged tokens, in length buckets: rows sorted by length, `chunk_rows`
    at a time laid out dense [n, W, D] (left-padded to the chunk's longest row W) with the padding mask
    [n, W] (True = padding), fn(dense, pad) -> [n, W, out_dim], read back at the tokens' slots -> [N, out_dim]
    in the input order. fn must keep rows independent of each other. `host_lengths` (the lengths on the host)
    size the chunks without reading the device back."""
    if tokens.shape[0] == 0:
        return tokens.new_zeros(0, out_dim)
    b = lengths.shape[0]
    host = lengths.cpu().numpy() if host_lengths is None else np.asarray(host_lengths)
    lengths = lengths.to(torch.int64)
    host_order = np.argsort(host, kind="stable")  # shortest first: chunks of similar lengths
    order = torch.from_numpy(host_order).to(lengths.device)
    rank_of_row = torch.empty_like(order)
    rank_of_row[order] = torch.arange(b, device=order.device)
    rank = rank_of_row[rows]
    chunk = rank // chunk_rows
    perm = torch.argsort(chunk, stable=True)  # tokens grouped by chunk: one gather, then a split
    sorted_host = host[host_order].astype(np.int64)
    bounds = range(0, b, chunk_rows)
    counts = [int(sorted_host[i:i + chunk_rows].sum()) for i in bounds]  # tokens per chunk
    widths = [max(int(sorted_host[i:i + chunk_rows].max()), 1) for i in bounds]
    pieces = zip(tokens[perm].split(counts), (rank % chunk_rows)[perm].split(counts), recency[perm].split(counts),
                 lengths[order].split(chunk_rows), widths)
    outs = []
    for tok, row, rec, n, width in pieces:
        if tok.shape[0] == 0:
            continue
        slot = width - 1 - rec
        dense = tok.new_zeros(n.shape[0], width, tok.shape[1]).index_put((row, slot), tok)
        pad = torch.arange(width, device=n.device)[None, :] < (width - n)[:, None]
        outs.append(fn(dense, pad)[row, slot])
    return torch.cat(outs).index_select(0, torch.argsort(perm))
