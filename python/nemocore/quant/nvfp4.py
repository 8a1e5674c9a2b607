"""NVFP4 quantize, dequantize and GEMM (kernels.md section 4).

Ladder (same names in ``nemocore.ref.quant``, the pure-PyTorch ground truth):
    nvfp4_quantize / dequantize / nvfp4_mm    public functions: check, allocate, dispatch
    nemocore._C.abs_max, .nvfp4_quantize,     the C++ kernels (csrc/cpu/kernels/nvfp4_*.cpp) and
    .nvfp4_dequantize, .nvfp4_mm              their CUDA twins (build_info()["cuda_quant"])

Which backend runs: CPU tensors always use the C++ kernels; CUDA tensors use the CUDA kernels
when ``_C`` has them and the pure-PyTorch reference otherwise (same results, slower).
``nvfp4_mm`` on the CPU dequantizes both operands and runs an fp32 GEMM.

Letters: M rows (all leading dims), K the last dim, Kp = K rounded up to 16, N GEMM outputs.
"""

from __future__ import annotations

import functools
import struct

import torch
from torch import Tensor

from nemocore import _native
from nemocore.quant.hadamard import HadamardSpec, hadamard_signs, rht
from nemocore.quant.tensor import NVFP4Tensor
from nemocore.ref import quant as ref

_COMPAT_CODES = {"te": 0, "torchao": 1}
_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


@functools.cache
def _cuda_kernels() -> bool:
    return _native.has_cuda_kernels() and bool(_native.kernels().build_info().get("cuda_quant"))


def _use_kernels(device: torch.device) -> bool:
    return device.type == "cpu" or (device.type == "cuda" and _cuda_kernels())


def _check_input(x: Tensor, compat: str, stochastic_rounding: bool, generator) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"x: expected a float32/bfloat16/float16/float64 tensor, got {x.dtype}")
    if x.dim() < 1:
        raise ValueError("x: expected at least one dimension (blocks run along the last one)")
    if compat not in _COMPAT_CODES:
        raise ValueError(f"compat: expected 'te' or 'torchao', got {compat!r}")
    if generator is not None and not stochastic_rounding:
        raise ValueError("generator: only used with stochastic_rounding=True")


def abs_max(x2: Tensor) -> tuple[Tensor, float]:
    """Max |x| of x2: (M, K) float32/bf16/fp16 with a contiguous last dim, as a () float32
    tensor on x2's device and as a Python float; raises ValueError on inf or NaN (found in the
    same pass). One read of x2 on either device (on CUDA the kernel maxes into the zeroed
    word); the finiteness check costs one host sync, which also brings the float."""
    bits = torch.zeros(1, dtype=torch.int32, device=x2.device)
    threads, stream = _native.launch_args(x2.device)
    _native.kernels().abs_max(x2, bits, threads, stream)
    value = int(bits.item())
    if value >= 0x7F800000:
        ref.check_finite(x2)  # raises with the message that says what to do
    return bits.view(torch.float32).reshape(()), struct.unpack("<f", value.to_bytes(4, "little"))[0]


