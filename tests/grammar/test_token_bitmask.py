"""apply_token_bitmask_inplace: the C++ (and, with a GPU, CUDA) kernels against the pure-torch
reference and against xgrammar's own function, over awkward shapes (vocab 1, 31, 33, not a
multiple of 32, logits wider than the mask, batch 1, empty row subsets, non-contiguous logits)
and every float dtype. Results must be identical: the op only writes -inf."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import requires_cuda

from nemocore import ops, ref
from nemocore.ops.token_bitmask import apply_token_bitmask_inplace

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=[requires_cuda, pytest.mark.cuda])])
def device(request) -> torch.device:
    return torch.device(request.param)


def random_bitmask(batch: int, words: int, gen: torch.Generator) -> torch.Tensor:
    """int32 words, a quarter all-allowed, a quarter all-disallowed, the rest random bits."""
    raw = torch.randint(-(2**31), 2**31, (batch, words), generator=gen, dtype=torch.int64)
    kind = torch.randint(0, 4, (batch, words), generator=gen)
    raw = torch.where(kind == 0, torch.full_like(raw, -1), raw)
    raw = torch.where(kind == 1, torch.zeros_like(raw), raw)
    return raw.to(torch.int32)


def both(logits, bitmask, indices=None):
    """(kernel result, reference result) on copies of ``logits``."""
    fast, slow = logits.clone(), logits.clone()
    apply_token_bitmask_inplace(fast, bitmask, indices)
    ref.apply_token_bitmask_inplace(slow, bitmask, indices)
    return fast, slow


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("batch", "vocab", "words"),
    [(1, 1, 1), (3, 31, 1), (2, 32, 1), (2, 33, 2), (1, 1000, 32), (4, 5000, 157), (2, 70, 1),
     (2, 64, 5), (1, 0, 0)],
)  # fmt: skip
def test_matches_reference(device, dtype, batch, vocab, words):
    gen = torch.Generator().manual_seed(batch * 10007 + vocab)
    logits = torch.randn(batch, vocab, generator=gen).to(device=device, dtype=dtype)
    bitmask = random_bitmask(batch, words, gen).to(device)
    fast, slow = both(logits, bitmask)
    torch.testing.assert_close(fast, slow, rtol=0, atol=0)
    if vocab:
        assert (fast == float("-inf")).any() or bitmask.eq(-1).all()


def test_indices_non_contiguous_and_one_dimensional(device):
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(5, 300, generator=gen).to(device)
    bitmask = random_bitmask(5, 10, gen).to(device)
    for indices in ([4, 0, 2], torch.tensor([1]), [], None):
        fast, slow = both(base, bitmask, indices)
        torch.testing.assert_close(fast, slow, rtol=0, atol=0)
    strided = torch.randn(300, 5, generator=gen).to(device).t()  # column stride 5
    fast, slow = both(strided, bitmask)
    torch.testing.assert_close(fast, slow, rtol=0, atol=0)
    one = torch.randn(77, generator=gen).to(device)
    fast, slow = both(one, bitmask[2, :3])
    torch.testing.assert_close(fast, slow, rtol=0, atol=0)


def test_logits_wider_than_mask_are_disallowed(device):
    logits = torch.zeros(2, 100, device=device)
    bitmask = torch.full((2, 2), -1, dtype=torch.int32, device=device)  # 64 tokens, all allowed
    apply_token_bitmask_inplace(logits, bitmask)
    assert logits[:, :64].eq(0).all()
    assert logits[:, 64:].eq(float("-inf")).all()


def test_matches_xgrammar_on_cpu():
    xgrammar = pytest.importorskip("xgrammar")
    gen = torch.Generator().manual_seed(11)
    for batch, vocab, indices in [(3, 1000, None), (4, 32000, [3, 1]), (1, 33, None)]:
        words = (vocab + 31) // 32
        logits = torch.randn(batch, vocab, generator=gen)
        bitmask = random_bitmask(batch, words, gen)
        ours, theirs = logits.clone(), logits.clone()
        apply_token_bitmask_inplace(ours, bitmask, indices)
        xgrammar.apply_token_bitmask_inplace(theirs, bitmask, indices=indices)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_compiles_fullgraph():
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 100, generator=gen)
    bitmask = random_bitmask(2, 4, gen)

    @torch.compile(fullgraph=True, backend="eager")
    def masked_softmax(x, m):
        ops.apply_token_bitmask_inplace(x, m)
        return torch.softmax(x, dim=-1)

    want = logits.clone()
    ref.apply_token_bitmask_inplace(want, bitmask)
    torch.testing.assert_close(masked_softmax(logits.clone(), bitmask), torch.softmax(want, -1))


@pytest.mark.parametrize(
    ("logits", "bitmask", "indices", "error", "words"),
    [
        (torch.zeros(2, 10), torch.zeros(2, 1, dtype=torch.int64), None, TypeError, "bitmask"),
        (torch.zeros(2, 10, dtype=torch.int32), torch.zeros(2, 1, dtype=torch.int32), None,
         TypeError, "logits"),
        (torch.zeros(2, 10), torch.zeros(3, 1, dtype=torch.int32), None, ValueError, "rows"),
        (torch.zeros(2, 10), torch.zeros(1, dtype=torch.int32), None, ValueError, "(words,)"),
        (torch.zeros(2, 10), torch.zeros(2, 1, dtype=torch.int32), [2], ValueError, "indices"),
    ],
)  # fmt: skip
def test_bad_arguments_raise(logits, bitmask, indices, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        apply_token_bitmask_inplace(logits, bitmask, indices)
