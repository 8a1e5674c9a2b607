"""nemocore's ops: torch custom ops over the C++ (CPU) and CUDA kernels of ``nemocore._C``.

Every op here has a fake implementation (so it traces under ``torch.compile``), an autograd
formula where it is differentiable, device dispatch (CPU tensors run the C++ kernels with
``torch.get_num_threads()`` threads, CUDA tensors run on torch's current stream), argument
checks that name the bad argument, and a pure-PyTorch reference of the same name in
``nemocore.ref``.
"""

from nemocore.ops.attention import (
    bifurcated_attention,
    gqa_decode_attention,
    prefill_attention,
)
from nemocore.ops.causal_conv1d import causal_conv1d_fn, causal_conv1d_update
from nemocore.ops.moe import grouped_mm, moe_permute, moe_sort, moe_unpermute
from nemocore.ops.ssd import mamba_chunk_scan_combined, selective_state_update
from nemocore.ops.token_bitmask import apply_token_bitmask_inplace

__all__ = [
    "apply_token_bitmask_inplace",
    "bifurcated_attention",
    "causal_conv1d_fn",
    "causal_conv1d_update",
    "gqa_decode_attention",
    "grouped_mm",
    "mamba_chunk_scan_combined",
    "moe_permute",
    "moe_sort",
    "moe_unpermute",
    "prefill_attention",
    "selective_state_update",
]
