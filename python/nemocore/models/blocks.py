"""RMSNorm and the pre-norm residual block ``x + mixer(norm(x))`` (model.md 3.1, section 1).

A Nemotron-H block has exactly one mixer, chosen by its pattern character: ``M`` Mamba-2,
``*`` attention, ``-`` squared-ReLU MLP, ``E`` MoE / LatentMoE (``nemocore.layers``). MLP and
MoE are blocks of their own, not a second half of an attention block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nemocore.layers import MLP, MoE
from nemocore.models.attention import Attention
from nemocore.models.config import NemotronHConfig
from nemocore.models.mamba2 import Mamba2Mixer


class RMSNorm(nn.Module):
    """``w * x / sqrt(mean(x^2) + eps)`` in float32, the weight multiply in float32 too, then
    cast to the input dtype (transformers' order, which matters in bf16)."""

    def __init__(self, width: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # one fused aten op (fewer dispatches per decode step than the textbook five)
        return F.rms_norm(x.float(), self.weight.shape, self.weight.float(), self.eps).to(x.dtype)


def make_mixer(char: str, config: NemotronHConfig, layer_idx: int | None) -> nn.Module:
    if char == "M":
        return Mamba2Mixer(config, layer_idx)
    if char == "*":
        return Attention(config, layer_idx)
    if char == "-":
        return MLP(config.hidden_size, config.intermediate_size, config.mlp_bias)
    if char == "E":
        return MoE(config.moe_config())
    raise ValueError(f"unknown block character {char!r}; use M, *, - or E")


class Block(nn.Module):
    """One layer: ``x + mixer(norm(x))``. ``layer_idx`` is the layer's slot in the cache
    (None for blocks that never decode with a cache, such as MTP blocks)."""

    def __init__(self, char: str, config: NemotronHConfig, layer_idx: int | None) -> None:
        super().__init__()
        self.char = char
        self.norm = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.mixer = make_mixer(char, config, layer_idx)
        self.use_reference = False  # MoE: run the plain-torch expert loop (reference.py)

    @property
    def has_state(self) -> bool:
        return self.char in "M*"

    def forward(self, x: Tensor, mask: Tensor | None = None, cache=None) -> Tensor:
        """x: (b, L, d); mask: (b, L) or None -> (b, L, d)."""
        u = self.norm(x.to(self.norm.weight.dtype))
        if self.has_state:
            return x + self.mixer(u, mask, cache)
        if self.use_reference and self.char == "E":
            return x + self.mixer.reference_forward(u)
        return x + self.mixer(u)

    def step(self, x: Tensor, cache) -> Tensor:
        """One decoding step, x: (b, 1, d) -> (b, 1, d)."""
        u = self.norm(x.to(self.norm.weight.dtype))
        if self.has_state:
            return x + self.mixer.step(u, cache)
        return x + self.mixer(u)
