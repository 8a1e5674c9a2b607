"""``NemotronHConfig``: the shape of a Nemotron-H / Nemotron 3 model, read from and written to
Hugging Face's ``config.json`` (model_type ``nemotron_h``, model.md section 4).

Field names are transformers' own, so a config round-trips through transformers unchanged.
nemocore-only settings (the dt clamp policy, MTP depth and loss weight, router training knobs)
are written as extra ``nemocore_*`` keys, which transformers keeps on the config and ignores.

The layer pattern is one character per block (model.md section 1): ``M`` Mamba-2, ``*``
attention, ``-`` MLP, ``E`` MoE (LatentMoE when ``moe_latent_size`` is set).
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemocore.layers import MoEConfig

BLOCK_TYPES = {"M": "linear_attention", "*": "full_attention", "-": "mlp", "E": "moe"}
_CHAR_OF = {v: k for k, v in BLOCK_TYPES.items()} | {"mamba": "M", "attention": "*"}

# transformers aliases of older config files (model.md section 4), read only.
_ALIASES = {
    "mamba_n_groups": "n_groups",
    "mamba_d_conv": "conv_kernel",
    "mamba_expand": "expand",
    "mamba_dt_min": "time_step_min",
    "mamba_dt_max": "time_step_max",
    "mamba_dt_limit": "time_step_limit",
    "mamba_dt_init_floor": "time_step_floor",
    "mamba_conv_bias": "use_conv_bias",
    "mamba_chunk_size": "chunk_size",
    "norm_eps": "layer_norm_epsilon",
    "rms_norm_eps": "layer_norm_epsilon",
}

# Keys transformers writes or published configs carry that nemocore's forward does not use;
# they are kept verbatim in ``extra`` so a round trip loses nothing.
_PASSTHROUGH = {
    "architectures", "auto_map", "dtype", "torch_dtype", "transformers_version", "model_type",
    "_name_or_path", "expand", "rope_theta", "partial_rotary_factor", "residual_in_fp32",
    "hidden_dropout", "attention_dropout", "sliding_window", "attention_bias", "mamba_proj_bias",
    "n_shared_experts", "moe_shared_expert_overlap", "mamba_ssm_cache_dtype",
    "max_position_embeddings", "use_cache", "num_logits_to_keep", "output_router_logits",
    "use_mamba_kernels", "mamba_hidden_act", "mlp_hidden_act", "attention_head_dim",
    "num_hidden_layers", "layers_block_type", "mtp_layers_block_type", "generation_config",
    "quantization_config", "rope_scaling", "rope_parameters", "initializer_factor",
    "output_attentions", "output_hidden_states", "return_dict", "chunk_size_feed_forward",
    "is_encoder_decoder", "tie_encoder_decoder", "problem_type", "id2label", "label2id",
}  # fmt: skip

_NEMOCORE_KEYS = {
    "dt_limit": "nemocore_dt_limit",
    "transformers_compat": "nemocore_transformers_compat",
    "mtp_num_depths": "nemocore_mtp_num_depths",
    "mtp_loss_scaling_factor": "nemocore_mtp_loss_scaling_factor",
    "router_bias_update_rate": "nemocore_router_bias_update_rate",
    "router_aux_loss_coeff": "nemocore_router_aux_loss_coeff",
}


class ConfigError(ValueError):
    """A config value that does not describe a valid model."""


def _parse_pattern(pattern: str, name: str) -> str:
    bad = sorted({c for c in pattern if c not in BLOCK_TYPES})
    if bad:
        raise ConfigError(
            f"{name}: unknown block characters {bad} in {pattern!r}; use M (Mamba-2), "
            "* (attention), - (MLP) or E (MoE)"
        )
    return pattern


def _pattern_of(types: list[str], name: str) -> str:
    bad = sorted({t for t in types if t not in _CHAR_OF})
    if bad:
        raise ConfigError(f"{name}: unknown block types {bad}; expected {sorted(_CHAR_OF)}")
    return "".join(_CHAR_OF[t] for t in types)


def _float(v: Any) -> float:
    """A float from JSON: transformers 5 writes infinity as {"__float__": "Infinity"}."""
    if isinstance(v, dict) and "__float__" in v:
        return float(v["__float__"])
    return float(v)


def _json_float(v: float) -> Any:
    return {"__float__": "Infinity"} if v == math.inf else v


@dataclass
class NemotronHConfig:
    """A Nemotron-H / Nemotron 3 model (model.md sections 1-3, notation in parentheses).

    Presets: ``NemotronHConfig.tiny()`` (tests, low-precision training demos),
    ``nemotron_h_8b()``, ``nemotron_nano_9b_v2()``, ``nemotron_3_nano_30b_a3b()`` etc. in
    ``nemocore.models.presets``.

    nemocore-only fields:
        dt_limit: ``(lo, hi)`` clamp on the Mamba step size, applied identically in prefill and
            decode. Default ``(0, inf)``: no clamp, the mamba_ssm kernels' semantics.
        transformers_compat: reproduce transformers 5.24 exactly instead (model.md 3.2.1): clamp
            dt at ``time_step_min`` in prefill/training and not at all in decode.
        mtp_num_depths: MTP depths D predicted in training (default: one per MTP module);
            module ``i % num_nextn_predict_layers`` serves depth i, so one shared module can
            run several depths (Nemotron 3 Super).
        mtp_loss_scaling_factor: lambda in ``L = L_main + lambda * mean_i L_mtp_i``.
        router_bias_update_rate, router_aux_loss_coeff: MoE router training knobs.
    """

    vocab_size: int = 131072
    hidden_size: int = 4096
    hybrid_override_pattern: str = "M*-E"
    num_attention_heads: int = 32
    num_key_value_heads: int = 8
    head_dim: int = 128
    intermediate_size: int = 21504
    mlp_bias: bool = False
    mamba_num_heads: int = 128
    mamba_head_dim: int = 64
    ssm_state_size: int = 128
    n_groups: int = 8
    conv_kernel: int = 4
    use_conv_bias: bool = True
    use_bias: bool = False
    chunk_size: int = 128
    time_step_min: float = 0.001
    time_step_max: float = 0.1
    time_step_floor: float = 1e-4
    time_step_limit: tuple[float, float] = (0.0, math.inf)
    n_routed_experts: int = 8
    num_experts_per_tok: int = 2
    moe_intermediate_size: int = 7688
    moe_shared_expert_intermediate_size: int = 7688
    moe_latent_size: int | None = None
    n_group: int = 1
    topk_group: int = 1
    norm_topk_prob: bool = True
    routed_scaling_factor: float = 1.0
    num_nextn_predict_layers: int = 0
    mtp_hybrid_override_pattern: str = "*E"
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    rescale_prenorm_residual: bool = True
    tie_word_embeddings: bool = False
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    # nemocore-only
    dt_limit: tuple[float, float] = (0.0, math.inf)
    transformers_compat: bool = False
    mtp_num_depths: int | None = None
    mtp_loss_scaling_factor: float = 0.1
    router_bias_update_rate: float = 1e-3
    router_aux_loss_coeff: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _parse_pattern(self.hybrid_override_pattern, "hybrid_override_pattern")
        _parse_pattern(self.mtp_hybrid_override_pattern, "mtp_hybrid_override_pattern")
        self.time_step_limit = tuple(float(v) for v in self.time_step_limit)
        self.dt_limit = tuple(float(v) for v in self.dt_limit)
        positive = (
            "vocab_size", "hidden_size", "num_attention_heads", "num_key_value_heads",
            "head_dim", "mamba_num_heads", "mamba_head_dim", "ssm_state_size", "n_groups",
            "conv_kernel", "chunk_size",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not self.hybrid_override_pattern:
            raise ConfigError("hybrid_override_pattern: needs at least one block")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"num_attention_heads = {self.num_attention_heads} must be a multiple of "
                f"num_key_value_heads = {self.num_key_value_heads}"
            )
        if self.mamba_num_heads % self.n_groups:
            raise ConfigError(
                f"n_groups = {self.n_groups} must divide mamba_num_heads = {self.mamba_num_heads}"
            )
        if len(self.dt_limit) != 2 or not 0 <= self.dt_limit[0] <= self.dt_limit[1]:
            raise ConfigError(
                f"dt_limit: expected (lo, hi) with 0 <= lo <= hi, got {self.dt_limit}"
            )
        if self.num_nextn_predict_layers < 0:
            raise ConfigError("num_nextn_predict_layers: must be >= 0")
        if self.num_nextn_predict_layers and not self.mtp_hybrid_override_pattern:
            raise ConfigError("mtp_hybrid_override_pattern: needs a block when MTP is on")
        if "E" in self.hybrid_override_pattern + self.mtp_pattern:
            self.moe_config()  # validates the MoE fields

    # ---- derived sizes -------------------------------------------------------------------------

    @property
    def num_hidden_layers(self) -> int:
        return len(self.hybrid_override_pattern)

    @property
    def layers_block_type(self) -> list[str]:
        return [BLOCK_TYPES[c] for c in self.hybrid_override_pattern]

    @property
    def mtp_pattern(self) -> str:
        """The MTP blocks' pattern, empty without MTP."""
        return self.mtp_hybrid_override_pattern if self.num_nextn_predict_layers else ""

    @property
    def mamba_intermediate_size(self) -> int:
        """d_in = H * P (``expand`` is not used, model.md section 2)."""
        return self.mamba_num_heads * self.mamba_head_dim

    @property
    def conv_dim(self) -> int:
        return self.mamba_intermediate_size + 2 * self.n_groups * self.ssm_state_size

    @property
    def num_mtp_depths(self) -> int:
        if not self.num_nextn_predict_layers:
            return 0
        return self.mtp_num_depths or self.num_nextn_predict_layers

    def prefill_dt_limit(self) -> tuple[float, float]:
        return (self.time_step_min, math.inf) if self.transformers_compat else self.dt_limit

    def decode_dt_limit(self) -> tuple[float, float]:
        return (0.0, math.inf) if self.transformers_compat else self.dt_limit

    def moe_config(self) -> MoEConfig:
        try:
            return MoEConfig(
                hidden_size=self.hidden_size,
                n_routed_experts=self.n_routed_experts,
                num_experts_per_tok=self.num_experts_per_tok,
                moe_intermediate_size=self.moe_intermediate_size,
                moe_shared_expert_intermediate_size=self.moe_shared_expert_intermediate_size,
                n_group=self.n_group,
                topk_group=self.topk_group,
                norm_topk_prob=self.norm_topk_prob,
                routed_scaling_factor=self.routed_scaling_factor,
                moe_latent_size=self.moe_latent_size,
                mlp_bias=self.mlp_bias,
                initializer_range=self.initializer_range,
                router_bias_update_rate=self.router_bias_update_rate,
                router_aux_loss_coeff=self.router_aux_loss_coeff,
            )
        except ValueError as e:
            raise ConfigError(str(e)) from e

    # ---- presets -------------------------------------------------------------------------------

    @classmethod
    def tiny(cls, **overrides: Any) -> NemotronHConfig:
        """A tiny model with every block type (see ``presets.tiny``)."""
        from nemocore.models import presets

        return presets.tiny(**overrides)

    # ---- Hugging Face config.json --------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` content: transformers' keys, both pattern spellings, then the
        ``nemocore_*`` keys; ``extra`` (unused keys of a loaded file) goes first."""
        out: dict[str, Any] = dict(self.extra)
        names = {f.name for f in dataclasses.fields(self)} - {"extra", *_NEMOCORE_KEYS}
        for name in sorted(names):
            out[name] = getattr(self, name)
        out["time_step_limit"] = [_json_float(v) for v in self.time_step_limit]
        out["model_type"] = "nemotron_h"
        out["architectures"] = ["NemotronHForCausalLM"]
        out["layers_block_type"] = self.layers_block_type
        out["mtp_layers_block_type"] = [BLOCK_TYPES[c] for c in self.mtp_hybrid_override_pattern]
        out["num_hidden_layers"] = self.num_hidden_layers
        for name, key in _NEMOCORE_KEYS.items():
            value = getattr(self, name)
            out[key] = [_json_float(v) for v in value] if name == "dt_limit" else value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], strict: bool = False) -> NemotronHConfig:
        """Reads a ``config.json`` dict (current or legacy spellings, model.md section 4).

        Keys nemocore does not know raise ``ConfigError`` with ``strict``; otherwise they are
        kept in ``extra`` (written back on save) with a warning.
        """
        d = dict(d)
        if d.get("model_type", "nemotron_h") != "nemotron_h":
            raise ConfigError(f"model_type: expected 'nemotron_h', got {d['model_type']!r}")
        kwargs: dict[str, Any] = {}
        for old, new in _ALIASES.items():
            if old in d:
                value = d.pop(old)
                d.setdefault(new, value)
        if "layers_block_type" in d:
            kwargs["hybrid_override_pattern"] = _pattern_of(
                d["layers_block_type"], "layers_block_type"
            )
            d.pop("hybrid_override_pattern", None)
        if "mtp_layers_block_type" in d:
            mtp = _pattern_of(d["mtp_layers_block_type"], "mtp_layers_block_type")
            kwargs["mtp_hybrid_override_pattern"] = mtp
            d.pop("mtp_hybrid_override_pattern", None)
        for name, key in _NEMOCORE_KEYS.items():
            if key in d:
                kwargs[name] = d.pop(key)
        if "dt_limit" in kwargs:
            kwargs["dt_limit"] = tuple(_float(v) for v in kwargs["dt_limit"])
        if "time_step_limit" in d:
            d["time_step_limit"] = tuple(_float(v) for v in d["time_step_limit"])
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        extra, unknown = {}, []
        for key, value in d.items():
            if key in names:
                kwargs.setdefault(key, value)
            elif key in _PASSTHROUGH:
                extra[key] = value
            else:
                unknown.append(key)
        if unknown and strict:
            raise ConfigError(f"unknown config keys {sorted(unknown)} (pass strict=False to keep)")
        if unknown:
            warnings.warn(
                f"NemotronHConfig: keeping unknown keys {sorted(unknown)} as extra", stacklevel=2
            )
            extra.update({k: d[k] for k in unknown})
        derived = ("layers_block_type", "mtp_layers_block_type", "num_hidden_layers")
        for unused in (*derived, "model_type", "architectures"):
            extra.pop(unused, None)
        for act_key, act in (("mlp_hidden_act", "relu2"), ("mamba_hidden_act", "silu")):
            if extra.get(act_key, act) != act:
                raise ConfigError(f"{act_key}: only {act!r} is supported, got {extra[act_key]!r}")
        return cls(**kwargs, extra=extra)

    def save(self, path: str | Path) -> None:
        """Writes ``config.json`` (``path`` is the file or its directory)."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path, strict: bool = False) -> NemotronHConfig:
        """Reads ``config.json`` (``path`` is the file or its directory). Both of transformers'
        infinity spellings (``Infinity`` and ``{"__float__": "Infinity"}``) are accepted."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no config.json (is this a Hugging Face model dir?)")
        return cls.from_dict(json.loads(path.read_text()), strict=strict)
