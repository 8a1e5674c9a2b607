"""Mixture-of-Experts layers (model.md 3.5 and 3.6): Nemotron 3 Nano's MoE and Super/Ultra's
LatentMoE, both running on ``nemocore.ops`` (permute -> grouped GEMM -> squared ReLU ->
grouped GEMM -> weighted unpermute).

    MoE(u)       = sum_k w_k expert_k(u) + shared(u)
    LatentMoE(u) = W_up( sum_k w_k expert_k(W_down u) ) + shared(u)     (router on u)

with non-gated experts ``expert(x) = down(relu(up(x))^2)``. Letters: T tokens, d width, l the
latent width, E experts, k top-k, f expert width, f_s shared expert width.

State-dict names follow transformers' NemotronH in memory: ``gate.weight``,
``gate.e_score_correction_bias``, ``experts.up_proj`` (E, f, d or l), ``experts.down_proj``
(E, d or l, f), ``shared_experts.{up,down}_proj.weight``, ``fc1_latent_proj.weight`` (l, d),
``fc2_latent_proj.weight`` (d, l).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nemocore import ops
from nemocore.layers.router import TopKRouter


@dataclass
class MoEConfig:
    """Shape and routing of one MoE layer; field names are those of the Hugging Face
    ``nemotron_h`` config, plus nemocore's training knobs (``router_*``).

    ``moe_latent_size`` set (an int l < hidden_size) makes the layer a LatentMoE.
    ``moe_shared_expert_intermediate_size`` 0 means no shared expert.
    """

    hidden_size: int
    n_routed_experts: int
    num_experts_per_tok: int
    moe_intermediate_size: int
    moe_shared_expert_intermediate_size: int = 0
    n_group: int = 1
    topk_group: int = 1
    norm_topk_prob: bool = True
    routed_scaling_factor: float = 1.0
    moe_latent_size: int | None = None
    mlp_bias: bool = False
    initializer_range: float = 0.02
    router_bias_update_rate: float = 1e-3
    router_aux_loss_coeff: float = 0.0
    router_aux_loss_type: str = "seq"

    def __post_init__(self) -> None:
        for name in (
            "hidden_size",
            "n_routed_experts",
            "num_experts_per_tok",
            "moe_intermediate_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"MoEConfig.{name}: must be >= 1, got {getattr(self, name)}")
        if self.moe_latent_size is not None and self.moe_latent_size < 1:
            raise ValueError(f"MoEConfig.moe_latent_size: must be >= 1, got {self.moe_latent_size}")

    @property
    def routed_width(self) -> int:
        """The width the routed experts see: l for LatentMoE, d otherwise."""
        return self.moe_latent_size or self.hidden_size

    def latent(self, latent_size: int) -> MoEConfig:
        """This standard MoE turned LatentMoE at roughly equal serving cost (model.md 3.6):
        width d -> l, and experts and top-k both scaled by d / l."""
        if not 1 <= latent_size <= self.hidden_size:
            raise ValueError(f"latent_size: expected 1..{self.hidden_size}, got {latent_size}")
        ratio = self.hidden_size / latent_size
        experts = max(
            self.n_group, round(self.n_routed_experts * ratio / self.n_group) * self.n_group
        )
        return dataclasses.replace(
            self,
            moe_latent_size=latent_size,
            n_routed_experts=experts,
            num_experts_per_tok=min(experts, round(self.num_experts_per_tok * ratio)),
        )

    def num_params(self) -> int:
        """Parameters of the layer (the router's correction bias is a buffer, not counted)."""
        d, w, f, fs = (
            self.hidden_size,
            self.routed_width,
            self.moe_intermediate_size,
            self.moe_shared_expert_intermediate_size,
        )
        E, bias = self.n_routed_experts, self.mlp_bias
        n = E * d  # router
        n += E * (2 * w * f + (f + w if bias else 0))  # routed experts
        if self.moe_latent_size:
            n += 2 * d * w + (w + d if bias else 0)
        if fs:
            n += 2 * d * fs + (fs + d if bias else 0)
        return n

    def active_params(self) -> int:
        """Parameters one token touches: the router, k experts, latent projections, shared."""
        w, f = self.routed_width, self.moe_intermediate_size
        inactive = (self.n_routed_experts - self.num_experts_per_tok) * (
            2 * w * f + (f + w if self.mlp_bias else 0)
        )
        return self.num_params() - inactive

    def flops_per_token(self) -> int:
        """Forward matmul FLOPs per token (2 per multiply-add; biases and activations not
        counted): router, k routed experts, latent projections and the shared expert."""
        d, w, f, fs = (
            self.hidden_size,
            self.routed_width,
            self.moe_intermediate_size,
            self.moe_shared_expert_intermediate_size,
        )
        flops = 2 * d * self.n_routed_experts + self.num_experts_per_tok * 2 * (2 * w * f)
        if self.moe_latent_size:
            flops += 2 * (2 * d * w)
        if fs:
            flops += 2 * (2 * d * fs)
        return flops


class MLP(nn.Module):
    """Nemotron's non-gated MLP: ``down_proj(relu(up_proj(x))^2)``."""

    def __init__(self, hidden_size: int, intermediate_size: int, bias: bool = False) -> None:
        super().__init__()
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., d) -> (..., d)."""
        return self.down_proj(torch.relu(self.up_proj(x)).square())


class GroupedExperts(nn.Module):
    """E non-gated squared-ReLU experts as two stacked weights, run with grouped GEMMs.

    up_proj: (E, f, w), down_proj: (E, w, f) (``nn.Linear``'s (out, in) per expert).
    """

    def __init__(
        self, num_experts: int, width: int, intermediate_size: int, bias: bool = False
    ) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.up_proj = nn.Parameter(torch.empty(num_experts, intermediate_size, width))
        self.down_proj = nn.Parameter(torch.empty(num_experts, width, intermediate_size))
        self.up_bias = nn.Parameter(torch.zeros(num_experts, intermediate_size)) if bias else None
        self.down_bias = nn.Parameter(torch.zeros(num_experts, width)) if bias else None
        nn.init.normal_(self.up_proj, std=0.02)
        nn.init.normal_(self.down_proj, std=0.02)

    def forward(self, x: Tensor, topk_ids: Tensor, topk_weights: Tensor) -> Tensor:
        """x: (T, w); topk_ids, topk_weights: (T, k) -> (T, w), ``sum_j w_j expert_j(x)``."""
        # The permute is fused into the up projection's load: the (T*k, w) copy of the tokens
        # is never written; each row of the grouped GEMM reads its token through token_of_row.
        row_id_map, token_of_row, counts = ops.moe_sort(topk_ids, self.num_experts)
        expert_of_row = None
        if self.up_bias is not None:
            expert_of_row = torch.repeat_interleave(torch.arange(self.num_experts), counts).to(
                x.device
            )
        h = ops.grouped_mm(x, self.up_proj, counts, trans_b=True, a_rows=token_of_row)
        if expert_of_row is not None:
            h = h + self.up_bias[expert_of_row]
        h = torch.relu(h).square()
        out = ops.grouped_mm(h, self.down_proj, counts, trans_b=True)
        if expert_of_row is not None:
            out = out + self.down_bias[expert_of_row]
        return ops.moe_unpermute(out, row_id_map, topk_weights)

    def reference_forward(self, x: Tensor, topk_ids: Tensor, topk_weights: Tensor) -> Tensor:
        """The same with plain torch: a loop over experts, each on the tokens that chose it."""
        out = torch.zeros_like(x, dtype=torch.promote_types(x.dtype, topk_weights.dtype))
        for e in range(self.num_experts):
            token, slot = torch.where(topk_ids == e)
            if token.numel() == 0:
                continue
            h = x[token] @ self.up_proj[e].T
            if self.up_bias is not None:
                h = h + self.up_bias[e]
            y = torch.relu(h).square() @ self.down_proj[e].T
            if self.down_bias is not None:
                y = y + self.down_bias[e]
            out.index_add_(0, token, topk_weights[token, slot, None] * y)
        return out.to(x.dtype)


class _AttachAuxLoss(torch.autograd.Function):
    """Returns ``output`` unchanged and sends a gradient of 1 to ``aux_loss``, so the balancing
    loss trains the router with no change to the training loop (Megatron's
    MoEAuxLossAutoScaler)."""

    @staticmethod
    def forward(ctx, output: Tensor, aux_loss: Tensor) -> Tensor:
        ctx.save_for_backward(aux_loss)
        return output

    @staticmethod
    def backward(ctx, grad: Tensor):
        (aux_loss,) = ctx.saved_tensors
        return grad, torch.ones_like(aux_loss)


class MoE(nn.Module):
    """Routed squared-ReLU experts plus an always-on shared expert (Nemotron 3 Nano's `E`
    block); a LatentMoE when ``config.moe_latent_size`` is set (see ``LatentMoE``).

    forward(u: (..., d)) -> (..., d). In training mode with ``router_aux_loss_coeff > 0`` the
    balancing loss is attached to the output's graph (and kept in ``last_aux_loss`` for
    logging); a (b, L, d) input makes each row a sequence for the sequence-wise loss.
    """

    def __init__(self, config: MoEConfig) -> None:
        super().__init__()
        c = self.config = config
        self.gate = TopKRouter(
            c.hidden_size,
            c.n_routed_experts,
            c.num_experts_per_tok,
            n_group=c.n_group,
            topk_group=c.topk_group,
            norm_topk_prob=c.norm_topk_prob,
            routed_scaling_factor=c.routed_scaling_factor,
            bias_update_rate=c.router_bias_update_rate,
            aux_loss_coeff=c.router_aux_loss_coeff,
            aux_loss_type=c.router_aux_loss_type,
        )
        self.experts = GroupedExperts(
            c.n_routed_experts, c.routed_width, c.moe_intermediate_size, c.mlp_bias
        )
        self.shared_experts = (
            MLP(c.hidden_size, c.moe_shared_expert_intermediate_size, c.mlp_bias)
            if c.moe_shared_expert_intermediate_size
            else None
        )
        if c.moe_latent_size:
            self.fc1_latent_proj = nn.Linear(c.hidden_size, c.moe_latent_size, bias=c.mlp_bias)
            self.fc2_latent_proj = nn.Linear(c.moe_latent_size, c.hidden_size, bias=c.mlp_bias)
        self.last_aux_loss: Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """model.md 8: Normal(0, initializer_range) for the router, experts and projections."""
        std = self.config.initializer_range
        for p in (self.gate.weight, self.experts.up_proj, self.experts.down_proj):
            nn.init.normal_(p, std=std)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, u: Tensor) -> Tensor:
        shape = u.shape
        x = u.reshape(-1, shape[-1])
        route = self.gate(x, batch_shape=tuple(shape[:-1]))
        routed = self.fc1_latent_proj(x) if self.config.moe_latent_size else x
        y = self.experts(routed, route.topk_ids, route.topk_weights)
        if self.config.moe_latent_size:
            y = self.fc2_latent_proj(y)
        if self.shared_experts is not None:
            y = y + self.shared_experts(x)
        self.last_aux_loss = None
        if route.aux_loss is not None:
            self.last_aux_loss = route.aux_loss.detach()
            y = _AttachAuxLoss.apply(y, route.aux_loss)
        return y.reshape(shape)

    def reference_forward(self, u: Tensor) -> Tensor:
        """The same layer with plain torch ops (a loop over experts), for tests."""
        shape = u.shape
        x = u.reshape(-1, shape[-1])
        route = self.gate(x, batch_shape=tuple(shape[:-1]))
        routed = self.fc1_latent_proj(x) if self.config.moe_latent_size else x
        y = self.experts.reference_forward(routed, route.topk_ids, route.topk_weights)
        if self.config.moe_latent_size:
            y = self.fc2_latent_proj(y)
        if self.shared_experts is not None:
            y = y + self.shared_experts(x)
        if route.aux_loss is not None:  # the same balancing-loss gradient as forward()
            y = _AttachAuxLoss.apply(y, route.aux_loss)
        return y.reshape(shape)


class LatentMoE(MoE):
    """Nemotron 3 Super/Ultra's LatentMoE: the routed experts run at width l < d between a
    down projection ``fc1_latent_proj`` (l, d) and an up projection ``fc2_latent_proj`` (d, l);
    the router and the shared expert stay at width d (model.md 3.6)."""

    def __init__(self, config: MoEConfig) -> None:
        if not config.moe_latent_size:
            raise ValueError("LatentMoE: config.moe_latent_size must be set (the latent width l)")
        super().__init__(config)
