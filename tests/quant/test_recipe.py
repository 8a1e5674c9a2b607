"""QuantLinear's autograd (against a manual composition of the quantizers, and against fp32
for the bf16 recipe), Recipe validation, convert's layer selection, and a short NVFP4 training
run whose loss must fall."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nemocore import quant
from nemocore.quant.linear import quantize_operand


def manual_nvfp4_linear(x, w, b, dy, seed):
    """The recipe spelled out with the public quantizers, consuming the generator in the same
    order as QuantLinearFunction (Dgrad's gradient, then Wgrad's)."""
    g = torch.Generator().manual_seed(seed)
    xq = quant.nvfp4_quantize(x).dequantize(torch.float32)
    wq = quant.nvfp4_quantize(w, block_2d=True).dequantize(torch.float32)
    y = xq @ wq.T + b
    dyq = quant.nvfp4_quantize(dy, stochastic_rounding=True, generator=g).dequantize(torch.float32)
    dx = dyq @ wq
    gt = quant.nvfp4_quantize(dy.T, stochastic_rounding=True, generator=g, hadamard=True)
    xt = quant.nvfp4_quantize(x.T, hadamard=True)
    dw = gt.dequantize(torch.float32, rotated=True) @ xt.dequantize(torch.float32, rotated=True).T
    return y, dx, dw, dy.sum(0)


@pytest.mark.parametrize("tokens", [1, 20, 48])
def test_nvfp4_linear_matches_manual_recipe(tokens):
    x = torch.randn(tokens, 40, requires_grad=True)
    lin = nn.Linear(40, 24)
    recipe = quant.Recipe("nvfp4", seed=3)
    layer = quant.QuantLinear.from_linear(lin, recipe)
    dy = torch.randn(tokens, 24)
    y = layer(x)
    y.backward(dy)
    ey, edx, edw, edb = manual_nvfp4_linear(
        x.detach(), lin.weight.detach(), lin.bias.detach(), dy, 3
    )
    torch.testing.assert_close(y, ey, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, edx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lin.weight.grad, edw, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lin.bias.grad, edb)
    assert lin.weight.dtype == torch.float32  # master weights stay fp32


@pytest.mark.parametrize("fmt", ["bf16", "fp8", "nvfp4"])
def test_quant_linear_gradients_approximate_fp32(fmt):
    torch.manual_seed(0)
    x = torch.randn(64, 64, requires_grad=True)
    lin = nn.Linear(64, 32)
    ref_lin = nn.Linear(64, 32)
    ref_lin.load_state_dict(lin.state_dict())
    x_ref = x.detach().clone().requires_grad_()
    layer = quant.QuantLinear.from_linear(lin, quant.Recipe(fmt))
    dy = torch.randn(64, 32)
    layer(x).backward(dy)
    ref_lin(x_ref).backward(dy)
    tol = {"bf16": 0.01, "fp8": 0.08, "nvfp4": 0.3}[fmt]
    for ours, exact in ((x.grad, x_ref.grad), (lin.weight.grad, ref_lin.weight.grad)):
        assert ((ours - exact).norm() / exact.norm()).item() < tol


def test_hybrid_fp8_uses_e5m2_gradients():
    t = torch.randn(8, 32) * 1e3
    e4 = quantize_operand(t, quant.Recipe("fp8"), "grad")
    e5 = quantize_operand(t, quant.Recipe("fp8", fp8_format="hybrid"), "grad")
    assert not torch.equal(e4, e5)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.in_proj = nn.Linear(16, 32)
        self.out_proj = nn.Linear(32, 16)
        self.gate = nn.Linear(16, 4)  # a router: stays high precision


class Tiny(nn.Module):
    def __init__(self, n=4):
        super().__init__()
        self.layers = nn.ModuleList(Block() for _ in range(n))
        self.lm_head = nn.Linear(16, 50)


def test_convert_selects_layers_and_shares_parameters():
    model = Tiny()
    w = model.layers[1].in_proj.weight
    recipe = quant.Recipe("nvfp4", first_blocks_bf16=1, last_blocks_bf16=1)
    names = quant.quantized_layer_names(model, recipe)
    assert names == [
        "layers.1.in_proj",
        "layers.1.out_proj",
        "layers.2.in_proj",
        "layers.2.out_proj",
    ]
    quant.convert(model, recipe)
    assert isinstance(model.layers[1].in_proj, quant.QuantLinear)
    assert model.layers[1].in_proj.weight is w
    assert type(model.layers[0].in_proj) is nn.Linear
    assert type(model.layers[1].gate) is nn.Linear
    assert type(model.lm_head) is nn.Linear


def test_recipe_validation():
    with pytest.raises(ValueError, match="format"):
        quant.Recipe("fp6")
    with pytest.raises(ValueError, match="fp8_format"):
        quant.Recipe("fp8", fp8_format="e3m4")
    with pytest.raises(TypeError, match="recipe"):
        quant.convert(Tiny(), "nvfp4")


def test_nvfp4_training_loss_falls():
    # A test-sized version of the training study: a 2-layer MLP regression, NVFP4 recipe.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32))
    quant.convert(model, quant.Recipe("nvfp4", keep_bf16=()))
    assert all(isinstance(m, quant.QuantLinear) for m in (model[0], model[2]))
    target = nn.Linear(32, 32)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        x = torch.randn(64, 32)
        loss = (model(x) - target(x).detach()).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_nvfp4_recipe_trains_the_nemocore_model():
    # The training study (benches/cpu/nvfp4_training_study.py) at test size: the tiny hybrid
    # model (Mamba, attention, MLP, MoE) converted to NVFP4 learns a repeating byte pattern.
    models = pytest.importorskip("nemocore.models")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny GEMMs: a second thread only adds barrier waits
    try:
        _train_tiny_nvfp4(models)
    finally:
        torch.set_num_threads(threads)


def _train_tiny_nvfp4(models) -> None:
    torch.manual_seed(0)
    model = models.NemotronHForCausalLM(models.presets.tiny())
    names = quant.quantized_layer_names(model, quant.Recipe("nvfp4"))
    quant.convert(model, quant.Recipe("nvfp4", seed=1))
    assert names
    assert "lm_head" not in names
    assert all(isinstance(model.get_submodule(n), quant.QuantLinear) for n in names)
    text = torch.tensor(list(b"nemocore trains in nvfp4. " * 8))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        x = torch.stack([text[s : s + 32] for s in (0, 11)])
        loss = model(x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-2:]) / 2 < 0.8 * sum(losses[:2]) / 2
