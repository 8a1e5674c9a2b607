"""NVFP4 kernels (C++ CPU, and CUDA where present) against the pure-PyTorch reference
``nemocore.ref.quant`` bit for bit, over awkward shapes, both conventions, 1D/2D blocks,
stochastic rounding and the Hadamard transform; edge cases; errors."""

from __future__ import annotations

import pytest
import torch

from nemocore import _native, quant
from nemocore.quant import formats
from nemocore.quant.hadamard import hadamard_matrix, hadamard_signs, rht
from nemocore.ref import quant as ref

SHAPES = [(1, 1), (1, 16), (3, 17), (16, 16), (33, 100), (2, 3, 48), (17, 257), (0, 32), (4, 0)]


def assert_same(a: quant.NVFP4Tensor, b: quant.NVFP4Tensor) -> None:
    assert torch.equal(a.qdata.cpu(), b.qdata.cpu()), "codes differ"
    assert torch.equal(a.scales.cpu(), b.scales.cpu()), "scales differ"
    assert torch.equal(a.tensor_scale.cpu(), b.tensor_scale.cpu()), "tensor scale differs"


def sample(shape, dtype, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    if x.dim() >= 1 and x.numel():
        x = x * torch.randint(-6, 7, (*shape[:-1], 1), generator=g).float().exp2()
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("compat", ["te", "torchao"])
@pytest.mark.parametrize("block_2d", [False, True])
def test_kernel_matches_reference(device, dtype, shape, compat, block_2d):
    x = sample(shape, dtype).to(device)
    ours = quant.nvfp4_quantize(x, compat=compat, block_2d=block_2d)
    truth = ref.nvfp4_quantize(x, compat=compat, block_2d=block_2d)
    assert_same(ours, truth)
    for out_dtype in (torch.float32, dtype):
        assert torch.equal(ours.dequantize(out_dtype), ref.nvfp4_dequantize(truth, out_dtype))
    assert ours.dequantize().shape == x.shape


@pytest.mark.parametrize("compat", ["te", "torchao"])
def test_stochastic_rounding_matches_reference_with_the_same_generator(device, compat):
    x = sample((33, 80), torch.bfloat16).to(device)
    kw = dict(stochastic_rounding=True, compat=compat)
    gen = lambda: torch.Generator(device).manual_seed(7)  # noqa: E731
    ours = quant.nvfp4_quantize(x, generator=gen(), **kw)
    assert_same(ours, ref.nvfp4_quantize(x, generator=gen(), **kw))
    assert_same(ours, quant.nvfp4_quantize(x, generator=gen(), **kw))  # reproducible
    other = quant.nvfp4_quantize(x, generator=torch.Generator(device).manual_seed(8), **kw)
    assert not torch.equal(ours.qdata, other.qdata)
    assert torch.equal(ours.scales, other.scales)  # scales never depend on the rounding


def test_stochastic_rounding_is_unbiased():
    # Mean of n draws of each element's dequantized value -> the element itself. Per element
    # the draw is Bernoulli between grid neighbours lo, hi: std <= (hi - lo) / 2, so the mean
    # of n draws is within 5 std / sqrt(n) of x with overwhelming probability.
    x = torch.randn(8, 64) * 3
    n = 400
    g = torch.Generator().manual_seed(0)
    draws = torch.stack(
        [
            quant.nvfp4_quantize(x, stochastic_rounding=True, generator=g).dequantize()
            for _ in range(n)
        ]
    )
    t = quant.nvfp4_quantize(x)
    block_scale = t.scales_float().repeat_interleave(16, 1) * t.tensor_scale
    # A block's largest element can exceed 6 * scale when its E4M3 scale rounded down; it is
    # clamped (saturated) before rounding, so the expectation is the clamped value.
    x_clamped = torch.maximum(torch.minimum(x, 6 * block_scale), -6 * block_scale)
    bound = 5 * block_scale / n**0.5  # grid steps are at most 2 * scale, std <= step / 2
    assert bool(((draws.mean(0) - x_clamped).abs() <= bound + 1e-6).all())
    rne_err = (t.dequantize() - x).pow(2).mean()
    assert (draws.mean(0) - x).pow(2).mean() < rne_err  # TE's own SR test, kernels.md 4.4


def test_isa_variants_agree():
    kernels = _native.kernels()
    before = kernels.cpu_isa()
    x = sample((40, 300), torch.bfloat16)
    outs = []
    try:
        for isa in ("base", before):
            kernels.set_cpu_isa(isa)
            g = torch.Generator().manual_seed(1)
            outs.append(quant.nvfp4_quantize(x, stochastic_rounding=True, generator=g))
            outs.append(quant.nvfp4_quantize(x, block_2d=True, compat="torchao"))
            outs.append(outs[-1].dequantize(torch.bfloat16))
    finally:
        kernels.set_cpu_isa(before)
    assert_same(outs[0], outs[3])
    assert_same(outs[1], outs[4])
    assert torch.equal(outs[2], outs[5])


# ---- 2D blocks, Hadamard ------------------------------------------------------------------------


def test_2d_scales_are_shared_by_the_tile_and_the_transpose():
    w = sample((48, 80), torch.float32)
    t = quant.nvfp4_quantize(w, block_2d=True)
    s = t.scales_float()
    assert torch.equal(s, s[::16].repeat_interleave(16, 0)[:48])
    tt = quant.nvfp4_quantize(w.T.contiguous(), block_2d=True)
    # Same tiles, same multipliers: the transposed copy holds the same numbers (kernels.md 4.5)
    assert torch.equal(tt.dequantize(), t.dequantize().T)


def test_hadamard_is_orthogonal_and_inverts():
    for spec in (True, 3, torch.tensor([1.0, -1.0] * 8)):
        t = hadamard_matrix(hadamard_signs(spec))
        assert torch.allclose(t @ t.T, torch.eye(16), atol=1e-6)
    x = torch.randn(5, 64)
    signs = hadamard_signs(11)
    assert torch.allclose(rht(rht(x, signs), signs, inverse=True), x, atol=1e-5)
    y = torch.randn(7, 64)
    assert torch.allclose(rht(x, signs) @ rht(y, signs).T, x @ y.T, atol=1e-4)
    assert hadamard_signs(True).tolist() == [
        1,
        1,
        1,
        -1,
        1,
        -1,
        -1,
        -1,
        -1,
        -1,
        -1,
        1,
        -1,
        1,
        -1,
        -1,
    ]


def test_hadamard_quantize_matches_reference_and_cancels_in_the_gemm(device):
    # K = 64: with a partial last block the rotated padding carries quantization error that
    # the un-rotated product slices off, so the two products only agree for whole blocks.
    x = sample((24, 64), torch.bfloat16).to(device)
    y = sample((9, 64), torch.bfloat16, seed=1).to(device)
    assert_same(
        quant.nvfp4_quantize(x[:, :50], hadamard=5), ref.nvfp4_quantize(x[:, :50], hadamard=5)
    )
    qx = quant.nvfp4_quantize(x, hadamard=5)
    assert_same(qx, ref.nvfp4_quantize(x, hadamard=5))
    qy = quant.nvfp4_quantize(y, hadamard=5)
    exact = x.float() @ y.float().T
    rotated = quant.nvfp4_mm(qx, qy, torch.float32)
    plain = quant.nvfp4_mm(quant.nvfp4_quantize(x), quant.nvfp4_quantize(y), torch.float32)
    unrotated = qx.dequantize(torch.float32) @ qy.dequantize(torch.float32).T
    torch.testing.assert_close(rotated, unrotated, rtol=1e-4, atol=1e-3)
    rel = lambda a: ((a - exact).norm() / exact.norm()).item()  # noqa: E731
    assert rel(rotated) < 0.2
    assert rel(plain) < 0.2
    assert qx.dequantize().shape == x.shape


# ---- edge cases ----------------------------------------------------------------------------------


@pytest.mark.parametrize("compat", ["te", "torchao"])
def test_all_zero_tensor(compat):
    x = torch.zeros(3, 32)
    t = quant.nvfp4_quantize(x, compat=compat)
    assert_same(t, ref.nvfp4_quantize(x, compat=compat))
    assert int(t.qdata.count_nonzero()) == 0
    expected_scale = 0 if compat == "te" else 0x08  # TE: no lower clamp; torchao: 2^-6
    assert bool((t.scales == expected_scale).all())
    assert torch.equal(t.dequantize(), x)


def test_zero_block_in_a_nonzero_tensor():
    x = torch.randn(2, 48)
    x[1, 16:32] = 0
    for compat, scale in (("te", 0), ("torchao", 0x08)):
        t = quant.nvfp4_quantize(x, compat=compat)
        assert_same(t, ref.nvfp4_quantize(x, compat=compat))
        assert t.scales[1, 1].item() == scale
        assert int(t.codes()[1, 16:32].count_nonzero()) == 0


@pytest.mark.parametrize("compat", ["te", "torchao"])
@pytest.mark.parametrize("block_2d", [False, True])
def test_zero_and_underflowing_blocks_in_wide_rows(compat, block_2d):
    # Rows of 8+ whole blocks take the kernels' 8-block path: zero blocks, blocks whose TE
    # scale underflows to 0 (infinite multiplier), signed zeros, and an all-zero tensor.
    x = sample((40, 272), torch.bfloat16)
    x[:, 16:48] = 0
    x[3, 64:80] = 2.0**-40
    x[5, 96:112] = -(2.0**-40)
    x[7, 128:144] = -0.0
    for t in (x, torch.zeros(20, 256), torch.full((2, 256), -0.0)):
        assert_same(
            quant.nvfp4_quantize(t, compat=compat, block_2d=block_2d),
            ref.nvfp4_quantize(t, compat=compat, block_2d=block_2d),
        )


def test_negative_zero():
    x = torch.tensor([[-0.0, 0.0, 1.0] + [0.0] * 13])
    assert quant.nvfp4_quantize(x, compat="te").codes()[0, :2].tolist() == [0, 0]
    assert quant.nvfp4_quantize(x, compat="torchao").codes()[0, :2].tolist() == [8, 0]
    assert torch.equal(
        quant.nvfp4_quantize(torch.full((1, 16), -0.0)).qdata, torch.zeros(1, 8, dtype=torch.uint8)
    )


def test_ties_te_convention():
    # Tensor amax 6 -> S_enc = 448, block amax 6 -> scale byte for 448, multiplier 1: the
    # elements hit the E2M1 midpoints exactly.
    ties = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0]
    x = torch.tensor([ties + [-v for v in ties]])
    t = quant.nvfp4_quantize(x)
    assert t.codes()[0].tolist() == [0, 2, 2, 4, 4, 6, 6, 7, 8, 10, 10, 12, 12, 14, 14, 15]


