"""Shared inputs for the embedding_bag_collection tests: small random TBE/KJT cases and the comparisons."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ctrbench.kernels.embedding_bag import reference as ref
from ctrbench.kernels.embedding_bag import op as ebc_op


@dataclass
class Case:
    weights: torch.Tensor
    table_offsets: torch.Tensor
    indices: torch.Tensor
    offsets: torch.Tensor
    psw: torch.Tensor | None
    feature_table: torch.Tensor | None
    pooling: str

    @property
    def F(self):
        return self.feature_table.shape[0] if self.feature_table is not None else self.table_offsets.shape[0] - 1

    @property
    def B(self):
        return (self.offsets.shape[0] - 1) // self.F

    @property
    def D(self):
        return self.weights.shape[1]


def make_case(rows=(4, 9, 1), B=5, D=7, max_len=3, seed=0, idx_dtype=torch.int64, psw=False, pooling="sum",
              feature_table=None, dtype=torch.float32, lengths=None, dup=False, last_row=False, device="cpu") -> Case:
    """Random case on `device`: tables with `rows` rows, F features (feature_table or one per table), B bags each."""
    g = torch.Generator().manual_seed(seed)
    to = torch.tensor([0] + list(rows), dtype=torch.int64).cumsum(0)
    ft = torch.tensor(feature_table, dtype=torch.int64) if feature_table is not None else None
    F = len(feature_table) if feature_table is not None else len(rows)
    W = torch.randn(int(to[-1]), D, generator=g, dtype=dtype)
    if lengths is None:
        lengths = torch.randint(0, max_len + 1, (F * B,), generator=g)
    lengths = torch.as_tensor(lengths, dtype=torch.int64)
    offs = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    ids = []
    for f in range(F):
        t = int(ft[f]) if ft is not None else f
        n = int(lengths[f * B:(f + 1) * B].sum())
        r = int(rows[t])
        if last_row:
            ids.append(torch.full((n,), r - 1, dtype=torch.int64))
        elif dup:
            ids.append(torch.randint(0, min(r, 2), (n,), generator=g))
        else:
            ids.append(torch.randint(0, r, (n,), generator=g))
    idx = torch.cat(ids).to(idx_dtype) if ids else torch.zeros(0, dtype=idx_dtype)
    p = torch.rand(idx.shape[0], generator=g, dtype=dtype) if psw else None
    on = lambda t: None if t is None else t.to(device)  # noqa: E731
    return Case(on(W), on(to), on(idx), on(offs.to(idx_dtype)), on(p), on(ft), pooling)


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)


def check_backend(c: Case, backend: str, steps: int = 2) -> None:
    """Forward, row-wise sparse grads, psw grads and both fused updates of `backend` equal the reference."""
    kw = dict(feature_table=c.feature_table, pooling=c.pooling)
    t = tol(c.weights.dtype)
    out = ebc_op.embedding_bag_collection(c.weights, c.table_offsets, c.indices, c.offsets, c.psw, backend=backend, **kw)
    want = ref.forward(c.weights, c.table_offsets, c.indices, c.offsets, c.psw, c.pooling, c.feature_table)
    torch.testing.assert_close(out, want, **t)
    assert out.shape == (c.B, c.F * c.D)
    g = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1)).to(out.device)
    rows, grads = ebc_op.grad_rows(g, c.table_offsets, c.indices, c.offsets, c.psw, backend=backend, **kw)
    rows_r, grads_r = ref.grad_rows(g, c.table_offsets, c.indices, c.offsets, c.psw, c.pooling, c.feature_table)
    assert torch.equal(rows, rows_r)
    torch.testing.assert_close(grads, grads_r, **t)
    if c.psw is not None:
        pg = ebc_op.ebc_psw_grad(g, c.weights, c.table_offsets, c.indices, c.offsets, c.feature_table, c.pooling,
                                 backend)
        torch.testing.assert_close(pg, ref.psw_grad(g, c.weights, c.table_offsets, c.indices, c.offsets, c.pooling,
                                                    c.feature_table), **t)
    mdtype = torch.float64 if c.weights.dtype == torch.float64 else torch.float32
    for opt in ("sgd", "rowwise_adagrad"):
        w1, w2 = c.weights.clone(), c.weights.clone()
        m1 = torch.rand(c.weights.shape[0], dtype=mdtype, generator=torch.Generator().manual_seed(2)).to(out.device)
        m2 = m1.clone()
        for step in range(steps):
            gs = g * (step + 1)
            ebc_op.fused_update_(w1, m1, gs, c.table_offsets, c.indices, c.offsets, c.psw, optimizer=opt, lr=0.1,
                                 eps=1e-6, backend=backend, **kw)
            ref.fused_update_(w2, m2, gs, c.table_offsets, c.indices, c.offsets, c.psw, c.pooling, c.feature_table,
                              opt, 0.1, 1e-6)
        torch.testing.assert_close(w1, w2, **t)
        if opt == "rowwise_adagrad":
            torch.testing.assert_close(m1, m2, **t)


# ---------------------------------------------------------------------------------------- bad input

def bad_inputs():
    """(name, case, changed inputs, expected message) for the bad-input tests of the op and its helpers."""
    c = make_case(rows=(4, 9, 1), B=5, D=3, lengths=[1] * 15)
    yield "id_too_large", c, dict(indices=c.indices.clone().index_fill_(0, torch.tensor([7]), 9)), "indices[7] = 9"
    yield "id_negative", c, dict(indices=c.indices.clone().index_fill_(0, torch.tensor([2]), -1)), "indices[2] = -1"
    yield "id_last_table", c, dict(indices=c.indices.clone().index_fill_(0, torch.tensor([14]), 1)), "table 2"
    bad = c.offsets.clone()
    bad[5] = 3  # offsets[5] < offsets[4] = 4
    yield "offsets_not_monotone", c, dict(offsets=bad), "non-decreasing"
    yield "offsets_last_wrong", c, dict(offsets=torch.cat([c.offsets[:-1], c.offsets[-1:] + 1])), "must equal len(indices)"
    yield "offsets_first_wrong", c, dict(offsets=c.offsets + 1), "offsets[0]"
    yield "offsets_len_wrong", c, dict(offsets=c.offsets[:-1]), "F*B+1"
    yield "indices_float", c, dict(indices=c.indices.float()), "int32 or int64"
    yield "offsets_2d", c, dict(offsets=c.offsets[None]), "1-D"
    yield "psw_len_wrong", c, dict(per_sample_weights=torch.ones(3)), "per_sample_weights"
    yield "device_mismatch", c, dict(indices=c.indices.to("meta")), "device"
    yield "weights_int", c, dict(weights=c.weights.long()), "weights dtype"


HELPERS = ("grad_rows", "fused_update_sgd", "fused_update_rowwise_adagrad")


def call_helper(helper: str, backend: str, c: Case, change: dict, weights: torch.Tensor | None = None):
    """Call ebc_op.grad_rows or ebc_op.fused_update_ on case `c` with the inputs in `change` replaced."""
    args = dict(weights=c.weights if weights is None else weights, table_offsets=c.table_offsets,
                indices=c.indices, offsets=c.offsets, per_sample_weights=None,
                grad_out=torch.ones(c.B, c.F * c.D, dtype=c.weights.dtype, device=c.weights.device))
    args.update(change)
    ids = (args["table_offsets"], args["indices"], args["offsets"], args["per_sample_weights"])
    if helper == "grad_rows":
        return ebc_op.grad_rows(args["grad_out"], *ids, backend=backend)
    momentum = torch.zeros(args["weights"].shape[0], device=args["weights"].device)
    optimizer = helper.removeprefix("fused_update_")
    return ebc_op.fused_update_(args["weights"], momentum, args["grad_out"], *ids, optimizer=optimizer,
                                backend=backend)
