"""Pure-PyTorch references of every op in ``nemocore.ops``, with the same names and signatures.

They are written to be read (each follows its spec section step by step), not to be fast, and
are the ground truth that tests compare the C++ and CUDA kernels against.
"""

from nemocore.ref.attention import attention_pieces, bifurcated_attention, merge_states
from nemocore.ref.causal_conv1d import causal_conv1d_fn, causal_conv1d_update
from nemocore.ref.moe import grouped_mm, moe_experts, moe_permute, moe_unpermute
from nemocore.ref.ssd import mamba_chunk_scan_combined, selective_state_update, ssd_recurrence
from nemocore.ref.token_bitmask import apply_token_bitmask_inplace

__all__ = [
    "apply_token_bitmask_inplace",
    "attention_pieces",
    "bifurcated_attention",
    "causal_conv1d_fn",
    "causal_conv1d_update",
    "grouped_mm",
    "mamba_chunk_scan_combined",
    "merge_states",
    "moe_experts",
    "moe_permute",
    "moe_unpermute",
    "selective_state_update",
    "ssd_recurrence",
]
