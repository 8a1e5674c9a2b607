"""Mamba-2 SSD scan and decode step: the C++ kernels against two independent pure-PyTorch
references, the token-by-token recurrence (R1) and the chunked einsum form (R2) (kernels.md 2).

Tolerances: float64 kernels against float64 references to 1e-10 (rounding of the chunked
order only); float32 to 1e-4 relative to the output's scale (sums over a chunk of 256 terms);
bf16/fp16 at most 2x the error of plain PyTorch computing the same function at that precision
(``assert_close_to_truth``).
"""

from __future__ import annotations

import math

import pytest
import torch

from conftest import CPU_ISAS, assert_close_to_truth, cpu_isa, requires_cuda
from nemocore import _native, ops, ref


def _cuda_ssd_built(*ops: str) -> bool:
    """Whether this build has the CUDA kernels of `ops` ("fwd", "bwd", "update"; none: all)."""
    info = _native.kernels().build_info()
    return all(bool(info.get(f"cuda_ssd_{op}" if op else "cuda_ssd", False)) for op in ops or ("",))


def _devices(*ops: str) -> list:
    return [
        "cpu",
        pytest.param(
            "cuda",
            marks=[
                requires_cuda,
                pytest.mark.cuda,
                pytest.mark.skipif(
                    not _cuda_ssd_built(*ops),
                    reason=f"CUDA SSD kernels ({', '.join(ops) or 'all'}) not built",
                ),
            ],
        ),
    ]


@pytest.fixture(params=_devices())
def device(request) -> torch.device:
    """A device on which every SSD op runs."""
    return torch.device(request.param)


@pytest.fixture(params=_devices("update"))
def update_device(request) -> torch.device:
    """A device on which the decode step runs."""
    return torch.device(request.param)


@pytest.fixture(params=_devices("fwd"))
def fwd_device(request) -> torch.device:
    """A device on which the scan's forward runs."""
    return torch.device(request.param)


@pytest.fixture(params=_devices("fwd", "update"))
def fwd_update_device(request) -> torch.device:
    """A device on which the scan's forward and the decode step run."""
    return torch.device(request.param)


# (batch, seqlen, nheads, headdim, ngroups, dstate, chunk): seqlen not a multiple of the chunk,
# shorter than the chunk, 1 and 0; ngroups 1 and = nheads; head dims and state sizes that are
# not multiples of the 16-float register block.
SHAPES = [
    (2, 37, 4, 3, 2, 5, 8),
    (1, 1, 2, 4, 1, 3, 8),
    (2, 5, 4, 8, 4, 16, 16),
    (1, 64, 6, 16, 1, 32, 16),
    (3, 19, 4, 5, 4, 7, 19),
    (2, 0, 2, 4, 1, 3, 8),
]


def make_inputs(shape, dtype=torch.float64, device="cpu", *, dt_scale=1.0):
    b, L, H, P, G, N, _ = shape
    g = torch.Generator().manual_seed(sum(shape))

    def rnd(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64).to(device, dtype)

    x, B, C = rnd(b, L, H, P), rnd(b, L, G, N), rnd(b, L, G, N)
    dt = (rnd(b, L, H) * dt_scale).to(torch.float32 if dtype != torch.float64 else dtype)
    A = -torch.rand(H, generator=g, dtype=torch.float64).to(device, dt.dtype) - 0.2
    return x, dt, A, B, C


def extras(shape, dtype=torch.float64, device="cpu", *, D_dims=1):
    b, L, H, P, _, N, _ = shape
    g = torch.Generator().manual_seed(7)
    acc = torch.float64 if dtype == torch.float64 else torch.float32

    def rnd(*s, dt=dtype):
        return torch.randn(*s, generator=g, dtype=torch.float64).to(device, dt)

    D = rnd(H, dt=acc) if D_dims == 1 else rnd(H, P, dt=acc)
    return {
        "D": D,
        "z": rnd(b, L, H, P),
        "dt_bias": rnd(H, dt=acc) - 1,
        "initial_states": rnd(b, H, P, N, dt=acc),
        "dt_softplus": True,
    }


