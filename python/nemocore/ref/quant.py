"""Pure-PyTorch references of NVFP4 and FP8 quantization (kernels.md section 4).

Written step by step from the formulas in the spec, in float32, to be read and to be the ground
truth the C++ and CUDA kernels are compared with bit for bit. Two conventions for NVFP4:

``compat="te"`` (Transformer Engine's reference algorithm, the training default):
    S_enc = min(448 * 6 / amax, FLT_MAX)           global encode scale (amax = 0 -> FLT_MAX)
    s     = e4m3(min(bamax * (S_enc * (1/6)), 448)) block scale; may be 0 (no lower clamp)
    enc   = 1 / (fp32(s) * (1 / S_enc))            element multiplier (inf when s = 0)
    code  = RNE(clamp(x * enc, -6, 6)), sign = (x * enc < 0): -0.0 gives code 0, and the NaN
            of 0 * inf gives code 0, so an all-zero block stores scale 0 and codes 0.
``compat="torchao"`` (torchao 0.18 ``nvfp4_quantize`` with a per-tensor scale):
    pts   = amax / (448 * 6)                        per-tensor scale
    s     = e4m3(clamp(bamax / 6 / pts, 2^-6, 448)) block scale, never below E4M3's min normal
    enc   = (1 / pts) / fp32(s)
    code  = RNE(clamp(x * enc, -6, 6)), sign = signbit: -0.0 gives code 8.
    An all-zero tensor (torchao: NaN scales) gives scales 2^-6 and codes 0 here.

Letters: M rows (all leading dims), K the last dim, Kp = K rounded up to 16, nb = Kp / 16.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nemocore.quant import formats
from nemocore.quant.formats import E2M1_MAX, E4M3_MAX, E4M3_MIN_NORMAL
from nemocore.quant.hadamard import HadamardSpec, hadamard_signs, rht
from nemocore.quant.tensor import FP8Tensor, NVFP4Tensor

FLT_MAX = torch.finfo(torch.float32).max
COMPATS = ("te", "torchao")


def _f32(v: float) -> Tensor:
    return torch.tensor(v, dtype=torch.float32)


def as_padded_rows(x: Tensor) -> Tensor:
    """x: (..., K) -> (M, Kp) float32, zero-padded to whole 16-blocks."""
    k = x.shape[-1]
    x2 = x.reshape(x.numel() // k if k else 0, k).to(torch.float32)
    pad = -k % 16
    return torch.nn.functional.pad(x2, (0, pad)) if pad else x2


def block_amax(x: Tensor, block_2d: bool) -> Tensor:
    """x: (M, Kp) -> (M, nb) float32 max |x| per 1x16 block, or per 16x16 tile repeated on
    each of the tile's rows (a partial last tile covers the rows that exist)."""
    m, kp = x.shape
    amax = x.abs().reshape(m, kp // 16, 16).amax(-1)
    if not block_2d:
        return amax
    tiles = torch.nn.functional.pad(amax, (0, 0, 0, -m % 16))
    tiles = tiles.reshape(tiles.shape[0] // 16, 16, kp // 16)
    tile_amax = tiles.amax(1, keepdim=True).expand(-1, 16, -1)
    return tile_amax.reshape(tiles.shape[0] * 16, kp // 16)[:m]


def scales_te(amax: Tensor, bamax: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """TE's two-level scales: returns (scale bytes (M, nb), enc (M, nb), tensor decode scale)."""
    s_enc = torch.minimum(_f32(E4M3_MAX * E2M1_MAX) / amax, _f32(FLT_MAX))
    if s_enc == 0:  # amax = inf; non-finite input is rejected earlier, kept for fidelity
        s_enc = _f32(1.0)
    g_dec = _f32(1.0) / s_enc
    multiplier = s_enc * (_f32(1.0) / _f32(E2M1_MAX))
    s = formats.e4m3_from_float(torch.clamp(bamax * multiplier, max=E4M3_MAX))
    enc = _f32(1.0) / (formats.e4m3_to_float(s) * g_dec)
    return s, enc, g_dec


def scales_torchao(amax: Tensor, bamax: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """torchao's two-level scales: (scale bytes, enc, per_tensor_scale)."""
    pts = amax / (E4M3_MAX * E2M1_MAX)
    if amax == 0:  # torchao computes 0/0 here; nemocore defines the all-zero tensor
        s = formats.e4m3_from_float(torch.full_like(bamax, E4M3_MIN_NORMAL))
        return s, torch.zeros_like(bamax), pts
    block = (bamax / E2M1_MAX) / pts
    s = formats.e4m3_from_float(torch.clamp(block, min=E4M3_MIN_NORMAL, max=E4M3_MAX))
    enc = (_f32(1.0) / pts) / formats.e4m3_to_float(s)
    return s, enc, pts


def round_e2m1(v: Tensor, rand: Tensor | None, compat: str) -> Tensor:
    """v: scaled values already clamped to [-6, 6] (NaN allowed) -> uint8 codes 0..15.

    RNE, or with ``rand`` (uniforms in [0, 1), same shape) stochastic rounding: between grid
    neighbours ``lo <= |v| <= hi`` pick ``hi`` when ``rand < (|v| - lo) / (hi - lo)``.
    """
    av = v.abs()
    if rand is None:
        code = formats.e2m1_round_magnitude(av)
    else:
        grid = formats.e2m1_table(v.device)[:8]
        lo_idx = (av[..., None] >= grid[1:]).sum(-1)  # grid points (above 0) <= |v|
        lo = grid[lo_idx]
        hi = grid[torch.clamp(lo_idx + 1, max=7)]
        up = rand < (av - lo) / (hi - lo)  # 0/0 at |v| = 6 and NaN compare False
        code = (lo_idx + up).to(torch.uint8)
    negative = torch.signbit(v) if compat == "torchao" else v < 0
    return code | (negative.to(torch.uint8) << 3)


def check_finite(x: Tensor, name: str = "x") -> None:
    if not bool(torch.isfinite(x).all()):
        raise ValueError(
            f"{name}: NVFP4/FP8 quantization needs finite values, found inf or NaN; "
            "check the producer of this tensor (e.g. a diverged loss) or clip it first"
        )


def nvfp4_quantize(
    x: Tensor,
    *,
    block_2d: bool = False,
    stochastic_rounding: bool = False,
    generator: torch.Generator | None = None,
    hadamard: HadamardSpec = False,
    compat: str = "te",
    rand: Tensor | None = None,
) -> NVFP4Tensor:
    """Quantize x: (..., K) to NVFP4 with 1x16 (or 16x16 with ``block_2d``) blocks along K.

    Stochastic rounding draws ``torch.rand((M, Kp), generator=generator)`` (or uses ``rand``);
    ``hadamard`` (True, a seed or 16 signs) transforms each 16-block by ``T`` first.
    """
    if compat not in COMPATS:
        raise ValueError(f"compat: expected one of {COMPATS}, got {compat!r}")
    check_finite(x)
    xp = as_padded_rows(x)
    signs = None
    if hadamard is not False:
        signs = hadamard_signs(hadamard)
        xp = rht(xp, signs)
    amax = xp.abs().amax() if xp.numel() else _f32(0.0)
    bamax = block_amax(xp, block_2d)
    make = scales_te if compat == "te" else scales_torchao
    s, enc, tensor_scale = make(amax, bamax)
    m, kp = xp.shape
    v = torch.clamp(xp.reshape(m, kp // 16, 16) * enc[..., None], -E2M1_MAX, E2M1_MAX)
    if stochastic_rounding and rand is None:
        rand = torch.rand((m, kp), generator=generator, device=x.device)
    codes = round_e2m1(v.reshape(m, kp), rand, compat)
    return NVFP4Tensor(
        qdata=formats.pack_nibbles(codes),
        scales=s,
        tensor_scale=tensor_scale.reshape(()),
        amax=amax.reshape(()),
        shape=x.shape,
        dtype=x.dtype,
        block_2d=block_2d,
        compat=compat,
        hadamard_signs=signs,
    )


def nvfp4_dequantize(t: NVFP4Tensor, dtype: torch.dtype, *, rotated: bool = False) -> Tensor:
    """``e2m1(code) * (fp32(scale) * tensor_scale)``, un-rotated unless ``rotated``."""
    m, kp = t.rows, t.padded_cols
    block_scale = formats.e4m3_to_float(t.scales) * t.tensor_scale.to(t.device)
    vals = formats.e2m1_decode(t.codes()).reshape(m, kp // 16, 16) * block_scale[..., None]
    vals = vals.reshape(m, kp)
    if t.hadamard_signs is None:
        return vals[:, : t.shape[-1]].reshape(t.shape).to(dtype)
    if rotated:  # whole padded rows: the rotated padding is not zero
        return vals.reshape(*t.shape[:-1], kp).to(dtype)
    vals = rht(vals, t.hadamard_signs, inverse=True)
    return vals[:, : t.shape[-1]].reshape(t.shape).to(dtype)


def nvfp4_mm(a: NVFP4Tensor, b: NVFP4Tensor) -> Tensor:
    """``a @ b.T`` (a: (M, K), b: (N, K), both quantized along K): dequantize, fp32 matmul."""
    rotated = _same_rotation(a, b)
    return (
        a.dequantize(torch.float32, rotated=rotated)
        @ b.dequantize(torch.float32, rotated=rotated).T
    )


def _same_rotation(a: NVFP4Tensor, b: NVFP4Tensor) -> bool:
    sa, sb = a.hadamard_signs, b.hadamard_signs
    return sa is not None and sb is not None and bool(torch.equal(sa, sb))


# ---- FP8 ---------------------------------------------------------------------------------------

FP8_FORMATS = {"e4m3": (torch.float8_e4m3fn, 448.0), "e5m2": (torch.float8_e5m2, 57344.0)}


def fp8_quantize(
    x: Tensor, fmt: str = "e4m3", scaling: str = "tensor", block: int = 128
) -> FP8Tensor:
    """Current scaling: ``scale = fmax / amax`` per tensor, per 1 x block tile along the last
    dim (``"block"``) or per block x block tile (``"block2d"``); ``data = cast(clamp(x *
    scale))`` RNE with saturation; stores ``scale_inv = 1 / scale`` (1 where amax = 0)."""
    dtype, fmax = FP8_FORMATS[fmt]
    check_finite(x)
    k = x.shape[-1]
    x2 = x.reshape(-1, k).to(torch.float32)
    m = x2.shape[0]
    if scaling == "tensor":
        tile_rows, tile_cols = max(m, 1), max(k, 1)
    else:
        tile_rows, tile_cols = (block if scaling == "block2d" else 1), block
    padded = torch.nn.functional.pad(x2, (0, -k % tile_cols, 0, -m % tile_rows))
    tiles = padded.reshape(padded.shape[0] // tile_rows, tile_rows, -1, tile_cols)
    amax = tiles.abs().amax(dim=(1, 3))
    scale = torch.where(amax > 0, _f32(fmax) / amax, _f32(1.0))
    scaled = torch.clamp(tiles * scale[:, None, :, None], -fmax, fmax)
    data = scaled.reshape(padded.shape)[:m, :k].to(dtype).reshape(x.shape)
    scale_inv = _f32(1.0) / scale
    return FP8Tensor(
        data=data,
        scale_inv=scale_inv.reshape(()) if scaling == "tensor" else scale_inv,
        fmt=fmt,
        scaling=scaling,
        block=block,
        dtype=x.dtype,
    )


def fp8_dequantize(t: FP8Tensor, dtype: torch.dtype) -> Tensor:
    """``float(data) * scale_inv`` of each element's tile."""
    k = t.shape[-1]
    d = t.data.reshape(-1, k).to(torch.float32)
    if t.scaling == "tensor":
        return (d * t.scale_inv).reshape(t.shape).to(dtype)
    rows = t.block if t.scaling == "block2d" else 1
    s = t.scale_inv.repeat_interleave(rows, 0)[: d.shape[0]]
    s = s.repeat_interleave(t.block, 1)[:, :k]
    return (d * s).reshape(t.shape).to(dtype)
