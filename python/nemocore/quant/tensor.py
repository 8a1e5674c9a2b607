"""Containers of quantized tensors: ``NVFP4Tensor`` and ``FP8Tensor``.

Letters: M = prod(shape[:-1]) rows, K = shape[-1] (the GEMM reduction dim, along which blocks
run), Kp = K rounded up to a multiple of 16 (a partial last block is zero-padded).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from nemocore.quant import formats


@dataclasses.dataclass
class NVFP4Tensor:
    """A tensor in NVFP4: E2M1 elements, one E4M3 scale per 16 elements, one FP32 scale.

    Layout (kernels.md 4.2-4.5):
        qdata: (M, Kp/2) uint8, two E2M1 codes per byte along K, the even element in the low
            nibble (torchao / Transformer Engine / cuBLAS order; ``qdata.view(
            torch.float4_e2m1fn_x2)`` is the same bytes as torch's packed fp4 dtype).
        scales: (M, Kp/16) uint8, the raw bytes of each block's ``float8_e4m3fn`` scale,
            row-major. With ``block_2d`` one scale covers a 16x16 tile and is repeated on the
            tile's 16 rows, so the transposed tensor has the same numbers.
            ``swizzled_scales()`` gives the cuBLAS/CUTLASS (Blackwell) tile layout.
        tensor_scale: () float32, the per-tensor *decode* scale: ``1 / S_enc`` with
            ``S_enc = 448 * 6 / amax`` (compat="te") or torchao's ``amax / (448 * 6)``.
        amax: () float32, max |x| over the (Hadamard-transformed) tensor.
    Value of element (m, k): ``e2m1(code) * (fp32(scale[m, k // 16]) * tensor_scale)``.

    With ``hadamard_signs`` set, the codes hold ``x @ T`` per 16-block (see
    ``nemocore.quant.hadamard``); ``dequantize()`` undoes the rotation unless ``rotated=True``.
    """

    qdata: Tensor
    scales: Tensor
    tensor_scale: Tensor
    amax: Tensor
    shape: torch.Size
    dtype: torch.dtype
    block_2d: bool = False
    compat: str = "te"
    hadamard_signs: Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.qdata.device

    @property
    def rows(self) -> int:
        return self.qdata.shape[0]

    @property
    def padded_cols(self) -> int:
        return self.qdata.shape[1] * 2

    def codes(self) -> Tensor:
        """(M, Kp) uint8 E2M1 codes (bit 3 = sign)."""
        return formats.unpack_nibbles(self.qdata)

    def scales_float(self) -> Tensor:
        """(M, Kp/16) float32 block scales."""
        return formats.e4m3_to_float(self.scales)

    def swizzled_scales(self) -> Tensor:
        """Block scales in the cuBLAS/CUTLASS 128x4-tile layout, as ``float8_e4m3fn``:
        ``(ceil(M/128)*32, ceil(Kp/64)*16)`` (what torchao's ``to_blocked`` returns)."""
        return formats.to_swizzled_scales(self.scales).view(torch.float8_e4m3fn)

    def dequantize(self, dtype: torch.dtype | None = None, *, rotated: bool = False) -> Tensor:
        """The represented values, of ``self.shape`` and ``dtype`` (default: the input's).

        rotated: keep a Hadamard-transformed tensor in the transformed basis (what a GEMM
        whose other operand carries the same rotation consumes) instead of undoing it; the
        result then has the padded last dim Kp (the rotated zero padding is not zero).
        """
        from nemocore.quant import nvfp4  # the kernels live there; tensor.py stays a container

        return nvfp4.dequantize(self, dtype or self.dtype, rotated=rotated)

    def nbytes(self) -> int:
        return self.qdata.numel() + self.scales.numel() + 4


@dataclasses.dataclass
class FP8Tensor:
    """A tensor in FP8 with float32 *inverse* (decode) scales (kernels.md 4.11).

    data: ``shape``, ``float8_e4m3fn`` or ``float8_e5m2``.
    scale_inv: () for ``scaling="tensor"``; (M, ceil(K/block)) for ``"block"`` (1 x block
        tiles along the last dim); (ceil(M/block), ceil(K/block)) for ``"block2d"``.
    Value: ``float(data) * scale_inv`` of the element's tile.
    """

    data: Tensor
    scale_inv: Tensor
    fmt: str
    scaling: str
    block: int
    dtype: torch.dtype

    @property
    def shape(self) -> torch.Size:
        return self.data.shape

    def dequantize(self, dtype: torch.dtype | None = None) -> Tensor:
        from nemocore.quant import fp8

        return fp8.dequantize(self, dtype or self.dtype)
