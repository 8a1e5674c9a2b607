"""Nemotron-H / Nemotron 3: a hybrid Mamba-2 / attention / MLP / MoE decoder (model.md 1-3).

    h = embeddings(ids);  h = h + mixer_i(norm_i(h)) for each block i;  logits = lm_head(norm_f(h))

What differs from a textbook decoder: no positional encoding anywhere (attention is NoPE, the
Mamba layers carry order), MLP and MoE are blocks of their own (one mixer per block), squared
ReLU activations, sigmoid-routed MoE with a shared expert (LatentMoE optional), untied
embeddings by default, and optional MTP modules whose logits come back separately.

Differences from transformers 5.24's ``NemotronHForCausalLM`` that we keep on purpose
(model.md section 9):
- ``tie_word_embeddings=True`` ties here; transformers never ties (its checkpoints always hold
  both tensors, which ``save_pretrained`` writes too, so files load the same in both).
- The dt clamp follows ``config.dt_limit`` in prefill and decode alike; transformers clamps at
  ``time_step_min`` in prefill only (set ``transformers_compat=True`` to match it exactly).
- MTP modules are built and run; transformers drops ``mtp.*`` weights.
- A pattern without attention decodes fine with a cache (transformers 5.24 crashes).
- ``hidden_states`` of the output is the last block's output before ``norm_f``, not
  transformers' tuple of per-layer states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nemocore.cache import AttentionCacheSpec, HybridCache, MambaCacheSpec
from nemocore.layers import MoE
from nemocore.models.blocks import Block, RMSNorm
from nemocore.models.config import NemotronHConfig
from nemocore.models.mamba2 import Mamba2Mixer
from nemocore.models.mtp import MultiTokenPredictor

IGNORE_INDEX = -100


@dataclass
class CausalLMOutput:
    """logits: (b, L, V) (the last position only when prefilling a cache);
    loss: ``lm_loss + mtp_loss_scaling_factor * mtp_loss`` when labels were given;
    mtp_logits: one (b, L - i, V) per MTP depth i, position n predicting token n + i + 1;
    hidden_states: (b, L, d), the last block's output before ``norm_f``."""

    logits: Tensor
    loss: Tensor | None = None
    lm_loss: Tensor | None = None
    mtp_loss: Tensor | None = None
    mtp_logits: list[Tensor] | None = None
    hidden_states: Tensor | None = None


class NemotronHBackbone(nn.Module):
    """Embeddings, blocks and the final norm (checkpoint prefix ``backbone.``)."""

    def __init__(self, config: NemotronHConfig) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            Block(c, config, i) for i, c in enumerate(config.hybrid_override_pattern)
        )
        self.norm_f = RMSNorm(config.hidden_size, config.layer_norm_epsilon)


def shifted_cross_entropy(logits: Tensor, labels: Tensor, shift: int = 1) -> Tensor:
    """Mean cross entropy (float32) of ``logits[:, n]`` against ``labels[:, n + shift]``;
    labels equal to -100 are ignored (the Hugging Face convention: labels = input_ids)."""
    n = min(logits.shape[1], labels.shape[1] - shift)
    pred = logits[:, :n].flatten(0, 1).float()
    return F.cross_entropy(pred, labels[:, shift : shift + n].flatten(), ignore_index=IGNORE_INDEX)


