"""entropy_weighted_fusion: CETNet's confidence-weighted fusion of K member predictions, four backends.

    fused, weights = entropy_weighted_fusion(logits [B, K], tau, space="prob" | "logit")
"""
from ctrbench.kernels.entropy_fusion.checks import FusionInputError  # noqa: F401
from ctrbench.kernels.entropy_fusion.module import EntropyWeightedFusion  # noqa: F401
from ctrbench.kernels.entropy_fusion.op import entropy_weighted_fusion, to_logit  # noqa: F401
from ctrbench.kernels.entropy_fusion.reference import entropy_weighted_fusion_reference  # noqa: F401
