"""The hybrid inference cache: attention KV with a shared prefix, Mamba states, fork and rollback.

One prompt sampled n times (best-of-n, RL rollouts, speculative verification) needs its prompt's
keys and values once, not n times. ``HybridCache`` keeps, per attention layer, one preallocated
**shared-prefix segment** per prompt (``k_ctx``, ``v_ctx``: (P, Hkv, max_prefix_len, D)) and one
**decoded segment** per sample (``k_dec``, ``v_dec``: (max_batch, Hkv, max_decode_len, D)) with
ragged lengths; ``nemocore.ops.bifurcated_attention`` reads exactly that layout. Per Mamba layer
it keeps each sample's ``conv_state`` (max_batch, conv_dim, K) and ``ssm_state``
(max_batch, H, P_head, N) (float32).

Lifecycle::

    cache = HybridCache(specs, max_batch=8, max_prefix_len=4096, max_decode_len=512)
    cache.start_prompts(num_prompts)       # prompts occupy samples 0..P-1 while prefilling
    cache.write_prefix(layer, k, v)        # per attention layer: (P, Hkv, L, D)
    cache.mamba_states(layer)              # per Mamba layer: write the prefill's final states
    cache.fork(n)                          # each prompt becomes n samples; no KV is copied
    for each step of T tokens:             # T = 1, or 1 + drafts when verifying
        out = cache.attend(layer, q, k_new, v_new)      # per attention layer
        conv, ssm = cache.mamba_states(layer)           # per Mamba layer, updated in place
        cache.advance(T)
    cache.rollback(k)                      # undo the last k tokens (per sample)
    cache.reorder(indices)                 # beam search: keep/duplicate samples

**Rollback, the design choice.** Attention rolls back by truncating a sample's length. An SSM
state cannot be un-updated, so Mamba layers keep **snapshots**: a ring of the states after each
of the last ``max_rollback`` tokens (plus the state right after the prompt). ``rollback(k)``
restores the snapshot from k tokens ago, exactly and with no model call. The alternative,
re-running the model from an older checkpoint, needs no extra memory but a forward pass per
rollback; speculative decoding rolls back at almost every step, so nemocore spends memory
(``max_rollback`` x the Mamba state, reported by ``memory_bytes``) to make it free. With
``max_rollback=0`` no snapshot is kept and Mamba layers cannot roll back (attention-only
models still can).

Snapshots are taken by ``advance(T)``: for T = 1 it records the current states itself; for
T > 1 the caller calls ``record_mamba_states()`` after each of the T tokens (so a rejected
draft can be undone), and ``advance`` checks that T snapshots were recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nemocore import ops


@dataclass(frozen=True)
class AttentionCacheSpec:
    """An attention layer's cache: ``nkv_heads`` KV heads of ``headdim``."""

    nkv_heads: int
    headdim: int


@dataclass(frozen=True)
class MambaCacheSpec:
    """A Mamba-2 layer's state: the conv window (conv_dim, conv_kernel) and the SSM state
    (nheads, headdim, dstate)."""

    conv_dim: int
    conv_kernel: int
    nheads: int
    headdim: int
    dstate: int


class CacheError(ValueError):
    """A cache operation that does not fit the cache's state or capacity."""


