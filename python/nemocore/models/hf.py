"""Hugging Face checkpoints (model.md section 4): ``config.json`` plus safetensors, one file or
shards with ``model.safetensors.index.json``, in bf16, fp16 or fp32, with transformers'
on-disk key names (``backbone.*``, ``lm_head.weight``, per-expert ``experts.{e}.*``).

``NemotronHStateDictAdapter`` is the only place that knows the two namings apart: nemocore
keeps transformers' on-disk names in memory except for the routed experts, which it stacks
into (E, f, w) / (E, w, f) tensors for the grouped GEMMs. It also reads transformers'
in-memory names (``model.*`` prefix, already stacked experts).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from nemocore.models.config import NemotronHConfig
from nemocore.models.nemotron_h import NemotronHForCausalLM

_EXPERT = re.compile(r"^(.*\.mixer\.experts)\.(\d+)\.(up_proj|down_proj)\.weight$")
_STACKED = re.compile(r"^(.*\.mixer\.experts)\.(up_proj|down_proj)$")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_FLOAT32_KEYS = ("gate.weight", "gate.e_score_correction_bias")  # routers stay fp32


class CheckpointError(ValueError):
    """A checkpoint that does not match the model its config describes."""


class NemotronHStateDictAdapter:
    """Converts between nemocore's state dict and transformers' on-disk checkpoint keys."""

    def __init__(self, config: NemotronHConfig) -> None:
        self.config = config

    def to_hf(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """nemocore -> on-disk: stacked experts split into ``experts.{e}.{up,down}_proj.weight``."""
        out = {}
        for key, t in state_dict.items():
            m = _STACKED.match(key)
            if m:
                for e in range(t.shape[0]):
                    out[f"{m.group(1)}.{e}.{m.group(2)}.weight"] = t[e]
            else:
                out[key] = t
        return out

    def from_hf(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """On-disk (or transformers in-memory) -> nemocore: ``model.`` becomes ``backbone.``,
        per-expert weights are stacked. Raises if an expert index is missing."""
        out, experts = {}, {}
        for key, t in state_dict.items():
            if key.startswith("model."):
                key = "backbone." + key[len("model.") :]
            m = _EXPERT.match(key)
            if m:
                experts.setdefault((m.group(1), m.group(3)), {})[int(m.group(2))] = t
            else:
                out[key] = t
        for (prefix, proj), by_index in experts.items():
            missing = sorted(set(range(max(by_index) + 1)) - set(by_index))
            if missing:
                raise CheckpointError(f"{prefix}: missing experts {missing} of {proj}")
            out[f"{prefix}.{proj}"] = torch.stack([by_index[e] for e in sorted(by_index)])
        return out


# ---- reading ---------------------------------------------------------------------------------


def read_safetensors(path: str | Path) -> dict[str, Tensor]:
    """All tensors of a checkpoint directory (single file or sharded with an index)."""
    path = Path(path)
    index = path / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (path / "model.safetensors").exists():
        files = ["model.safetensors"]
    else:
        files = sorted(p.name for p in path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{path}: no *.safetensors files (only safetensors is supported)")
    tensors = {}
    for name in files:
        with safe_open(str(path / name), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                tensors[key] = f.get_tensor(key)
    return tensors


def _check_tensors(model: NemotronHForCausalLM, sd: dict[str, Tensor]) -> None:
    """Raises one error listing every missing, unexpected and mis-shaped tensor."""
    want = model.state_dict()
    if model.config.tie_word_embeddings:
        want.pop("lm_head.weight", None)
        sd = {k: v for k, v in sd.items() if k != "lm_head.weight"}
    missing = sorted(set(want) - set(sd))
    unexpected = sorted(set(sd) - set(want))
    shapes = sorted(
        f"{k}: checkpoint {tuple(sd[k].shape)}, model {tuple(want[k].shape)}"
        for k in set(want) & set(sd)
        if sd[k].shape != want[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing tensors: {missing}")
    if unexpected:
        problems.append(f"unexpected tensors: {unexpected}")
    if shapes:
        problems.append(f"mis-shaped tensors: {shapes}")
    if problems:
        raise CheckpointError(
            "checkpoint does not match its config.json (wrong file or edited config?):\n  "
            + "\n  ".join(problems)
        )


def load_pretrained(
    path: str | Path,
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
    **config_overrides,
) -> NemotronHForCausalLM:
    """Loads a Hugging Face ``nemotron_h`` directory (as written by transformers or by
    ``save_pretrained``).

    Args:
        path: the directory with ``config.json`` and safetensors files.
        dtype: parameter dtype (default: the checkpoint's); routers stay float32.
        device: where the model lives.
        config_overrides: config fields to change, e.g. ``transformers_compat=True``.
    """
    config = NemotronHConfig.load(path)
    for key, value in config_overrides.items():
        if not hasattr(config, key):
            raise TypeError(f"unknown config field {key!r}")
        setattr(config, key, value)
    config.__post_init__()
    sd = NemotronHStateDictAdapter(config).from_hf(read_safetensors(path))
    if config.tie_word_embeddings and "lm_head.weight" in sd:
        emb = sd.get("backbone.embeddings.weight")
        if emb is not None and not torch.equal(emb, sd["lm_head.weight"]):
            config.tie_word_embeddings = False  # transformers never ties: keep both heads
    if dtype is None:
        dtype = (
            sd["backbone.embeddings.weight"].dtype if "backbone.embeddings.weight" in sd else None
        )
    with torch.device("meta"):
        model = NemotronHForCausalLM(config)
    _check_tensors(model, sd)
    sd = {
        k: v.to(device, torch.float32 if k.endswith(_FLOAT32_KEYS) else dtype)
        for k, v in sd.items()
    }
    model.load_state_dict(sd, strict=not config.tie_word_embeddings, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.backbone.embeddings.weight
    for module in model.modules():  # non-persistent buffers (router token counts)
        for name, buf in module._buffers.items():
            if buf is not None and buf.is_meta:
                module._buffers[name] = torch.zeros(buf.shape, dtype=buf.dtype, device=device)
    return model.eval()


# ---- writing ---------------------------------------------------------------------------------


def _shards(tensors: dict[str, Tensor], max_shard_bytes: int) -> list[dict[str, Tensor]]:
    shards, size = [{}], 0
    for key in sorted(tensors):
        nbytes = tensors[key].numel() * tensors[key].element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensors[key]
        size += nbytes
    return shards


def save_pretrained(
    model: NemotronHForCausalLM,
    path: str | Path,
    dtype: torch.dtype | str | None = None,
    max_shard_bytes: int = 5 * 2**30,
) -> None:
    """Writes ``config.json`` and safetensors (sharded above ``max_shard_bytes``, with an
    index) that transformers' ``NemotronHForCausalLM.from_pretrained`` loads. Atomic: written
    to a temporary directory next to ``path``, then renamed over it. ``lm_head.weight`` is
    written even when tied (transformers expects it); routers stay float32."""
    path = Path(path)
    dtype = _DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    sd = NemotronHStateDictAdapter(model.config).to_hf(model.state_dict())
    tensors = {
        k: (v if dtype is None or k.endswith(_FLOAT32_KEYS) else v.to(dtype)).detach()
        .cpu().contiguous().clone()
        for k, v in sd.items()
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        shards = _shards(tensors, max_shard_bytes)
        meta = {"format": "pt"}
        if len(shards) == 1:
            save_file(shards[0], str(tmp / "model.safetensors"), metadata=meta)
        else:
            weight_map = {}
            for i, shard in enumerate(shards):
                name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
                save_file(shard, str(tmp / name), metadata=meta)
                weight_map.update(dict.fromkeys(shard, name))
            total = sum(t.numel() * t.element_size() for t in tensors.values())
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        config = model.config
        saved_dtype = next(iter(tensors.values())).dtype if dtype is None else dtype
        config.extra["dtype"] = str(saved_dtype).replace("torch.", "")
        config.save(tmp / "config.json")
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(tmp: Path, path: Path) -> None:
    """Moves ``tmp`` to ``path``; an existing ``path`` is moved aside first and removed after,
    so a reader never sees a half-written directory."""
    if not path.exists():
        os.rename(tmp, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    os.rename(path, old / path.name)
    os.rename(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
