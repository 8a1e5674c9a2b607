"""Tokenizer.json files trained here with Hugging Face's own trainer (there is no model hub).

Each fixture is a ``(hf, ours)`` pair loaded from the same tokenizer.json: GPT-2-style
``ByteLevel`` (with and without a prefix space), cl100k-, o200k- and Llama-3-style ``Split``
pre-tokenizers, a normalizing one, and a Llama-2-style byte-fallback one. The corpus is Python
source and docs from the standard library, so every Python install has it.
"""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pytest
import tokenizers as hf
from tokenizers import (
    AddedToken,
    Regex,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from nemocore import Tokenizer

CL100K = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
O200K = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+"
    r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
KINDS = ["gpt2", "gpt2_prefix", "cl100k", "o200k", "llama3", "normalized", "byte_fallback"]

# Some non-Latin text so the vocabularies hold multi-byte merges too.
EXTRA = (
    "Ça va très bien, merci. Größe, Straße, naïve café résumé. "
    "東京は日本の首都です。我喜欢学习中文。안녕하세요 세계. "
    "Привет, как дела? Γειά σου Κόσμε. مرحبا بالعالم. שלום עולם. "  # noqa: RUF001
    "👍 👨‍👩‍👧‍👦 🏳️‍🌈 ✨🚀 "
) * 50


def corpus_files() -> list[Path]:
    """Standard-library files, in a fixed order."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in lib.glob("*.py"))


def corpus(n_bytes: int, skip_bytes: int = 0) -> list[str]:
    """About ``n_bytes`` of standard-library text as documents, after the first ``skip_bytes``."""
    docs, seen = [], 0
    for path in corpus_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        seen += len(text)
        if seen <= skip_bytes:
            continue
        docs.append(text)
        if seen - skip_bytes >= n_bytes:
            break
    return docs


def train_corpus() -> list[str]:
    return [*corpus(600_000), EXTRA]


def _byte_level(prefix: bool, use_regex: bool = True) -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.ByteLevel(add_prefix_space=prefix, use_regex=use_regex)


def _split(pattern: str) -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            _byte_level(False, use_regex=False),
        ]
    )


def build_hf(kind: str):
    """A Hugging Face tokenizer of ``kind``, trained on :func:`train_corpus`."""
    if kind == "byte_fallback":
        return build_byte_fallback()
    tok = hf.Tokenizer(models.BPE(ignore_merges=kind == "llama3"))
    pre = {
        "gpt2": _byte_level(False),
        "gpt2_prefix": _byte_level(True),
        "normalized": _byte_level(False),
        "cl100k": _split(CL100K),
        "llama3": _split(CL100K),
        "o200k": _split(O200K),
    }[kind]
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    if kind == "normalized":
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    trainer = trainers.BpeTrainer(
        vocab_size=3000,
        min_frequency=2,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(train_corpus(), trainer)
    tok.add_tokens(
        [
            AddedToken("<mask>", lstrip=True, rstrip=False, single_word=False),
            AddedToken("[WORD]", single_word=True, normalized=False),
            AddedToken(" spaced", rstrip=True, normalized=False),
            AddedToken("Hello", normalized=True),
        ]
    )
    if kind == "llama3":
        tok.add_special_tokens(["<|begin_of_text|>"])
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.Sequence(
            [
                processors.ByteLevel(trim_offsets=False),
                processors.TemplateProcessing(
                    single="<|begin_of_text|> $A",
                    pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                    special_tokens=[("<|begin_of_text|>", bos)],
                ),
            ]
        )
    return tok


def build_byte_fallback():
    """Llama-2 style: ``▁`` for spaces, byte-fallback tokens, unknown token, no pre-tokenizer."""
    tok = hf.Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("\n"), behavior="merged_with_previous")
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=1500,
        min_frequency=2,
        special_tokens=["<unk>", "<s>", "</s>"],
        show_progress=False,
        limit_alphabet=200,
    )
    tok.train_from_iterator(corpus(150_000), trainer)
    doc = json.loads(tok.to_str())
    vocab = doc["model"]["vocab"]
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    return hf.Tokenizer.from_str(json.dumps(doc))


_CACHE: dict[str, tuple[object, Tokenizer]] = {}


def pair(kind: str) -> tuple[object, Tokenizer]:
    """``(hf, ours)`` for ``kind``, both loaded from the same tokenizer.json (cached)."""
    if kind not in _CACHE:
        ref = build_hf(kind)
        _CACHE[kind] = (ref, Tokenizer.from_str(ref.to_str()))
    return _CACHE[kind]


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param
