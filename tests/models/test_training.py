"""Training: the LM and MTP losses, gradients through every op's backward, and one optimizer
step of the model on nemocore.ops against the same model on the pure-torch references
(``nemocore.ref``, a whole-model check in the spirit of llm.c's test_gpt2)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from model_helpers import one_thread, random_ids, tiny_model  # noqa: F401 (autouse fixture)

from nemocore.layers import update_router_biases
from nemocore.models.reference import use_reference_ops


def test_losses_are_shifted_cross_entropies():
    model = tiny_model(num_nextn_predict_layers=1, mtp_num_depths=2, mtp_loss_scaling_factor=0.3)
    ids = random_ids(2, 16)
    labels = ids.clone()
    labels[0, :4] = -100  # e.g. a prompt without loss
    out = model(ids, labels=labels)
    V = model.config.vocab_size
    lm = F.cross_entropy(out.logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1))
    torch.testing.assert_close(out.lm_loss, lm)
    assert [t.shape[1] for t in out.mtp_logits] == [15, 14]
    depth = [
        F.cross_entropy(lg[:, : 16 - i - 1].reshape(-1, V), labels[:, i + 1 :].reshape(-1))
        for i, lg in enumerate(out.mtp_logits, start=1)
    ]
    torch.testing.assert_close(out.mtp_loss, torch.stack(depth).mean())
    torch.testing.assert_close(out.loss, lm + 0.3 * out.mtp_loss)


def test_mtp_depth_one_reads_the_next_token_and_nothing_later():
    model = tiny_model(num_nextn_predict_layers=1)
    ids = random_ids(1, 12)
    n = 5
    changed_next, changed_later = ids.clone(), ids.clone()
    changed_next[0, n + 1] = (ids[0, n + 1] + 1) % 256
    changed_later[0, n + 2] = (ids[0, n + 2] + 1) % 256
    with torch.no_grad():
        base = model(ids).mtp_logits[0][0, n]
        assert not torch.allclose(model(changed_next).mtp_logits[0][0, n], base)
        torch.testing.assert_close(model(changed_later).mtp_logits[0][0, n], base)


def test_one_optimizer_step_matches_the_reference_model():
    model = tiny_model(
        hybrid_override_pattern="M*-EME",
        moe_latent_size=32,
        num_nextn_predict_layers=1,
        mtp_num_depths=2,
        router_aux_loss_coeff=1e-2,
    ).train()
    reference = use_reference_ops(copy.deepcopy(model))
    ids = random_ids(2, 40)
    losses = []
    for m in (model, reference):
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        loss = m(ids, labels=ids).loss
        loss.backward()
        opt.step()
        update_router_biases(m)
        losses.append(loss.item())
    assert abs(losses[0] - losses[1]) < 1e-5 * losses[1]
    ref_params = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reached {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient at {name}"
        torch.testing.assert_close(p.grad, ref_params[name].grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(p, ref_params[name], rtol=1e-5, atol=1e-6)
    for (name, b), (_, rb) in zip(model.named_buffers(), reference.named_buffers()):
        torch.testing.assert_close(b, rb, msg=name)
    with torch.no_grad():
        after = model(ids, labels=ids).loss.item()
    assert after < losses[0]  # the step went downhill
