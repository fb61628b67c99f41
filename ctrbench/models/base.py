"""The CTRModel base: built from a dataset spec, its vocabulary sizes and validated hyper-parameters;
`forward(batch) -> logits [B]`. Subclasses declare a pydantic `Params` (unknown keys rejected)."""
from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ctrbench.data.batch import Batch
from ctrbench.data.schema import DatasetSpec
from ctrbench.errors import ParamError
from ctrbench.models.embedding import EmbeddingCollection


class ModelParams(BaseModel):
    """Hyper-parameters every model shares; subclasses add their own fields."""

    model_config = ConfigDict(extra="forbid")

    embedding_dim: int | None = Field(None, gt=0, description="embedding size; None = the dataset's BARS default")
    embedding_backend: Literal["torch", "fused"] = Field(
        "fused", description="'fused': ctrbench.kernels' embedding-bag collection (one kernel call per forward, "
        "and the fused optimizers of TrainConfig.fused_embedding_optimizer); 'torch': F.embedding_bag / F.embedding")
    kernel_backend: Literal["reference", "cpp", "triton", "cuda"] | None = Field(
        None, description="fused kernel backend; None = argument > $CTRBENCH_BACKEND > auto"
    )
    embedding_init: Literal["normal", "uniform_rows"] = Field(
        "normal", description="'normal': N(0, embedding_init_std) (FuxiCTR); 'uniform_rows': U(±1/sqrt(rows)) per "
        "table (DLRM reference / TorchRec)"
    )
    embedding_init_std: float = Field(1e-4, gt=0, allow_inf_nan=False)
    numeric_norm: bool = Field(
        False, description="standardise numeric inputs (BatchNorm without affine) before the model sees them; BARS "
        "feeds raw values (TaobaoAd's price is in the hundreds). InterFormer always does (its dense token)")

    def check_dataset(self, spec: DatasetSpec) -> None:
        """Checks that need the dataset (widths from its embedding dim, its sequence fields); raise ParamError.
        The suite loader calls it, so a misfit is refused before any run starts. Models override it."""

    def resolved_dim(self, spec: DatasetSpec) -> int:
        """The embedding dim the model will use on `spec`."""
        return self.embedding_dim or spec.embedding_dim


def require_heads(param: str, width: int, num_heads: int, what: str) -> None:
    """ParamError (at `param`) unless `width` splits into `num_heads` equal heads."""
    if width % num_heads:
        raise ParamError(param, f"{what} {width} is not divisible by num_heads={num_heads}")


class CTRModel(nn.Module):
    """Base of every CTR model. `self.embedding(batch)` gives the [B, F, d] field embeddings."""

    Params: ClassVar[type[ModelParams]] = ModelParams
    name: ClassVar[str] = "base"

    def __init__(
        self,
        spec: DatasetSpec,
        vocab_sizes: Mapping[str, int],
        params: ModelParams | Mapping[str, Any] | None = None,
        tables: Mapping[str, np.ndarray | torch.Tensor] | None = None,
    ):
        super().__init__()
        self.spec = spec
        self.vocab_sizes = dict(vocab_sizes)
        self.tables = tables
        if isinstance(params, self.Params):
            self.params = params
        else:
            self.params = self.Params(**dict(params or {}))
        self.embedding_dim = self.params.embedding_dim or spec.embedding_dim

    def make_embedding(self, dim: int | None = None, *, include_numeric: bool = True,
                       unpooled: Collection[str] = ()) -> EmbeddingCollection:
        """An EmbeddingCollection over this dataset's fields with the model's backend settings; `unpooled`
        sequences are read only token by token (`EmbeddingCollection.lookup`), not mean-pooled into a field."""
        return EmbeddingCollection(
            self.spec,
            self.vocab_sizes,
            dim or self.embedding_dim,
            tables=self.tables,
            backend=self.params.embedding_backend,
            kernel_backend=self.params.kernel_backend,
            include_numeric=include_numeric,
            numeric_norm=self.params.numeric_norm,
            init=self.params.embedding_init,
            init_std=self.params.embedding_init_std,
            unpooled=unpooled,
        )

    def forward(self, batch: Batch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def aux_loss(self) -> torch.Tensor | None:
        """An extra loss term of the last forward (none for these models)."""
        return None

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The supervised training loss of this forward's logits: BCE with the labels. A model whose training
        signal needs the labels beyond that (e.g. an ensemble's per-member losses) overrides it."""
        return F.binary_cross_entropy_with_logits(logits, batch.label)

    def component_logits(self) -> dict[str, torch.Tensor]:
        """Logits [B] of the last forward's named components that are predictors in their own right (an
        ensemble's members); the trainer scores each on the test split like the model. Empty for most models."""
        return {}

    def diagnostics(self) -> dict[str, torch.Tensor]:
        """Per-row values [B] (or scalars) of the last forward worth averaging over the test split (e.g. fusion
        weights); the trainer reports their means. Empty for most models."""
        return {}

    def embedding_collections(self) -> Iterator[EmbeddingCollection]:
        for m in self.modules():
            if isinstance(m, EmbeddingCollection):
                yield m

    def embedding_parameters(self) -> list[nn.Parameter]:
        """Lookup tables (what a sparse optimizer updates and the embedding L2 term regularises)."""
        return [p for c in self.embedding_collections() for p in c.embedding_parameters()]

    def dense_parameters(self) -> list[nn.Parameter]:
        """Every other trainable parameter."""
        emb = {id(p) for p in self.embedding_parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in emb]

    def set_sparse_embeddings(self, sparse: bool) -> None:
        """Make the lookup tables produce sparse (row-wise) gradients, for SparseAdam / sparse Adagrad."""
        for c in self.embedding_collections():
            c.sparse = sparse

    def set_fused_embedding_optimizer(self, optimizer: str | None, lr_group: dict | None = None,
                                      eps: float = 1e-8) -> None:
        """Update every lookup table with `optimizer` inside the backward (see EmbeddingCollection)."""
        for c in self.embedding_collections():
            c.set_fused_optimizer(optimizer, lr_group, eps)

    def embedding_sq_norm(self, batch: Batch) -> torch.Tensor:
        """Σ‖row‖² over the table rows this batch reads, across all collections (lazy L2 for sparse tables)."""
        terms = [c.touched_sq_norm(batch) for c in self.embedding_collections()]
        return torch.stack(terms).sum() if terms else torch.zeros(())