def test_scale_underflow_and_overflow():
    # A block 2^-30 below the tensor amax: under TE its scale underflows E4M3 to 0 and it
    # dequantizes to 0; torchao clamps the scale to 2^-6 (and also loses the block).
    x = torch.ones(2, 16)
    x[1] = 2.0**-30
    for compat in ("te", "torchao"):
        t = quant.nvfp4_quantize(x, compat=compat)
        assert_same(t, ref.nvfp4_quantize(x, compat=compat))
        assert torch.equal(t.dequantize()[1], torch.zeros(16))
    assert quant.nvfp4_quantize(x).scales[1, 0].item() == 0
    # Huge and tiny finite tensors: scales saturate at 448 only for the amax block.
    for magnitude in (3e38, 1e-38, 1e-44):
        y = (torch.rand(4, 32) * 2 - 1) * magnitude
        for compat in ("te", "torchao"):
            t = quant.nvfp4_quantize(y, compat=compat)
            assert_same(t, ref.nvfp4_quantize(y, compat=compat))
            assert bool(torch.isfinite(t.dequantize()).all())
            assert int(t.scales.max()) <= 0x7E  # 448: never the NaN byte


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_input_raises(device, bad):
    x = torch.randn(4, 32)
    x[2, 5] = bad
    x = x.to(device)  # CUDA: found by the abs_max kernel
    with pytest.raises(ValueError, match="finite"):
        quant.nvfp4_quantize(x)
    with pytest.raises(ValueError, match="finite"):
        quant.nvfp4_quantize(x.to(torch.bfloat16))


