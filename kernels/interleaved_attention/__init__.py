"""interleaved_attention: attention over [prefix (CLS) tokens | left-padded sequence], four backends.

    out = interleaved_attention(q, k, v, lengths, num_prefix, rope=True)   # [B, H, N, Dh] each
    pma = interleaved_attention(seeds, k, v, lengths, num_prefix, rope=True, separate_queries=True)
"""
from ctrbench.kernels.interleaved_attention.module import InterleavedMultiheadAttention  # noqa: F401
from ctrbench.kernels.interleaved_attention.op import interleaved_attention  # noqa: F401
from ctrbench.kernels.interleaved_attention.reference import (  # noqa: F401
    InterleavedAttentionInputError,
    interleaved_attention_reference,
)