def nvfp4_quantize(
    x: Tensor,
    *,
    block_2d: bool = False,
    stochastic_rounding: bool = False,
    generator: torch.Generator | None = None,
    hadamard: HadamardSpec = False,
    compat: str = "te",
) -> NVFP4Tensor:
    """Quantize x: (..., K) to NVFP4 along its last dim (the GEMM reduction dim).

    block_2d: one scale per 16x16 tile (weights) instead of per 1x16 block.
    stochastic_rounding: round each element up with probability equal to its distance from
        the grid point below, using ``torch.rand((M, Kp), generator=generator)`` (reproducible
        with a seeded generator); default round-to-nearest-even.
    hadamard: ``True`` (Transformer Engine's signs), an int seed or 16 signs: multiply each
        16-block by ``T = diag(signs) H16 / 4`` before quantizing (Wgrad operands).
    compat: ``"te"`` (Transformer Engine's reference arithmetic, default) or ``"torchao"``
        (torchao 0.18's ``nvfp4_quantize`` with a per-tensor scale); they differ at rounding
        ties, in the lower clamp of block scales and on -0.0 (see ``nemocore.ref.quant``).
    Non-finite input raises ValueError. K need not be a multiple of 16 (zero padding).
    """
    _check_input(x, compat, stochastic_rounding, generator)
    if not _use_kernels(x.device) or x.numel() == 0:  # empty: nothing for a kernel to do
        return ref.nvfp4_quantize(
            x, block_2d=block_2d, stochastic_rounding=stochastic_rounding,
            generator=generator, hadamard=hadamard, compat=compat,
        )  # fmt: skip
    k = x.shape[-1]
    m = x.numel() // k if k else 0
    x2 = x.reshape(m, k)
    if x2.dtype == torch.float64 or (k > 1 and x2.stride(1) != 1):
        x2 = x2.to(torch.float32).contiguous()
    signs = None
    if hadamard is not False:
        signs = hadamard_signs(hadamard)
        x2 = rht(torch.nn.functional.pad(x2, (0, -k % 16)), signs)
    # CPU: the kernel finds amax itself, in a first pass that also keeps the block maxima
    fused = x2.device.type == "cpu"
    amax_bits = torch.zeros(1, dtype=torch.int32) if fused else None
    amax, amax_value = (None, 0.0) if fused else abs_max(x2)
    nb = -(-k // 16)
    rand = None
    if stochastic_rounding:
        rand = torch.rand((m, nb * 16), generator=generator, device=x.device)
    qdata = torch.empty((m, nb * 8), dtype=torch.uint8, device=x.device)
    scales = torch.empty((m, nb), dtype=torch.uint8, device=x.device)
    tensor_scale = torch.zeros((), dtype=torch.float32, device=x.device)
    threads, stream = _native.launch_args(x.device)
    _native.kernels().nvfp4_quantize(
        x2, amax_value, _COMPAT_CODES[compat], block_2d, rand, qdata,
        scales, tensor_scale, threads, stream, amax_bits,
    )  # fmt: skip
    if fused:
        if int(amax_bits.item()) >= 0x7F800000:
            ref.check_finite(x2)  # raises with the message that says what to do
        amax = amax_bits.view(torch.float32).reshape(())
    return NVFP4Tensor(
        qdata=qdata, scales=scales, tensor_scale=tensor_scale, amax=amax, shape=x.shape,
        dtype=x.dtype, block_2d=block_2d, compat=compat, hadamard_signs=signs,
    )  # fmt: skip


def dequantize(t: NVFP4Tensor, dtype: torch.dtype, *, rotated: bool = False) -> Tensor:
    """``NVFP4Tensor.dequantize``: values of ``t.shape`` in ``dtype``."""
    if not _use_kernels(t.device) or dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return ref.nvfp4_dequantize(t, dtype, rotated=rotated)
    has_rht = t.hadamard_signs is not None
    unrotate = has_rht and not rotated
    cols = t.padded_cols if has_rht else t.shape[-1]
    out = torch.empty((t.rows, cols), dtype=torch.float32 if unrotate else dtype, device=t.device)
    if out.numel():
        threads, stream = _native.launch_args(t.device)
        _native.kernels().nvfp4_dequantize(t.qdata, t.scales, t.tensor_scale, out, threads, stream)
    if not has_rht:
        return out.reshape(t.shape)
    if rotated:  # the whole padded rows: their rotated padding is not zero
        return out.reshape(*t.shape[:-1], cols)
    out = rht(out, t.hadamard_signs, inverse=True)[:, : t.shape[-1]].to(dtype)
    return out.reshape(t.shape)


def _same_rotation(a: NVFP4Tensor, b: NVFP4Tensor) -> bool:
    sa, sb = a.hadamard_signs, b.hadamard_signs
    return sa is not None and sb is not None and bool(torch.equal(sa, sb))


def nvfp4_mm(
    a: NVFP4Tensor | Tensor, b: NVFP4Tensor, out_dtype: torch.dtype | None = None
) -> Tensor:
    """``a @ b.T``: a (M, K) NVFP4 (W4A4) or a float tensor (weight-only W4A16), b (N, K)
    NVFP4, both blocked along K. Returns (M, N) in ``out_dtype`` (default: a's dtype).

    Operands that carry the same Hadamard rotation are multiplied in the rotated basis (the
    rotation cancels); otherwise each is un-rotated first. CPU: dequantize to fp32 and run an
    fp32 GEMM. CUDA (with kernels): dequantize tiles to bf16 in the GEMM's main loop, tensor
    cores multiply, fp32 accumulation, tensor scales in the epilogue; on Hopper with K padded
    to a multiple of 64, wgmma on 128 x 128 tiles fed by a cp.async ring
    (csrc/cuda/nvfp4_mm_sm90.cu; ``NEMOCORE_WGMMA=0`` selects the portable mma.sync kernel).
    """
    if not isinstance(b, NVFP4Tensor):
        raise TypeError(f"b: expected an NVFP4Tensor, got {type(b).__name__}")
    a_is_q = isinstance(a, NVFP4Tensor)
    if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"nvfp4_mm: expected a (M, K) and b (N, K) with the same K, got {tuple(a.shape)} "
            f"and {tuple(b.shape)}"
        )
    out_dtype = out_dtype or a.dtype
    if b.device.type == "cuda" and _cuda_kernels() and out_dtype in _MM_OUT_DTYPES:
        return _nvfp4_mm_cuda(a, b, out_dtype)
    rotated = a_is_q and _same_rotation(a, b)
    a32 = a.dequantize(torch.float32, rotated=rotated) if a_is_q else a.to(torch.float32)
    return (a32 @ b.dequantize(torch.float32, rotated=rotated).T).to(out_dtype)


_MM_OUT_DTYPES = (torch.float32, torch.bfloat16)


def _nvfp4_mm_cuda(a: NVFP4Tensor | Tensor, b: NVFP4Tensor, out_dtype: torch.dtype) -> Tensor:
    """The CUDA kernels: dequantize-in-the-main-loop GEMMs on bf16 tensor cores."""
    if b.hadamard_signs is not None or (
        isinstance(a, NVFP4Tensor) and a.hadamard_signs is not None
    ):
        rotated = isinstance(a, NVFP4Tensor) and _same_rotation(a, b)
        if not rotated:  # un-rotate through the reference path
            a32 = a.dequantize(torch.float32) if isinstance(a, NVFP4Tensor) else a.float()
            return (a32 @ b.dequantize(torch.float32).T).to(out_dtype)
    m, kp = a.shape[0], b.padded_cols
    out = torch.empty((m, b.rows), dtype=out_dtype, device=b.device)
    stream = torch.cuda.current_stream(b.device).cuda_stream
    k = _native.kernels()
    if isinstance(a, NVFP4Tensor):
        k.nvfp4_mm(a.qdata, a.scales, a.tensor_scale, None, b.qdata, b.scales, b.tensor_scale,
                   out, stream)  # fmt: skip
    else:
        a16 = a.to(torch.bfloat16)
        if kp != a.shape[1]:  # zeros to the whole last block (no copy when K is already whole)
            a16 = torch.nn.functional.pad(a16, (0, kp - a.shape[1]))
        a16 = a16.contiguous()
        k.nvfp4_mm(None, None, None, a16, b.qdata, b.scales, b.tensor_scale, out, stream)
    return out
