"""The benchmark cases: what is compared with what, at which shapes.

A case builds its inputs once (``setup``) and returns two zero-argument callables over them:
ours and the peer's. Shapes follow kernels.md section 8; CPU benchmarks compare in float32,
because this CPU has no bf16 arithmetic and torch's bf16 CPU path would flatter us.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from nemocore import ops

Thunk = Callable[[], object]


@dataclass(frozen=True)
class BenchCase:
    name: str  # e.g. "causal_conv1d_fwd"
    shape: str  # human-readable shape, e.g. "b8 C1536 L4096 K4"
    device: str  # "cpu" or "cuda"
    peer: str  # what we compare against
    setup: Callable[[], tuple[Thunk, Thunk]]  # -> (ours, peer)
    bytes_moved: int = 0  # for bandwidth figures (0: not reported)


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


CPU_CASES = [
    conv_fwd(8, 1536, 4096, 4),
    conv_fwd(8, 1536, 4096, 4, channel_last=True),
    conv_fwd(1, 256, 65536, 4),
    conv_fwd(8, 1536, 4096, 4, dtype=torch.bfloat16),
    conv_fwd_bwd(4, 1536, 2048, 4),
    conv_update(64, 6144, 4),
]

GPU_CASES = [
    conv_fwd(8, 6144, 8192, 4, "cuda", torch.bfloat16),
    conv_fwd(8, 6144, 8192, 4, "cuda", torch.bfloat16, channel_last=True),
    conv_fwd_bwd(8, 6144, 8192, 4, "cuda", torch.bfloat16),
    conv_update(64, 6144, 4, "cuda", torch.bfloat16),
    conv_update(512, 6144, 4, "cuda", torch.bfloat16),
]

CASES = CPU_CASES + GPU_CASES