def test_argument_errors():
    with pytest.raises(TypeError, match="x:"):
        quant.nvfp4_quantize(torch.ones(4, 16, dtype=torch.int32))
    with pytest.raises(ValueError, match="compat"):
        quant.nvfp4_quantize(torch.ones(4, 16), compat="cublas")
    with pytest.raises(ValueError, match="generator"):
        quant.nvfp4_quantize(torch.ones(4, 16), generator=torch.Generator())
    with pytest.raises(ValueError, match="hadamard"):
        quant.nvfp4_quantize(torch.ones(4, 16), hadamard=torch.ones(15))
    with pytest.raises(ValueError, match="same K"):
        quant.nvfp4_mm(
            quant.nvfp4_quantize(torch.ones(4, 16)), quant.nvfp4_quantize(torch.ones(4, 32))
        )


def test_non_contiguous_and_float64_inputs():
    x = sample((32, 64), torch.float32)
    assert_same(quant.nvfp4_quantize(x.T), ref.nvfp4_quantize(x.T))
    assert_same(quant.nvfp4_quantize(x[:, ::2]), ref.nvfp4_quantize(x[:, ::2]))
    assert_same(quant.nvfp4_quantize(x.double()), ref.nvfp4_quantize(x.double()))


# ---- GEMM ----------------------------------------------------------------------------------------


# On Hopper, K a multiple of 64 takes the wgmma kernel (130 x 200 x 448: tile tails and more k
# slices than its pipeline has stages), other K the portable one.
@pytest.mark.parametrize(("m", "n", "k"), [(1, 1, 16), (5, 7, 33), (64, 48, 128), (130, 200, 448)])
def test_nvfp4_mm_equals_dequantized_product(device, m, n, k):
    a = sample((m, k), torch.bfloat16).to(device)
    b = sample((n, k), torch.bfloat16, seed=2).to(device)
    qa, qb = quant.nvfp4_quantize(a), quant.nvfp4_quantize(b, block_2d=True)
    expected = qa.dequantize(torch.float32) @ qb.dequantize(torch.float32).T
    torch.testing.assert_close(
        quant.nvfp4_mm(qa, qb, torch.float32), expected, rtol=1e-5, atol=1e-5
    )
    w4a16 = quant.nvfp4_mm(a, qb, torch.float32)  # weight-only
    torch.testing.assert_close(
        w4a16, a.float() @ qb.dequantize(torch.float32).T, rtol=1e-5, atol=1e-5
    )
    assert formats.E2M1_MAX == 6.0
