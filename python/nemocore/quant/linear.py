"""``QuantLinear``: a linear layer whose three GEMMs see low-precision operands (model.md 6).

The GEMMs are emulated ("fake quantization"): each operand is quantized exactly as the recipe
says, dequantized, and multiplied in fp32, so the numbers equal those of a real low-precision
GEMM up to fp32 accumulation order (an NVFP4 or FP8 value times its scales is exact in fp32).
This runs on any device; Hopper has no FP4 tensor cores anyway (kernels.md 4.10).

For y = x W^T + b, x: (T, K) tokens, W: (N, K), dy: (T, N):
    Fprop  y  = Q_in(x)  @ Q_w(W)^T          reduction over K
    Dgrad  dx = Q_g(dy)  @ Q_w'(W)           reduction over N
    Wgrad  dW = Q_g'(dy^T) @ Q_in'(x^T)^T    reduction over T
NVFP4: Q_in 1x16 RNE; Q_w 16x16 RNE (Q_w' the same numbers, or a 1x16 copy along N with
``disable_2d_quantization``); Q_g 1x16 stochastic rounding; Q_g' and Q_in' blocked along T with
the random Hadamard transform (the rotation cancels in the product) and, for Q_g', stochastic
rounding. FP8: per-tensor current scaling, E4M3 (E5M2 gradients in "hybrid"). BF16: operands
rounded to bf16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nemocore.quant.fp8 import fp8_quantize
from nemocore.quant.nvfp4 import nvfp4_quantize
from nemocore.quant.recipe import Recipe


def _nvfp4(t: Tensor, recipe: Recipe, *, block_2d=False, sr=False, rht=False) -> Tensor:
    """t quantized along its last dim and dequantized to fp32 (rotated basis with rht)."""
    sr = sr and not recipe.disable_stochastic_rounding
    hadamard = recipe.hadamard if rht else False
    q = nvfp4_quantize(
        t, block_2d=block_2d, stochastic_rounding=sr,
        generator=recipe.generator if sr else None, hadamard=hadamard, compat=recipe.compat,
    )  # fmt: skip
    return q.dequantize(torch.float32, rotated=hadamard is not False)


def _fp8(t: Tensor, recipe: Recipe, grad: bool) -> Tensor:
    fmt = "e5m2" if grad and recipe.fp8_format == "hybrid" else "e4m3"
    return fp8_quantize(t, fmt, "tensor").dequantize(torch.float32)


def quantize_operand(t: Tensor, recipe: Recipe, role: str) -> Tensor:
    """fp32 fake-quantized copy of one GEMM operand, quantized along its last dim.

    role: "input", "weight" (Fprop, Dgrad), "grad" (Dgrad), "wgrad_grad", "wgrad_input".
    """
    if recipe.format == "bf16":
        return t.to(torch.bfloat16).to(torch.float32)
    grad = role in ("grad", "wgrad_grad")
    if recipe.format == "fp8":
        return _fp8(t, recipe, grad)
    if role == "weight":
        return _nvfp4(t, recipe, block_2d=not recipe.disable_2d_quantization)
    return _nvfp4(t, recipe, sr=grad, rht=role.startswith("wgrad"))


class QuantLinearFunction(torch.autograd.Function):
    """y = x W^T + b with the recipe's quantized GEMMs in forward and backward."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, recipe: Recipe) -> Tensor:
        x2 = x.reshape(-1, x.shape[-1])
        wq = quantize_operand(weight, recipe, "weight")
        y = quantize_operand(x2, recipe, "input") @ wq.T
        if bias is not None:
            y = y + bias.to(torch.float32)
        ctx.save_for_backward(x2, weight, wq)
        ctx.recipe, ctx.has_bias = recipe, bias is not None
        return y.to(x.dtype).reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, dy: Tensor):
        x2, weight, wq = ctx.saved_tensors
        recipe = ctx.recipe
        dy2 = dy.reshape(-1, dy.shape[-1])
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            w_dgrad = wq
            if recipe.format == "nvfp4" and recipe.disable_2d_quantization:
                w_dgrad = quantize_operand(weight.T, recipe, "input").T  # 1x16 along N
            dx = (quantize_operand(dy2, recipe, "grad") @ w_dgrad).to(x2.dtype)
            dx = dx.reshape(*dy.shape[:-1], x2.shape[-1])
        if ctx.needs_input_grad[1]:
            if recipe.format == "nvfp4":
                g = quantize_operand(dy2.T, recipe, "wgrad_grad")  # (N, T) blocked along T
                a = quantize_operand(x2.T, recipe, "wgrad_input")  # (K, T)
            else:  # per-tensor scales: the transposed copies hold the same numbers
                g = quantize_operand(dy2, recipe, "wgrad_grad").T
                a = quantize_operand(x2, recipe, "wgrad_input").T
            dw = (g @ a.T).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy2.to(torch.float32).sum(0).to(dy.dtype)
        return dx, dw, db, None


class QuantLinear(nn.Linear):
    """``nn.Linear`` whose GEMMs follow a ``Recipe``; weights stay FP32 master parameters.

    x: (..., in_features) -> (..., out_features), in x's dtype.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 recipe: Recipe, device=None, dtype=None) -> None:  # fmt: skip
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.recipe = recipe

    @classmethod
    def from_linear(cls, linear: nn.Linear, recipe: Recipe) -> QuantLinear:
        """A QuantLinear sharing ``linear``'s parameters (no copy)."""
        q = cls.__new__(cls)
        nn.Module.__init__(q)
        q.in_features, q.out_features = linear.in_features, linear.out_features
        q.weight, q.bias = linear.weight, linear.bias
        q.recipe = recipe
        return q

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x: expected (..., {self.in_features}), got {tuple(x.shape)}")
        return QuantLinearFunction.apply(x, self.weight, self.bias, self.recipe)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, recipe={self.recipe.format}"


def reference_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Plain fp32 linear (for tests and comparisons)."""
    return F.linear(x.float(), weight.float(), None if bias is None else bias.float())
