"""nemocore: kernels, models and decoding for hybrid Mamba-Transformer MoE language models.

Layers of the package (see the README for the whole picture):

- ``nemocore.ops``: the fast ops (torch custom ops over the C++/CUDA kernels in ``nemocore._C``),
  usable under ``torch.compile`` and in training.
- ``nemocore.ref``: pure-PyTorch references of every op, the ground truth in tests.
- ``nemocore.Tokenizer``: byte-level BPE with Hugging Face tokenizer.json parity (Rust core);
  ``nemocore.chat``: chat templates with reasoning modes.
- ``nemocore._rs``: the Rust core (tokenizer, grammar engine, scheduler as they land).
"""

# torch first: _C uses OpenMP, and loading torch first makes the dynamic loader hand _C the
# OpenMP runtime torch already uses, so both share one thread pool.
import torch  # noqa: F401

from nemocore import ops, ref
from nemocore._version import __version__
from nemocore.tokenizer import Tokenizer

__all__ = ["Tokenizer", "__version__", "ops", "ref"]