def close(got, want, tol):
    for g, w in zip(
        got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)
    ):
        scale = max(w.abs().max().item(), 1.0) if w.numel() else 1.0
        torch.testing.assert_close(g, w, rtol=tol, atol=tol * scale)


# ---- references ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_extras", [False, True])
def test_references_agree(shape, with_extras):
    """R1 (recurrence) == R2 (chunked einsums), so either can stand for the truth."""
    x, dt, A, B, C = make_inputs(shape)
    kw = extras(shape) if with_extras else {}
    r1 = ref.ssd_recurrence(x, dt, A, B, C, shape[-1], return_final_states=True, **kw)
    r2 = ref.mamba_chunk_scan_combined(x, dt, A, B, C, shape[-1], return_final_states=True, **kw)
    close(r1, r2, 1e-10)


def test_softplus_is_identity_above_20_and_limit_clamps():
    dt = torch.tensor([-3.0, 0.5, 19.0, 21.0, 50.0], dtype=torch.float64)
    got = ref.ssd.process_dt(dt, None, True, (0.0, math.inf))
    want = torch.tensor([math.log1p(math.exp(v)) if v <= 20 else v for v in dt.tolist()])
    torch.testing.assert_close(got, want.double())
    clamped = ref.ssd.process_dt(dt, None, True, (0.1, 20.5))
    torch.testing.assert_close(clamped, want.double().clamp(0.1, 20.5))


# ---- forward ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("D_dims", [1, 2])
def test_forward_matches_reference(fwd_device, shape, dtype, D_dims):
    device = fwd_device
    x, dt, A, B, C = make_inputs(shape, dtype, device, dt_scale=0.5)
    kw = extras(shape, dtype, device, D_dims=D_dims)
    got = ops.mamba_chunk_scan_combined(x, dt, A, B, C, shape[-1], return_final_states=True, **kw)
    want = ref.mamba_chunk_scan_combined(x, dt, A, B, C, shape[-1], return_final_states=True, **kw)
    assert got[0].dtype == dtype
    assert got[1].dtype == dt.dtype
    close(got, want, 1e-10 if dtype == torch.float64 else 1e-4)


def test_forward_matches_recurrence_at_benchmark_like_sizes():
    shape = (1, 300, 4, 64, 2, 128, 128)
    x, dt, A, B, C = make_inputs(shape, dt_scale=0.3)
    kw = {"dt_bias": torch.zeros(4, dtype=torch.float64) - 2, "dt_softplus": True}
    got = ops.mamba_chunk_scan_combined(x, dt, A, B, C, 128, return_final_states=True, **kw)
    close(got, ref.ssd_recurrence(x, dt, A, B, C, 128, return_final_states=True, **kw), 1e-10)


def test_chunk_size_changes_rounding_only():
    shape = (2, 100, 4, 8, 2, 16, 0)
    x, dt, A, B, C = make_inputs(shape)
    kw = extras(shape)
    runs = [ops.mamba_chunk_scan_combined(x, dt, A, B, C, q, **kw) for q in (1, 7, 64, 256)]
    for other in runs[1:]:
        close(other, runs[0], 1e-10)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_error_within_torch(fwd_device, dtype):
    device = fwd_device
    shape = (2, 150, 4, 32, 2, 32, 64)
    x, dt, A, B, C = make_inputs(shape, dtype, device, dt_scale=0.5)
    kw = extras(shape, dtype, device)
    y = ops.mamba_chunk_scan_combined(x, dt, A, B, C, 64, **kw)
    assert y.dtype == dtype
    wide = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
    truth = ref.ssd_recurrence(
        x.double(), dt.double(), A.double(), B.double(), C.double(), 64, **wide
    )
    # Plain PyTorch at this precision: the chunked reference on the same inputs, rounded.
    plain = ref.mamba_chunk_scan_combined(x, dt, A, B, C, 64, **kw)
    assert_close_to_truth(y, truth, plain)


