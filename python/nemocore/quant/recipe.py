"""Low-precision training recipes and the converter that applies them (model.md section 6).

``Recipe("nvfp4")`` follows NVIDIA's NVFP4 pretraining recipe (Transformer Engine's
``NVFP4BlockScaling``): every GEMM of a converted linear layer (Fprop, Dgrad, Wgrad) sees NVFP4
operands; weights use 16x16 blocks (so the forward and the transposed backward copy hold the
same numbers), activations and gradients 1x16 blocks along the reduction dim; gradients round
stochastically; both Wgrad operands get the 16-point random Hadamard transform.
``Recipe("fp8")`` is Nemotron-H's per-tensor current scaling, E4M3 everywhere (or E5M2 for
gradients with ``fp8_format="hybrid"``). ``Recipe("bf16")`` rounds GEMM operands to bf16: the
baseline the other two are compared with on the same code path.

Layers kept in high precision: embeddings, norms, the SSM scan and attention are never
``nn.Linear`` and are left alone; among ``nn.Linear`` modules, names matching ``keep_bf16``
(default: the LM head and MoE routers) and the first / last blocks (``first_blocks_bf16`` /
``last_blocks_bf16``, a block being the number after ``block_pattern``'s match in the module
name, e.g. ``layers.3.mixer.in_proj``) stay plain. Master weights stay FP32 parameters (the
optimizer state follows them); quantization happens on the fly in each GEMM.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re

import torch
from torch import nn

FORMATS = ("bf16", "fp8", "nvfp4")


@dataclasses.dataclass
class Recipe:
    """A low-precision recipe; unknown formats or options are errors.

    format: ``"bf16"``, ``"fp8"`` or ``"nvfp4"``.
    disable_rht / disable_stochastic_rounding / disable_2d_quantization: NVFP4 switches
        (Transformer Engine's names).
    hadamard_seed: None -> Transformer Engine's fixed sign vector; an int -> seeded random
        signs, fixed for the run (the paper reports one fixed seed is enough).
    seed: seeds the generator that drives stochastic rounding (reproducible runs).
    fp8_format: ``"e4m3"`` (all tensors, Nemotron-H) or ``"hybrid"`` (E5M2 gradients).
    compat: NVFP4 arithmetic convention, ``"te"`` or ``"torchao"`` (see nemocore.ref.quant).
    keep_bf16: fnmatch patterns of ``nn.Linear`` module names that stay in high precision.
    first_blocks_bf16 / last_blocks_bf16: leading / trailing blocks kept in high precision.
    """

    format: str
    disable_rht: bool = False
    disable_stochastic_rounding: bool = False
    disable_2d_quantization: bool = False
    hadamard_seed: int | None = None
    seed: int = 0
    fp8_format: str = "e4m3"
    compat: str = "te"
    keep_bf16: tuple[str, ...] = ("lm_head", "*.lm_head", "*router*", "*gate")
    first_blocks_bf16: int = 0
    last_blocks_bf16: int = 0
    block_pattern: str = r"(?:^|\.)(?:layers|blocks|h)\.(\d+)\."

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"Recipe.format: expected one of {FORMATS}, got {self.format!r}")
        if self.fp8_format not in ("e4m3", "hybrid"):
            raise ValueError(
                f"Recipe.fp8_format: expected 'e4m3' or 'hybrid', got {self.fp8_format!r}"
            )
        if self.compat not in ("te", "torchao"):
            raise ValueError(f"Recipe.compat: expected 'te' or 'torchao', got {self.compat!r}")
        if self.first_blocks_bf16 < 0 or self.last_blocks_bf16 < 0:
            raise ValueError("Recipe.first_blocks_bf16 / last_blocks_bf16 must be >= 0")
        self.keep_bf16 = tuple(self.keep_bf16)
        self.generator = torch.Generator().manual_seed(self.seed)

    @property
    def hadamard(self):
        """What ``nvfp4_quantize(hadamard=...)`` gets for Wgrad operands."""
        if self.disable_rht:
            return False
        return True if self.hadamard_seed is None else self.hadamard_seed


def _block_index(name: str, pattern: str) -> int | None:
    match = re.search(pattern, name)
    return int(match.group(1)) if match else None


def quantized_layer_names(model: nn.Module, recipe: Recipe) -> list[str]:
    """Names of the ``nn.Linear`` modules ``convert`` would quantize, in module order."""
    linears = [(n, m) for n, m in model.named_modules() if type(m) is nn.Linear]
    blocks = sorted(
        {b for n, _ in linears if (b := _block_index(n, recipe.block_pattern)) is not None}
    )
    kept_blocks = set(blocks[: recipe.first_blocks_bf16])
    if recipe.last_blocks_bf16:
        kept_blocks |= set(blocks[-recipe.last_blocks_bf16 :])
    names = []
    for name, _ in linears:
        if any(fnmatch.fnmatch(name, p) for p in recipe.keep_bf16):
            continue
        if _block_index(name, recipe.block_pattern) in kept_blocks:
            continue
        names.append(name)
    return names


def convert(model: nn.Module, recipe: Recipe) -> nn.Module:
    """Swap the quantizable ``nn.Linear`` layers of ``model`` (in place) for ``QuantLinear``
    layers that share their FP32 weight and bias parameters, and return the model."""
    from nemocore.quant.linear import QuantLinear

    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe: expected a nemocore.quant.Recipe, got {type(recipe).__name__}")
    for name in quantized_layer_names(model, recipe):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, QuantLinear.from_linear(getattr(parent, child), recipe))
    return model
