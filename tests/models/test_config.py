"""NemotronHConfig: config.json round trips (ours and transformers'), legacy spellings, presets'
derived sizes against model.md section 2, and errors that name the problem."""

from __future__ import annotations

import json
import math

import pytest

from nemocore.models import ConfigError, NemotronHConfig, presets


def test_round_trip_keeps_every_field_and_unused_keys(tmp_path):
    cfg = presets.tiny_mtp(moe_latent_size=32, dt_limit=(1e-3, 0.5), transformers_compat=True)
    cfg.extra["rope_theta"] = 10000
    cfg.save(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw["hybrid_override_pattern"] == "M*-EM*E"
    assert raw["layers_block_type"][:3] == ["linear_attention", "full_attention", "mlp"]
    assert raw["num_hidden_layers"] == 7
    assert raw["time_step_limit"][1] == {"__float__": "Infinity"}
    back = NemotronHConfig.load(tmp_path)
    assert back == cfg


def test_transformers_reads_our_config_and_we_read_theirs(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = presets.tiny(moe_latent_size=32)
    cfg.save(tmp_path)
    theirs = transformers.AutoConfig.from_pretrained(tmp_path)
    assert theirs.layers_block_type == cfg.layers_block_type
    assert theirs.moe_latent_size == 32
    assert theirs.mamba_num_heads == cfg.mamba_num_heads
    theirs.save_pretrained(tmp_path / "hf")
    back = NemotronHConfig.load(tmp_path / "hf")
    assert back.hybrid_override_pattern == cfg.hybrid_override_pattern
    assert back.time_step_limit == (0.0, math.inf)


def test_legacy_spellings():
    d = {
        "model_type": "nemotron_h",
        "hybrid_override_pattern": "M-*",
        "mamba_n_groups": 2,
        "mamba_d_conv": 3,
        "mamba_chunk_size": 64,
        "rms_norm_eps": 1e-6,
        "time_step_limit": [0.0, math.inf],  # the bare Infinity token of older files
        "num_hidden_layers": 99,  # ignored: the pattern decides
        "hidden_size": 64,
        "mamba_num_heads": 4,
    }
    cfg = NemotronHConfig.from_dict(json.loads(json.dumps(d)))
    assert (cfg.n_groups, cfg.conv_kernel, cfg.chunk_size) == (2, 3, 64)
    assert cfg.layer_norm_epsilon == 1e-6
    assert cfg.num_hidden_layers == 3
    legacy_types = dict(d, layers_block_type=["mamba", "attention", "mlp"])
    assert NemotronHConfig.from_dict(legacy_types).hybrid_override_pattern == "M*-"


@pytest.mark.parametrize(
    ("preset", "in_proj_rows", "layers"),
    [
        (presets.nemotron_h_8b, 18560, (24, 4, 24, 0)),
        (presets.nemotron_nano_9b_v2, 22656, (27, 4, 25, 0)),
        (presets.nemotron_3_nano_30b_a3b, 10304, (23, 6, 0, 23)),
        (presets.nemotron_3_super_120b_a12b, 18560, (40, 8, 0, 40)),
    ],
)
def test_presets_match_published_shapes(preset, in_proj_rows, layers):
    cfg = preset()
    assert (
        2 * cfg.mamba_intermediate_size
        + 2 * cfg.n_groups * cfg.ssm_state_size
        + (cfg.mamba_num_heads)
        == in_proj_rows
    )
    assert tuple(cfg.hybrid_override_pattern.count(c) for c in "M*-E") == layers


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match=r"unknown block characters \['X'\]"):
        NemotronHConfig(hybrid_override_pattern="M*X")
    with pytest.raises(ConfigError, match="unknown block types"):
        NemotronHConfig.from_dict({"layers_block_type": ["mamba", "conv"]})
    with pytest.raises(ConfigError, match="n_groups"):
        presets.tiny(n_groups=3)
    with pytest.raises(ConfigError, match="num_key_value_heads"):
        presets.tiny(num_key_value_heads=3)
    with pytest.raises(ConfigError, match="unknown config keys"):
        NemotronHConfig.from_dict({"hidden_size": 64, "bogus": 1}, strict=True)
    with pytest.raises(ConfigError, match="model_type"):
        NemotronHConfig.from_dict({"model_type": "llama"})
    with pytest.raises(ConfigError, match="relu2"):
        NemotronHConfig.from_dict({"mlp_hidden_act": "gelu"})