class NemotronHForCausalLM(nn.Module):
    """The language model. ``model(input_ids, labels=input_ids).loss`` trains it;
    ``nemocore.models.generate`` decodes with a ``HybridCache``; ``from_pretrained`` /
    ``save_pretrained`` read and write Hugging Face checkpoints (``nemocore.models.hf``)."""

    def __init__(self, config: NemotronHConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = NemotronHBackbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.mtp = MultiTokenPredictor(config) if config.num_mtp_depths else None
        self.reset_parameters()
        if config.tie_word_embeddings:
            self.lm_head.weight = self.backbone.embeddings.weight

    # ---- construction --------------------------------------------------------------------------

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """model.md section 8: Normal(0, initializer_range) for linears and embeddings,
        ``A_log = log(1..H)``, ``D = 1``, ``dt_bias = softplus^-1(dt)`` with dt log-uniform in
        [time_step_min, time_step_max] (floored), norms 1, Mamba ``out_proj`` / sqrt(layers)."""
        c = self.config
        std = c.initializer_range
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, MoE):
                m.reset_parameters()
        for m in self.modules():
            if isinstance(m, Mamba2Mixer):
                m.A_log.copy_(torch.log(torch.arange(1, m.H + 1, dtype=torch.float32)))
                m.D.fill_(1.0)
                lo, hi = math.log(c.time_step_min), math.log(c.time_step_max)
                dt = torch.exp(torch.rand(m.H) * (hi - lo) + lo).clamp(min=c.time_step_floor)
                m.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
                if c.rescale_prenorm_residual:
                    m.out_proj.weight.div_(math.sqrt(c.num_hidden_layers))

    @classmethod
    def from_pretrained(cls, path, **kwargs) -> NemotronHForCausalLM:
        """Loads a Hugging Face directory; see ``nemocore.models.hf.load_pretrained``."""
        from nemocore.models.hf import load_pretrained

        return load_pretrained(path, **kwargs)

    def save_pretrained(self, path, **kwargs) -> None:
        """Writes a directory transformers loads; see ``nemocore.models.hf.save_pretrained``."""
        from nemocore.models.hf import save_pretrained

        save_pretrained(self, path, **kwargs)

    # ---- full forward --------------------------------------------------------------------------

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        cache: HybridCache | None = None,
    ) -> CausalLMOutput:
        """input_ids: (b, L) int; attention_mask: (b, L), 1 for real tokens, 0 for padding
        (None: no padding); labels: (b, L), usually ``input_ids`` with -100 where no loss is
        wanted (shifted inside: position n predicts labels[n + 1]).

        With ``cache`` (a fresh ``HybridCache`` from ``make_cache``) this is the prefill: the
        states of every attention and Mamba layer are stored, prompts must be left-padded, and
        only the last position's logits are computed. See ``nemocore.models.generate``.
        """
        self._check_ids(input_ids, attention_mask)
        mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask
        if cache is not None:
            if mask is not None and bool((mask[:, 1:] < mask[:, :-1]).any()):
                raise ValueError(
                    "attention_mask: prefilling a cache needs left-padded prompts (pads first); "
                    "use nemocore.models.generate.left_align or generate(), which accepts both"
                )
            cache.start_prompts(input_ids.shape[0])
        h = self.backbone.embeddings(input_ids)
        for block in self.backbone.layers:
            h = block(h, mask, cache)
        if cache is not None:
            cache.fork(1)
            return CausalLMOutput(logits=self.lm_head(self.backbone.norm_f(h[:, -1:])))
        out = CausalLMOutput(logits=self.lm_head(self.backbone.norm_f(h)), hidden_states=h)
        if self.mtp is not None:
            emb = self.backbone.embeddings
            out.mtp_logits = [self.lm_head(x) for x in self.mtp(h, emb, input_ids, mask)]
        if labels is not None:
            self._losses(out, labels)
        return out

    def _losses(self, out: CausalLMOutput, labels: Tensor) -> None:
        out.lm_loss = shifted_cross_entropy(out.logits, labels)
        out.loss = out.lm_loss
        if out.mtp_logits:
            depth_losses = [  # depth i, position n predicts token n + i + 1
                shifted_cross_entropy(logits, labels, shift=depth + 1)
                for depth, logits in enumerate(out.mtp_logits, start=1)
            ]
            out.mtp_loss = torch.stack(depth_losses).mean()
            out.loss = out.lm_loss + self.config.mtp_loss_scaling_factor * out.mtp_loss

    def _check_ids(self, input_ids: Tensor, attention_mask: Tensor | None) -> None:
        if (
            not isinstance(input_ids, Tensor)
            or input_ids.dim() != 2
            or input_ids.is_floating_point()
        ):
            raise ValueError(
                f"input_ids: expected a (batch, seqlen) integer tensor, got {input_ids!r}"
            )
        if input_ids.shape[1] == 0:
            raise ValueError("input_ids: empty sequence (seqlen 0)")
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask: expected shape {tuple(input_ids.shape)}, "
                f"got {tuple(attention_mask.shape)}"
            )

    # ---- cached decoding -----------------------------------------------------------------------

    def cache_specs(self) -> list[AttentionCacheSpec | MambaCacheSpec | None]:
        """One entry per layer: KV for attention, conv + SSM state for Mamba, None else."""
        c = self.config
        att = AttentionCacheSpec(nkv_heads=c.num_key_value_heads, headdim=c.head_dim)
        mamba = MambaCacheSpec(
            conv_dim=c.conv_dim,
            conv_kernel=c.conv_kernel,
            nheads=c.mamba_num_heads,
            headdim=c.mamba_head_dim,
            dstate=c.ssm_state_size,
        )
        return [{"*": att, "M": mamba}.get(ch) for ch in c.hybrid_override_pattern]

    def make_cache(
        self, max_batch: int, max_prompt_len: int, max_new_tokens: int, **kwargs
    ) -> HybridCache:
        """A ``HybridCache`` for ``max_batch`` prompts of up to ``max_prompt_len`` tokens, each
        decoding up to ``max_new_tokens`` (KV and conv state in the model's dtype)."""
        p = self.lm_head.weight
        args = dict(dtype=p.dtype, device=p.device, max_prompts=max_batch)
        return HybridCache(
            self.cache_specs(),
            max_batch=max_batch,
            max_prefix_len=max_prompt_len,
            max_decode_len=max_new_tokens,
            **{**args, **kwargs},
        )

    def decode_step(self, tokens: Tensor, cache: HybridCache) -> Tensor:
        """One token per sample: tokens (b,) -> logits (b, V), float32. Updates the cache's
        Mamba states and appends the keys/values; the caller then runs ``cache.advance()``.
        Free of host syncs, so it runs under ``torch.compile(fullgraph=True)``."""
        h = self.backbone.embeddings(tokens[:, None])
        for block in self.backbone.layers:
            h = block.step(h, cache)
        return self.lm_head(self.backbone.norm_f(h[:, 0])).float()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def generate(self, input_ids: Tensor, max_new_tokens: int = 32, **kwargs) -> Tensor:
        """Sampling with a ``HybridCache``; see ``nemocore.models.generate.generate``."""
        from nemocore.models.generate import generate

        return generate(self, input_ids, max_new_tokens, **kwargs)
