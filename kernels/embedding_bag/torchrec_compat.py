"""TorchRec front door: ctrbench's fused collection behind TorchRec's EmbeddingBagCollection API.

A model written against TorchRec switches by changing one constructor::

    ebc = torchrec.EmbeddingBagCollection(tables=tables, is_weighted=False)                # before
    ebc = EmbeddingBagCollection(tables=tables, is_weighted=False)                         # after: dense grads
    ebc = EmbeddingBagCollection(tables=tables, optimizer_type=torchrec.optim.RowWiseAdagrad,
                                 optimizer_kwargs={"lr": 0.05})   # fused, like TorchRec's FusedEmbeddingBagCollection

- Tables are TorchRec `EmbeddingBagConfig`s (SUM or MEAN pooling, FP32, any dims). Tables are grouped by
  (embedding_dim, pooling) into one packed `FusedEmbeddingBagCollection` each; the output columns follow
  TorchRec's order whatever the grouping.
- forward takes a `KeyedJaggedTensor` (keys in any order, extra keys ignored as TorchRec does, weights used
  when is_weighted) and returns a `KeyedTensor` with TorchRec's keys (`feature`, or `feature@table` for a
  feature read by several tables) and layout [B, sum of dims].
- state_dict / load_state_dict speak TorchRec's keys (`embedding_bags.<table>.weight`) both ways, so a
  checkpoint moves between this module and `torchrec.EmbeddingBagCollection` (or a model holding either).
- optimizer_type: None (the packed weight gets a dense, or sparse_grad=True a sparse, gradient for any torch
  optimizer), torch.optim.SGD or torchrec.optim.RowWiseAdagrad (or FBGEMM's EmbOptimType.EXACT_SGD /
  EXACT_ROWWISE_ADAGRAD): the backward updates the touched rows in place, as FBGEMM's TBE does;
  `fused_optimizer()` exposes lr and the row-wise Adagrad state with TorchRec's keys.
- Bad KJTs raise `KJTInputError` naming the KJT key, the table, and the position in `values()`.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

try:
    from fbgemm_gpu.split_embedding_configs import EmbOptimType
    from torchrec.modules.embedding_configs import DataType, EmbeddingBagConfig, PoolingType
    from torchrec.modules.embedding_modules import EmbeddingBagCollectionInterface, get_embedding_names_by_table
    from torchrec.optim import RowWiseAdagrad
    from torchrec.optim.fused import FusedOptimizer
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor
except ImportError as exc:  # pragma: no cover - exercised only without the extras
    raise ImportError(f"ctrbench's TorchRec front door needs torchrec and fbgemm-gpu-cpu: run `make extras` ({exc})")

from ctrbench.kernels.embedding_bag.module import EmbeddingBagConfig as FusedTableConfig
from ctrbench.kernels.embedding_bag.module import FusedEmbeddingBagCollection
from ctrbench.kernels.embedding_bag.validation import EmbeddingBagInputError

_POOLING = {PoolingType.SUM: "sum", PoolingType.MEAN: "mean"}
_OPTIMIZER = {None: "none", torch.optim.SGD: "sgd", RowWiseAdagrad: "rowwise_adagrad",
              EmbOptimType.EXACT_SGD: "sgd", EmbOptimType.EXACT_ROWWISE_ADAGRAD: "rowwise_adagrad",
              "sgd": "sgd", "rowwise_adagrad": "rowwise_adagrad"}
# optimizer kwargs TorchRec users pass that mean "off" at these values; anything else is not fused here
_NEUTRAL_KWARGS = {"weight_decay": 0, "lr_decay": 0, "momentum": 0, "dampening": 0, "initial_accumulator_value": 0}


class KJTInputError(EmbeddingBagInputError):
    """A KeyedJaggedTensor the collection cannot read; `key`, `table_name`, `kjt_position`, `sample` say where."""

    def __init__(self, message: str, *, key: Optional[str] = None, table_name: Optional[str] = None,
                 kjt_position: Optional[int] = None, sample: Optional[int] = None, value: Optional[int] = None,
                 bound: Optional[int] = None):
        super().__init__(message, position=kjt_position, value=value, bound=bound)
        self.key, self.table_name, self.kjt_position, self.sample = key, table_name, kjt_position, sample


def fused_optimizer_spec(optimizer_type, optimizer_kwargs: Optional[dict]) -> tuple[str, float, float]:
    """TorchRec-style (optimizer_type, optimizer_kwargs) -> (ctrbench optimizer name, lr, eps)."""
    try:
        name = _OPTIMIZER[optimizer_type]
    except (KeyError, TypeError):
        raise ValueError(f"optimizer_type {optimizer_type!r} cannot be fused; use None, torch.optim.SGD, "
                         "torchrec.optim.RowWiseAdagrad or EmbOptimType.EXACT_SGD / EXACT_ROWWISE_ADAGRAD") from None
    kwargs = dict(optimizer_kwargs or {})
    if name == "none" and kwargs:
        raise ValueError(f"optimizer_kwargs {sorted(kwargs)} given without a fused optimizer_type")
    lr = float(kwargs.pop("lr", kwargs.pop("learning_rate", 0.01)))  # FBGEMM TBE's defaults: lr 0.01, eps 1e-8
    eps = float(kwargs.pop("eps", 1e-8))
    for key, value in kwargs.items():
        if key not in _NEUTRAL_KWARGS or value != _NEUTRAL_KWARGS[key]:
            raise ValueError(f"optimizer_kwargs[{key!r}] = {value!r} is not supported by the fused {name} update "
                             f"(supported: lr / learning_rate, eps; {sorted(_NEUTRAL_KWARGS)} only at 0)")
    return name, lr, eps


def _check_table(config: EmbeddingBagConfig, is_weighted: bool) -> str:
    """The ctrbench pooling of a TorchRec table, or a ValueError naming the table and the unsupported field."""
    if config.pooling not in _POOLING:
        raise ValueError(f"table {config.name!r}: pooling {config.pooling.name} is not supported (SUM or MEAN)")
    if config.data_type != DataType.FP32:
        raise ValueError(f"table {config.name!r}: data_type {config.data_type.name} is not supported (FP32 only)")
    if is_weighted and config.pooling == PoolingType.MEAN:
        raise ValueError(f"table {config.name!r}: per-sample weights with MEAN pooling are rejected by TorchRec's "
                         "EmbeddingBagCollection (nn.EmbeddingBag weights SUM only); use SUM or is_weighted=False")
    if config.num_embeddings < 1 or config.embedding_dim < 1:
        raise ValueError(f"table {config.name!r}: num_embeddings and embedding_dim must be >= 1")
    return _POOLING[config.pooling]


class _Group:
    """Tables sharing (dim, pooling): their embedding names, the KJT keys they read, and their tables."""

    def __init__(self, dim: int, pooling: str):
        self.dim, self.pooling = dim, pooling
        self.tables: list[EmbeddingBagConfig] = []
        self.embedding_names: list[str] = []
        self.keys: list[str] = []
        self.key_table: list[str] = []


class EmbeddingBagCollection(EmbeddingBagCollectionInterface):
    """TorchRec's EmbeddingBagCollection (KJT in, KeyedTensor out) on ctrbench's packed, fused kernels."""

    def __init__(self, tables: list[EmbeddingBagConfig], is_weighted: bool = False,
                 device: Optional[torch.device] = None, optimizer_type: Any = None,
                 optimizer_kwargs: Optional[dict[str, Any]] = None, *, sparse_grad: bool = False,
                 backend: Optional[str] = None, deterministic: bool = True):
        super().__init__()
        if not tables:
            raise ValueError("EmbeddingBagCollection needs at least one EmbeddingBagConfig")
        names = [t.name for t in tables]
        duplicate = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if duplicate is not None:
            raise ValueError(f"Duplicate table name {duplicate}")
        self._optimizer_type, self._optimizer_kwargs = optimizer_type, dict(optimizer_kwargs or {})
        optimizer, lr, eps = fused_optimizer_spec(optimizer_type, optimizer_kwargs)
        self._is_weighted = is_weighted
        self._embedding_bag_configs = tables
        for t in tables:
            if not t.feature_names:
                t.feature_names = [t.name]  # what torchrec.EmbeddingBagCollection does, so DLRM reads them
        embedding_names = [e for per_table in get_embedding_names_by_table(tables) for e in per_table]
        self._embedding_names = embedding_names
        self._lengths_per_embedding = [t.embedding_dim for t in tables for _ in t.feature_names]
        self._groups: dict[tuple[int, str], _Group] = {}
        names_iter = iter(embedding_names)
        for t in tables:
            pooling = _check_table(t, is_weighted)
            g = self._groups.setdefault((t.embedding_dim, pooling), _Group(t.embedding_dim, pooling))
            g.tables.append(t)
            for key in t.feature_names:
                g.embedding_names.append(next(names_iter))
                g.keys.append(key)
                g.key_table.append(t.name)
        self.fused = nn.ModuleList(
            FusedEmbeddingBagCollection(
                [FusedTableConfig(t.name, t.num_embeddings, t.embedding_dim,
                                  tuple(g.embedding_names[i] for i, n in enumerate(g.key_table) if n == t.name))
                 for t in g.tables],
                pooling=g.pooling, optimizer=optimizer, lr=lr, eps=eps, sparse_grad=sparse_grad, backend=backend,
                deterministic=deterministic, device=device)
            for g in self._groups.values())
        grouped = [e for g in self._groups.values() for e in g.embedding_names]
        self._columns_in_order = grouped == embedding_names
        starts, col = {}, 0
        for e, d in zip(grouped, self._lengths_for(grouped)):
            starts[e], col = col, col + d
        perm = [starts[e] + c for e, d in zip(embedding_names, self._lengths_per_embedding) for c in range(d)]
        self.register_buffer("_column_perm", torch.tensor(perm, dtype=torch.int64, device=device), persistent=False)
        self._plans: dict[tuple[str, ...], list[Optional[list[int]]]] = {}
        self._device = self.fused[0].weight.device
        self._optim = _RowFusedOptimizer(self) if optimizer != "none" else None
        self.register_state_dict_post_hook(_save_torchrec_keys)
        self.register_load_state_dict_pre_hook(_load_torchrec_keys)
        self.reset_parameters()

    @classmethod
    def from_torchrec(cls, ebc: nn.Module, **kwargs) -> "EmbeddingBagCollection":
        """The same tables and weights as a torchrec EmbeddingBagCollection `ebc` (kwargs: optimizer_type, ...)."""
        new = cls(ebc.embedding_bag_configs(), is_weighted=ebc.is_weighted(), device=ebc.device, **kwargs)
        new.load_state_dict(ebc.state_dict())
        return new

    def _lengths_for(self, embedding_names: Sequence[str]) -> list[int]:
        width = dict(zip(self._embedding_names, self._lengths_per_embedding))
        return [width[e] for e in embedding_names]

    # ------------------------------------------------------------------ TorchRec's interface
    def embedding_bag_configs(self) -> list[EmbeddingBagConfig]:
        return self._embedding_bag_configs

    def is_weighted(self) -> bool:
        return self._is_weighted

    @property
    def device(self) -> torch.device:
        return self._device

    def optimizer_type(self) -> Any:
        return self._optimizer_type

    def optimizer_kwargs(self) -> dict[str, Any]:
        return self._optimizer_kwargs

    def fused_optimizer(self) -> FusedOptimizer:
        """lr and row-wise Adagrad state with TorchRec FusedEmbeddingBagCollection's keys (fused mode only)."""
        if self._optim is None:
            raise ValueError("this collection has no fused optimizer (optimizer_type=None)")
        return self._optim

    def set_learning_rate(self, lr: float) -> None:
        for m in self.fused:
            m.set_learning_rate(lr)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Each table through its config's init_fn (TorchRec's default: U(weight_init_min, weight_init_max))."""
        if self._device.type == "meta":
            return
        weights = self.split_embedding_weights()
        for t in self._embedding_bag_configs:
            if t.init_fn is not None:
                t.init_fn(weights[t.name])
            else:
                bound = math.sqrt(1.0 / t.num_embeddings)
                weights[t.name].uniform_(-bound, bound)
        for m in self.fused:
            m.momentum.zero_()

    def split_embedding_weights(self) -> dict[str, Tensor]:
        """{table name: view of its rows in the packed weight}."""
        return {name: w for m in self.fused for name, w in m.split_embedding_weights().items()}

    # ------------------------------------------------------------------ forward
    def _plan(self, keys: list[str]) -> list[Optional[list[int]]]:
        """Per group: the KJT key indices it reads, or None when the KJT already is that group's layout."""
        plan = self._plans.get(tuple(keys))
        if plan is None:
            where = {k: i for i, k in enumerate(keys)}
            plan = []
            for g in self._groups.values():
                missing = [k for k in g.keys if k not in where]
                if missing:
                    raise KJTInputError(f"KeyedJaggedTensor has no key {missing[0]!r} (read by table "
                                        f"{g.key_table[g.keys.index(missing[0])]!r}); its keys are {keys}",
                                        key=missing[0], table_name=g.key_table[g.keys.index(missing[0])])
                idx = [where[k] for k in g.keys]
                plan.append(None if idx == list(range(len(keys))) else idx)
            self._plans[tuple(keys)] = plan
        return plan

    def forward(self, features: KeyedJaggedTensor) -> KeyedTensor:
        if not isinstance(features, KeyedJaggedTensor):
            raise TypeError(f"EmbeddingBagCollection takes a torchrec KeyedJaggedTensor, got {type(features).__name__}")
        if features.variable_stride_per_key():
            raise KJTInputError("KeyedJaggedTensor with a variable batch size per key is not supported")
        weights = features.weights_or_none()
        if self._is_weighted and weights is None:
            raise KJTInputError("is_weighted=True but the KeyedJaggedTensor has no weights")
        keys, B = features.keys(), features.stride()
        pooled = []
        for group, idx, module in zip(self._groups.values(), self._plan(keys), self.fused):
            values, offsets, psw = _select_keys(features, idx, B, weights if self._is_weighted else None)
            try:
                pooled.append(module(values, offsets, psw))
            except EmbeddingBagInputError as err:
                raise _kjt_error(err, features, group, idx) from None
        out = pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=1)
        if not self._columns_in_order:
            out = out.index_select(1, self._column_perm)
        return KeyedTensor(keys=self._embedding_names, length_per_key=self._lengths_per_embedding, values=out)

    def extra_repr(self) -> str:
        return (f"tables={len(self._embedding_bag_configs)}, groups={len(self.fused)}, "
                f"is_weighted={self._is_weighted}, optimizer={self.fused[0].optimizer}")


