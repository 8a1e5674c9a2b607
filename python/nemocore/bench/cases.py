"""The benchmark cases: what is compared with what, at which shapes.

A case builds its inputs once (``setup``) and returns two zero-argument callables over them:
ours and the peer's. Shapes follow kernels.md section 8; CPU benchmarks compare in float32,
because this CPU has no bf16 arithmetic and torch's bf16 CPU path would flatter us.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from nemocore import _native, ops, ref

Thunk = Callable[[], object]


@dataclass(frozen=True)
class BenchCase:
    name: str  # e.g. "causal_conv1d_fwd"
    shape: str  # human-readable shape, e.g. "b8 C1536 L4096 K4"
    device: str  # "cpu" or "cuda"
    peer: str  # what we compare against
    setup: Callable[[], tuple[Thunk, Thunk]]  # -> (ours, peer)
    bytes_moved: int = 0  # for bandwidth figures (0: not reported)
    flops: int = 0  # for GFLOP/s figures (0: not reported)


def _conv_inputs(b, c, length, k, device, dtype=torch.float32, channel_last=False):
    g = torch.Generator().manual_seed(0)
    if channel_last:
        x = torch.randn(b, length, c, generator=g, dtype=dtype).transpose(1, 2)
    else:
        x = torch.randn(b, c, length, generator=g, dtype=dtype)
    w = torch.randn(c, k, generator=g) / k
    bias = torch.randn(c, generator=g)
    return x.to(device), w.to(device, dtype), bias.to(device, dtype)


def _peer_conv(x, w, bias):
    k = w.shape[1]
    pre = F.conv1d(x, w.unsqueeze(1), bias, padding=k - 1, groups=x.shape[1])
    return F.silu(pre[..., : x.shape[-1]])


def conv_fwd(b, c, length, k, device="cpu", dtype=torch.float32, channel_last=False):
    def setup():
        x, w, bias = _conv_inputs(b, c, length, k, device, dtype, channel_last)
        return (
            lambda: ops.causal_conv1d_fn(x, w, bias, activation="silu"),
            lambda: _peer_conv(x, w, bias),
        )

    layout = " channel-last" if channel_last else ""
    elem = torch.finfo(dtype).bits // 8
    return BenchCase(
        "causal_conv1d_fwd",
        f"b{b} C{c} L{length} K{k} {str(dtype)[6:]}{layout}",
        device,
        "F.conv1d(groups=C) + silu",
        setup,
        bytes_moved=2 * b * c * length * elem,
    )


def conv_fwd_bwd(b, c, length, k, device="cpu", dtype=torch.float32):
    def setup():
        x, w, bias = _conv_inputs(b, c, length, k, device, dtype)
        x.requires_grad_()
        w.requires_grad_()
        bias.requires_grad_()
        dy = torch.randn_like(x)

        def ours():
            y = ops.causal_conv1d_fn(x, w, bias, activation="silu")
            return torch.autograd.grad(y, (x, w, bias), dy)

        def peer():
            return torch.autograd.grad(_peer_conv(x, w, bias), (x, w, bias), dy)

        return ours, peer

    return BenchCase(
        "causal_conv1d_fwd+bwd",
        f"b{b} C{c} L{length} K{k} {str(dtype)[6:]}",
        device,
        "F.conv1d(groups=C) + silu, autograd",
        setup,
    )


def conv_update(b, c, k, device="cpu", dtype=torch.float32):
    def setup():
        x, w, bias = _conv_inputs(b, c, 1, k, device, dtype)
        x = x[..., 0]
        state = torch.randn(b, c, k - 1, device=device, dtype=dtype)
        peer_state = state.clone()

        def peer():  # what a model without a fused kernel does: roll, then conv one window
            window = torch.cat([peer_state, x.unsqueeze(-1)], -1)
            peer_state.copy_(window[..., 1:])
            return F.silu((window * w).sum(-1) + bias)

        return (lambda: ops.causal_conv1d_update(x, state, w, bias, "silu")), peer

    return BenchCase(
        "causal_conv1d_update",
        f"b{b} C{c} K{k} {str(dtype)[6:]}",
        device,
        "torch roll + multiply-sum + silu",
        setup,
    )


def _ssd_inputs(b, length, h, p, g, n, device, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, length, h, p, generator=gen)
    dt = torch.rand(b, length, h, generator=gen) * 0.1
    A = -torch.rand(h, generator=gen) - 0.5
    B = torch.randn(b, length, g, n, generator=gen)
    C = torch.randn(b, length, g, n, generator=gen)
    return (
        x.to(device, dtype),
        dt.to(device),
        A.to(device),
        B.to(device, dtype),
        C.to(device, dtype),
    )


def _ssd_shape(b, length, h, p, g, n, q, dtype):
    return f"b{b} L{length} H{h} P{p} G{g} N{n} Q{q} {str(dtype)[6:]}"


def ssd_fwd(b, length, h, p, g, n, q, device="cpu", dtype=torch.float32):
    """The chunked scan against the pure-torch chunked reference (kernels.md 2.3, R2); for
    bf16 the peer runs on the inputs upcast to fp32 (torch's bf16 CPU path is not a fair peer)."""

    def setup():
        x, dt, A, B, C = _ssd_inputs(b, length, h, p, g, n, device, dtype)
        wide = [t.float() for t in (x, B, C)]
        return (
            lambda: ops.mamba_chunk_scan_combined(x, dt, A, B, C, q),
            lambda: ref.mamba_chunk_scan_combined(wide[0], dt, A, wide[1], wide[2], q),
        )

    return BenchCase(
        "ssd_chunk_scan_fwd",
        _ssd_shape(b, length, h, p, g, n, q, dtype),
        device,
        "ref.mamba_chunk_scan_combined (R2, fp32)",
        setup,
    )


def ssd_fwd_bwd(b, length, h, p, g, n, q, device="cpu", dtype=torch.float32):
    def setup():
        leaves = [t.requires_grad_() for t in _ssd_inputs(b, length, h, p, g, n, device, dtype)]
        dy = torch.randn_like(leaves[0])

        def ours():
            return torch.autograd.grad(ops.mamba_chunk_scan_combined(*leaves, q), leaves, dy)

        def peer():
            return torch.autograd.grad(ref.mamba_chunk_scan_combined(*leaves, q), leaves, dy)

        return ours, peer

    return BenchCase(
        "ssd_chunk_scan_fwd+bwd",
        _ssd_shape(b, length, h, p, g, n, q, dtype),
        device,
        "R2, autograd",
        setup,
    )


def ssd_update(b, h=128, p=64, g=8, n=128, device="cpu", dtype=torch.float32):
    """One decoding step at Nemotron-H-8B's mixer shapes, fp32 state, A and dt broadcast."""

    def setup():
        gen = torch.Generator().manual_seed(0)
        state = torch.randn(b, h, p, n, generator=gen).to(device)
        x = torch.randn(b, h, p, generator=gen).to(device, dtype)
        dt = torch.rand(b, h, generator=gen).to(device)[..., None].expand(b, h, p)
        A = (-torch.rand(h, generator=gen)).to(device)[:, None, None].expand(h, p, n)
        B = torch.randn(b, g, n, generator=gen).to(device, dtype)
        C = torch.randn(b, g, n, generator=gen).to(device, dtype)
        D = torch.randn(h, generator=gen).to(device)
        peer_state = state.clone()
        args = (x, dt, A, B, C)
        return (
            lambda: ops.selective_state_update(state, *args, D=D, dt_softplus=True),
            lambda: ref.selective_state_update(peer_state, *args, D=D, dt_softplus=True),
        )

    return BenchCase(
        "selective_state_update",
        f"b{b} H{h} P{p} G{g} N{n} {str(dtype)[6:]}, fp32 state",
        device,
        "torch step (ref.selective_state_update)",
        setup,
        bytes_moved=2 * b * h * p * n * 4,
    )


def _moe_inputs(tokens, experts, top_k, d, f, device, dtype, seed=0):
    """Tokens routed to `top_k` distinct experts each, with the uneven load a trained router
    gives (expert popularity drawn from a Zipf-like law, not a uniform one)."""
    g = torch.Generator().manual_seed(seed)
    popularity = 1.0 / torch.arange(1, experts + 1, dtype=torch.float64) ** 0.5
    ids = torch.multinomial(popularity.expand(tokens, experts), top_k, generator=g)
    hidden = torch.randn(tokens, d, generator=g).to(device, dtype)
    weights = torch.rand(tokens, top_k, generator=g).to(device)
    up = (torch.randn(experts, f, d, generator=g) / d**0.5).to(device, dtype)
    return hidden, ids.to(device), weights, up


def _loop_gmm(a, b, batch_sizes, trans_b):
    """The peer users write today: one torch.matmul per expert. 16-bit inputs are multiplied
    in float32 on the CPU (torch's own bf16 CPU matmul is ~100x slower: not a fair peer)."""
    upcast = a.device.type == "cpu" and a.dtype in (torch.bfloat16, torch.float16)
    out, start = [], 0
    for e, rows in enumerate(batch_sizes.tolist()):
        w = b[e].T if trans_b else b[e]
        x = a[start : start + rows]
        out.append((x.float() @ w.float()).to(a.dtype) if upcast else x @ w)
        start += rows
    return torch.cat(out)


def _portable(fn, *args, **kwargs):
    """fn(*args, **kwargs) with our Hopper (wgmma) kernels switched off: the mma.sync ones."""
    os.environ["NEMOCORE_WGMMA"] = "0"
    try:
        return fn(*args, **kwargs)
    finally:
        del os.environ["NEMOCORE_WGMMA"]


_GMM_PEERS = {
    "loop": "per-expert torch.matmul loop",
    "torch": "torch._grouped_mm",
    "dense": "dense torch.matmul of the same total size (the ceiling)",
    "portable": "our mma.sync kernel (NEMOCORE_WGMMA=0)",
    "unfused": "moe_permute + grouped_mm (ours: rows gathered in the GEMM's load)",
}


def grouped_mm_fwd(tokens, experts, top_k, d, f, device="cpu", dtype=torch.float32, peer="loop"):
    """The up projection of a MoE layer: (tokens*top_k, d) rows against (E, f, d) weights."""

    def setup():
        hidden, ids, _, up = _moe_inputs(tokens, experts, top_k, d, f, device, dtype)
        a, _, sizes = ops.moe_permute(hidden, ids, experts)
        ours = lambda: ops.grouped_mm(a, up, sizes, trans_b=True)  # noqa: E731
        if peer == "loop":
            return ours, lambda: _loop_gmm(a, up, sizes, True)
        if peer == "dense":
            w = up.reshape(-1, d)[:f].T.contiguous()
            return ours, lambda: a @ w
        if peer == "portable":
            return ours, lambda: _portable(ops.grouped_mm, a, up, sizes, trans_b=True)
        if peer == "unfused":
            _, rows, _ = ops.moe_sort(ids, experts)
            return (
                lambda: ops.grouped_mm(hidden, up, sizes, trans_b=True, a_rows=rows),
                lambda: ops.grouped_mm(
                    ops.moe_permute(hidden, ids, experts)[0], up, sizes, trans_b=True
                ),
            )
        offs = torch.cumsum(sizes, 0).to(device, torch.int32)
        up_t = up.transpose(1, 2)  # torch._grouped_mm takes (E, K, N)
        return (
            lambda: ops.grouped_mm(a, up, sizes, trans_b=True),
            lambda: torch._grouped_mm(a, up_t, offs=offs),
        )

    rows, elem = tokens * top_k, torch.finfo(dtype).bits // 8
    return BenchCase(
        "grouped_mm_fwd",
        f"T{tokens} k{top_k} E{experts} {d}->{f} {str(dtype)[6:]}",
        device,
        _GMM_PEERS[peer] + (" (fp32 upcast)" if peer == "loop" and dtype != torch.float32 else ""),
        setup,
        bytes_moved=(experts * f * d + rows * (d + f)) * elem,
        flops=2 * rows * d * f,
    )


def grouped_mm_fwd_bwd(tokens, experts, top_k, d, f, device="cpu", dtype=torch.float32):
    """Forward and both gradients (input and weights) of the up projection."""

    def setup():
        hidden, ids, _, up = _moe_inputs(tokens, experts, top_k, d, f, device, dtype)
        a, _, sizes = ops.moe_permute(hidden, ids, experts)
        a.requires_grad_()
        up.requires_grad_()
        dy = torch.randn(a.shape[0], f, device=device, dtype=dtype)

        def ours():
            return torch.autograd.grad(ops.grouped_mm(a, up, sizes, trans_b=True), (a, up), dy)

        def peer():
            return torch.autograd.grad(_loop_gmm(a, up, sizes, True), (a, up), dy)

        return ours, peer

    rows = tokens * top_k
    return BenchCase(
        "grouped_mm_fwd_bwd",
        f"T{tokens} k{top_k} E{experts} {d}->{f} {str(dtype)[6:]}",
        device,
        "autograd through the torch.matmul loop (b[e] slices, as eager MoE code writes it)",
        setup,
        flops=3 * 2 * rows * d * f,
    )


def moe_permute_unpermute(tokens, experts, top_k, d, device="cpu", dtype=torch.float32):
    """Gather every token once per expert, then the weighted combine back (no GEMM between)."""

    def setup():
        hidden, ids, weights, _ = _moe_inputs(tokens, experts, top_k, d, 1, device, dtype)

        def ours():
            permuted, row_id_map, _ = ops.moe_permute(hidden, ids, experts)
            return ops.moe_unpermute(permuted, row_id_map, weights)

        def peer():  # torch indexing: a stable sort, index_select, then a weighted index_add_
            order = torch.sort(ids.reshape(-1), stable=True).indices
            permuted = hidden.index_select(0, order // top_k)
            scaled = permuted * weights.reshape(-1)[order, None].to(dtype)
            out = torch.zeros_like(hidden)
            return out.index_add_(0, order // top_k, scaled)

        return ours, peer

    elem = torch.finfo(dtype).bits // 8
    return BenchCase(
        "moe_permute+unpermute",
        f"T{tokens} k{top_k} E{experts} d{d} {str(dtype)[6:]}",
        device,
        "torch sort + index_select + index_add_",
        setup,
        bytes_moved=(2 * tokens * top_k * d + 2 * tokens * d) * elem,
    )


def _attention_inputs(b, ctx, q_len, dec, device, dtype, h=32, hkv=8, d=128):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(b, h, q_len, d, generator=g).to(device, dtype)
    kc = torch.randn(hkv, ctx, d, generator=g).to(device, dtype)
    vc = torch.randn(hkv, ctx, d, generator=g).to(device, dtype)
    kd = torch.randn(b, hkv, dec, d, generator=g).to(device, dtype)
    vd = torch.randn(b, hkv, dec, d, generator=g).to(device, dtype)
    return q, kc, vc, kd, vd


def bifurcated_decode(b, ctx, q_len=1, dec=64, device="cpu", dtype=torch.float32, peer="sdpa"):
    """One decode step of one attention layer (GQA 32/8, D 128): b samples of one prompt."""

    def setup():
        q, kc, vc, kd, vd = _attention_inputs(b, ctx, q_len, dec, device, dtype)
        lens = torch.full((b,), dec, dtype=torch.int64, device=device)
        ours = lambda: ops.bifurcated_attention(q, kc, vc, kd, vd, lens)  # noqa: E731
        if peer == "sdpa":  # what a plain cache does: the prompt copied into every sample's row
            k = torch.cat([kc.expand(b, -1, -1, -1), kd], 2)
            v = torch.cat([vc.expand(b, -1, -1, -1), vd], 2)
            mask = torch.ones(q_len, k.shape[2], dtype=torch.bool, device=device)
            mask = mask.tril(k.shape[2] - q_len)
            return ours, lambda: F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, enable_gqa=True
            )

        def torch_bifurcated():  # the paper's formulation in plain torch: one softmax, two GEMMs
            hkv, group = kc.shape[0], q.shape[1] // kc.shape[0]
            qg = q.reshape(b, hkv, group * q_len, -1).transpose(0, 1).reshape(hkv, -1, q.shape[-1])
            s_ctx = (qg @ kc.transpose(1, 2)).reshape(hkv, b, group * q_len, -1).transpose(0, 1)
            s_dec = q.reshape(b, hkv, group * q_len, -1) @ kd.transpose(2, 3)
            scale = q.shape[-1] ** -0.5
            p = torch.softmax(scale * torch.cat([s_ctx, s_dec], -1), -1)
            p_ctx, p_dec = p[..., : kc.shape[1]], p[..., kc.shape[1] :]
            o_ctx = p_ctx.transpose(0, 1).reshape(hkv, b * group * q_len, -1) @ vc
            o_ctx = o_ctx.reshape(hkv, b, group * q_len, -1).transpose(0, 1)
            return o_ctx + p_dec @ vd

        return ours, torch_bifurcated

    elem = torch.finfo(dtype).bits // 8
    return BenchCase(
        "bifurcated_attention",
        f"b{b} ctx{ctx} dec{dec} q{q_len} GQA32/8 D128 {str(dtype)[6:]}",
        device,
        "SDPA over the replicated cache" if peer == "sdpa" else "plain-torch bifurcated",
        setup,
        bytes_moved=2 * 8 * 128 * (ctx + b * dec) * elem,
    )


def _cuda_moe_built() -> bool:
    try:
        return bool(_native.kernels().build_info().get("cuda_moe", False))
    except ImportError:
        return False


def _cuda_ssd_built() -> bool:
    try:
        return bool(_native.kernels().build_info().get("cuda_ssd", False))
    except ImportError:
        return False


CPU_CASES = [
    conv_fwd(8, 1536, 4096, 4),
    conv_fwd(8, 1536, 4096, 4, channel_last=True),
    conv_fwd(1, 256, 65536, 4),
    conv_fwd(8, 1536, 4096, 4, dtype=torch.bfloat16),
    conv_fwd_bwd(4, 1536, 2048, 4),
    conv_update(64, 6144, 4),
    ssd_fwd(2, 2048, 16, 64, 1, 128, 256),
    ssd_fwd(2, 2048, 16, 64, 1, 128, 256, dtype=torch.bfloat16),
    ssd_fwd_bwd(2, 2048, 16, 64, 1, 128, 256),
    ssd_update(1),
    ssd_update(8),
    ssd_update(64),
    # MoE (kernels.md 8): Nemotron-3-Nano experts at 1024 tokens, and a smaller width.
    grouped_mm_fwd(1024, 128, 6, 2688, 1856),
    grouped_mm_fwd(1024, 128, 6, 2688, 1856, peer="torch"),
    grouped_mm_fwd(1024, 64, 4, 1024, 512),
    grouped_mm_fwd(1024, 64, 4, 1024, 512, dtype=torch.bfloat16),
    grouped_mm_fwd(1024, 128, 6, 2688, 1856, peer="unfused"),
    grouped_mm_fwd_bwd(1024, 64, 4, 1024, 512),
    moe_permute_unpermute(4096, 128, 6, 2688),
    # Attention (kernels.md 5.3): one prompt of 8k tokens, 1 and 32 samples.
    bifurcated_decode(1, 8192),
    bifurcated_decode(32, 8192),
    bifurcated_decode(32, 8192, peer="torch"),
    bifurcated_decode(32, 8192, q_len=5),
]

GPU_CASES = [
    conv_fwd(8, 6144, 8192, 4, "cuda", torch.bfloat16),
    conv_fwd(8, 6144, 8192, 4, "cuda", torch.bfloat16, channel_last=True),
    conv_fwd_bwd(8, 6144, 8192, 4, "cuda", torch.bfloat16),
    conv_update(64, 6144, 4, "cuda", torch.bfloat16),
    conv_update(512, 6144, 4, "cuda", torch.bfloat16),
]

# The SSD GPU cases (kernels.md 8: Nemotron-H-8B mixer at b8 L8192, decode at b1..512) run once
# the CUDA SSD kernels are built; until then a GPU run would only time an error.
if _cuda_ssd_built():
    GPU_CASES += [
        ssd_fwd(8, 8192, 128, 64, 8, 128, 128, "cuda", torch.bfloat16),
        ssd_fwd(8, 8192, 64, 64, 8, 128, 128, "cuda", torch.bfloat16),
        ssd_fwd_bwd(8, 8192, 128, 64, 8, 128, 128, "cuda", torch.bfloat16),
        *(ssd_update(b, device="cuda", dtype=torch.bfloat16) for b in (1, 64, 256, 512)),
    ]

if _cuda_moe_built():
    GPU_CASES += [
        *(
            grouped_mm_fwd(t, 128, 6, 2688, 1856, "cuda", torch.bfloat16, peer=peer)
            for t in (64, 4096, 16384)
            for peer in ("torch", "dense", "portable")
        ),
        grouped_mm_fwd(4096, 128, 6, 2688, 1856, "cuda", torch.bfloat16, peer="unfused"),
        grouped_mm_fwd_bwd(4096, 128, 6, 2688, 1856, "cuda", torch.bfloat16),
        moe_permute_unpermute(4096, 128, 6, 2688, "cuda", torch.bfloat16),
    ]


def _cuda_attention_built() -> bool:
    try:
        return bool(_native.kernels().build_info().get("cuda_attention", False))
    except ImportError:
        return False


if _cuda_attention_built():  # kernels.md 8: 32/8 heads, D 128, contexts 8k/32k, b 1..64
    GPU_CASES += [
        *(
            bifurcated_decode(b, ctx, q_len, 64, "cuda", torch.bfloat16)
            for b, ctx, q_len in (
                (1, 8192, 1),
                (32, 8192, 1),
                (64, 8192, 1),
                (32, 32768, 1),
                (32, 8192, 5),
            )
        ),
        bifurcated_decode(32, 8192, 1, 64, "cuda", torch.bfloat16, peer="torch"),
    ]

# ---- whole model (model.md): nemocore's NemotronH against transformers' on the same weights ----


def _bench_models():
    """presets.bench_small (8 layers ME*M-EM*, width 512) in nemocore and, through a saved
    checkpoint, in transformers 5.x (its pure-torch path on the CPU)."""
    import logging
    import tempfile

    import transformers

    from nemocore.models import NemotronHForCausalLM, presets

    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.manual_seed(0)
    ours = NemotronHForCausalLM(presets.bench_small()).eval()
    with tempfile.TemporaryDirectory() as tmp:
        ours.save_pretrained(tmp)
        theirs = transformers.NemotronHForCausalLM.from_pretrained(tmp).eval()
    return ours, theirs


def model_generate(b, prompt, new):
    """Greedy generation of ``new`` tokens after a ``prompt``-token prompt, prefill included:
    ours through HybridCache and decode_step, theirs with transformers' own cache."""

    def setup():
        ours, theirs = _bench_models()
        ids = torch.randint(3, ours.config.vocab_size, (b, prompt))

        @torch.no_grad()
        def run_ours():
            return ours.generate(ids, new, temperature=0, eos_token_id=[])

        @torch.no_grad()
        def run_theirs():
            out = theirs(ids, use_cache=True, logits_to_keep=1)
            for _ in range(new - 1):
                token = out.logits[:, -1].argmax(-1, keepdim=True)
                out = theirs(token, cache=out.past_key_values, use_cache=True)
            return out.logits

        return run_ours, run_theirs

    return BenchCase(
        "nemotron_h_generate", f"b{b} prompt{prompt} new{new} bench_small", "cpu",
        "transformers NemotronH (torch path)", setup,
    )  # fmt: skip


CPU_CASES += [model_generate(1, 64, 16), model_generate(8, 64, 16)]

# ---- NVFP4 (kernels.md 4.10, 8): quantize against the copy ceiling, GEMMs against bf16 / fp8 ----


def nvfp4_quantize_case(rows, cols, device="cpu", block_2d=False):
    """Quantize (abs-max pass included) vs copying the same bf16 tensor: the memory ceiling."""

    def setup():
        from nemocore import quant

        x = torch.randn(rows, cols, dtype=torch.bfloat16, device=device)
        return (lambda: quant.nvfp4_quantize(x, block_2d=block_2d), lambda: x.clone())

    n = rows * cols
    return BenchCase(
        "nvfp4_quantize" + ("_2d" if block_2d else ""),
        f"{rows}x{cols} bf16",
        device,
        "copy (clone)",
        setup,
        bytes_moved=2 * n + n // 2 + n // 16,
    )


_NVFP4_MM_PEERS = {
    "bf16": "torch bf16 matmul",
    "fp8": "fp8 _scaled_mm",
    "portable": "our mma.sync kernel (NEMOCORE_WGMMA=0)",
}


def nvfp4_abs_max_case(rows, cols, device="cuda"):
    """The tensor amax that quantize needs first (one read of x) vs torch's x.abs().amax()."""

    def setup():
        x = torch.randn(rows, cols, dtype=torch.bfloat16, device=device)
        bits = torch.zeros(1, dtype=torch.int32, device=device)
        threads, stream = _native.launch_args(x.device)

        def ours():  # the kernel alone: nvfp4.abs_max adds the host sync of its finite check
            bits.zero_()
            _native.kernels().abs_max(x, bits, threads, stream)

        return ours, lambda: x.abs().amax()

    return BenchCase(
        "nvfp4_abs_max", f"{rows}x{cols} bf16", device, "torch x.abs().amax()", setup,
        bytes_moved=2 * rows * cols,
    )  # fmt: skip


def nvfp4_mm_case(m, n, k, device="cuda", mode="w4a4", peer="bf16"):
    """nvfp4_mm (W4A4 emulation or weight-only W4A16) vs a bf16 matmul, an FP8 _scaled_mm of
    the same shape, or our portable mma.sync kernel (peer "portable": the Hopper kernel off)."""

    def setup():
        from nemocore import quant

        g = torch.Generator(device).manual_seed(0)
        a = torch.randn(m, k, generator=g, device=device, dtype=torch.bfloat16)
        b = torch.randn(n, k, generator=g, device=device, dtype=torch.bfloat16)
        qb = quant.nvfp4_quantize(b, block_2d=True)
        qa = quant.nvfp4_quantize(a) if mode == "w4a4" else a
        if peer == "fp8":
            fa, fb = quant.fp8_quantize(a), quant.fp8_quantize(b)
            theirs = lambda: quant.fp8_mm(fa, fb, torch.bfloat16)  # noqa: E731
        elif peer == "portable":
            theirs = lambda: _portable(quant.nvfp4_mm, qa, qb, torch.bfloat16)  # noqa: E731
        else:
            theirs = lambda: a @ b.T  # noqa: E731
        return (lambda: quant.nvfp4_mm(qa, qb, torch.bfloat16), theirs)

    return BenchCase(
        f"nvfp4_mm_{mode}",
        f"M{m} N{n} K{k}",
        device,
        _NVFP4_MM_PEERS[peer],
        setup,
        flops=2 * m * n * k,
    )


def _cuda_quant_built() -> bool:
    try:
        return bool(_native.kernels().build_info().get("cuda_quant", False))
    except ImportError:
        return False


CPU_CASES += [nvfp4_quantize_case(4096, 4096), nvfp4_quantize_case(4096, 4096, block_2d=True)]
if _cuda_quant_built():
    GPU_CASES += [
        nvfp4_quantize_case(8192, 8192, "cuda"),
        nvfp4_quantize_case(8192, 8192, "cuda", block_2d=True),
        nvfp4_abs_max_case(8192, 8192),
        *(
            nvfp4_mm_case(m, 8192, 8192, "cuda", mode, peer)
            for m in (16, 4096)
            for mode in ("w4a4", "w4a16")
            for peer in ("bf16", "fp8")
        ),
        *(nvfp4_mm_case(m, 8192, 8192, "cuda", "w4a16", "portable") for m in (16, 4096)),
    ]


# ---- grammar token bitmask (decoding.md 4.8): ours against xgrammar's own kernel ----


def token_bitmask_case(batch, vocab, device="cpu"):
    """apply_token_bitmask_inplace on fp32 logits with a random mask (a quarter of the words
    all-allowed), against xgrammar's function (nemocore.ref where xgrammar is missing)."""
    import importlib.util

    has_xgrammar = importlib.util.find_spec("xgrammar") is not None

    def setup():
        g = torch.Generator().manual_seed(0)
        logits = torch.randn(batch, vocab, generator=g).to(device)
        words = (vocab + 31) // 32
        raw = torch.randint(-(2**31), 2**31, (batch, words), generator=g, dtype=torch.int64)
        raw[:, ::4] = -1
        mask = raw.to(torch.int32).to(device)
        ours_logits, peer_logits = logits.clone(), logits.clone()
        if has_xgrammar:
            import xgrammar

            peer_fn = xgrammar.apply_token_bitmask_inplace
        else:
            peer_fn = ref.apply_token_bitmask_inplace
        return (
            lambda: ops.apply_token_bitmask_inplace(ours_logits, mask),
            lambda: peer_fn(peer_logits, mask),
        )

    return BenchCase(
        "apply_token_bitmask", f"b{batch} V{vocab} fp32", device,
        "xgrammar apply_token_bitmask_inplace" if has_xgrammar else "nemocore.ref (torch)",
        setup, bytes_moved=2 * 4 * batch * vocab,
    )  # fmt: skip


CPU_CASES += [token_bitmask_case(1, 128000), token_bitmask_case(16, 128000)]

# Every section above appends to CPU_CASES / GPU_CASES; CASES is built last so none is lost.
CASES = CPU_CASES + GPU_CASES
