"""Multi-token prediction (model.md 3.7): Nemotron 3 Super's extra next-next-token predictors.

One MTP module is a short stack of ordinary blocks (pattern ``mtp_hybrid_override_pattern``,
``*E`` in Super) whose first block starts with a fusion of the next token's embedding and the
previous depth's hidden state, and whose last block ends with ``final_layernorm``:

    h = eh_proj([enorm(emb(t_{n+i})) ; hnorm(h^(i-1)_n)])        eh_proj: (d, 2d)
    h^(i) = blocks(h);   logits^(i) = lm_head(final_layernorm(h^(i)))   predicts t_{n+i+1}

``h^(0)`` is the trunk's last hidden state before ``norm_f`` (DeepSeek-V3's convention). The
embedding and ``lm_head`` are the trunk's. Module ``i % num_modules`` serves depth ``i``, so a
single module can be reused for several depths (Super shares its weights across depths).

Checkpoint keys: ``mtp.layers.{j}.*`` with the blocks of all modules numbered consecutively;
``enorm``, ``hnorm``, ``eh_proj`` on each module's first block, ``final_layernorm`` on its last.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nemocore.models.blocks import Block, RMSNorm
from nemocore.models.config import NemotronHConfig


class MTPBlock(Block):
    """A block of an MTP module; the module's first block owns the fusion, its last the
    final norm."""

    def __init__(self, char: str, config: NemotronHConfig, first: bool, last: bool) -> None:
        super().__init__(char, config, layer_idx=None)
        d, eps = config.hidden_size, config.layer_norm_epsilon
        if first:
            self.enorm = RMSNorm(d, eps)
            self.hnorm = RMSNorm(d, eps)
            self.eh_proj = nn.Linear(2 * d, d, bias=False)
        if last:
            self.final_layernorm = RMSNorm(d, eps)


class MultiTokenPredictor(nn.Module):
    """All MTP modules; ``forward`` runs depths 1..D and returns their pre-head hidden states."""

    def __init__(self, config: NemotronHConfig) -> None:
        super().__init__()
        pattern = config.mtp_hybrid_override_pattern
        self.num_modules, self.depths = config.num_nextn_predict_layers, config.num_mtp_depths
        self.blocks_per_module = len(pattern)
        self.layers = nn.ModuleList(
            MTPBlock(c, config, first=j == 0, last=j == len(pattern) - 1)
            for _ in range(self.num_modules)
            for j, c in enumerate(pattern)
        )

    def module(self, depth: int) -> list[MTPBlock]:
        """The blocks serving ``depth`` (1-based)."""
        m = (depth - 1) % self.num_modules
        n = self.blocks_per_module
        return list(self.layers[m * n : (m + 1) * n])

    def run_depth(self, depth: int, h: Tensor, emb: Tensor, mask: Tensor | None) -> Tensor:
        """h: (b, L', d) previous depth's hidden states; emb: (b, L', d) embeddings of the tokens
        ``depth`` positions ahead -> (b, L', d) this depth's hidden states (before the norm)."""
        blocks = self.module(depth)
        first = blocks[0]
        x = first.eh_proj(torch.cat([first.enorm(emb), first.hnorm(h)], dim=-1))
        for block in blocks:
            x = block(x, mask)
        return x

    def final_norm(self, depth: int, h: Tensor) -> Tensor:
        return self.module(depth)[-1].final_layernorm(h)

    def forward(
        self, h0: Tensor, embed: nn.Embedding, input_ids: Tensor, mask: Tensor | None = None
    ) -> list[Tensor]:
        """h0: (b, L, d) the trunk's hidden states before norm_f; input_ids: (b, L).

        Returns one (b, L - i, d) tensor per depth i = 1..D, normed: position n of depth i
        predicts token n + i + 1 (apply ``lm_head``)."""
        out, h = [], h0
        L = input_ids.shape[1]
        for i in range(1, self.depths + 1):
            if L - i < 1:
                break
            emb = embed(input_ids[:, i:])
            depth_mask = None if mask is None else mask[:, i:]
            h = self.run_depth(i, h[:, : L - i], emb, depth_mask)
            out.append(self.final_norm(i, h))
        return out
