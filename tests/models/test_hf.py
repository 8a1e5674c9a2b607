"""Hugging Face checkpoints: logits parity with transformers 5.24's NemotronH (pure-torch path)
in both directions on tiny configs with every block type, plus bf16 and sharded files, MTP
and tied weights, atomic writes and errors that list the bad tensors (model.md 4, 9)."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from model_helpers import one_thread, random_ids, tiny_model  # noqa: F401 (autouse fixture)
from safetensors.torch import load_file, save_file

from nemocore.models import CheckpointError, NemotronHForCausalLM, load_pretrained

transformers = pytest.importorskip("transformers")
logging.getLogger("transformers").setLevel(logging.ERROR)

CONFIGS = {
    "moe": dict(hybrid_override_pattern="M*-EM*E"),
    "latent_moe": dict(hybrid_override_pattern="ME*-M*E", moe_latent_size=32, n_group=2),
}


def _hf_load(path):
    return transformers.NemotronHForCausalLM.from_pretrained(
        path, experts_implementation="eager"
    ).eval()


def _assert_logits_close(ours, theirs):
    scale = theirs.abs().max().item()
    assert (ours - theirs).abs().max().item() < 1e-4 * scale


@pytest.mark.parametrize("name", CONFIGS)
def test_nemocore_checkpoint_runs_the_same_in_transformers(tmp_path, name):
    ours = tiny_model(transformers_compat=True, **CONFIGS[name])
    ours.save_pretrained(tmp_path)
    theirs = _hf_load(tmp_path)
    ids = random_ids(2, 37)
    mask = torch.ones_like(ids)
    mask[1, :9] = 0  # left padding
    with torch.no_grad():
        _assert_logits_close(ours(ids).logits, theirs(ids).logits)
        a = ours(ids, attention_mask=mask).logits[mask.bool()]
        _assert_logits_close(a, theirs(ids, attention_mask=mask).logits[mask.bool()])


@pytest.mark.parametrize("name", CONFIGS)
def test_transformers_checkpoint_runs_the_same_in_nemocore(tmp_path, name):
    cfg = tiny_model(**CONFIGS[name]).config
    cfg.save(tmp_path)
    torch.manual_seed(3)
    theirs = transformers.NemotronHForCausalLM(transformers.AutoConfig.from_pretrained(tmp_path))
    with torch.no_grad():
        for n, buf in theirs.named_buffers():
            if n.endswith("e_score_correction_bias"):
                buf.normal_(0, 0.05)
    theirs.save_pretrained(tmp_path / "hf")
    theirs = _hf_load(tmp_path / "hf")  # the eager expert loop (model.md 9.3)
    ours = load_pretrained(tmp_path / "hf", transformers_compat=True)
    ids = random_ids(2, 41)
    with torch.no_grad():
        _assert_logits_close(ours(ids).logits, theirs(ids).logits)


def test_bf16_sharded_round_trip(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path, dtype="bf16", max_shard_bytes=40_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    back = load_pretrained(tmp_path)
    assert back.lm_head.weight.dtype == torch.bfloat16
    assert back.backbone.layers[3].mixer.gate.weight.dtype == torch.float32  # router stays fp32
    want = model.to(torch.bfloat16).state_dict()
    for k, v in back.state_dict().items():
        torch.testing.assert_close(v, want[k].to(v.dtype), rtol=0, atol=0)
    fp32 = load_pretrained(tmp_path, dtype=torch.float32)
    assert fp32.lm_head.weight.dtype == torch.float32


def test_mtp_weights_round_trip_and_transformers_loads_the_trunk(tmp_path):
    model = tiny_model(num_nextn_predict_layers=1, mtp_num_depths=2)
    model.save_pretrained(tmp_path)
    keys = load_file(tmp_path / "model.safetensors").keys()
    for key in ("mtp.layers.0.eh_proj.weight", "mtp.layers.0.enorm.weight",
                "mtp.layers.0.mixer.q_proj.weight", "mtp.layers.1.final_layernorm.weight",
                "mtp.layers.1.mixer.experts.7.up_proj.weight"):  # fmt: skip
        assert key in keys
    back = load_pretrained(tmp_path)
    ids = random_ids(1, 20)
    with torch.no_grad():
        a, b = model(ids), back(ids)
    for x, y in zip(a.mtp_logits, b.mtp_logits):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    theirs = _hf_load(tmp_path)
    with torch.no_grad():
        _assert_logits_close(theirs(ids).logits, a.logits)


def test_tied_embeddings_write_both_tensors(tmp_path):
    model = tiny_model(tie_word_embeddings=True)
    assert model.lm_head.weight is model.backbone.embeddings.weight
    model.save_pretrained(tmp_path)
    sd = load_file(tmp_path / "model.safetensors")
    torch.testing.assert_close(sd["lm_head.weight"], sd["backbone.embeddings.weight"])
    back = load_pretrained(tmp_path)
    assert back.lm_head.weight is back.backbone.embeddings.weight
    # transformers never ties: a file whose head differs from its embeddings stays untied
    sd["lm_head.weight"] = torch.randn_like(sd["lm_head.weight"])
    save_file(sd, tmp_path / "model.safetensors", metadata={"format": "pt"})
    untied = load_pretrained(tmp_path)
    assert not untied.config.tie_word_embeddings
    torch.testing.assert_close(untied.lm_head.weight, sd["lm_head.weight"])


def test_save_is_atomic_and_replaces_an_old_checkpoint(tmp_path):
    path = tmp_path / "ckpt"
    tiny_model(seed=1).save_pretrained(path)
    model = tiny_model(seed=2)
    model.save_pretrained(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp dirs left
    back = load_pretrained(path)
    torch.testing.assert_close(back.lm_head.weight, model.lm_head.weight)


def test_bad_checkpoints_list_their_problems(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    sd = load_file(tmp_path / "model.safetensors")
    del sd["backbone.layers.0.mixer.D"]
    sd["backbone.layers.9.mixer.bogus"] = torch.zeros(1)
    sd["backbone.norm_f.weight"] = torch.ones(3)
    save_file(sd, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as err:
        load_pretrained(tmp_path)
    msg = str(err.value)
    assert "backbone.layers.0.mixer.D" in msg
    assert "backbone.layers.9.mixer.bogus" in msg
    assert "backbone.norm_f.weight: checkpoint (3,), model (64,)" in msg
    del sd["backbone.layers.3.mixer.experts.5.up_proj.weight"]
    save_file(sd, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"missing experts \[5\]"):
        load_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["layers_block_type"] = ["linear_attention", "bad_block"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="bad_block"):
        load_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        NemotronHForCausalLM.from_pretrained(tmp_path / "nowhere")
