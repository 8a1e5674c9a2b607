"""Tokenizer benchmarks: nemocore against Hugging Face tokenizers and tiktoken, same run.

    pytest benches/test_bench_tokenizer.py --benchmark-only --benchmark-group-by=group \\
        --benchmark-json=tokenizer.json

The corpus is at least 20 MB of Python standard-library files (code, docstrings and the prose of
``pydoc_data/topics.py``), as documents. Vocabularies of 32k and 128k tokens are trained on it
(cl100k-style split pattern); Hugging Face loads the same tokenizer.json and tiktoken the same
ranks (token bytes -> id), and all three give the same ids (checked before timing). MB/s =
``extra_info["mb"]`` / the median time. Speed is measured here, never asserted in tests/.
"""

from __future__ import annotations

import functools
import os
import sysconfig
from pathlib import Path

import pytest

from nemocore import Tokenizer

hf = pytest.importorskip("tokenizers")
tiktoken = pytest.importorskip("tiktoken")

pytestmark = pytest.mark.filterwarnings("ignore::pytest_benchmark.logger.PytestBenchmarkWarning")

CORPUS_BYTES = 20_000_000
VOCABS = [32_000, 128_000]
CL100K = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
THREADS = os.cpu_count() or 1


@functools.cache
def corpus() -> tuple[str, ...]:
    """Standard-library sources, prose first, until :data:`CORPUS_BYTES`."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    paths = [lib / "pydoc_data" / "topics.py", *sorted(lib.rglob("*.py"))]
    docs, size = [], 0
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        docs.append(text)
        size += len(text.encode())
        if size >= CORPUS_BYTES:
            break
    return tuple(docs)


def corpus_mb() -> float:
    return sum(len(d.encode()) for d in corpus()) / 1e6


@functools.cache
def tokenizers(vocab_size: int):
    """``(ours, hf, tiktoken)`` over one trained vocabulary."""
    ours = Tokenizer.train(
        list(corpus()), vocab_size, special_tokens=["<|endoftext|>"], pre_tokenizer="cl100k"
    )
    ref = hf.Tokenizer.from_str(ours.to_str())
    eot = ours.token_to_id("<|endoftext|>")
    ranks = {ours.token_bytes(i): i for i in range(ours.vocab_size) if i != eot}
    enc = tiktoken.Encoding(
        f"bench{vocab_size}",
        pat_str=CL100K,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": eot},
    )
    sample = list(corpus()[:50])
    expected = ours.encode_batch(sample)
    assert [e.ids for e in ref.encode_batch(sample, add_special_tokens=False)] == expected
    assert enc.encode_ordinary_batch(sample) == expected
    return ours, ref, enc


def encoders(vocab_size: int, impl: str, batched: bool):
    ours, ref, enc = tokenizers(vocab_size)
    docs = list(corpus())
    if batched:
        return {
            "nemocore": lambda: ours.encode_batch(docs),
            "hf": lambda: ref.encode_batch_fast(docs, add_special_tokens=False),
            "tiktoken": lambda: enc.encode_ordinary_batch(docs, num_threads=THREADS),
        }[impl]
    return {
        "nemocore": lambda: [ours.encode(d) for d in docs],
        "hf": lambda: [ref.encode(d, add_special_tokens=False) for d in docs],
        "tiktoken": lambda: [enc.encode_ordinary(d) for d in docs],
    }[impl]


IMPLS = ["nemocore", "hf", "tiktoken"]


@pytest.mark.parametrize("vocab_size", VOCABS)
@pytest.mark.parametrize("batched", [False, True], ids=["single", "batch"])
@pytest.mark.parametrize("impl", IMPLS)
def test_encode(benchmark, vocab_size, batched, impl):
    fn = encoders(vocab_size, impl, batched)
    benchmark.group = f"encode {'batch' if batched else 'single'} {vocab_size // 1000}k"
    benchmark.extra_info.update(mb=corpus_mb(), impl=impl, threads=THREADS if batched else 1)
    benchmark.pedantic(fn, rounds=2, warmup_rounds=1)


@pytest.mark.parametrize("vocab_size", VOCABS)
@pytest.mark.parametrize("impl", IMPLS)
def test_decode(benchmark, vocab_size, impl):
    ours, ref, enc = tokenizers(vocab_size)
    ids = ours.encode_batch(list(corpus()))
    fn = {
        "nemocore": lambda: [ours.decode(i) for i in ids],
        "hf": lambda: [ref.decode(i) for i in ids],
        "tiktoken": lambda: [enc.decode(i) for i in ids],
    }[impl]
    benchmark.group = f"decode {vocab_size // 1000}k"
    benchmark.extra_info.update(mb=corpus_mb(), impl=impl)
    benchmark.pedantic(fn, rounds=2, warmup_rounds=1)


@pytest.mark.parametrize("impl", ["nemocore", "hf"])
def test_train_32k(benchmark, impl):
    docs = list(corpus())

    def ours():
        return Tokenizer.train(
            docs, 32_000, special_tokens=["<|endoftext|>"], pre_tokenizer="cl100k"
        )

    def theirs():
        tok = hf.Tokenizer(hf.models.BPE())
        tok.pre_tokenizer = hf.pre_tokenizers.Sequence(
            [
                hf.pre_tokenizers.Split(hf.Regex(CL100K), behavior="isolated"),
                hf.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        trainer = hf.trainers.BpeTrainer(
            vocab_size=32_000,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(docs, trainer)
        return tok

    benchmark.group = "train 32k"
    benchmark.extra_info.update(mb=corpus_mb(), impl=impl)
    benchmark.pedantic(ours if impl == "nemocore" else theirs, rounds=1, warmup_rounds=0)