def test_non_contiguous_inputs(fwd_device):
    """x, B and C as views of one fused projection (as in a Mamba mixer), dt strided."""
    device = fwd_device
    b, L, H, P, G, N = 2, 70, 4, 16, 2, 8
    zxbc = torch.randn(b, L, H * P + 2 * G * N + 3, dtype=torch.float64, device=device)
    x = zxbc[..., : H * P].view(b, L, H, P)
    B = zxbc[..., H * P : H * P + G * N].view(b, L, G, N)
    C = zxbc[..., H * P + G * N : H * P + 2 * G * N].view(b, L, G, N)
    dt = torch.randn(b, H, L, dtype=torch.float64, device=device).transpose(1, 2)
    A = -torch.rand(H, dtype=torch.float64, device=device)
    z = torch.randn(b, L, P, H, dtype=torch.float64, device=device).transpose(2, 3)
    assert not any(t.is_contiguous() for t in (x, B, C, dt, z))
    got = ops.mamba_chunk_scan_combined(x, dt, A, B, C, 16, z=z, dt_softplus=True)
    want = ref.mamba_chunk_scan_combined(
        x.contiguous(),
        dt.contiguous(),
        A,
        B.contiguous(),
        C.contiguous(),
        16,
        z=z.contiguous(),
        dt_softplus=True,
    )
    close(got, want, 1e-10)


# ---- packed sequences and chained states -----------------------------------------------------


def _packed(batch, lengths, device):
    ids = torch.cat([torch.full((n,), i, dtype=torch.int32) for i, n in enumerate(lengths)])
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    return ids.expand(batch, -1).contiguous().to(device), cu.to(device)


@pytest.mark.parametrize("mode", ["seq_idx", "cu_seqlens", "cu_seqlens_per_seq_init"])
def test_packed_sequences_equal_separate_runs(fwd_device, mode):
    device = fwd_device
    lengths = [5, 1, 40, 17, 3]
    shape = (1 if mode != "seq_idx" else 2, sum(lengths), 4, 8, 2, 16, 16)
    x, dt, A, B, C = make_inputs(shape, device=device)
    kw = extras(shape, device=device)
    ids, cu = _packed(shape[0], lengths, device)
    init = kw.pop("initial_states")
    if mode == "cu_seqlens_per_seq_init":
        init = torch.randn(len(lengths), *init.shape[1:], dtype=init.dtype, device=device)
    args = {"seq_idx": ids}
    if mode != "seq_idx":
        args.update(cu_seqlens=cu, return_varlen_states=True)
    y, final, *varlen = ops.mamba_chunk_scan_combined(
        x, dt, A, B, C, 16, initial_states=init, return_final_states=True, **args, **kw
    )
    starts = cu.tolist()
    for s in range(len(lengths)):
        part = slice(starts[s], starts[s + 1])
        own = init[s : s + 1] if mode == "cu_seqlens_per_seq_init" else None
        s_init = own if own is not None else (init if s == 0 else None)
        zs = kw["z"][:, part]
        alone, fin = ops.mamba_chunk_scan_combined(
            x[:, part],
            dt[:, part],
            A,
            B[:, part],
            C[:, part],
            16,
            initial_states=s_init,
            return_final_states=True,
            **{**kw, "z": zs},
        )
        close(y[:, part], alone, 1e-10)
        if varlen:
            close(varlen[0][s : s + 1], fin, 1e-10)
    close(final, fin, 1e-10)
    want = ref.mamba_chunk_scan_combined(
        x, dt, A, B, C, 16, initial_states=init, return_final_states=True, **args, **kw
    )
    close((y, final, *varlen), want, 1e-10)


