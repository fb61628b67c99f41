"""FLOPs of a model step, counted by `torch.utils.flop_counter.FlopCounterMode` with ctrbench's rules.

Convention (what `count_flops` and so every run record's flops_* fields count):
- A multiply-add is 2 FLOPs, as torch's flop counter counts matmuls (mm/addmm/bmm/conv/attention; a bias
  folded into addmm is not counted). Backward FLOPs are what the backward's ops count: torch's formulas
  for the matmuls, ours below for the rest.
- Element-wise arithmetic on floating tensors (add, sub, mul, div, pow, in place or not) counts 1 FLOP per
  output element, a sum (k-1) per k summed elements, a mean k. This is how FM's and LR's interactions,
  cross/Hadamard products and residual adds get counted. Activations, softmax, normalisation, dropout,
  the loss and comparisons count 0 (torch's counter has no formula for them; we add none).
- A lookup counts 1 FLOP per element it reads (rows x dim), pooled or not, weighted or not: the add that pools
  it into its bag, counted for a plain gather (F.embedding) too, and per-sample weights or mean pooling's
  divide are not counted apart, so the torch path (mean pooling) and the fused one (the mean as per-sample
  weights 1/n) count the same lookup alike. The weight gradient counts the same (its scatter-add; a plain
  gather's sparse gradient, F.embedding(sparse=True), copies rows and counts 0); a per-sample-weight gradient
  2 per element (a dot product). Counted on shapes: padding ids passed to a lookup count. The fused
  optimizer's row update inside the backward is not counted (no optimizer step is).
- Interleaved attention counts torch's scaled-dot-product formulas (2 matmuls forward, 5 backward, the
  padded slots included) plus 3 FLOPs per rotated element when rope is on (2 multiplies and an add).
- Entropy-weighted fusion counts per member logit 7 FLOPs forward (confidence 4, /tau 1, weighted sum 2;
  sigmoid/log/softmax 0) and 13 backward (4 with detached weights; +1 with a weights gradient, +2 for tau's).

Where each rule lives: the formulas of the ctrbench compute ops (interleaved attention, entropy fusion) go
into torch's registry (`register_flop_formula`), so any FlopCounterMode counts them; the lookup and element-wise
rules, for torch's ops and the embedding-bag collection's alike, are applied by `flop_counter_mode()` (what
`count_flops` uses) only. So a bare FlopCounterMode still counts what torch counts (matmuls, which the NASRec
space's analytic FLOPs match) plus the compute ops, never one embedding path's lookups but not the other's,
and importing ctrbench does not change what it counts for a user's own model. The eager path of entropy fusion
bypasses its custom op: it is counted through the C++/CUDA ops it calls; its reference and Triton backends are
counted by their torch ops (reference, under the rules) or not at all (Triton).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.utils import flop_counter

import ctrbench.kernels  # noqa: F401  (registers every torch.ops.ctrbench op)
from ctrbench.kernels.backend import load_extension

FLOPS_NOTE = ("multiply-add = 2; element-wise arithmetic 1 per element; lookups 1 per element read; "
              "activations, softmax, normalisation and the optimizer step 0 (ctrbench.flops)")


def register_flop_formula(op, fn: Callable | None = None, *, get_raw: bool = False):
    """Give FlopCounterMode a FLOP formula for a (custom) op. `fn(*arg_shapes, out_shape=..., **kwargs) -> int`
    as torch.utils.flop_counter expects; usable as `register_flop_formula(op, fn)` or as a decorator."""

    packet = op.overloadpacket if isinstance(op, torch._ops.OpOverload) else op  # torch wants the packet

    def deco(f: Callable) -> Callable:
        return flop_counter.register_flop_formula(packet, get_raw=get_raw)(f)

    return deco if fn is None else deco(fn)


def flop_counter_mode() -> flop_counter.FlopCounterMode:
    """A FlopCounterMode (display off) that applies ctrbench's lookup and element-wise rules on top of the
    registered formulas: what count_flops counts with."""
    return flop_counter.FlopCounterMode(display=False, custom_mapping=_COUNTING_RULES)


def count_flops_by_op(model: torch.nn.Module, batch, *, train: bool) -> dict[str, int]:
    """{op: FLOPs} of one forward (train=False) or forward + loss + backward (train=True) on `batch`."""
    was = model.training
    model.train(train)
    counter = flop_counter_mode()
    try:
        if train:
            with counter:
                loss = model.loss(model(batch), batch)
                loss.backward()
            model.zero_grad(set_to_none=True)
        else:  # grad mode on: under no_grad the counter's module tracker trips over views of parameters
            with counter:
                model(batch)
    finally:
        model.train(was)
    return {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items() if n}


def count_flops(model: torch.nn.Module, batch, *, train: bool) -> int:
    """FLOPs of one forward (train=False) or forward + loss + backward (train=True) on `batch`."""
    return sum(count_flops_by_op(model, batch, train=train).values())


# ------------------------------------------------------------------------------------ shared counts

def lookup_flops(n_rows: int, dim: int) -> int:
    """A lookup of n_rows rows of `dim`, or its weight gradient (see the module docstring): 1 per element."""
    return n_rows * dim


def _numel(shape) -> int:
    return math.prod(shape)


# ------------------------------------------------------------------------------------ counting rules
# Lookups and element-wise arithmetic: applied by flop_counter_mode() (FlopCounterMode's custom_mapping), not
# registered in torch's registry; raw formulas (FlopCounterMode passes them tensors: they read dtypes).

_COUNTING_RULES: dict = {}


def _counting_rule(*packets):
    def deco(f: Callable) -> Callable:
        f._get_raw = True  # FlopCounterMode passes tensors (not shapes) to a formula so marked
        for p in packets:
            _COUNTING_RULES[p] = f
        return f

    return deco


def _floating(t) -> bool:
    return isinstance(t, torch.Tensor) and t.is_floating_point()


aten = torch.ops.aten


@_counting_rule(aten.add, aten.add_, aten.sub, aten.sub_, aten.rsub, aten.mul, aten.mul_, aten.div, aten.div_,
             aten.pow)
def _elementwise(*args, out_val=None, **kwargs) -> int:
    return out_val.numel() if _floating(out_val) else 0


@_counting_rule(aten.sum)
def _sum(x, *args, out_val=None, **kwargs) -> int:
    return max(x.numel() - out_val.numel(), 0) if _floating(out_val) else 0


@_counting_rule(aten.mean)
def _mean(x, *args, out_val=None, **kwargs) -> int:
    return x.numel() if _floating(out_val) else 0


@_counting_rule(aten.embedding)
def _embedding(weight, indices, *args, out_val=None, **kwargs) -> int:
    return lookup_flops(indices.numel(), weight.shape[-1])


@_counting_rule(aten.embedding_dense_backward)
def _embedding_backward(grad_output, indices, *args, out_val=None, **kwargs) -> int:
    return lookup_flops(indices.numel(), grad_output.shape[-1])


@_counting_rule(aten._embedding_bag, aten._embedding_bag_forward_only)
def _embedding_bag(weight, indices, *args, out_val=None, **kwargs) -> int:
    return lookup_flops(indices.numel(), weight.shape[1])


@_counting_rule(aten._embedding_bag_backward, aten._embedding_bag_dense_backward, aten._embedding_bag_sparse_backward)
def _embedding_bag_backward(grad, indices, *args, out_val=None, **kwargs) -> int:
    return lookup_flops(indices.numel(), grad.shape[1])


@_counting_rule(aten._embedding_bag_per_sample_weights_backward)
def _embedding_bag_psw_backward(grad, weight, indices, *args, out_val=None, **kwargs) -> int:
    return 2 * indices.numel() * weight.shape[1]


ops = torch.ops.ctrbench


@_counting_rule(ops.embedding_bag_collection)
def _ebc_forward(weights, table_offsets, indices, *args, out_val=None, **kw) -> int:
    return lookup_flops(indices.numel(), weights.shape[1])


@_counting_rule(ops.embedding_bag_collection_fused)
def _ebc_fused_forward(weights, momentum, table_offsets, indices, *args, out_val=None, **kw) -> int:
    return lookup_flops(indices.numel(), weights.shape[1])


@_counting_rule(ops.ebc_fused_update)  # its gradient part: the row update is an optimizer step
def _ebc_fused_update(weights, momentum, grad_out, table_offsets, indices, *args, out_val=None, **kw) -> int:
    return lookup_flops(indices.numel(), weights.shape[1])


@_counting_rule(ops.ebc_grad_rows)
def _ebc_grad_rows(grad_out, table_offsets, indices, *args, out_val=None, **kw) -> int:
    return lookup_flops(indices.numel(), out_val[1].shape[1])  # out: (rows, gradient per row [U, D])


@_counting_rule(ops.ebc_psw_grad)
def _ebc_psw_grad(grad_out, weights, table_offsets, indices, *args, out_val=None, **kw) -> int:
    return 2 * indices.numel() * weights.shape[1]


# ------------------------------------------------------------------------------------ ctrbench compute ops
# Registered in torch's registry: formulas get shapes (None for an absent optional tensor).

ROPE_FLOPS_PER_ELEMENT = 3  # rot(x) = [x1 cos - x2 sin | x2 cos + x1 sin]: 2 multiplies and an add


def _rope_flops(q, k, rope: bool, separate_queries: bool) -> int:
    if not rope:
        return 0
    return ROPE_FLOPS_PER_ELEMENT * (_numel(k) + (0 if separate_queries else _numel(q)))


def attention_forward_flops(q, k, v, lengths, num_prefix, rope, rope_base, scale, separate_queries, *args,
                            out_shape=None, **kw) -> int:
    """interleaved_attention forward on shapes: q @ k^T and p @ v (torch's sdpa formula) + the rotations."""
    return flop_counter.sdpa_flop_count(q, k, v) + _rope_flops(q, k, rope, separate_queries)


def attention_backward_flops(grad_out, q, k, v, lengths, num_prefix, rope, rope_base, scale, separate_queries,
                             *args, out_shape=None, **kw) -> int:
    """interleaved_attention backward: torch's sdpa backward formula + un-rotating dq and dk."""
    return flop_counter.sdpa_backward_flop_count(grad_out, q, k, v) + _rope_flops(q, k, rope, separate_queries)


FUSION_FORWARD_PER_LOGIT = 7  # c = p·log p + (1-p)·log(1-p): 4; c / tau: 1; Σ_k w_k v_k: 2


def fusion_forward_flops(logits, tau, *args, out_shape=None, **kw) -> int:
    """entropy_weighted_fusion forward on shapes: FUSION_FORWARD_PER_LOGIT per member logit."""
    return FUSION_FORWARD_PER_LOGIT * _numel(logits)


def fusion_backward_flops(logits, grad_weights, detach_weights: bool, need_tau_grad: bool) -> int:
    """The closed-form backward (kernels/entropy_fusion/reference.py), per member logit: p(1-p) 2 and
    grad_fused·w·v' 2; with live weights also dz = w(g - Σ w g) with g = grad_fused·v (5, +1 adding a weights
    gradient) and dz/tau·x̂·p(1-p) added (4); tau's gradient Σ dz·c 2 more."""
    per = 4
    if not detach_weights:
        per += 9 + (grad_weights is not None) + 2 * bool(need_tau_grad)
    return per * _numel(logits)


register_flop_formula(ops.interleaved_attention, attention_forward_flops)
register_flop_formula(ops.interleaved_attention_backward, attention_backward_flops)
register_flop_formula(ops.entropy_weighted_fusion, fusion_forward_flops)


@register_flop_formula(ops.entropy_weighted_fusion_backward)
def _fusion_backward_op(logits, tau, weights, grad_fused, grad_weights, space, detach_weights, eps, need_tau_grad,
                        *args, out_shape=None, **kw) -> int:
    return fusion_backward_flops(logits, grad_weights, detach_weights, need_tau_grad)


def _register_extension_ops() -> None:
    """The C++/CUDA kernels' own ops, when built: the eager entropy-fusion path calls them directly."""
    if load_extension()[0] is None:
        return

    def fusion_backward_ext(logits, tau, weights, grad_fused, grad_weights, space, detach_weights, need_tau_grad,
                            *args, out_shape=None, **kw) -> int:
        return fusion_backward_flops(logits, grad_weights, detach_weights, need_tau_grad)

    register_flop_formula(ops._entropy_fusion_fwd, fusion_forward_flops)
    register_flop_formula(ops._entropy_fusion_bwd, fusion_backward_ext)
    register_flop_formula(ops._interleaved_attention_fwd, attention_forward_flops)
    register_flop_formula(ops._interleaved_attention_bwd, attention_backward_flops)


_register_extension_ops()
