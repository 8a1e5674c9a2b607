"""causal conv1d: the C++/CUDA kernels against the pure-PyTorch reference (kernels.md 1)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import CPU_ISAS, assert_close_to_truth, cpu_isa, requires_cuda
from nemocore import _native, ops, ref

# (batch, dim, seqlen, width): length 1, shorter than the width, not a multiple of the 512-step
# time tile, several tiles and time chunks, dims that are not a multiple of the 16-channel
# block, batch 1, empty batch and empty sequence.
SHAPES = [
    (2, 64, 128, 4),
    (1, 5, 1, 4),
    (3, 17, 2, 4),
    (2, 33, 1300, 4),
    (1, 3, 2049, 4),
    (2, 8, 37, 2),
    (2, 8, 37, 3),
    (1, 4, 19, 1),
    (1, 6, 40, 7),
    (0, 8, 16, 4),
    (2, 8, 0, 4),
]
EXACT = {torch.float32: 2e-5, torch.float64: 1e-12}


def make_inputs(shape, dtype, device, *, bias=True, layout="contiguous"):
    b, c, length, k = shape
    if layout == "channel_last":
        x = torch.randn(b, length, c, dtype=dtype, device=device).transpose(1, 2)
    elif layout == "strided":  # every other position of a longer sequence
        x = torch.randn(b, c, 2 * length, dtype=dtype, device=device)[..., ::2]
    else:
        x = torch.randn(b, c, length, dtype=dtype, device=device)
    w = torch.randn(c, k, dtype=dtype, device=device) / k
    bb = torch.randn(c, dtype=dtype, device=device) if bias else None
    return x, w, bb


def packed_seq_idx(batch, length, device, lengths=(5, 1, 600, 3)):
    """seq_idx for rows packed with sequences of the given lengths (cycled)."""
    ids, i, n = [], 0, 0
    while n < length:
        take = min(lengths[i % len(lengths)], length - n)
        ids += [i] * take
        n, i = n + take, i + 1
    return torch.tensor(ids, dtype=torch.int32, device=device).expand(batch, length).contiguous()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_matches_reference(device, shape, activation, dtype):
    x, w, b = make_inputs(shape, dtype, device)
    y = ops.causal_conv1d_fn(x, w, b, activation=activation)
    torch.testing.assert_close(
        y,
        ref.causal_conv1d_fn(x, w, b, activation=activation),
        rtol=EXACT[dtype],
        atol=EXACT[dtype],
    )


def test_reference_matches_conv1d_definition():
    """The reference itself against the textbook formula, position by position."""
    x, w, b = make_inputs((2, 3, 9, 4), torch.float64, "cpu")
    y = ref.causal_conv1d_fn(x, w, b)
    for t in range(9):
        want = b.clone()
        for k in range(4):
            pos = t - 3 + k
            if pos >= 0:
                want = want + w[:, k] * x[:, :, pos]
        torch.testing.assert_close(y[:, :, t], want)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(2, 64, 300, 4), (1, 17, 1, 4), (2, 40, 1030, 3)])
def test_low_precision_error_within_torch(device, shape, dtype):
    x, w, b = make_inputs(shape, dtype, device)
    y = ops.causal_conv1d_fn(x, w, b, activation="silu")
    truth = ref.causal_conv1d_fn(x.double(), w.double(), b.double(), activation="silu")
    pad = F.conv1d(x, w.unsqueeze(1), b, padding=shape[3] - 1, groups=shape[1])[..., : shape[2]]
    plain = F.silu(pad) if x.device.type == "cuda" else F.silu(pad.float()).to(dtype)
    assert y.dtype == dtype
    assert_close_to_truth(y, truth, plain)


@pytest.mark.parametrize("layout", ["channel_last", "strided"])
def test_non_contiguous_inputs(device, layout):
    x, w, b = make_inputs((2, 24, 700, 4), torch.float32, device, layout=layout)
    assert not x.is_contiguous()
    y = ops.causal_conv1d_fn(x, w, b, activation="silu")
    torch.testing.assert_close(y, ref.causal_conv1d_fn(x.contiguous(), w, b, activation="silu"))


@pytest.mark.parametrize("mode", ["plain", "states", "packed", "width7"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_channel_last_layout(device, mode, dtype):
    """Channel-last x (what a Mamba mixer hands the conv) has its own vectorised CPU path."""
    shape = (2, 70, 300, 7 if mode == "width7" else 4)
    x, w, b = make_inputs(shape, dtype, device, layout="channel_last")
    kwargs = {}
    if mode == "states":
        kwargs["initial_states"] = torch.randn(2, 3, 70, dtype=dtype, device=device).transpose(1, 2)
        kwargs["return_final_states"] = True
    if mode == "packed":
        kwargs["seq_idx"] = packed_seq_idx(2, 300, device, lengths=(5, 1, 100, 3))
    got = ops.causal_conv1d_fn(x, w, b, activation="silu", **kwargs)
    want = ref.causal_conv1d_fn(x.contiguous(), w, b, activation="silu", **kwargs)
    tol = {torch.float32: 2e-5, torch.float64: 1e-12, torch.bfloat16: 1e-2}[dtype]
    for g, r in zip(
        got if isinstance(got, tuple) else [got], want if isinstance(want, tuple) else [want]
    ):
        torch.testing.assert_close(g, r, rtol=tol, atol=tol)


def test_weight_dtypes_are_cast(device):
    x, w, b = make_inputs((2, 8, 50, 4), torch.bfloat16, device)
    y = ops.causal_conv1d_fn(x, w, b)  # bf16 weights, computed in fp32
    y32 = ops.causal_conv1d_fn(x, w.float(), b.float())
    torch.testing.assert_close(y, y32)


@pytest.mark.parametrize("shape", [(2, 20, 50, 4), (2, 20, 2, 4), (1, 9, 1300, 3), (2, 4, 0, 4)])
def test_initial_and_final_states(device, shape):
    x, w, b = make_inputs(shape, torch.float64, device)
    init = torch.randn(shape[0], shape[1], shape[3] - 1, dtype=torch.float64, device=device)
    y, fin = ops.causal_conv1d_fn(
        x, w, b, initial_states=init, return_final_states=True, activation="silu"
    )
    y_ref, fin_ref = ref.causal_conv1d_fn(
        x, w, b, initial_states=init, return_final_states=True, activation="silu"
    )
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(fin, fin_ref)
    # The final states are the last K-1 inputs of [initial_states ; x].
    torch.testing.assert_close(fin, torch.cat([init, x], -1)[..., -(shape[3] - 1) :])


def test_final_states_out(device):
    x, w, b = make_inputs((2, 8, 30, 4), torch.float32, device)
    buf = torch.zeros(2, 8, 3, device=device)
    _y, fin = ops.causal_conv1d_fn(x, w, b, final_states_out=buf)
    assert fin is buf
    torch.testing.assert_close(buf, x[..., -3:])


def test_two_halves_chained_equal_one_run(device):
    x, w, b = make_inputs((2, 16, 900, 4), torch.float64, device)
    full = ops.causal_conv1d_fn(x, w, b, activation="silu")
    y1, s1 = ops.causal_conv1d_fn(x[..., :333], w, b, return_final_states=True, activation="silu")
    y2 = ops.causal_conv1d_fn(x[..., 333:], w, b, initial_states=s1, activation="silu")
    torch.testing.assert_close(torch.cat([y1, y2], -1), full)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_packed_sequences_equal_separate_runs(device, dtype):
    x, w, b = make_inputs((2, 20, 1300, 4), dtype, device)
    seq = packed_seq_idx(2, 1300, device)
    y = ops.causal_conv1d_fn(x, w, b, seq_idx=seq, activation="silu")
    for start, end in _runs(seq[0].tolist()):
        alone = ops.causal_conv1d_fn(x[..., start:end], w, b, activation="silu")
        torch.testing.assert_close(y[..., start:end], alone, rtol=EXACT[dtype], atol=EXACT[dtype])
    torch.testing.assert_close(
        y,
        ref.causal_conv1d_fn(x, w, b, seq_idx=seq, activation="silu"),
        rtol=EXACT[dtype],
        atol=EXACT[dtype],
    )


def _runs(ids):
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or ids[i] != ids[start]:
            yield start, i
            start = i


def _grads(impl, x, w, b, init, seq, activation, with_final):
    for t in (x, w, b, init):
        if t is not None:
            t.grad = None
    kwargs = dict(seq_idx=seq, activation=activation)
    if with_final:
        y, fin = impl.causal_conv1d_fn(
            x, w, b, initial_states=init, return_final_states=True, **kwargs
        )
        loss = (y.sin() * 1.7).sum() + (fin * fin).sum()
    else:
        y = impl.causal_conv1d_fn(x, w, b, initial_states=init, **kwargs)
        loss = (y.sin() * 1.7).sum()
    loss.backward()
    return [t.grad if t is not None else None for t in (x, w, b, init)]


@pytest.mark.parametrize(
    ("shape", "mode"),
    [
        ((2, 19, 300, 4), "plain"),
        ((2, 19, 1300, 4), "states"),
        ((1, 3, 2, 4), "states"),
        ((2, 5, 1, 3), "states"),
        ((2, 33, 1300, 4), "packed"),
        ((1, 4, 19, 1), "plain"),
    ],
)
@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backward_matches_reference(device, shape, mode, activation, dtype):
    x, w, b = make_inputs(shape, dtype, device)
    init = seq = None
    if mode == "states":
        init = torch.randn(shape[0], shape[1], shape[3] - 1, dtype=dtype, device=device)
    if mode == "packed":
        seq = packed_seq_idx(shape[0], shape[2], device)
    leaves = [t.requires_grad_() for t in (x, w, b, init) if t is not None]
    assert leaves
    got = _grads(ops, x, w, b, init, seq, activation, mode == "states")
    want = _grads(ref, x, w, b, init, seq, activation, mode == "states")
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    for g, r in zip(got, want):
        if r is not None:
            torch.testing.assert_close(g, r, rtol=tol, atol=tol)


def test_backward_of_empty_sequence_reaches_initial_states(device):
    """With seqlen 0 the final states are the initial states: their gradient passes through."""
    init = torch.randn(2, 3, 3, dtype=torch.float64, device=device, requires_grad=True)
    x = torch.randn(2, 3, 0, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.randn(3, 4, dtype=torch.float64, device=device, requires_grad=True)
    _, fin = ops.causal_conv1d_fn(x, w, initial_states=init, return_final_states=True)
    (fin * 3).sum().backward()
    torch.testing.assert_close(init.grad, torch.full_like(init, 3.0))
    torch.testing.assert_close(w.grad, torch.zeros_like(w))


@pytest.mark.parametrize("mode", ["states", "packed", "bias_free"])
def test_gradcheck_float64(mode):
    x, w, b = make_inputs((2, 3, 11, 4), torch.float64, "cpu", bias=mode != "bias_free")
    init = torch.randn(2, 3, 3, dtype=torch.float64) if mode == "states" else None
    seq = packed_seq_idx(2, 11, "cpu", lengths=(4, 1, 6)) if mode == "packed" else None
    inputs = [t.requires_grad_() for t in (x, w, b, init) if t is not None]

    def fn(*args):
        it = iter(args)
        xx, ww = next(it), next(it)
        bb = next(it) if b is not None else None
        ii = next(it) if init is not None else None
        if ii is not None:
            return ops.causal_conv1d_fn(
                xx, ww, bb, initial_states=ii, return_final_states=True, activation="silu"
            )
        return ops.causal_conv1d_fn(xx, ww, bb, seq_idx=seq, activation="silu")

    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("isa", CPU_ISAS)
def test_isa_variants_agree(isa):
    x, w, b = make_inputs((2, 40, 1100, 4), torch.float32, "cpu")
    seq = packed_seq_idx(2, 1100, "cpu")
    x.requires_grad_()
    with cpu_isa(isa):
        y = ops.causal_conv1d_fn(x, w, b, seq_idx=seq, activation="silu")
        (gx,) = torch.autograd.grad(y.sum(), x)
        yh = ops.causal_conv1d_fn(x.detach().half(), w, b, activation="silu")
    torch.testing.assert_close(y, ref.causal_conv1d_fn(x, w, b, seq_idx=seq, activation="silu"))
    xr = x.detach().requires_grad_()
    (gr,) = torch.autograd.grad(
        ref.causal_conv1d_fn(xr, w, b, seq_idx=seq, activation="silu").sum(), xr
    )
    torch.testing.assert_close(gx, gr)
    torch.testing.assert_close(
        yh, ref.causal_conv1d_fn(x.detach().half(), w, b, activation="silu"), rtol=1e-3, atol=1e-3
    )


def test_thread_count_does_not_change_results():
    x, w, b = make_inputs((1, 3, 5000, 4), torch.float32, "cpu")
    x.requires_grad_()
    w.requires_grad_()
    before = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            y = ops.causal_conv1d_fn(x, w, b, activation="silu")
            results.append((y, *torch.autograd.grad(y.square().sum(), (x, w))))
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        for a, c in zip(results[0], other):
            assert torch.equal(a, c)


def test_torch_compile_fullgraph():
    x, w, b = make_inputs((2, 16, 64, 4), torch.float32, "cpu")
    x.requires_grad_()

    @torch.compile(fullgraph=True, backend="aot_eager")
    def f(x, w, b):
        y, fin = ops.causal_conv1d_fn(x, w, b, return_final_states=True, activation="silu")
        return y * 2 + 1, fin

    y, _fin = f(x, w, b)
    y.sum().backward()
    torch.testing.assert_close(y, ops.causal_conv1d_fn(x, w, b, activation="silu") * 2 + 1)
    xr = x.detach().requires_grad_()
    (ops.causal_conv1d_fn(xr, w, b, activation="silu") * 2 + 1).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)


def test_torch_compile_inductor():
    x, w, b = make_inputs((2, 16, 64, 4), torch.float32, "cpu")
    f = torch.compile(
        lambda x: ops.causal_conv1d_fn(x, w, b, activation="silu").relu(), fullgraph=True
    )
    torch.testing.assert_close(f(x), ops.causal_conv1d_fn(x, w, b, activation="silu").relu())


def test_opcheck():
    x, w, b = make_inputs((2, 8, 20, 4), torch.float32, "cpu")
    init = torch.randn(2, 8, 3)
    torch.library.opcheck(
        torch.ops.nemocore.causal_conv1d_fwd.default, (x, w, b, None, init, True, True)
    )
    state = torch.randn(2, 8, 4)
    torch.library.opcheck(
        torch.ops.nemocore.causal_conv1d_update.default, (x[..., :2], state, w, b, None, None, True)
    )


# ---- decode-time update ----------------------------------------------------------------------


@pytest.mark.parametrize("state_len", [3, 4, 9])
@pytest.mark.parametrize("step", [1, 2, 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_prefill_then_update_equals_full_run(device, state_len, step, dtype):
    b, c, k, prefix, total = 2, 24, 4, 13, 33
    x, w, bias = make_inputs((b, c, total, k), dtype, device)
    full = ops.causal_conv1d_fn(x, w, bias, activation="silu")
    out, fin = ops.causal_conv1d_fn(
        x[..., :prefix], w, bias, return_final_states=True, activation="silu"
    )
    state = torch.zeros(b, c, state_len, dtype=dtype, device=device)
    state[..., -(k - 1) :] = fin
    outs = [out]
    for t in range(prefix, total, step):
        chunk = x[..., t : t + step]
        arg = chunk[..., 0] if step == 1 else chunk
        y = ops.causal_conv1d_update(arg, state, w, bias, activation="silu")
        outs.append(y.unsqueeze(-1) if step == 1 else y)
    torch.testing.assert_close(torch.cat(outs, -1), full, rtol=EXACT[dtype], atol=EXACT[dtype])
    torch.testing.assert_close(state, x[..., total - state_len :])


def test_update_matches_reference_with_circular_buffer_and_indices(device):
    b, c, k, s, pool = 3, 20, 4, 2, 5
    x, w, bias = make_inputs((b, c, s, k), torch.float32, device)
    state = torch.randn(pool, c, 6, device=device)
    seqlens = torch.tensor([0, 7, 4], dtype=torch.int32, device=device)
    index = torch.tensor([4, -1, 1], dtype=torch.int32, device=device)
    s_ops, s_ref = state.clone(), state.clone()
    y = ops.causal_conv1d_update(
        x, s_ops, w, bias, "silu", cache_seqlens=seqlens, conv_state_indices=index
    )
    y_ref = ref.causal_conv1d_update(
        x, s_ref, w, bias, "silu", cache_seqlens=seqlens, conv_state_indices=index
    )
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(s_ops, s_ref)
    assert torch.equal(y[1], torch.zeros_like(y[1]))  # padded row
    assert torch.equal(s_ops[[0, 2, 3]], state[[0, 2, 3]])  # rows nobody owns stay as they were


def test_circular_buffer_decoding_equals_full_run(device):
    b, c, k, total, S = 2, 8, 4, 20, 5
    x, w, bias = make_inputs((b, c, total, k), torch.float64, device)
    full = ops.causal_conv1d_fn(x, w, bias)
    state = torch.zeros(b, c, S, dtype=torch.float64, device=device)
    seqlens = torch.zeros(b, dtype=torch.int32, device=device)
    outs = []
    for t in range(total):
        outs.append(ops.causal_conv1d_update(x[..., t], state, w, bias, cache_seqlens=seqlens))
        seqlens += 1
    torch.testing.assert_close(torch.stack(outs, -1), full)


def test_update_under_compile():
    x, w, b = make_inputs((2, 8, 1, 4), torch.float32, "cpu")
    s1, s2 = torch.randn(2, 8, 3), None
    s2 = s1.clone()
    f = torch.compile(ops.causal_conv1d_update, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(
        f(x[..., 0], s1, w, b, "silu"), ops.causal_conv1d_update(x[..., 0], s2, w, b, "silu")
    )
    torch.testing.assert_close(s1, s2)


# ---- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda x, w: ops.causal_conv1d_fn(x[0], w), ValueError, "x: expected 3 dimensions"),
        (lambda x, w: ops.causal_conv1d_fn(x.int(), w), TypeError, "x: expected dtype"),
        (lambda x, w: ops.causal_conv1d_fn(x, w[:3]), ValueError, "weight: expected shape"),
        (lambda x, w: ops.causal_conv1d_fn(x, w, torch.zeros(5)), ValueError, "bias"),
        (lambda x, w: ops.causal_conv1d_fn(x, w, activation="gelu"), ValueError, "activation"),
        (
            lambda x, w: ops.causal_conv1d_fn(x, w, initial_states=torch.zeros(2, 8, 2)),
            ValueError,
            "initial_states",
        ),
        (
            lambda x, w: ops.causal_conv1d_fn(x, w, seq_idx=torch.zeros(2, 9, dtype=torch.int32)),
            ValueError,
            "seq_idx",
        ),
        (
            lambda x, w: ops.causal_conv1d_fn(
                x, w, seq_idx=torch.zeros(2, 10).int(), return_final_states=True
            ),
            ValueError,
            "seq_idx",
        ),
        (lambda x, w: ops.causal_conv1d_fn("x", w), TypeError, "x: expected a torch.Tensor"),
        (
            lambda x, w: ops.causal_conv1d_update(x, torch.zeros(2, 8, 2), w),
            ValueError,
            "conv_state",
        ),
        (
            lambda x, w: ops.causal_conv1d_update(x[..., 0], torch.zeros(3, 8, 3), w),
            ValueError,
            "conv_state",
        ),
    ],
)
def test_bad_input_raises_named_error(call, error, match):
    x, w, _ = make_inputs((2, 8, 10, 4), torch.float32, "cpu")
    with pytest.raises(error, match=match):
        call(x, w)


def test_native_layer_checks_too():
    """_C validates on its own, so a direct call with a wrong shape cannot read out of bounds."""
    x, w, _ = make_inputs((2, 8, 10, 4), torch.float32, "cpu")
    C = _native.kernels()
    with pytest.raises(ValueError, match="out: expected shape"):
        C.causal_conv1d_fwd(x, w, None, None, None, torch.empty(2, 8, 9), None, False, 1, 0)
    with pytest.raises(ValueError, match="weight: expected dtype float32"):
        C.causal_conv1d_fwd(x, w.double(), None, None, None, torch.empty_like(x), None, False, 1, 0)
    with pytest.raises(ValueError, match=r"x: expected a torch\.Tensor"):
        C.causal_conv1d_fwd(1, w, None, None, None, x, None, False, 1, 0)


def test_meta_tensors_give_shapes():
    x, w, _ = make_inputs((2, 8, 10, 4), torch.float32, "meta")
    y, fin = ops.causal_conv1d_fn(x, w, return_final_states=True)
    assert y.device.type == "meta"
    assert y.shape == x.shape
    assert fin.shape == (2, 8, 3)


@pytest.mark.skipif(_native.has_cuda_kernels(), reason="checks the error of a build without CUDA")
def test_cuda_launch_without_cuda_kernels_is_a_clear_error():
    with pytest.raises(RuntimeError, match="built without CUDA kernels"):
        _native.launch_args(torch.device("cuda", 0))


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_matches_cpu(dtype):
    x, w, b = make_inputs((4, 96, 2100, 4), dtype, "cpu")
    seq = packed_seq_idx(4, 2100, "cpu")
    y_cpu = ops.causal_conv1d_fn(x, w, b, seq_idx=seq, activation="silu")
    y_gpu = ops.causal_conv1d_fn(
        x.cuda(), w.cuda(), b.cuda(), seq_idx=seq.cuda(), activation="silu"
    )
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=tol, atol=tol)