def test_two_halves_chained_equal_one_run(fwd_device):
    device = fwd_device
    shape = (2, 90, 4, 8, 2, 16, 16)
    x, dt, A, B, C = make_inputs(shape, device=device)
    kw = extras(shape, device=device)
    init, z = kw.pop("initial_states"), kw.pop("z")
    full, fin = ops.mamba_chunk_scan_combined(
        x, dt, A, B, C, 16, z=z, initial_states=init, return_final_states=True, **kw
    )
    h = 37  # not a chunk boundary
    y1, s1 = ops.mamba_chunk_scan_combined(
        x[:, :h],
        dt[:, :h],
        A,
        B[:, :h],
        C[:, :h],
        16,
        z=z[:, :h],
        initial_states=init,
        return_final_states=True,
        **kw,
    )
    y2, s2 = ops.mamba_chunk_scan_combined(
        x[:, h:],
        dt[:, h:],
        A,
        B[:, h:],
        C[:, h:],
        16,
        z=z[:, h:],
        initial_states=s1,
        return_final_states=True,
        **kw,
    )
    close((torch.cat([y1, y2], 1), s2), (full, fin), 1e-10)


@pytest.mark.parametrize("dt_limit", [(0.0, math.inf), (0.05, 0.4)])
def test_prefill_then_state_updates_equal_one_scan(fwd_update_device, dt_limit):
    device = fwd_update_device
    shape = (3, 40, 4, 8, 2, 16, 16)
    x, dt, A, B, C = make_inputs(shape, device=device)
    kw = extras(shape, device=device, D_dims=2)
    z = kw.pop("z")
    common = dict(dt_limit=dt_limit, **kw)
    full = ops.mamba_chunk_scan_combined(x, dt, A, B, C, 16, z=z, **common)
    prefix = 33
    y, state = ops.mamba_chunk_scan_combined(
        x[:, :prefix],
        dt[:, :prefix],
        A,
        B[:, :prefix],
        C[:, :prefix],
        16,
        z=z[:, :prefix],
        return_final_states=True,
        **common,
    )
    H, P, N = shape[2], shape[3], shape[5]
    outs = [y]
    for t in range(prefix, shape[1]):
        outs.append(
            ops.selective_state_update(
                state,
                x[:, t],
                dt[:, t, :, None].expand(-1, H, P),
                A[:, None, None].expand(H, P, N),
                B[:, t],
                C[:, t],
                D=kw["D"],
                z=z[:, t],
                dt_bias=kw["dt_bias"][:, None].expand(H, P),
                dt_softplus=True,
                dt_limit=dt_limit,
            )[:, None]
        )
    close(torch.cat(outs, 1), full, 1e-10)


# ---- decode step -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "state_dtype"),
    [
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
        (torch.float64, torch.float32),  # a float32 state under float64 compute
        (torch.bfloat16, torch.float32),
        (torch.float16, torch.float16),
    ],
)
def test_state_update_matches_reference(update_device, dtype, state_dtype):
    device = update_device
    b, H, P, G, N, pool = 4, 6, 8, 3, 16, 7
    g = torch.Generator().manual_seed(1)

    def rnd(*s, dt=dtype):
        return torch.randn(*s, generator=g, dtype=torch.float64).to(device, dt)

    acc = torch.float64 if dtype == torch.float64 else torch.float32
    state = rnd(pool, H, P, N, dt=state_dtype)
    x, B, C, z = rnd(b, H, P), rnd(b, G, N), rnd(b, G, N), rnd(b, H, P)
    dt = rnd(b, H, dt=acc)[..., None].expand(b, H, P)  # stride-0 along P, as mamba_ssm passes it
    A = (-rnd(H, dt=acc).abs())[:, None, None].expand(H, P, N)
    D, bias = rnd(H, P, dt=acc), rnd(H, dt=acc)
    idx = torch.tensor([5, -1, 0, 2], dtype=torch.int32, device=device)
    s_ops, s_ref = state.clone(), state.clone()
    kw = dict(D=D, z=z, dt_bias=bias, dt_softplus=True, state_batch_indices=idx)
    y = ops.selective_state_update(s_ops, x, dt, A, B, C, **kw)
    y_ref = ref.selective_state_update(s_ref, x, dt, A, B, C, **kw)
    tol = {torch.float64: 1e-12, torch.float32: 1e-5}.get(dtype, 2e-2)
    if state_dtype == torch.float32:
        tol = max(tol, 1e-5)  # the state itself is rounded to float32
    close(y, y_ref, tol)
    close(s_ops.double(), s_ref.double(), tol if state_dtype != torch.float16 else 2e-3)
    assert torch.equal(y[1], torch.zeros_like(y[1]))  # the padded row
    assert torch.equal(s_ops[[1, 3, 4, 6]], state[[1, 3, 4, 6]])  # rows nobody owns


