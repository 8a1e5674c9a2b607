"""Model building blocks that run on ``nemocore.ops``: one short class per layer."""

from nemocore.layers.moe import MLP, GroupedExperts, LatentMoE, MoE, MoEConfig
from nemocore.layers.router import RouterOutput, TopKRouter, update_router_biases

__all__ = [
    "MLP",
    "GroupedExperts",
    "LatentMoE",
    "MoE",
    "MoEConfig",
    "RouterOutput",
    "TopKRouter",
    "update_router_biases",
]