def _select_keys(kjt: KeyedJaggedTensor, idx: Optional[list[int]], B: int,
                 weights: Optional[Tensor]) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """values, offsets [len(idx)*B+1] and weights of the KJT keys `idx`, in that order (None: all, as they are)."""
    if idx is None:
        return kjt.values(), kjt.offsets(), weights
    opk = kjt.offset_per_key()
    values = kjt.values()
    parts = [values[opk[i]:opk[i + 1]] for i in idx]
    lengths = kjt.lengths().view(-1, B)[torch.tensor(idx, device=values.device)].reshape(-1)
    offsets = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])
    psw = None if weights is None else torch.cat([weights[opk[i]:opk[i + 1]] for i in idx])
    return (torch.cat(parts) if len(parts) != 1 else parts[0]), offsets, psw


def _kjt_error(err: EmbeddingBagInputError, kjt: KeyedJaggedTensor, group: _Group,
               idx: Optional[list[int]]) -> EmbeddingBagInputError:
    """Re-address a bad-id error from the packed op to the KJT: its key, table, position in values(), sample."""
    if err.feature is None or err.position is None or err.value is None:
        return KJTInputError(f"bad KeyedJaggedTensor (keys {kjt.keys()}): {err}")
    f = err.feature
    key_index = f if idx is None else idx[f]
    key, table = group.keys[f], group.key_table[f]
    B = kjt.stride()
    key_lengths = kjt.lengths().view(-1, B)[key_index]
    # position within the key = position in the packed op's indices minus the start of that key's bags there
    packed_start = int(sum(kjt.length_per_key()[i] for i in (range(f) if idx is None else idx[:f])))
    in_key = err.position - packed_start
    position = kjt.offset_per_key()[key_index] + in_key
    sample = int(torch.searchsorted(key_lengths.cumsum(0), torch.tensor(in_key), right=True))
    return KJTInputError(
        f"KeyedJaggedTensor key {key!r}: id {err.value} at values()[{position}] (sample {sample}) is out of range "
        f"for table {table!r} with {err.bound} rows (valid ids 0..{err.bound - 1})",
        key=key, table_name=table, kjt_position=position, sample=sample, value=err.value, bound=err.bound)


