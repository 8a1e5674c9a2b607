"""Presets: the published Nemotron-H / Nemotron 3 shapes (model.md section 2) and small models
for tests, demos and benchmarks. Every function takes keyword overrides of any config field.

    tiny()         every block type (pattern M*-EM*E), ~0.2M params, vocab 256 (bytes): tests
                   and low-precision training demos (``model(ids, labels=ids).loss``);
                   ``tiny(moe_latent_size=32)`` makes its MoE blocks LatentMoE
    tiny_mtp()     tiny() plus one MTP module (pattern "*E") run at two depths
    bench_small()  8 layers, width 512, every block type: the CPU model benchmark
"""

from __future__ import annotations

from typing import Any

from nemocore.models.config import NemotronHConfig


def _make(base: dict[str, Any], overrides: dict[str, Any]) -> NemotronHConfig:
    return NemotronHConfig(**{**base, **overrides})


def tiny(**overrides: Any) -> NemotronHConfig:
    """Width 64, pattern ``M*-EM*E`` (Mamba, attention, MLP, MoE, twice), 8 experts top-2 plus
    a shared expert, vocab 256 (bytes). Pass ``moe_latent_size=32`` for LatentMoE."""
    base = dict(
        vocab_size=256,
        hidden_size=64,
        hybrid_override_pattern="M*-EM*E",
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=128,
        mamba_num_heads=8,
        mamba_head_dim=16,
        ssm_state_size=16,
        n_groups=2,
        chunk_size=16,
        n_routed_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=32,
        moe_shared_expert_intermediate_size=64,
        routed_scaling_factor=2.5,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return _make(base, overrides)


def tiny_mtp(**overrides: Any) -> NemotronHConfig:
    """tiny() with one shared MTP module (``*E``) trained at two depths (Nemotron 3 Super's
    layout, model.md 3.7)."""
    return tiny(**{"num_nextn_predict_layers": 1, "mtp_num_depths": 2, **overrides})


def bench_small(**overrides: Any) -> NemotronHConfig:
    """The CPU benchmark model: 8 layers ``ME*M-EM*`` (every block type), width 512,
    LatentMoE (512 -> 256, 16 experts top-4), vocab 8192, 22M parameters."""
    base = dict(
        vocab_size=8192,
        hidden_size=512,
        hybrid_override_pattern="ME*M-EM*",
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=64,
        intermediate_size=1536,
        mamba_num_heads=16,
        mamba_head_dim=64,
        ssm_state_size=64,
        n_groups=2,
        chunk_size=64,
        n_routed_experts=16,
        num_experts_per_tok=4,
        moe_intermediate_size=256,
        moe_shared_expert_intermediate_size=512,
        moe_latent_size=256,
        routed_scaling_factor=2.5,
    )
    return _make(base, overrides)


def nemotron_h_8b(**overrides: Any) -> NemotronHConfig:
    """Nemotron-H-8B (52 layers: 24 M, 4 *, 24 -)."""
    base = dict(
        hidden_size=4096,
        hybrid_override_pattern="M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-",
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=21504,
        mamba_num_heads=128,
        mamba_head_dim=64,
        ssm_state_size=128,
        n_groups=8,
    )
    return _make(base, overrides)


def nemotron_nano_9b_v2(**overrides: Any) -> NemotronHConfig:
    """Nemotron-Nano-9B-v2 (56 layers: 27 M, 4 *, 25 -); d_in = 128 x 80 = 10240."""
    base = dict(
        hidden_size=4480,
        hybrid_override_pattern="M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-",
        num_attention_heads=40,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=15680,
        mamba_num_heads=128,
        mamba_head_dim=80,
        ssm_state_size=128,
        n_groups=8,
    )
    return _make(base, overrides)


def nemotron_3_nano_30b_a3b(**overrides: Any) -> NemotronHConfig:
    """Nemotron-3-Nano-30B-A3B (52 layers: 23 M, 6 *, 23 E; 128 experts, top-6)."""
    base = dict(
        hidden_size=2688,
        hybrid_override_pattern="MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME",
        num_attention_heads=32,
        num_key_value_heads=2,
        head_dim=128,
        mamba_num_heads=64,
        mamba_head_dim=64,
        ssm_state_size=128,
        n_groups=8,
        n_routed_experts=128,
        num_experts_per_tok=6,
        moe_intermediate_size=1856,
        moe_shared_expert_intermediate_size=3712,
        routed_scaling_factor=2.5,
        eos_token_id=[2, 11],
    )
    return _make(base, overrides)


def nemotron_3_super_120b_a12b(**overrides: Any) -> NemotronHConfig:
    """Nemotron-3-Super-120B-A12B (88 layers, LatentMoE 4096 -> 1024, 512 experts top-22,
    one shared MTP module ``*E``)."""
    base = dict(
        hidden_size=4096,
        hybrid_override_pattern="MEMEMEM*EMEMEMEM*EMEMEMEM*EMEMEMEMEM*EMEMEMEMEM*EMEMEMEMEM*"
        "EMEMEMEMEM*EMEMEMEM*EMEMEMEME",
        num_attention_heads=32,
        num_key_value_heads=2,
        head_dim=128,
        mamba_num_heads=128,
        mamba_head_dim=64,
        ssm_state_size=128,
        n_groups=8,
        n_routed_experts=512,
        num_experts_per_tok=22,
        moe_intermediate_size=2688,
        moe_shared_expert_intermediate_size=5376,
        moe_latent_size=1024,
        routed_scaling_factor=5.0,
        num_nextn_predict_layers=1,
        mtp_hybrid_override_pattern="*E",
        eos_token_id=[2, 11],
    )
    return _make(base, overrides)


PRESETS = {
    "tiny": tiny,
    "tiny_mtp": tiny_mtp,
    "bench_small": bench_small,
    "nemotron-h-8b": nemotron_h_8b,
    "nemotron-nano-9b-v2": nemotron_nano_9b_v2,
    "nemotron-3-nano-30b-a3b": nemotron_3_nano_30b_a3b,
    "nemotron-3-super-120b-a12b": nemotron_3_super_120b_a12b,
}
