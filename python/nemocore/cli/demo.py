"""``nemocore demo``: a short tour of what nemocore does today.

It grows with the project; for now it exercises the foundation end to end: the compiled
kernels against their pure-PyTorch references, decoding with a rolling state, a few training
steps through the hand-written backward, the Rust core, and one benchmark.
"""

from __future__ import annotations

import time

import torch

from nemocore import _native, ops, ref
from nemocore.bench import run_case
from nemocore.bench.cases import conv_fwd
from nemocore.cli.doctor import _lines, collect


def _step(title: str) -> None:
    print(f"\n== {title}")


def run_demo(quick: bool = False) -> int:
    print("nemocore demo: the foundation, end to end")
    _step("what was built")
    for label, text, ok in _lines(collect()):
        print(f"  {'ok' if ok else '!!'} {label}: {text}")

    torch.manual_seed(0)
    b, c, length, k = (2, 64, 512, 4) if quick else (4, 256, 4096, 4)
    x = torch.randn(b, c, length)
    w = torch.randn(c, k) / k
    bias = torch.randn(c)

    _step(f"causal conv1d, C++ kernel vs pure-PyTorch reference  (b={b} C={c} L={length} K={k})")
    for dtype in (torch.float32, torch.bfloat16):
        y = ops.causal_conv1d_fn(x.to(dtype), w, bias, activation="silu")
        truth = ref.causal_conv1d_fn(
            x.to(dtype).double(), w.double(), bias.double(), activation="silu"
        )
        err = (y.double() - truth).abs().max().item()
        print(f"  {str(dtype)[6:]:>9}: max |error| vs float64 reference = {err:.2e}")

    _step("prefill, then decode token by token with a rolling conv state")
    prefix = length // 2
    _, state = ops.causal_conv1d_fn(
        x[..., :prefix], w, bias, return_final_states=True, activation="silu"
    )
    steps = [
        ops.causal_conv1d_update(x[..., t], state, w, bias, "silu")
        for t in range(prefix, min(prefix + 64, length))
    ]
    full = ops.causal_conv1d_fn(x, w, bias, activation="silu")
    dec_err = (torch.stack(steps, -1) - full[..., prefix : prefix + len(steps)]).abs().max()
    print(f"  {len(steps)} decode steps match the full forward: max |diff| = {dec_err:.1e}")

    _step("training: fit a depthwise filter with the hand-written backward")
    target_w = torch.randn(c, k) / k
    target = ref.causal_conv1d_fn(x, target_w, activation="silu")
    w_fit = torch.zeros(c, k, requires_grad=True)
    opt = torch.optim.Adam([w_fit], lr=0.05)
    t0 = time.perf_counter()
    for step in range(60 if quick else 150):
        loss = (ops.causal_conv1d_fn(x, w_fit, activation="silu") - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % (20 if quick else 50) == 0:
            print(f"  step {step:3d}  loss {loss.item():.3e}")
    print(
        f"  final loss {loss.item():.3e}, max |w - w*| = "
        f"{(w_fit - target_w).abs().max().item():.2e} ({time.perf_counter() - t0:.1f} s)"
    )

    _step("Rust core")
    rs = _native.rust()
    info = rs.build_info()
    print(f"  nemocore._rs {rs.__version__} ({info['profile']}, {info['rustc']})")
    try:
        rs._raise_panic_for_test("demo")
    except rs.NemocoreInternalError as e:
        print(f"  a Rust panic becomes a Python exception, not a crash: {e}")

    _step("one benchmark (median of alternating runs; see `nemocore bench` for all)")
    r = run_case(conv_fwd(4, 512, 4096, 4), rounds=2, min_time_s=0.2)
    print(
        f"  {r.name} {r.shape}: nemocore {r.ours_ms:.2f} ms, {r.peer} {r.peer_ms:.2f} ms "
        f"-> {r.speedup:.2f}x"
    )
    print("\ndone.")
    return 0
