"""The MoE router as Nemotron 3 uses it (model.md 3.5): sigmoid scores, a selection-only
correction bias balanced without an auxiliary loss, optional group-limited top-k, renormalised
and scaled combine weights, and an optional auxiliary balancing loss.

Letters: T tokens, E experts, k top-k, d width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class RouterOutput:
    """What the router decided for T tokens.

    topk_ids: (T, k) int64 expert ids, best first.
    topk_weights: (T, k) float32 combine weights (unbiased scores of the chosen experts,
        renormalised when ``norm_topk_prob``, times ``routed_scaling_factor``).
    scores: (T, E) float32 sigmoid scores.
    aux_loss: scalar float32 balancing loss (already multiplied by its coefficient), or None.
    """

    topk_ids: Tensor
    topk_weights: Tensor
    scores: Tensor
    aux_loss: Tensor | None


class TopKRouter(nn.Module):
    """Sigmoid top-k router with aux-loss-free load balancing (DeepSeek-V3 style).

    Selection uses ``sigmoid(x W^T) + e_score_correction_bias``; the combine weights use the
    unbiased scores. In training mode the router counts the tokens each expert receives;
    ``update_bias()`` (call it once per optimizer step, e.g. through
    ``nemocore.layers.update_router_biases(model)``) then moves each expert's bias by
    ``bias_update_rate`` towards balance: up for experts below the mean load, down above it.

    Checkpoint names follow Hugging Face's NemotronH: ``weight`` (E, d) and
    ``e_score_correction_bias`` (E,), both float32 whatever the model's dtype.

    Args:
        hidden_size: d.
        num_experts: E.
        top_k: experts per token.
        n_group, topk_group: group-limited routing: the E experts form ``n_group`` groups, a
            group is scored by the sum of its two best biased scores, and only the best
            ``topk_group`` groups are eligible (1 and 1: plain top-k, as in Nemotron 3).
        norm_topk_prob: renormalise the chosen scores to sum to 1.
        routed_scaling_factor: multiplies the combine weights.
        bias_update_rate: the step of the balancing update (1e-3 in Nemotron 3 Nano).
        aux_loss_coeff: coefficient of the balancing loss (0 disables it).
        aux_loss_type: "seq" (DeepSeek-V3's sequence-wise loss, each batch row a sequence) or
            "global" (the same over all tokens of the batch).
    """

    def __init__(
        self,
        hidden_size: int,
        num_experts: int,
        top_k: int,
        *,
        n_group: int = 1,
        topk_group: int = 1,
        norm_topk_prob: bool = True,
        routed_scaling_factor: float = 1.0,
        bias_update_rate: float = 1e-3,
        aux_loss_coeff: float = 0.0,
        aux_loss_type: str = "seq",
    ) -> None:
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(
                f"top_k: expected 1 <= top_k <= num_experts = {num_experts}, got {top_k}"
            )
        if n_group < 1 or num_experts % n_group:
            raise ValueError(f"n_group: must divide num_experts = {num_experts}, got {n_group}")
        if not 1 <= topk_group <= n_group:
            raise ValueError(
                f"topk_group: expected 1 <= topk_group <= n_group = {n_group}, got {topk_group}"
            )
        if n_group > 1 and top_k > topk_group * (num_experts // n_group):
            raise ValueError(
                f"top_k = {top_k} is more than the {topk_group} eligible groups of "
                f"{num_experts // n_group} experts hold"
            )
        if aux_loss_type not in ("seq", "global"):
            raise ValueError(f"aux_loss_type: expected 'seq' or 'global', got {aux_loss_type!r}")
        self.num_experts, self.top_k = num_experts, top_k
        self.n_group, self.topk_group = n_group, topk_group
        self.norm_topk_prob = norm_topk_prob
        self.routed_scaling_factor = routed_scaling_factor
        self.bias_update_rate = bias_update_rate
        self.aux_loss_coeff, self.aux_loss_type = aux_loss_coeff, aux_loss_type
        self.weight = nn.Parameter(torch.empty(num_experts, hidden_size, dtype=torch.float32))
        self.register_buffer(
            "e_score_correction_bias", torch.zeros(num_experts, dtype=torch.float32)
        )
        # Tokens routed to each expert since the last update_bias() (training mode only).
        self.register_buffer(
            "tokens_per_expert", torch.zeros(num_experts, dtype=torch.float32), persistent=False
        )
        nn.init.normal_(self.weight, std=0.02)

    def _apply(self, fn, recurse=True):
        # model.to(torch.bfloat16) must not lower the router: its logits, scores and bias stay
        # float32 (as in Nemotron's checkpoints and transformers). Keep the float32 originals
        # and move them to the new device instead of taking the cast copies.
        originals = {"weight": self.weight.data, **dict(self._buffers.items())}
        super()._apply(fn, recurse)
        for name, old in originals.items():
            new = self.weight.data if name == "weight" else self._buffers[name]
            if old is None or new.dtype == old.dtype:
                continue
            if name == "weight":
                self.weight.data = old.to(new.device)
            else:
                self._buffers[name] = old.to(new.device)
        return self

    def forward(self, x: Tensor, batch_shape: tuple[int, ...] | None = None) -> RouterOutput:
        """Routes x: (T, d). ``batch_shape`` (b, L) with b * L = T marks the sequences of the
        sequence-wise auxiliary loss (default: one sequence)."""
        logits = F.linear(x.float(), self.weight.float())
        scores = logits.sigmoid()
        topk_ids = self.select(scores)
        topk_weights = scores.gather(1, topk_ids)
        if self.norm_topk_prob:
            topk_weights = topk_weights / (topk_weights.sum(-1, keepdim=True) + 1e-20)
        topk_weights = topk_weights * self.routed_scaling_factor
        aux_loss = None
        if self.training:
            with torch.no_grad():
                self.tokens_per_expert += torch.bincount(
                    topk_ids.reshape(-1), minlength=self.num_experts
                ).float()
            if self.aux_loss_coeff > 0:
                aux_loss = self.balancing_loss(scores, topk_ids, batch_shape)
        return RouterOutput(topk_ids, topk_weights, scores, aux_loss)

    @torch.no_grad()
    def select(self, scores: Tensor) -> Tensor:
        """(T, E) scores -> (T, k) expert ids chosen by the biased scores, best first."""
        biased = scores + self.e_score_correction_bias
        if self.n_group > 1:
            T = biased.shape[0]
            grouped = biased.view(T, self.n_group, -1)
            group_scores = grouped.topk(min(2, grouped.shape[-1]), dim=-1).values.sum(-1)
            keep = group_scores.topk(self.topk_group, dim=-1).indices
            mask = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, keep, True)
            # -inf (DeepSeek-V3's reference code), not 0 as in transformers: a biased score may
            # be negative, and a masked expert must never win.
            biased = grouped.masked_fill(~mask[..., None], float("-inf")).view(T, -1)
        return biased.topk(self.top_k, dim=-1).indices

    def balancing_loss(
        self, scores: Tensor, topk_ids: Tensor, batch_shape: tuple[int, ...] | None
    ) -> Tensor:
        """DeepSeek-V3's balancing loss ``coeff * sum_i f_i P_i`` averaged over sequences, with
        ``f_i = E / (k L) * (tokens sent to expert i)`` and ``P_i`` the mean of the normalised
        scores ``s_i / sum_j s_j``; 1 when perfectly balanced and uniform."""
        E, k = self.num_experts, self.top_k
        T = scores.shape[0]
        seqs = 1
        if self.aux_loss_type == "seq" and batch_shape is not None and len(batch_shape) == 2:
            seqs = batch_shape[0]
        L = T // seqs
        probs = (scores / (scores.sum(-1, keepdim=True) + 1e-20)).view(seqs, L, E)
        hits = torch.zeros(seqs, E, device=scores.device, dtype=torch.float32)
        hits.scatter_add_(
            1, topk_ids.view(seqs, L * k), torch.ones_like(hits[:, :1]).expand(seqs, L * k)
        )
        f = hits * (E / (k * L))
        P = probs.mean(1)
        return self.aux_loss_coeff * (f * P).sum(-1).mean()

    @torch.no_grad()
    def update_bias(self, tokens_per_expert: Tensor | None = None) -> None:
        """One aux-loss-free balancing step: ``bias += rate * sign(mean load - load)``.

        Uses the tokens counted since the last call (or ``tokens_per_expert``, e.g. summed over
        data-parallel ranks) and resets the count. Does nothing if no token was routed.
        """
        load = self.tokens_per_expert if tokens_per_expert is None else tokens_per_expert
        load = load.to(self.e_score_correction_bias.device, torch.float32)
        if float(load.sum()) > 0:
            self.e_score_correction_bias += self.bias_update_rate * torch.sign(load.mean() - load)
        self.tokens_per_expert.zero_()

    def load_stats(self) -> dict[str, float | list[float]]:
        """Expert load since the last bias update, for logging: tokens per expert and the max
        violation ``(max - mean) / mean`` (0 when perfectly balanced)."""
        load = self.tokens_per_expert.float().cpu()
        mean = float(load.mean())
        return {
            "tokens_per_expert": load.tolist(),
            "max_violation": (float(load.max()) - mean) / mean if mean > 0 else 0.0,
        }


def update_router_biases(model: nn.Module, process_group=None) -> None:
    """Runs ``update_bias()`` on every ``TopKRouter`` in ``model``; call it after each optimizer
    step. Under ``torch.distributed`` the token counts are summed over ``process_group`` first
    (one all-reduce for all routers), so every rank applies the same update."""
    routers = [m for m in model.modules() if isinstance(m, TopKRouter)]
    if not routers:
        return
    counts = torch.cat([r.tokens_per_expert for r in routers])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(counts, group=process_group)
    for router, load in zip(routers, counts.split([r.num_experts for r in routers])):
        router.update_bias(load)
