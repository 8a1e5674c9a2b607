"""Switch a model onto nemocore's pure-PyTorch references (``nemocore.ref``): the same model,
every op replaced by its readable reference, for whole-model checks of the fast ops (forward,
backward and optimizer steps; tests/models/test_training.py).

    ref_model = use_reference_ops(copy.deepcopy(model))
"""

from __future__ import annotations

from torch import nn

from nemocore.models.attention import Attention
from nemocore.models.backends import REFERENCE_OPS
from nemocore.models.blocks import Block
from nemocore.models.mamba2 import Mamba2Mixer


def use_reference_ops(model: nn.Module) -> nn.Module:
    """Makes every Mamba and attention mixer call ``nemocore.ref`` and every MoE run its
    plain-torch expert loop; returns ``model``."""
    for m in model.modules():
        if isinstance(m, (Mamba2Mixer, Attention)):
            m.ops = REFERENCE_OPS
        elif isinstance(m, Block):
            m.use_reference = True
    return model
