"""Nemotron-H / Nemotron 3 models on ``nemocore.ops`` (model.md): config, presets, the model,
Hugging Face checkpoints and cached generation.

    from nemocore.models import NemotronHConfig, NemotronHForCausalLM, generate
    model = NemotronHForCausalLM(NemotronHConfig.tiny())
    loss = model(ids, labels=ids).loss
    out = generate(model, ids, max_new_tokens=16)
"""

from nemocore.models import presets
from nemocore.models.config import ConfigError, NemotronHConfig
from nemocore.models.generate import generate
from nemocore.models.hf import (
    CheckpointError,
    NemotronHStateDictAdapter,
    load_pretrained,
    save_pretrained,
)
from nemocore.models.nemotron_h import CausalLMOutput, NemotronHForCausalLM

__all__ = [
    "CausalLMOutput",
    "CheckpointError",
    "ConfigError",
    "NemotronHConfig",
    "NemotronHForCausalLM",
    "NemotronHStateDictAdapter",
    "generate",
    "load_pretrained",
    "presets",
    "save_pretrained",
]
