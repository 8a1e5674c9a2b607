"""MoE and LatentMoE layers and the router (model.md 3.5, 3.6): the layers against a
loop-over-experts torch version of themselves, forward and backward; the router's selection
rules against brute force; aux-loss-free balancing on a skewed router; parameter and FLOP
counts against the model.md formulas (FLOPs measured by torch's FlopCounterMode).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nemocore.layers import LatentMoE, MoE, MoEConfig, TopKRouter, update_router_biases


def _config(**overrides) -> MoEConfig:
    base = dict(
        hidden_size=32,
        n_routed_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=24,
        moe_shared_expert_intermediate_size=40,
        routed_scaling_factor=2.5,
    )
    return MoEConfig(**{**base, **overrides})


CONFIGS = {
    "moe": _config(),
    "latent": _config().latent(16),
    "top1": _config(num_experts_per_tok=1),
    "top8": _config(num_experts_per_tok=8),
    "single_expert": _config(n_routed_experts=1, num_experts_per_tok=1),
    "no_shared": _config(moe_shared_expert_intermediate_size=0),
    "bias": _config(mlp_bias=True, moe_latent_size=16),
    "grouped_routing": _config(n_routed_experts=16, n_group=4, topk_group=2, num_experts_per_tok=3),
}


def _randomize(layer: nn.Module) -> None:
    """Non-zero biases and a non-zero correction bias, so every term is exercised."""
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if "bias" in name:
                p.normal_(std=0.1)
        layer.gate.e_score_correction_bias.normal_(std=0.05)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layer_matches_loop_over_experts(name, dtype):
    config = CONFIGS[name]
    layer = (LatentMoE if config.moe_latent_size else MoE)(config).to(dtype)
    _randomize(layer)
    u = torch.randn(3, 7, config.hidden_size, dtype=dtype, requires_grad=True)
    out = layer(u)
    want = layer.reference_forward(u)
    assert out.shape == u.shape
    assert out.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out, want, rtol=tol, atol=tol)
    g = torch.randn_like(out)
    params = [u, *layer.parameters()]
    got = torch.autograd.grad(out, params, g, allow_unused=True)
    ref = torch.autograd.grad(want, params, g, allow_unused=True)
    for (pname, _), a, b in zip([("input", u), *layer.named_parameters()], got, ref):
        if b is None:
            assert a is None or a.abs().max() == 0, pname
            continue
        torch.testing.assert_close(a, b, rtol=10 * tol, atol=10 * tol, msg=pname)


def test_layer_in_bfloat16_keeps_the_router_in_float32():
    layer = MoE(_config()).to(torch.bfloat16)
    assert layer.gate.weight.dtype == torch.float32
    assert layer.gate.e_score_correction_bias.dtype == torch.float32
    assert layer.experts.up_proj.dtype == torch.bfloat16
    u = torch.randn(4, 32, dtype=torch.bfloat16)
    out = layer(u)
    assert out.dtype == torch.bfloat16
    truth = MoE(_config()).double()
    truth.load_state_dict(layer.state_dict())
    want = truth.reference_forward(u.double())
    lowp = layer.reference_forward(u)  # plain torch in bf16
    err, err_torch = (out.double() - want).abs().max(), (lowp.double() - want).abs().max()
    assert err <= 2 * err_torch + 1e-6


def test_state_dict_names_follow_transformers():
    names = set(MoE(_config(moe_latent_size=16)).state_dict())
    assert names == {
        "gate.weight",
        "gate.e_score_correction_bias",
        "experts.up_proj",
        "experts.down_proj",
        "shared_experts.up_proj.weight",
        "shared_experts.down_proj.weight",
        "fc1_latent_proj.weight",
        "fc2_latent_proj.weight",
    }


# ---- router -------------------------------------------------------------------------------------


def test_router_weights_use_unbiased_scores_renormalised_and_scaled():
    router = TopKRouter(16, 6, 3, routed_scaling_factor=2.5)
    with torch.no_grad():
        router.e_score_correction_bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 5.0, 5.0]))
    x = torch.randn(10, 16)
    out = router(x)
    scores = torch.sigmoid(x @ router.weight.T)
    assert torch.equal(out.scores, scores)
    # The bias forces experts 4 and 5 into every selection, but never into the weights.
    assert (out.topk_ids[:, :2].sort(-1).values == torch.tensor([4, 5])).all()
    chosen = scores.gather(1, out.topk_ids)
    torch.testing.assert_close(out.topk_weights, 2.5 * chosen / chosen.sum(-1, keepdim=True))
    torch.testing.assert_close(out.topk_weights.sum(-1), torch.full((10,), 2.5))


def test_router_without_renormalisation():
    router = TopKRouter(8, 4, 2, norm_topk_prob=False, routed_scaling_factor=1.5)
    out = router(torch.randn(5, 8))
    torch.testing.assert_close(out.topk_weights, 1.5 * out.scores.gather(1, out.topk_ids))


def test_group_limited_selection_matches_brute_force():
    E, n_group, topk_group, k = 12, 4, 2, 3
    router = TopKRouter(8, E, k, n_group=n_group, topk_group=topk_group)
    with torch.no_grad():
        router.e_score_correction_bias.normal_(std=0.3)
    x = torch.randn(50, 8)
    ids = router(x).topk_ids
    biased = torch.sigmoid(x @ router.weight.T) + router.e_score_correction_bias
    size = E // n_group
    for t in range(x.shape[0]):
        group_score = [
            sorted(biased[t, g * size : (g + 1) * size].tolist())[-2:] for g in range(n_group)
        ]
        groups = sorted(range(n_group), key=lambda g: -sum(group_score[g]))[:topk_group]
        eligible = [e for g in groups for e in range(g * size, (g + 1) * size)]
        best = sorted(eligible, key=lambda e: -biased[t, e].item())[:k]
        assert ids[t].tolist() == best


def test_router_is_deterministic_and_thread_independent():
    router = TopKRouter(64, 32, 6)
    x = torch.randn(200, 64)
    first = router(x)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        again = router(x)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(first.topk_ids, again.topk_ids)
    assert torch.equal(first.topk_weights, again.topk_weights)


def test_router_rejects_bad_configs():
    with pytest.raises(ValueError, match="top_k"):
        TopKRouter(8, 4, 5)
    with pytest.raises(ValueError, match="n_group"):
        TopKRouter(8, 6, 2, n_group=4)
    with pytest.raises(ValueError, match="topk_group"):
        TopKRouter(8, 8, 2, n_group=2, topk_group=3)
    with pytest.raises(ValueError, match="eligible"):
        TopKRouter(8, 8, 5, n_group=4, topk_group=2)
    with pytest.raises(ValueError, match="aux_loss_type"):
        TopKRouter(8, 8, 2, aux_loss_type="batch")
    with pytest.raises(ValueError, match="moe_latent_size"):
        LatentMoE(_config())


# ---- balancing ----------------------------------------------------------------------------------


def _skewed_router_history(rate: float, steps: int) -> tuple[float, list[float]]:
    """A router whose logits favour 4 of 16 experts by about 1 for the inputs it sees; returns
    the max violation of the first batch and of each of `steps` batches after it, with one
    bias update per batch."""
    torch.manual_seed(0)
    E, k, d = 16, 2, 32
    router = TopKRouter(d, E, k, bias_update_rate=rate).train()
    direction = torch.randn(d).sign() / d**0.5
    with torch.no_grad():
        router.weight.normal_(std=0.2)
        router.weight[:4] += direction / (0.5 * d**0.5)
    mean = 0.5 * direction * d**0.5

    def route_one_batch() -> float:
        router(torch.randn(512, d) + mean)
        vio = router.load_stats()["max_violation"]
        router.update_bias()
        return vio

    start = route_one_batch()
    return start, [route_one_batch() for _ in range(steps)]


def test_aux_loss_free_balancing_evens_out_a_skewed_router():
    """model.md 3.5's sign update at rate 5e-3 takes the max violation of a skewed router from
    above 2 to the level of sampling noise (1024 assignments over 16 experts: about 0.25) within
    100 steps, and keeps it there; without updates it stays skewed."""
    start, history = _skewed_router_history(5e-3, 150)
    assert start > 2.0
    late = sorted(history[100:])
    assert late[len(late) // 2] < 0.35, history[100:]
    _, frozen = _skewed_router_history(0.0, 20)
    assert min(frozen) > 2.0


def test_bias_update_is_sign_based_and_resets_counts():
    router = TopKRouter(4, 4, 1, bias_update_rate=0.1).train()
    router.update_bias(torch.tensor([10.0, 0.0, 5.0, 5.0]))
    torch.testing.assert_close(router.e_score_correction_bias, torch.tensor([-0.1, 0.1, 0.0, 0.0]))
    router(torch.randn(8, 4))
    assert router.tokens_per_expert.sum() == 8
    router.update_bias()
    assert router.tokens_per_expert.sum() == 0
    router.eval()
    router(torch.randn(8, 4))  # evaluation does not count
    assert router.tokens_per_expert.sum() == 0


def test_update_router_biases_walks_the_model():
    model = nn.ModuleList([MoE(_config()), MoE(_config(n_routed_experts=4))]).train()
    for layer in model:
        layer(torch.randn(2, 5, 32))
    update_router_biases(model)
    for layer in model:
        assert layer.gate.e_score_correction_bias.abs().sum() > 0
        assert layer.gate.tokens_per_expert.sum() == 0


def test_sequence_aux_loss_matches_formula_and_trains_the_router():
    config = _config(router_aux_loss_coeff=1e-2, moe_shared_expert_intermediate_size=0)
    layer = MoE(config).train()
    u = torch.randn(3, 11, 32)
    out = layer(u)
    loss = layer.last_aux_loss
    scores = torch.sigmoid(u.reshape(-1, 32) @ layer.gate.weight.T).view(3, 11, 8)
    ids = layer.gate.select(scores.reshape(-1, 8)).view(3, 11, 2)
    E, k, L = 8, 2, 11
    want = 0.0
    for b in range(3):
        f = torch.bincount(ids[b].reshape(-1), minlength=E).float() * E / (k * L)
        P = (scores[b] / scores[b].sum(-1, keepdim=True)).mean(0)
        want += 1e-2 * (f * P).sum() / 3
    torch.testing.assert_close(loss, want)
    # The loss reaches the router through the output's graph with no change to the caller.
    (out * 0).sum().backward()
    assert layer.gate.weight.grad is not None
    assert layer.gate.weight.grad.abs().sum() > 0


# ---- sizes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["moe", "latent", "bias", "no_shared", "top8"])
def test_parameter_count_matches_formula(name):
    config = CONFIGS[name]
    layer = MoE(config)
    assert sum(p.numel() for p in layer.parameters()) == config.num_params()


@pytest.mark.parametrize("name", ["moe", "latent", "no_shared", "top8"])
def test_flops_match_formula(name):
    """FlopCounterMode counts the matmuls of the loop-over-experts version, which only runs
    each expert on the tokens routed to it."""
    config = CONFIGS[name]
    layer = MoE(config)
    T = 37
    with FlopCounterMode(display=False) as counter:
        layer.reference_forward(torch.randn(T, config.hidden_size))
    assert counter.get_total_flops() == T * config.flops_per_token()


def test_latent_scaling_and_published_shapes():
    nano = MoEConfig(
        hidden_size=2688,
        n_routed_experts=128,
        num_experts_per_tok=6,
        moe_intermediate_size=1856,
        moe_shared_expert_intermediate_size=3712,
        routed_scaling_factor=2.5,
    )
    latent = nano.latent(672)  # d / l = 4: 4x the experts and the top-k
    assert (latent.n_routed_experts, latent.num_experts_per_tok) == (512, 24)
    # Nano's published 31.6B total / 3.2B active: the 23 MoE layers hold most of both.
    moe_total = 23 * nano.num_params()
    moe_active = 23 * nano.active_params()
    assert 29.0e9 < moe_total < 31.6e9
    assert 1.5e9 < moe_active < 3.2e9
    # Routed expert weights per token shrink by d / l at equal k, the point of LatentMoE.
    lat_equal_k = nano.latent(672)
    lat_equal_k.num_experts_per_tok = 6
    assert (nano.flops_per_token() - lat_equal_k.flops_per_token()) > 0


@pytest.mark.parametrize(("E", "k"), [*list(itertools.product([1, 5], [1])), (9, 9)])
def test_tiny_routings(E, k):
    layer = MoE(_config(n_routed_experts=E, num_experts_per_tok=k))
    u = torch.randn(1, 1, 32)
    torch.testing.assert_close(layer(u), layer.reference_forward(u))
