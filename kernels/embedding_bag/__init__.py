"""embedding_bag_collection: many tables, one call (TBE-style packed weights, feature-major jagged ids).

Import what models need from here: `FusedEmbeddingBagCollection`, `EmbeddingBagConfig`, the KJT
builders, the functional ops and the typed input error.
"""
from ctrbench.kernels.embedding_bag.layout import concat_kjt, kjt_from_ids, kjt_from_sequences  # noqa: F401
from ctrbench.kernels.embedding_bag.module import EmbeddingBagConfig, FusedEmbeddingBagCollection  # noqa: F401
from ctrbench.kernels.embedding_bag.op import (  # noqa: F401
    embedding_bag_collection,
    embedding_bag_collection_fused,
    fused_update_,
    grad_rows,
)
from ctrbench.kernels.embedding_bag.validation import EmbeddingBagInputError  # noqa: F401
