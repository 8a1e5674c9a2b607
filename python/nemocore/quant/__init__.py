"""Low-precision formats and training recipes: NVFP4 and FP8 (kernels.md section 4, model.md
section 6).

- ``nvfp4_quantize(x, ...)`` -> ``NVFP4Tensor`` (packed E2M1 codes, E4M3 block scales, FP32
  tensor scale; layout documented on the class), ``NVFP4Tensor.dequantize()``, ``nvfp4_mm``.
- ``fp8_quantize(x, fmt, scaling, block)`` -> ``FP8Tensor``, ``fp8_mm``.
- ``Recipe("bf16" | "fp8" | "nvfp4", ...)`` and ``convert(model, recipe)``: swap ``nn.Linear``
  layers for ``QuantLinear`` (fake-quantized GEMMs with a hand-written backward).
- ``formats``: E2M1/E4M3 tables, nibble packing, the swizzled (cuBLAS) scale layout;
  ``hadamard``: the 16-point random Hadamard transform.
"""

from nemocore.quant import formats, hadamard
from nemocore.quant.fp8 import fp8_mm, fp8_quantize
from nemocore.quant.linear import QuantLinear, QuantLinearFunction
from nemocore.quant.nvfp4 import nvfp4_mm, nvfp4_quantize
from nemocore.quant.recipe import Recipe, convert, quantized_layer_names
from nemocore.quant.tensor import FP8Tensor, NVFP4Tensor

__all__ = [
    "FP8Tensor",
    "NVFP4Tensor",
    "QuantLinear",
    "QuantLinearFunction",
    "Recipe",
    "convert",
    "formats",
    "fp8_mm",
    "fp8_quantize",
    "hadamard",
    "nvfp4_mm",
    "nvfp4_quantize",
    "quantized_layer_names",
]
