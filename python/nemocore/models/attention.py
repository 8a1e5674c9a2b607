"""Nemotron-H's attention block (model.md 3.3): GQA, causal, **no positional encoding** (NoPE),
no bias, no QK-norm. Configs carry ``rope_theta``; it is ignored on purpose, as in
transformers, vLLM and Megatron.

Because there is no positional encoding, a token's keys and values do not depend on where it
sits, so a left-padded prompt can be stored compacted (its pads dropped) in the KV cache and
decoding continues exactly.

Letters: b batch, L seqlen, d width, H query heads, Hkv KV heads, D head dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nemocore.models.backends import FAST_OPS
from nemocore.models.config import NemotronHConfig


def padded_causal_mask(mask: Tensor) -> Tensor:
    """(b, L) key mask -> (b, 1, L, L) boolean: causal, real keys only; every query also sees
    itself so a padded query row is never empty (its output is never used)."""
    L = mask.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=mask.device).tril()
    keep = causal & mask.bool()[:, None, None, :]
    return keep | torch.eye(L, dtype=torch.bool, device=mask.device)


class Attention(nn.Module):
    """Causal GQA self-attention: ``o_proj(softmax(q k^T / sqrt(D)) v)``."""

    def __init__(self, config: NemotronHConfig, layer_idx: int | None) -> None:
        super().__init__()
        c = config
        self.layer_idx = layer_idx
        self.H, self.Hkv, self.D = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.scale = self.D**-0.5
        self.q_proj = nn.Linear(c.hidden_size, self.H * self.D, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, self.Hkv * self.D, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, self.Hkv * self.D, bias=False)
        self.o_proj = nn.Linear(self.H * self.D, c.hidden_size, bias=False)
        self.ops = FAST_OPS

    def _qkv(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """u: (b, L, d) -> q (b, H, L, D), k and v (b, Hkv, L, D)."""
        q = self.q_proj(u).unflatten(-1, (self.H, self.D)).transpose(1, 2)
        k = self.k_proj(u).unflatten(-1, (self.Hkv, self.D)).transpose(1, 2)
        v = self.v_proj(u).unflatten(-1, (self.Hkv, self.D)).transpose(1, 2)
        return q, k, v

    def _out(self, o: Tensor) -> Tensor:
        return self.o_proj(o.transpose(1, 2).flatten(2))

    def forward(self, u: Tensor, mask: Tensor | None = None, cache=None) -> Tensor:
        """Full sequence. u: (b, L, d); mask: (b, L), 1 for real tokens. With ``cache`` (a
        ``HybridCache`` after ``start_prompts(b)``) the keys and values of the real tokens are
        written as each prompt's prefix; prompts must then be left-padded."""
        q, k, v = self._qkv(u)
        if mask is None:
            o = self.ops.prefill_attention(q, k, v, self.scale)
        else:  # padded batch: SDPA with an explicit mask (prefill_attention is causal-only)
            attn_mask = padded_causal_mask(mask)
            o = F.scaled_dot_product_attention(
                q, k, v, attn_mask, scale=self.scale, enable_gqa=self.Hkv != self.H
            )
        if cache is not None:
            lengths = None if mask is None else mask.sum(-1)
            cache.write_prefix(self.layer_idx, k, v, lengths=lengths)
        return self._out(o)

    def step(self, u: Tensor, cache) -> Tensor:
        """One decoding step: u (b, 1, d) -> (b, 1, d), reading and extending ``cache``."""
        q, k, v = self._qkv(u)
        return self._out(cache.attend(self.layer_idx, q, k, v, self.scale))
