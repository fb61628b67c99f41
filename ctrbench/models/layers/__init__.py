"""Shared building blocks of the CTR models: MLP, cross networks, FM, dot interaction, masked pooling."""
from ctrbench.models.layers.cross import CrossNetMix, CrossNetV2  # noqa: F401
from ctrbench.models.layers.fm import FMInteraction  # noqa: F401
from ctrbench.models.layers.interaction import DotInteraction  # noqa: F401
from ctrbench.models.layers.mlp import MLP  # noqa: F401
from ctrbench.models.layers.pooling import MaskedAveragePooling, masked_average_pool  # noqa: F401
