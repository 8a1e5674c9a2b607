"""The CPU quantizer's vector paths (rows of 8+ whole blocks: 8 blocks' scales at once, E2M1
rounding by one float addition, the unclamped fast path and its clamped fallback) against the
pure-PyTorch reference bit for bit, on inputs built to reach every branch: block scales over
the whole E4M3 range (subnormal and zero TE scales, infinite multipliers), exact ties, signed
zeros, tiny and huge tensors, partial tails after whole groups of 8."""

from __future__ import annotations

import pytest
import torch

from nemocore import _native, quant
from nemocore.ref import quant as ref

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# 8 blocks, 8 blocks + a partial block, 17 blocks (a single whole block after the groups)
WIDTHS = [128, 135, 272]


def assert_same(ours: quant.NVFP4Tensor, truth: quant.NVFP4Tensor) -> None:
    assert torch.equal(ours.scales, truth.scales), "scales differ"
    assert torch.equal(ours.qdata, truth.qdata), "codes differ"
    assert torch.equal(ours.tensor_scale, truth.tensor_scale), "tensor scale differs"


def check(x: torch.Tensor, **kw) -> None:
    for compat in ("te", "torchao"):
        for block_2d in (False, True):
            args = dict(compat=compat, block_2d=block_2d, **kw)
            assert_same(quant.nvfp4_quantize(x, **args), ref.nvfp4_quantize(x, **args))


