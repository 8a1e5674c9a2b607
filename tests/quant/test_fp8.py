"""FP8 current-scaling quantization (kernels.md 4.11) against a direct per-tile loop written
with torch's float8 casts, plus edge cases and the FP8 GEMM."""

from __future__ import annotations

import pytest
import torch

from nemocore import quant

FMAX = {"e4m3": 448.0, "e5m2": 57344.0}
DTYPE = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}


def loop_reference(x: torch.Tensor, fmt: str, tile_rows: int, tile_cols: int):
    """Each tile quantized on its own: scale = fmax / amax, cast(clamp(x * scale))."""
    x2 = x.reshape(-1, x.shape[-1]).float()
    data = torch.empty(x2.shape, dtype=DTYPE[fmt])
    m, k = x2.shape
    inv = torch.empty(-(-m // tile_rows), -(-k // tile_cols))
    for i in range(0, m, tile_rows):
        for j in range(0, k, tile_cols):
            tile = x2[i : i + tile_rows, j : j + tile_cols]
            amax = tile.abs().amax()
            scale = torch.tensor(FMAX[fmt]) / amax if amax > 0 else torch.tensor(1.0)
            q = (tile * scale).clamp(-FMAX[fmt], FMAX[fmt]).to(DTYPE[fmt])
            data[i : i + tile_rows, j : j + tile_cols] = q
            inv[i // tile_rows, j // tile_cols] = 1.0 / scale
    return data.reshape(x.shape), inv


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
@pytest.mark.parametrize("shape", [(1, 1), (7, 33), (130, 300), (2, 3, 40)])
@pytest.mark.parametrize("scaling", ["tensor", "block", "block2d"])
def test_fp8_matches_loop_reference(fmt, shape, scaling):
    x = torch.randn(shape) * torch.randint(-8, 9, (*shape[:-1], 1)).float().exp2()
    block = 32
    t = quant.fp8_quantize(x, fmt, scaling, block=block)
    m = x.numel() // shape[-1]
    rows, cols = {"tensor": (m, shape[-1]), "block": (1, block), "block2d": (block, block)}[scaling]
    data, inv = loop_reference(x, fmt, rows, cols)
    assert torch.equal(t.data.view(torch.uint8), data.view(torch.uint8))
    assert torch.equal(t.scale_inv.reshape(inv.shape), inv)
    deq = t.dequantize(torch.float32)
    rel = {"e4m3": 2**-3, "e5m2": 2**-2}[fmt]  # half an ulp at 3 / 2 mantissa bits, with slack
    assert bool(((deq - x).abs() <= rel * x.abs() + 1e-30 + 2**-9 * t.scale_inv.max()).all())


def test_fp8_zeros_and_errors():
    t = quant.fp8_quantize(torch.zeros(4, 8))
    assert t.scale_inv.item() == 1.0
    assert torch.equal(t.dequantize(), torch.zeros(4, 8))
    with pytest.raises(ValueError, match="fmt"):
        quant.fp8_quantize(torch.ones(2, 2), "e3m4")
    with pytest.raises(ValueError, match="scaling"):
        quant.fp8_quantize(torch.ones(2, 2), scaling="row")
    with pytest.raises(ValueError, match="finite"):
        quant.fp8_quantize(torch.tensor([[1.0, float("nan")]]))


def test_fp8_mm():
    a, b = torch.randn(9, 64), torch.randn(5, 64)
    qa, qb = quant.fp8_quantize(a, scaling="block", block=32), quant.fp8_quantize(b)
    expected = qa.dequantize(torch.float32) @ qb.dequantize(torch.float32).T
    torch.testing.assert_close(quant.fp8_mm(qa, qb), expected)
    rel = (quant.fp8_mm(qa, qb) - a @ b.T).norm() / (a @ b.T).norm()
    assert rel < 0.05
