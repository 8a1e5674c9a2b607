"""NVFP4 quantization against independent oracles: torchao 0.18 (compat="torchao", byte for
byte) and the format facts of kernels.md 4.1-4.4 that the TE-convention reference is built on.
"""

from __future__ import annotations

import pytest
import torch

from nemocore import quant
from nemocore.quant import formats
from nemocore.ref import quant as ref

torchao_nvfp4 = pytest.importorskip("torchao.prototype.mx_formats.nvfp4_tensor")
torchao_utils = pytest.importorskip("torchao.prototype.mx_formats.utils")


def torchao_quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(qdata, scale bytes, per_tensor_scale) from torchao's two-level NVFP4 quantizer."""
    pts = torchao_nvfp4.per_tensor_amax_to_scale(x.float().abs().amax())
    scales, qdata = torchao_nvfp4.nvfp4_quantize(x.contiguous(), 16, pts)
    return qdata, scales.view(torch.uint8), pts


def wide_range(shape, dtype, generator=None) -> torch.Tensor:
    """Normal values times per-row powers of two spanning 2^-12..2^12: block scales use the
    whole E4M3 range, subnormal scales included."""
    x = torch.randn(shape, generator=generator)
    e = torch.randint(-12, 13, (*shape[:-1], 1), generator=generator).float()
    return (x * e.exp2()).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 16), (16, 16), (37, 64), (3, 5, 48), (128, 256)])
def test_torchao_compat_is_byte_exact(dtype, shape):
    g = torch.Generator().manual_seed(hash(shape) % 1000)
    for trial in range(4):
        x = wide_range(shape, dtype, g) * (10.0 ** (trial * 3 - 4))
        qdata, scales, pts = torchao_quantize(x.to(dtype))
        ours = quant.nvfp4_quantize(x.to(dtype), compat="torchao")
        m = x.numel() // shape[-1]
        assert torch.equal(ours.qdata, qdata.reshape(m, -1))
        assert torch.equal(ours.scales, scales.reshape(m, -1))
        assert torch.equal(ours.tensor_scale, pts)


def test_torchao_compat_dequantize_matches_torchao():
    x = wide_range((64, 128), torch.bfloat16)
    pts = torchao_nvfp4.per_tensor_amax_to_scale(x.float().abs().amax())
    theirs = torchao_nvfp4.NVFP4Tensor.to_nvfp4(x, per_tensor_scale=pts)
    ours = quant.nvfp4_quantize(x, compat="torchao")
    for dtype in (torch.float32, torch.bfloat16):
        assert torch.equal(ours.dequantize(dtype), theirs.dequantize(dtype))


def test_torchao_compat_ties_and_signed_zero():
    # Tensor amax 10.5 makes torchao's per-tensor scale 2^-8 and the first block's scale
    # (6 / 6) / 2^-8 = 256 exactly, so its elements are multiplied by exactly 1: every E2M1
    # midpoint and both zeros reach the rounding as they are.
    ties = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -0.25, -0.75, -5.0, -0.0, 0.0, 6.0, -6.0]
    x = torch.tensor([ties + [0.1, -0.1] + [10.5] + [0.0] * 15], dtype=torch.float32)
    qdata, scales, _ = torchao_quantize(x)
    ours = quant.nvfp4_quantize(x, compat="torchao")
    assert torch.equal(ours.qdata, qdata)
    assert torch.equal(ours.scales, scales)
    codes = ours.codes()[0].tolist()
    assert codes[:7] == [0, 2, 2, 4, 4, 6, 6]  # ties to the even code (kernels.md 4.4)
    assert codes[10] == 8
    assert codes[11] == 0


def test_swizzled_scales_match_torchao_to_blocked():
    s = torch.randint(0, 127, (300, 5), dtype=torch.uint8)
    ours = formats.to_swizzled_scales(s)
    assert ours.shape == (3 * 32, 2 * 16)
    assert torch.equal(ours.flatten(), torchao_utils.to_blocked(s).flatten())
    assert torch.equal(formats.from_swizzled_scales(ours, 300, 5), s)
    t = quant.nvfp4_quantize(torch.randn(128, 64))
    assert t.swizzled_scales().shape == (32, 16)  # kernels.md 4.8


# ---- format facts the TE-convention reference relies on (kernels.md 4.1-4.4) -----------------


def test_e2m1_rne_table():
    av = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 5.5, 6.0, 0.26, 0.74])
    assert formats.e2m1_round_magnitude(av).tolist() == [0, 2, 2, 4, 4, 6, 6, 7, 7, 1, 1]


def test_packing_low_nibble_first():
    # torchao packs [6.0, 1.0, ...] into byte 0x27 (kernels.md 4.2)
    x = torch.tensor([[6.0, 1.0] + [0.0] * 14])
    assert quant.nvfp4_quantize(x).qdata[0, 0].item() == 0x27
    codes = torch.randint(0, 16, (5, 32), dtype=torch.uint8)
    assert torch.equal(formats.unpack_nibbles(formats.pack_nibbles(codes)), codes)
    fp4 = formats.pack_nibbles(codes).view(torch.float4_e2m1fn_x2)
    assert fp4.shape == (5, 16)


def test_e4m3_encoding_matches_torch_cast():
    # Every E4M3 value, every midpoint between neighbours (ties go to the even byte) and a
    # sweep: the kernel's integer bit trick vs torch's cast, through the 1x16 scale path.
    values = formats.e4m3_to_float(torch.arange(0, 127, dtype=torch.uint8))
    mids = (values[1:] + values[:-1]) / 2
    sweep = torch.cat([values, mids, torch.rand(2000) * 448, torch.rand(2000) * 2**-6])
    # A block whose amax is s * 6 / S_enc gets scale ~s; compare the stored bytes.
    blocks = torch.zeros(sweep.numel(), 16)
    blocks[:, 0] = sweep
    blocks[0, 1] = 448.0  # tensor amax 448 -> S_enc = 6, multiplier exactly 1
    t = quant.nvfp4_quantize(blocks)
    expected = ref.scales_te(torch.tensor(448.0), ref.block_amax(blocks, False))[0]
    assert torch.equal(t.scales, expected)
    direct = formats.e4m3_from_float(sweep.clamp(max=448))
    assert torch.equal(t.scales[1:, 0], direct[1:])
