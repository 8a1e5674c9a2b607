"""The Mamba-2 mixer of Nemotron-H (model.md 3.2), on ``nemocore.ops``.

    zxbcdt = in_proj(u);  z | xBC | dt = split(zxbcdt)
    x | B | C = silu(causal_conv1d(xBC))
    y = SSD(x, dt, A, B, C, D) * silu(z)          (one op: the scan gates with z)
    out = out_proj(grouped_rmsnorm(y) * w)

Differences from the textbook Mamba-2 block: ``d_in = H * P`` (``expand`` is unused), the gate
is applied before the grouped norm (``norm_before_gate=False``), and the dt clamp follows the
config's ``dt_limit`` in both prefill and decode (``transformers_compat`` reproduces
transformers 5.24, which clamps in prefill only; model.md 3.2.1).

Letters: b batch, L seqlen, d width, H heads, P head dim, G groups, N state size, K conv width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nemocore.models.backends import FAST_OPS
from nemocore.models.config import NemotronHConfig


class GatedRMSNorm(nn.Module):
    """RMSNorm over each of G contiguous channel groups (the gate is already applied), in
    float32; the result is cast to the input dtype before the weight multiply (transformers)."""

    def __init__(self, width: int, groups: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.groups, self.eps = groups, eps

    def forward(self, v: Tensor) -> Tensor:
        """v: (..., d_in) -> (..., d_in)."""
        g = v.float().unflatten(-1, (self.groups, -1))
        g = F.rms_norm(g, (g.shape[-1],), eps=self.eps)
        return self.weight * g.flatten(-2).to(v.dtype)


class Mamba2Mixer(nn.Module):
    """Mamba-2 mixer. Parameter names are transformers' (``in_proj``, ``conv1d``, ``A_log``,
    ``D``, ``dt_bias``, ``norm``, ``out_proj``); ``conv1d`` is an ``nn.Conv1d`` only to hold the
    checkpoint's (conv_dim, 1, K) weight: the op ``causal_conv1d_fn`` runs it."""

    def __init__(self, config: NemotronHConfig, layer_idx: int) -> None:
        super().__init__()
        c = config
        self.layer_idx = layer_idx
        self.H, self.P, self.N, self.G = (
            c.mamba_num_heads,
            c.mamba_head_dim,
            c.ssm_state_size,
            c.n_groups,
        )
        self.d_in, self.conv_dim, self.K = c.mamba_intermediate_size, c.conv_dim, c.conv_kernel
        self.chunk_size = c.chunk_size
        self.prefill_limit, self.decode_limit = c.prefill_dt_limit(), c.decode_dt_limit()
        self.in_proj = nn.Linear(c.hidden_size, self.d_in + self.conv_dim + self.H, bias=c.use_bias)
        self.conv1d = nn.Conv1d(
            self.conv_dim, self.conv_dim, self.K, groups=self.conv_dim, bias=c.use_conv_bias
        )
        self.dt_bias = nn.Parameter(torch.ones(self.H))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, self.H + 1, dtype=torch.float32)))
        self.D = nn.Parameter(torch.ones(self.H))
        self.norm = GatedRMSNorm(self.d_in, self.G, c.layer_norm_epsilon)
        self.out_proj = nn.Linear(self.d_in, c.hidden_size, bias=c.use_bias)
        self.ops = FAST_OPS  # or REFERENCE_OPS (see reference.py)

    def _split(self, zxbcdt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return zxbcdt.split([self.d_in, self.conv_dim, self.H], dim=-1)

    def forward(self, u: Tensor, mask: Tensor | None = None, cache=None) -> Tensor:
        """Full sequence (training, prefill). u: (b, L, d); mask: (b, L) 1 for real tokens
        (padded positions add nothing to the state, model.md 3.2); with ``cache`` the final
        conv and SSM states are stored in it. Returns (b, L, d)."""
        L = u.shape[1]
        if mask is not None:
            u = u * mask[..., None].to(u.dtype)
        z, xBC, dt = self._split(self.in_proj(u))
        weight, bias = self.conv1d.weight.squeeze(1), self.conv1d.bias
        # channel-last in, channel-last out: the transpose back is contiguous
        xBC_conv = self.ops.causal_conv1d_fn(xBC.transpose(1, 2), weight, bias, activation="silu")
        xBC_conv = xBC_conv.transpose(1, 2)
        if mask is not None:
            xBC_conv = xBC_conv * mask[..., None].to(xBC_conv.dtype)
        x, B, C = xBC_conv.split([self.d_in, self.G * self.N, self.G * self.N], dim=-1)
        y, final = self.ops.mamba_chunk_scan_combined(
            x.unflatten(-1, (self.H, self.P)),
            dt,
            -torch.exp(self.A_log.float()),
            B.unflatten(-1, (self.G, self.N)),
            C.unflatten(-1, (self.G, self.N)),
            self.chunk_size,
            D=self.D,
            z=z.unflatten(-1, (self.H, self.P)),
            dt_bias=self.dt_bias,
            dt_softplus=True,
            dt_limit=self.prefill_limit,
            return_final_states=True,
        )
        if cache is not None:
            conv_state, ssm_state = cache.mamba_states(self.layer_idx)
            # the last K pre-conv inputs (zeros before the prompt), transformers' layout
            window = F.pad(xBC.transpose(1, 2), (max(0, self.K - L), 0))[..., -self.K :]
            conv_state.copy_(window)
            ssm_state.copy_(final)
        return self.out_proj(self.norm(y.flatten(-2)))

    def step(self, u: Tensor, cache) -> Tensor:
        """One decoding step for every sample: u (b, 1, d) -> (b, 1, d); the layer's conv and
        SSM states in ``cache`` are updated in place by the fused decode ops."""
        b = u.shape[0]
        z, xBC, dt = self._split(self.in_proj(u[:, 0]))
        conv_state, ssm_state = cache.mamba_states(self.layer_idx)
        weight, bias = self.conv1d.weight.squeeze(1), self.conv1d.bias
        xBC = self.ops.causal_conv1d_update(xBC, conv_state, weight, bias, activation="silu")
        x, B, C = xBC.split([self.d_in, self.G * self.N, self.G * self.N], dim=-1)
        A = -torch.exp(self.A_log.float())
        y = self.ops.selective_state_update(
            ssm_state,
            x.view(b, self.H, self.P),
            dt[:, :, None].expand(b, self.H, self.P),
            A[:, None, None].expand(self.H, self.P, self.N),
            B.view(b, self.G, self.N),
            C.view(b, self.G, self.N),
            D=self.D,
            z=z.view(b, self.H, self.P),
            dt_bias=self.dt_bias,
            dt_softplus=True,
            dt_limit=self.decode_limit,
        )
        return self.out_proj(self.norm(y.reshape(b, 1, self.d_in)))