def block_exponents(rows: int, cols: int, lo: int, hi: int, g: torch.Generator) -> torch.Tensor:
    """Normal values times a random power of two per 16-block (and per element, a little)."""
    nb = -(-cols // 16)
    e = torch.randint(lo, hi + 1, (rows, nb), generator=g).repeat_interleave(16, 1)[:, :cols]
    jitter = torch.randint(-3, 1, (rows, cols), generator=g)
    return torch.randn(rows, cols, generator=g) * (e + jitter).float().exp2()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cols", WIDTHS)
def test_blocks_spanning_the_e4m3_scale_range(dtype, cols):
    # Blocks 2^0..2^-14 below the tensor amax: normal, subnormal and (TE) zero E4M3 scales,
    # where |x| * enc may exceed 7 or be x * inf, in the same groups of 8 as normal blocks.
    g = torch.Generator().manual_seed(cols)
    lo = -14 if dtype != torch.float16 else -10
    x = block_exponents(35, cols, lo, 0, g)
    x[:, 0] = 8.0  # the tensor amax on every row, so 2D tiles span the range too
    check(x.to(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("magnitude", [3e38, 1e-30, 1e-38, 1e-41, 1e-44])
def test_tiny_and_huge_tensors(dtype, magnitude):
    # Tiny amax: TE's S_enc saturates at FLT_MAX and torchao's 1 / pts overflows to inf
    # (infinite multipliers with finite scales); huge amax: products near FLT_MAX.
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(20, 256, generator=g) * 2 - 1) * magnitude
    x[4, 40:50] = -0.0
    if magnitude >= 1e-41:  # below, torchao's pts = amax / 2688 underflows to 0 and the
        x[3, 16:32] = 0.0  # reference gives a zero block the NaN scale of 0 / 0
    check(x.to(dtype))


def test_ties_and_signed_zeros_in_the_8_block_path():
    # amax 6 with every block's amax 6: TE multiplier exactly 1; torchao's is 1 too (pts =
    # 6 / 2688, block scale 448), so every E2M1 midpoint reaches the rounding unchanged.
    ties = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0]
    row = torch.tensor(ties + [-v for v in ties])
    x = row.repeat(4, 9)  # 9 blocks per row
    x[1, 16:32] = torch.tensor([-0.0, 0.0, 6.0] + [0.0, -0.0] * 6 + [-6.0])
    x[2, 32:48] = torch.tensor([-0.0] * 15 + [6.0])
    for dtype in DTYPES:
        check(x.to(dtype))
    te = quant.nvfp4_quantize(x).codes()[0, :16].tolist()
    assert te == [0, 2, 2, 4, 4, 6, 6, 7, 8, 10, 10, 12, 12, 14, 14, 15]
    assert quant.nvfp4_quantize(x, compat="torchao").codes()[2, 32:34].tolist() == [8, 8]
    assert quant.nvfp4_quantize(x, compat="te").codes()[2, 32:34].tolist() == [0, 0]


def test_every_bf16_magnitude():
    # All finite bf16 values once (+ and -), shuffled into rows of 16 blocks, and again with
    # each row scaled down by up to 2^-30: rounding of every mantissa at every exponent.
    bits = torch.arange(0, 0x7F80, dtype=torch.int32)
    vals = torch.cat([bits, bits | 0x8000]).to(torch.int16).view(torch.bfloat16)
    g = torch.Generator().manual_seed(2)
    vals = vals[torch.randperm(vals.numel(), generator=g)]
    n = vals.numel() // 256 * 256
    x = vals[:n].reshape(-1, 256)
    check(x)
    scaled = x.float() * torch.rand(x.shape[0], 1, generator=g).mul(-30).exp2()
    check(scaled.to(torch.bfloat16))


def test_stochastic_rounding_in_the_8_block_path():
    x = block_exponents(18, 272, -8, 0, torch.Generator().manual_seed(3)).to(torch.bfloat16)
    for compat in ("te", "torchao"):
        for block_2d in (False, True):
            kw = dict(compat=compat, block_2d=block_2d, stochastic_rounding=True)
            gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
            ours = quant.nvfp4_quantize(x, generator=gen(), **kw)
            assert_same(ours, ref.nvfp4_quantize(x, generator=gen(), **kw))


def test_isa_variants_agree_on_wide_rows():
    kernels = _native.kernels()
    before = kernels.cpu_isa()
    x = block_exponents(33, 400, -12, 0, torch.Generator().manual_seed(6))
    # amax so small that torchao's pts = amax / 2688 underflows to 0, with a zero block: the
    # reference computes a NaN scale (0 / 0) there; both kernels give 448 (byte 126)
    tiny = torch.full((4, 256), 1e-44)
    tiny[1, 16:32] = 0
    outs = {}
    try:
        for isa in ("base", before):
            kernels.set_cpu_isa(isa)
            for dtype in DTYPES:
                for compat in ("te", "torchao"):
                    t = quant.nvfp4_quantize(x.to(dtype), compat=compat, block_2d=True)
                    outs.setdefault((dtype, compat), []).append(t)
            outs.setdefault("tiny", []).append(quant.nvfp4_quantize(tiny, compat="torchao"))
    finally:
        kernels.set_cpu_isa(before)
    for base, best in outs.values():
        assert_same(best, base)


def test_te_sign_of_products_that_underflow():
    # TE's sign is "x * enc < 0": a negative x whose product underflows to -0.0 gets code 0,
    # not 8. Blocks with amax 2^20 have enc = 6 * 2^-20, where -2^-133 (bf16's smallest)
    # underflows and -2^-130 does not; blocks with amax 1 keep every product nonzero.
    x = torch.zeros(3, 256)
    x[:, ::16] = 2.0**20
    x[1, ::16] = 1.0
    x[:, 1::16] = -(2.0**-133)
    x[:, 2::16] = -(2.0**-130)
    x[:, 3::16] = -0.0
    x[:, 4::16] = -(2.0**-100)
    for dtype in (torch.float32, torch.bfloat16):
        check(x.to(dtype))
        check(x[1:2].to(dtype))  # tensor amax 1
    assert quant.nvfp4_quantize(x.to(torch.bfloat16)).codes()[0, 1:4].tolist() == [0, 8, 0]
    assert quant.nvfp4_quantize(x[1:2].to(torch.bfloat16)).codes()[0, 1:4].tolist() == [8, 8, 0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_call_equals_abs_max_then_quantize(dtype):
    # nvfp4_quantize on the CPU makes one kernel call that finds amax in a first pass keeping
    # the block maxima; the same kernel given amax (the two-call form) must agree bit for bit,
    # strided rows and partial tails included.
    kernels = _native.kernels()
    big = block_exponents(40, 420, -12, 0, torch.Generator().manual_seed(9))[:, 3:]
    for x in (big.to(dtype), big.to(dtype)[::2], big.to(dtype)[:, :128]):
        amax = torch.tensor([-1], dtype=torch.int32)
        kernels.abs_max(x, amax, 2, 0)
        for compat in (0, 1):
            for block_2d in (False, True):
                outs = []
                for one_call in (False, True):
                    q = torch.empty(x.shape[0], -(-x.shape[1] // 16) * 8, dtype=torch.uint8)
                    s = torch.empty(x.shape[0], q.shape[1] // 8, dtype=torch.uint8)
                    ts, bits = torch.zeros(()), torch.tensor([-1], dtype=torch.int32)
                    a = 0.0 if one_call else float(amax.view(torch.float32))
                    kernels.nvfp4_quantize(
                        x, a, compat, block_2d, None, q, s, ts, 2, 0, bits if one_call else None
                    )
                    outs.append((q, s, ts))
                assert int(bits) == int(amax)
                for two, one in zip(*outs):
                    assert torch.equal(one, two)
    empty, bits = torch.empty(0, 256, dtype=dtype), torch.tensor([-1], dtype=torch.int32)
    q, s = torch.empty(0, 128, dtype=torch.uint8), torch.empty(0, 16, dtype=torch.uint8)
    kernels.nvfp4_quantize(empty, 0.0, 0, False, None, q, s, torch.zeros(()), 2, 0, bits)
    assert int(bits) == 0  # no rows: amax 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("col", [0, 77, 255, 256, 262])  # in the groups of 8 and in the tail
@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_non_finite_input_in_wide_rows_raises(dtype, col, bad):
    x = torch.randn(5, 263)
    x[3, col] = bad
    with pytest.raises(ValueError, match="finite"):
        quant.nvfp4_quantize(x.to(dtype))
    with pytest.raises(ValueError, match="finite"):
        quant.nvfp4_quantize(-x.to(dtype), block_2d=True)