# ---------------------------------------------------------------------- state_dict in TorchRec's keys
def _save_torchrec_keys(module: EmbeddingBagCollection, state_dict: dict, prefix: str, local_metadata) -> None:
    """Replace the packed groups' entries with one `embedding_bags.<table>.weight` view per table."""
    keep_vars = isinstance(state_dict.get(prefix + "fused.0.weight"), nn.Parameter)
    for key in [k for k in state_dict if k.startswith(prefix + "fused.")]:
        del state_dict[key]
    weights = module.split_embedding_weights()
    for t in module.embedding_bag_configs():  # TorchRec's table order
        w = weights[t.name]
        state_dict[f"{prefix}embedding_bags.{t.name}.weight"] = w if keep_vars else w.detach()


def _load_torchrec_keys(module: EmbeddingBagCollection, state_dict: dict, prefix: str, local_metadata, strict,
                        missing_keys, unexpected_keys, error_msgs) -> None:
    """Assemble each packed weight from TorchRec's per-table keys; momenta and layout buffers stay as they are."""
    for k, m in enumerate(module.fused):
        own = m.state_dict(prefix=f"{prefix}fused.{k}.", keep_vars=True)
        rows = []
        for name, current in m.split_embedding_weights().items():
            key = f"{prefix}embedding_bags.{name}.weight"
            if key not in state_dict:
                missing_keys.append(key)
                rows.append(current.detach())
                continue
            given = state_dict.pop(key)
            if tuple(given.shape) != tuple(current.shape):
                error_msgs.append(f"size mismatch for {key}: copying a param with shape {tuple(given.shape)} "
                                  f"from checkpoint, the shape in current model is {tuple(current.shape)}.")
                given = current.detach()
            rows.append(given.to(current.dtype))
        for key, value in own.items():
            state_dict.setdefault(key, value.detach())
        state_dict[f"{prefix}fused.{k}.weight"] = torch.cat(rows) if len(rows) > 1 else rows[0]


class _RowFusedOptimizer(FusedOptimizer):
    """The fused update's knobs as a TorchRec KeyedOptimizer: lr in param_groups, `<table>.weight.momentum_1`."""

    def __init__(self, ebc: EmbeddingBagCollection):
        self._ebc = ebc
        params, state = {}, {}
        for m in ebc.fused:
            to = m.table_offsets.tolist()
            for k, (name, w) in enumerate(m.split_embedding_weights().items()):
                params[f"{name}.weight"] = w
                if m.optimizer == "rowwise_adagrad":  # SGD has no state (FBGEMM's EXACT_SGD neither)
                    state[w] = {f"{name}.weight.momentum_1": m.momentum[to[k]:to[k + 1]]}
        super().__init__(params, state, [{"params": list(params.values()), "lr": ebc.fused[0].lr}])

    def zero_grad(self, set_to_none: bool = False) -> None:
        self._ebc.set_learning_rate(self.param_groups[0]["lr"])

    def step(self, closure: Any = None) -> None:
        self._ebc.set_learning_rate(self.param_groups[0]["lr"])
