"""entropy_weighted_fusion: CETNet's confidence-weighted fusion of K member predictions, four backends.

    fused, weights = entropy_weighted_fusion(logits [B, K], tau, space="prob" | "logit",
                                             detach_weights=False, eps=1e-6, backend=None)

Decisions (definition and tests: reference.py, tests/kernels/test_entropy_fusion*.py):
- members' logits are clamped to ±L = ±log((1-eps)/eps), i.e. p to [eps, 1-eps]: finite values and gradients
  for any input, ±inf included (clamped members get zero gradient, as with torch.clamp);
- `fused` is returned in the chosen space: a probability in [eps, 1-eps] (space="prob") or a logit in
  [-L, L] (space="logit"); `to_logit(fused, space)` gives a finite logit for BCE-with-logits;
- a NaN logit makes its row's fused value and weights NaN; other rows are unaffected;
- tau is a 0-d tensor (learnable: gradients flow to it unless detach_weights); on CPU a non-positive or
  non-finite tau raises FusionInputError, on CUDA (where reading it would sync) the kernels return NaN;
- bad arguments raise FusionInputError (a ValueError) naming the argument.
"""
from ctrbench.kernels.entropy_fusion.checks import FusionInputError  # noqa: F401
from ctrbench.kernels.entropy_fusion.module import EntropyWeightedFusion  # noqa: F401
from ctrbench.kernels.entropy_fusion.op import entropy_weighted_fusion, to_logit  # noqa: F401
from ctrbench.kernels.entropy_fusion.reference import entropy_weighted_fusion_reference  # noqa: F401