class HybridCache:
    """Preallocated KV (shared prefix + per-sample) and Mamba state for a hybrid model.

    Args:
        layers: one entry per model layer: ``AttentionCacheSpec``, ``MambaCacheSpec``, or
            None for layers without state (MLP, MoE).
        max_batch: the most samples at once (after ``fork``).
        max_prefix_len: capacity of each prompt's shared segment.
        max_decode_len: capacity of each sample's own segment.
        max_prompts: prompts held at once (each may be forked).
        max_rollback: Mamba snapshots kept per sample (the most tokens ``rollback`` can undo
            in a model with Mamba layers).
        dtype: keys, values and conv state; ssm_dtype: the SSM state (float32 by default, as in
            Nemotron's configs).
    """

    def __init__(
        self,
        layers: Sequence[AttentionCacheSpec | MambaCacheSpec | None],
        *,
        max_batch: int,
        max_prefix_len: int,
        max_decode_len: int,
        max_prompts: int = 1,
        max_rollback: int = 0,
        dtype: torch.dtype = torch.bfloat16,
        ssm_dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        if min(max_batch, max_prompts) < 1 or min(max_prefix_len, max_decode_len, max_rollback) < 0:
            raise CacheError("capacities must be positive (max_rollback >= 0)")
        self.specs = list(layers)
        self.max_batch, self.max_prompts = max_batch, max_prompts
        self.max_prefix_len, self.max_decode_len = max_prefix_len, max_decode_len
        self.max_rollback = max_rollback
        self.device = torch.device(device)
        self.kv: dict[int, tuple[Tensor, Tensor, Tensor, Tensor]] = {}
        self.mamba: dict[int, tuple[Tensor, Tensor]] = {}
        self.history: dict[int, tuple[Tensor, Tensor]] = {}
        for i, spec in enumerate(self.specs):
            if isinstance(spec, AttentionCacheSpec):
                ctx = (max_prompts, spec.nkv_heads, max_prefix_len, spec.headdim)
                dec = (max_batch, spec.nkv_heads, max_decode_len, spec.headdim)
                self.kv[i] = tuple(
                    torch.zeros(s, dtype=dtype, device=self.device) for s in (ctx, ctx, dec, dec)
                )
            elif isinstance(spec, MambaCacheSpec):
                conv = (max_batch, spec.conv_dim, spec.conv_kernel)
                ssm = (max_batch, spec.nheads, spec.headdim, spec.dstate)
                self.mamba[i] = (
                    torch.zeros(conv, dtype=dtype, device=self.device),
                    torch.zeros(ssm, dtype=ssm_dtype, device=self.device),
                )
                if max_rollback:  # ring of max_rollback + 1 states: now and k tokens ago
                    ring = max_rollback + 1
                    self.history[i] = (
                        torch.zeros((ring, *conv), dtype=dtype, device=self.device),
                        torch.zeros((ring, *ssm), dtype=ssm_dtype, device=self.device),
                    )
            elif spec is not None:
                raise CacheError(f"layers[{i}]: expected a cache spec or None, got {spec!r}")
        idx = dict(dtype=torch.int64, device=self.device)
        self.ctx_lens = torch.zeros(max_prompts, **idx)
        self.ctx_index = torch.zeros(max_batch, **idx)
        self.dec_lens = torch.zeros(max_batch, **idx)
        self.ring_head = torch.zeros(max_batch, **idx)  # slot of the newest snapshot
        self.ring_count = torch.zeros(max_batch, **idx)  # valid snapshots (newest included)
        self.batch = 0
        self.num_prompts = 0
        self.forked = False
        self._recorded = 0  # snapshots recorded since the last advance

    # ---- prompts -------------------------------------------------------------------------------

    def start_prompts(self, num_prompts: int) -> None:
        """Clears the cache for ``num_prompts`` new prompts, which occupy samples 0..P-1 (and
        their Mamba states) while they are prefilled."""
        if not 1 <= num_prompts <= min(self.max_prompts, self.max_batch):
            raise CacheError(
                f"num_prompts: expected 1..{min(self.max_prompts, self.max_batch)}, "
                f"got {num_prompts}"
            )
        self.num_prompts = self.batch = num_prompts
        self.forked = False
        self.ctx_lens.zero_()
        self.dec_lens.zero_()
        self.ctx_index[:num_prompts] = torch.arange(num_prompts, device=self.device)
        self.ring_count.zero_()
        for conv, ssm in self.mamba.values():
            conv.zero_()
            ssm.zero_()

    def write_prefix(
        self, layer: int, k: Tensor, v: Tensor, start: int = 0, lengths: Tensor | None = None
    ) -> None:
        """Stores prompt keys and values of an attention layer: k, v (P, Hkv, L, D) at
        positions [start, start + L) of every prompt (chunked prefill continues at ``start``);
        the prompts' prefix length becomes start + L.

        ``lengths`` (P,) marks left-padded prompts: prompt p's real tokens are its last
        ``lengths[p]`` positions; they are stored compacted at [start, start + lengths[p])
        (the pads are dropped) and its prefix length becomes start + lengths[p]."""
        if lengths is not None:
            L = k.shape[2]
            shift = (L - lengths.to(torch.int64)).clamp(0, L)  # (P,)
            src = (torch.arange(L, device=k.device) + shift[:, None]).clamp(max=L - 1)
            index = src[:, None, :, None].expand_as(k)
            k, v = k.gather(2, index), v.gather(2, index)
        k_ctx, v_ctx, _, _ = self._kv(layer)
        if self.forked:
            raise CacheError("write_prefix: the prompts were already forked")
        P, L = self.num_prompts, k.shape[2]
        want = (P, k_ctx.shape[1], L, k_ctx.shape[3])
        if tuple(k.shape) != want or tuple(v.shape) != want:
            raise CacheError(
                f"write_prefix: expected k and v of shape {want}, got {tuple(k.shape)}"
            )
        if start + L > self.max_prefix_len:
            raise CacheError(
                f"write_prefix: {start + L} prompt tokens exceed max_prefix_len = "
                f"{self.max_prefix_len}"
            )
        k_ctx[:P, :, start : start + L] = k
        v_ctx[:P, :, start : start + L] = v
        if lengths is None:
            self.ctx_lens[:P] = start + L
        else:
            self.ctx_lens[:P] = start + lengths.to(self.ctx_lens.device, torch.int64)

    def mamba_states(self, layer: int) -> tuple[Tensor, Tensor]:
        """Views of the current samples' (conv_state (b, conv_dim, K), ssm_state (b, H, P, N))
        of a Mamba layer, to be read and updated in place (e.g. by ``selective_state_update``)."""
        if layer not in self.mamba:
            raise CacheError(f"layer {layer} is not a Mamba layer of this cache")
        conv, ssm = self.mamba[layer]
        return conv[: self.batch], ssm[: self.batch]

    def fork(self, n: int) -> None:
        """Turns each prompt into ``n`` samples (prompt p -> samples p*n .. p*n + n-1) that all
        read the prompt's shared segment; only the constant-size Mamba states are copied."""
        if self.forked:
            raise CacheError("fork: already forked (reorder() duplicates samples)")
        P = self.num_prompts
        if n < 1 or P * n > self.max_batch:
            raise CacheError(f"fork: {P} prompts x {n} samples exceed max_batch = {self.max_batch}")
        for conv, ssm in self.mamba.values():
            conv[: P * n] = conv[:P].repeat_interleave(n, 0)
            ssm[: P * n] = ssm[:P].repeat_interleave(n, 0)
        self.ctx_index[: P * n] = torch.arange(P, device=self.device).repeat_interleave(n)
        self.dec_lens[: P * n] = 0
        self.batch, self.forked = P * n, True
        self.ring_count[: self.batch] = 0
        if self.history:
            self.record_mamba_states()  # the state right after the prompt: rollback target
            self._recorded = 0

    # ---- decoding ------------------------------------------------------------------------------

    def append(self, layer: int, k_new: Tensor, v_new: Tensor) -> Tensor:
        """Writes T new tokens' keys and values (b, Hkv, T, D) after each sample's decoded ones
        and returns the lengths (b,) that include them (``advance`` commits them)."""
        _, _, k_dec, v_dec = self._kv(layer)
        b, T = self.batch, k_new.shape[2]
        if tuple(k_new.shape) != (b, k_dec.shape[1], T, k_dec.shape[3]):
            raise CacheError(
                f"append: expected ({b}, {k_dec.shape[1]}, T, {k_dec.shape[3]}), "
                f"got {tuple(k_new.shape)}"
            )
        lens = self.dec_lens[:b]
        # the capacity check syncs with the device; a compiled decode step skips it (the
        # caller sizes the cache for its whole loop, as nemocore.models.generate does)
        if not torch.compiler.is_compiling() and b and int(lens.max()) + T > self.max_decode_len:
            raise CacheError(
                f"append: {int(lens.max()) + T} decoded tokens exceed max_decode_len = "
                f"{self.max_decode_len}"
            )
        pos = lens[:, None] + torch.arange(T, device=self.device)  # (b, T)
        # scatter along the length axis: one kernel per tensor, cheaper than index_put
        index = pos[:, None, :, None].expand(b, k_dec.shape[1], T, k_dec.shape[3])
        k_dec[:b].scatter_(2, index, k_new.to(k_dec.dtype))
        v_dec[:b].scatter_(2, index, v_new.to(v_dec.dtype))
        return lens + T

    def attend(
        self, layer: int, q: Tensor, k_new: Tensor, v_new: Tensor, scale: float | None = None
    ) -> Tensor:
        """One attention layer's decode step: stores the T new tokens' keys and values, then
        attends q (b, H, T, D) over the shared prefix and each sample's decoded tokens."""
        lens = self.append(layer, k_new, v_new)
        k_ctx, v_ctx, k_dec, v_dec = self._kv(layer)
        b, P = self.batch, self.num_prompts
        return ops.bifurcated_attention(
            q, k_ctx[:P], v_ctx[:P], k_dec[:b], v_dec[:b], lens, self.ctx_index[:b], scale,
            ctx_lens=self.ctx_lens[:P],
        )  # fmt: skip

    def record_mamba_states(self) -> None:
        """Snapshots every sample's Mamba states (after one token) for ``rollback``."""
        if not self.history:
            return
        b = self.batch
        rows = torch.arange(b, device=self.device)
        head = (self.ring_head[:b] + 1) % (self.max_rollback + 1)
        for layer, (conv_h, ssm_h) in self.history.items():
            conv, ssm = self.mamba[layer]
            conv_h[head, rows] = conv[:b]
            ssm_h[head, rows] = ssm[:b]
        self.ring_head[:b] = head
        self.ring_count[:b] = (self.ring_count[:b] + 1).clamp(max=self.max_rollback + 1)
        self._recorded += 1

    def advance(self, num_tokens: int = 1) -> None:
        """Commits a step of ``num_tokens`` tokens for every sample (after all layers ran)."""
        if self.history:
            if self._recorded == 0 and num_tokens == 1:
                self.record_mamba_states()
            elif self._recorded != num_tokens:
                raise CacheError(
                    f"advance({num_tokens}): {self._recorded} Mamba snapshots were recorded; "
                    "call record_mamba_states() after each token of a multi-token step"
                )
            self._recorded = 0
        self.dec_lens[: self.batch] += num_tokens

    def rollback(self, k: int | Tensor) -> None:
        """Undoes the last k tokens of each sample (k an int, or (b,) per sample): attention
        truncates, Mamba layers restore the snapshot from k tokens ago."""
        b = self.batch
        k = torch.as_tensor(k, dtype=torch.int64, device=self.device).expand(b).clone()
        if b == 0 or int(k.max()) == 0:
            return
        if int(k.min()) < 0 or bool((k > self.dec_lens[:b]).any()):
            raise CacheError(f"rollback: k must lie in [0, decoded length]; got {k.tolist()}")
        if self.mamba:
            if not self.history:
                raise CacheError("rollback: Mamba layers need max_rollback > 0 (snapshots)")
            if bool((k >= self.ring_count[:b]).any()):
                raise CacheError(
                    f"rollback: at most {self.max_rollback} tokens (max_rollback) and no further "
                    f"than the last fork can be undone; got {k.tolist()}"
                )
            rows = torch.arange(b, device=self.device)
            slot = (self.ring_head[:b] - k) % (self.max_rollback + 1)
            for layer, (conv_h, ssm_h) in self.history.items():
                conv, ssm = self.mamba[layer]
                conv[:b] = conv_h[slot, rows]
                ssm[:b] = ssm_h[slot, rows]
            self.ring_head[:b] = slot
            self.ring_count[:b] -= k
        self.dec_lens[:b] -= k

    def reorder(self, indices: Tensor | Sequence[int]) -> None:
        """New sample i becomes old sample ``indices[i]`` (beam search keeps, drops and
        duplicates samples); the shared prefixes are untouched."""
        idx = torch.as_tensor(indices, dtype=torch.int64, device=self.device)
        if idx.dim() != 1 or idx.numel() > self.max_batch:
            raise CacheError(f"reorder: expected at most {self.max_batch} indices, got {idx.shape}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.batch):
            raise CacheError(f"reorder: indices must lie in [0, {self.batch})")
        n = idx.numel()
        for _k_ctx, _v_ctx, k_dec, v_dec in self.kv.values():
            k_dec[:n] = k_dec[idx]
            v_dec[:n] = v_dec[idx]
        for layer, (conv, ssm) in self.mamba.items():
            conv[:n], ssm[:n] = conv[idx], ssm[idx]
            if layer in self.history:
                conv_h, ssm_h = self.history[layer]
                conv_h[:, :n], ssm_h[:, :n] = conv_h[:, idx], ssm_h[:, idx]
        for t in (self.ctx_index, self.dec_lens, self.ring_head, self.ring_count):
            t[:n] = t[idx]
        self.batch = n

    # ---- accounting ----------------------------------------------------------------------------

    def memory_bytes(self) -> dict[str, int]:
        """Bytes held: allocated per part, and in use now; ``replicated_kv`` is what a plain
        per-sample cache would need for the same tokens (every prefix copied per sample)."""

        def size(t: Tensor) -> int:
            return t.numel() * t.element_size()

        out = dict.fromkeys(
            ("prefix_kv", "decoded_kv", "mamba", "mamba_snapshots", "used_kv", "replicated_kv"),
            0,
        )
        lens = self.dec_lens[: self.batch]
        ctx_of = self.ctx_lens[self.ctx_index[: self.batch]] if self.batch else lens
        for k_ctx, v_ctx, k_dec, v_dec in self.kv.values():
            per_token = 2 * k_ctx.shape[1] * k_ctx.shape[3] * k_ctx.element_size()
            out["prefix_kv"] += size(k_ctx) + size(v_ctx)
            out["decoded_kv"] += size(k_dec) + size(v_dec)
            if self.device.type == "meta":  # a sizing-only cache: allocations, no contents
                continue
            used = int(self.ctx_lens[: self.num_prompts].sum()) + int(lens.sum())
            out["used_kv"] += per_token * used
            out["replicated_kv"] += per_token * int((ctx_of + lens).sum())
        for conv, ssm in self.mamba.values():
            out["mamba"] += size(conv) + size(ssm)
        for conv_h, ssm_h in self.history.values():
            out["mamba_snapshots"] += size(conv_h) + size(ssm_h)
        out["total"] = out["prefix_kv"] + out["decoded_kv"] + out["mamba"] + out["mamba_snapshots"]
        return out

    def _kv(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if layer not in self.kv:
            raise CacheError(f"layer {layer} is not an attention layer of this cache")
        return self.kv[layer]