def test_state_update_single_head_form_and_full_A(update_device):
    """mamba_ssm's (b, P, N) state form, and an A that really varies along P and N."""
    device = update_device
    b, P, N = 3, 5, 4
    state = torch.randn(b, P, N, dtype=torch.float64, device=device)
    x, dt = torch.randn(b, P, dtype=torch.float64, device=device), torch.rand(b, P).double()
    A = -torch.rand(P, N, dtype=torch.float64, device=device)
    B, C = torch.randn(b, N).double().to(device), torch.randn(b, N).double().to(device)
    s_ref = state.clone()
    y = ops.selective_state_update(
        state, x, dt.to(device), A, B, C, D=torch.ones(P, dtype=torch.float64, device=device)
    )
    y_ref = ref.selective_state_update(
        s_ref, x, dt.to(device), A, B, C, D=torch.ones(P, dtype=torch.float64, device=device)
    )
    close((y, state), (y_ref, s_ref), 1e-12)


# ---- backward --------------------------------------------------------------------------------


def _grads(impl, leaves, chunk, loss_final=True, **kw):
    x, dt, A, B, C, D, z, bias, init = leaves
    y, fin = impl.mamba_chunk_scan_combined(
        x,
        dt,
        A,
        B,
        C,
        chunk,
        D=D,
        z=z,
        dt_bias=bias,
        initial_states=init,
        return_final_states=True,
        **kw,
    )
    loss = (y.float().sin() * 1.3).sum() + ((fin * fin.cos()).sum() if loss_final else 0)
    return torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize(
    ("shape", "mode"),
    [
        ((2, 37, 4, 3, 2, 5, 8), "plain"),
        ((2, 37, 4, 3, 2, 5, 8), "seq_idx"),
        ((1, 40, 4, 8, 4, 16, 16), "cu_seqlens"),
        ((1, 1, 2, 4, 1, 3, 8), "plain"),
        ((2, 45, 6, 8, 1, 16, 16), "dt_limit"),
        ((1, 300, 4, 64, 1, 128, 128), "large"),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backward_matches_autograd_through_reference(device, shape, mode, dtype):
    if mode == "large" and dtype == torch.float64:
        pytest.skip("the fp32 run covers this size")
    x, dt, A, B, C = make_inputs(shape, dtype, device, dt_scale=0.5)
    kw = extras(shape, dtype, device, D_dims=2 if mode == "seq_idx" else 1)
    leaves = [
        t.requires_grad_()
        for t in (x, dt, A, B, C, kw["D"], kw["z"], kw["dt_bias"], kw["initial_states"])
    ]
    args = {"dt_softplus": True}
    if mode == "seq_idx":
        args["seq_idx"] = _packed(shape[0], [10, 20, 7], device)[0]
    if mode == "cu_seqlens":
        args["cu_seqlens"] = _packed(1, [9, 1, 30], device)[1]
        args["seq_idx"] = _packed(1, [9, 1, 30], device)[0]
    if mode == "dt_limit":
        args["dt_limit"] = (0.2, 0.6)
    got = _grads(ops, leaves, shape[-1], **args)
    want = _grads(ref, leaves, shape[-1], **args)
    for g, w in zip(got, want):
        close(g, w, 1e-9 if dtype == torch.float64 else 2e-4)


@requires_cuda
@pytest.mark.cuda
@pytest.mark.skipif(not _cuda_ssd_built("fwd", "bwd"), reason="CUDA SSD scan kernels not built")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_backward_matches_cpu_and_is_deterministic(dtype):
    """The CUDA gradients against the CPU kernels' on the same inputs (both accumulate in fp32),
    for packed sequences with per-sequence initial states, the dt clamp, D of (H, P), a
    non-contiguous x, and chunks longer than the kernels' 32-step tiles; two CUDA runs agree
    bit for bit (the backward has no atomics)."""
    lengths = [100, 1, 37, 162]
    shape = (1, sum(lengths), 4, 64, 2, 128, 128)
    x, dt, A, B, C = make_inputs(shape, dtype, dt_scale=0.5)
    kw = extras(shape, dtype, D_dims=2)
    kw["initial_states"] = torch.randn(len(lengths), *kw["initial_states"].shape[1:])
    x = x.transpose(2, 3).contiguous().transpose(2, 3)
    ids, cu = _packed(1, lengths, "cpu")
    args = {"seq_idx": ids, "cu_seqlens": cu, "dt_limit": (0.05, 0.8)}

    def grads(device):
        def move(t):
            return t.detach().to(device).requires_grad_(t.is_floating_point())

        leaves = [
            move(t) for t in (x, dt, A, B, C, kw["D"], kw["z"], kw["dt_bias"], kw["initial_states"])
        ]
        moved = {k: move(v) if k != "dt_limit" else v for k, v in args.items()}
        return [g.cpu() for g in _grads(ops, leaves, shape[-1], dt_softplus=True, **moved)]

    want = grads("cpu")
    got = grads("cuda")
    for g, w in zip(got, want):
        close(g.double(), w.double(), 1e-4 if dtype == torch.float32 else 2e-2)
    for g, again in zip(got, grads("cuda")):
        assert torch.equal(g, again)


@pytest.mark.parametrize("shape", [(0, 5, 2, 4, 1, 3, 4), (2, 0, 2, 4, 1, 3, 4)])
def test_empty_batch_or_sequence_backward(shape):
    """With seqlen 0 the final state is the initial state: its gradient passes straight through."""
    x, dt, A, B, C = make_inputs(shape)
    init = torch.randn(shape[0], shape[2], shape[3], shape[5], dtype=torch.float64)
    leaves = [t.requires_grad_() for t in (x, dt, init)]
    y, fin = ops.mamba_chunk_scan_combined(
        x, dt, A, B, C, 4, initial_states=init, return_final_states=True
    )
    assert y.shape == x.shape
    (y.sum() + (3 * fin).sum()).backward()
    torch.testing.assert_close(fin, init)
    torch.testing.assert_close(init.grad, torch.full_like(init, 3.0))
    assert all(t.grad is not None and t.grad.shape == t.shape for t in leaves)


@pytest.mark.parametrize("mode", ["states", "packed", "limit", "per_dim_D"])
def test_gradcheck_float64(mode):
    # The full Jacobian check ("states") runs at the smallest shape that still has a partial
    # last chunk; the others check a random projection at a larger one.
    shape = (1, 7, 2, 2, 1, 3, 3) if mode == "states" else (2, 9, 4, 2, 2, 3, 4)
    x, dt, A, B, C = make_inputs(shape, dt_scale=0.5)
    kw = extras(shape, D_dims=2 if mode == "per_dim_D" else 1)
    seq = _packed(2, [4, 1, 4], "cpu")[0] if mode == "packed" else None
    limit = (0.3, 0.9) if mode == "limit" else (0.0, math.inf)
    leaves = [
        t.requires_grad_()
        for t in (x, dt, A, B, C, kw["D"], kw["z"], kw["dt_bias"], kw["initial_states"])
    ]

    def fn(x, dt, A, B, C, D, z, bias, init):
        return ops.mamba_chunk_scan_combined(
            x,
            dt,
            A,
            B,
            C,
            shape[-1],
            D=D,
            z=z,
            dt_bias=bias,
            initial_states=init,
            seq_idx=seq,
            dt_softplus=True,
            dt_limit=limit,
            return_final_states=True,
        )

    # Fast mode (a random projection of the Jacobian) for all but one mode keeps this quick.
    assert torch.autograd.gradcheck(fn, leaves, fast_mode=mode != "states")


# ---- ISA variants, threads, torch.compile ----------------------------------------------------


@pytest.mark.parametrize("isa", CPU_ISAS)
def test_isa_variants_agree(isa):
    shape = (2, 70, 4, 24, 2, 20, 32)
    x, dt, A, B, C = make_inputs(shape, torch.float32, dt_scale=0.5)
    kw = extras(shape, torch.float32)
    x.requires_grad_()
    with cpu_isa(isa):
        y = ops.mamba_chunk_scan_combined(x, dt, A, B, C, 32, **kw)
        (gx,) = torch.autograd.grad(y.sum(), x)
        yh = ops.mamba_chunk_scan_combined(x.detach().half(), dt, A, B.half(), C.half(), 32)
    xr = x.detach().requires_grad_()
    yr = ref.mamba_chunk_scan_combined(xr, dt, A, B, C, 32, **kw)
    (gr,) = torch.autograd.grad(yr.sum(), xr)
    close((y, gx), (yr, gr), 1e-4)
    close(
        yh.float(),
        ref.mamba_chunk_scan_combined(x.detach().half(), dt, A, B.half(), C.half(), 32).float(),
        2e-2,
    )


def test_thread_count_does_not_change_results():
    shape = (1, 200, 4, 16, 1, 16, 32)
    x, dt, A, B, C = make_inputs(shape, torch.float32)
    x.requires_grad_()
    B.requires_grad_()
    before = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            y = ops.mamba_chunk_scan_combined(x, dt, A, B, C, 32, dt_softplus=True)
            results.append((y, *torch.autograd.grad(y.square().sum(), (x, B))))
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        for a, c in zip(results[0], other):
            assert torch.equal(a, c)


def test_torch_compile_fullgraph():
    shape = (2, 40, 4, 8, 2, 16, 16)
    x, dt, A, B, C = make_inputs(shape, torch.float32)
    kw = extras(shape, torch.float32)
    x.requires_grad_()

    @torch.compile(fullgraph=True, backend="aot_eager")
    def f(x):
        y, fin = ops.mamba_chunk_scan_combined(x, dt, A, B, C, 16, return_final_states=True, **kw)
        return y * 2, fin

    y, _ = f(x)
    y.sum().backward()
    xr = x.detach().requires_grad_()
    yr = ops.mamba_chunk_scan_combined(xr, dt, A, B, C, 16, **kw) * 2
    yr.sum().backward()
    close((y, x.grad), (yr, xr.grad), 1e-6)

    state = torch.zeros(2, 4, 8, 16)
    step = torch.compile(ops.selective_state_update, fullgraph=True, backend="aot_eager")
    s2 = state.clone()
    args = (
        x[:, 0].detach(),
        dt[:, 0, :, None].expand(2, 4, 8),
        A[:, None, None].expand(4, 8, 16),
        B[:, 0],
        C[:, 0],
    )
    close(step(state, *args), ops.selective_state_update(s2, *args), 1e-6)
    close(state, s2, 1e-6)


def test_opcheck():
    shape = (2, 20, 4, 8, 2, 16, 8)
    x, dt, A, B, C = make_inputs(shape, torch.float32)
    kw = extras(shape, torch.float32)
    torch.library.opcheck(
        torch.ops.nemocore.ssd_chunk_scan_fwd.default,
        (
            x,
            dt,
            A,
            B,
            C,
            kw["D"],
            kw["z"],
            kw["dt_bias"],
            kw["initial_states"],
            None,
            None,
            8,
            True,
            0.0,
            math.inf,
            False,
        ),
    )


# ---- bad input -------------------------------------------------------------------------------


def _bad_cases():
    x, dt, A, B, C = make_inputs((2, 10, 4, 8, 2, 16, 8), torch.float32)
    ok = dict(x=x, dt=dt, A=A, B=B, C=C, chunk_size=8)
    yield "x", {**ok, "x": x[0]}, ValueError
    yield "B", {**ok, "B": B[:1]}, ValueError
    yield "C", {**ok, "C": C[..., :3]}, ValueError
    yield (
        "ngroups = 3",
        {**ok, "B": torch.randn(2, 10, 3, 16), "C": torch.randn(2, 10, 3, 16)},
        ValueError,
    )
    yield "dt", {**ok, "dt": dt[..., :3]}, ValueError
    yield "A", {**ok, "A": A[:2]}, ValueError
    yield "D", {**ok, "D": torch.randn(5)}, ValueError
    yield "x", {**ok, "x": x.int()}, TypeError
    yield "dt", {**ok, "dt": [1.0]}, TypeError
    yield "chunk_size", {**ok, "chunk_size": 0}, ValueError
    yield "initial_states", {**ok, "initial_states": torch.randn(3, 4, 8, 16)}, ValueError
    yield "return_varlen_states", {**ok, "return_varlen_states": True}, ValueError
    yield "cu_seqlens", {**ok, "cu_seqlens": torch.tensor([0, 10], dtype=torch.int32)}, ValueError
    yield "dt_limit", {**ok, "dt_limit": (1.0, 0.5)}, ValueError
    x1 = x[:1]
    one = dict(x=x1, dt=dt[:1], A=A, B=B[:1], C=C[:1], chunk_size=8)
    yield (
        "cu_seqlens",
        {**one, "cu_seqlens": torch.tensor([0, 4, 9], dtype=torch.int32)},
        ValueError,
    )


@pytest.mark.parametrize(
    ("name", "kwargs", "exc"), [pytest.param(*c, id=c[0]) for c in _bad_cases()]
)
def test_bad_scan_inputs_name_the_argument(name, kwargs, exc):
    with pytest.raises(exc, match=name.split(" ")[0]):
        ops.mamba_chunk_scan_combined(**kwargs)


def test_bad_state_update_inputs():
    state, x = torch.zeros(2, 4, 8, 16), torch.randn(2, 4, 8)
    dt, A = torch.rand(2, 4, 8), -torch.rand(4, 8, 16)
    B, C = torch.randn(2, 2, 16), torch.randn(2, 2, 16)
    with pytest.raises(ValueError, match="state"):
        ops.selective_state_update(torch.zeros(2, 4, 9, 16), x, dt, A, B, C)
    with pytest.raises(TypeError, match="state"):
        ops.selective_state_update(state.double(), x, dt, A, B, C)
    with pytest.raises(ValueError, match="B"):
        ops.selective_state_update(state, x, dt, A, torch.randn(2, 3, 16), C)
    with pytest.raises(ValueError, match="A"):
        ops.selective_state_update(state, x, dt, A[:, :, :4], B, C)
    with pytest.raises(ValueError, match="state_batch_indices"):
        ops.selective_state_update(state, x, dt, A, B, C, state_batch_indices=torch.zeros(3))


@requires_cuda
def test_cuda_tensors_without_cuda_kernels_fail_clearly():
    if _cuda_ssd_built("fwd") and _cuda_ssd_built("bwd"):
        pytest.skip("CUDA SSD scan kernels are built")
    x, dt, A, B, C = make_inputs((1, 8, 2, 4, 1, 4, 4), torch.float32, "cuda")
    if _cuda_ssd_built("fwd"):  # the forward runs, the backward has no kernel
        y = ops.mamba_chunk_scan_combined(x.requires_grad_(True), dt, A, B, C, 4)
        with pytest.raises(RuntimeError, match="no CUDA kernels"):
            y.sum().backward()
    else:
        with pytest.raises(RuntimeError, match="no CUDA kernels"):
            ops.mamba_chunk_scan_combined(x, dt, A, B, C, 4)
