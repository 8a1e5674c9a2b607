"""Shared helpers of the model tests: tiny configs and random token batches."""

from __future__ import annotations

import pytest
import torch

from nemocore.models import NemotronHConfig, NemotronHForCausalLM


def tiny_model(seed: int = 0, **overrides) -> NemotronHForCausalLM:
    torch.manual_seed(seed)
    model = NemotronHForCausalLM(NemotronHConfig.tiny(**overrides)).eval()
    with torch.no_grad():  # a non-zero router bias exercises the selection-only correction
        for name, buf in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                buf.normal_(0, 0.05)
    return model


def random_ids(batch: int, seqlen: int, vocab: int = 256, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (batch, seqlen), generator=g)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models do too little work per op for two threads to pay: one thread keeps these
    tests fast even on a loaded machine (the ops' own tests cover the threaded kernels)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
