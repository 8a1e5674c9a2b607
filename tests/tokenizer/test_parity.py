"""Ids and text identical to Hugging Face tokenizers for the same tokenizer.json."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.tokenizer.conftest import KINDS, corpus, pair

SAMPLES = [
    "",
    " ",
    "a",
    "Hello world",
    "Hello  world   ",
    "   leading and trailing   ",
    "tabs\tand\t\ttabs\n\tindented",
    "line\nbreaks\r\nwindows\r\n\n\nmany",
    "café naïve résumé Ça Größe Straße",
    "e\u0301 composed vs precomposed \u00e9",
    "東京は日本の首都です。我喜欢学习中文。",
    "안녕하세요 세계",
    "مرحبا بالعالم שלום עולם",
    "👍 👨‍👩‍👧‍👦 🏳️‍🌈 family: 👨‍👩‍👧",
    "numbers 1 12 123 1234 12345 3.14159 -42 1e10 0x1F",
    "it's don't we'll they've I'm you'd SHE'S",
    "def f(x):\n    return x ** 2  # square\n\nclass A(B):\n    pass\n",
    'print("hello, world!")  ;;  {"json": [1, 2, 3]}',
    "<|endoftext|>",
    "text<|endoftext|>more text",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<think>\nreasoning\n</think>\n\nanswer",
    "a <mask> b  <mask>c",
    "x [WORD] y x[WORD] [WORD]y",
    "before spaced   after spaced",
    "Hello hello HELLO",
    "\u00a0non\u2009breaking\u3000spaces\u200b",
    "\x00\x01\x7f control \u0085 chars",
    "mixed 中文 and English and 123 and 👍",
    "\ufb01 ligature \u210c \u216b \u2460 full-width \uff21\uff22\uff23",
    "a" * 1000,
    " " * 50 + "x",
    "\n" * 20,
    "!!!???...,,,;;;",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_ids_match_hf_on_samples(kind, text):
    ref, ours = pair(kind)
    assert ours.encode(text) == ref.encode(text, add_special_tokens=False).ids
    assert ours.encode(text, add_special_tokens=True) == ref.encode(text).ids


def test_ids_match_hf_on_held_out_corpus(kind):
    ref, ours = pair(kind)
    docs = corpus(200_000, skip_bytes=2_000_000)
    rng = random.Random(0)
    pieces = []
    for doc in docs:
        for _ in range(20):
            start = rng.randrange(len(doc))
            pieces.append(doc[start : start + rng.randrange(1, 400)])
    expected = [e.ids for e in ref.encode_batch(pieces, add_special_tokens=False)]
    assert ours.encode_batch(pieces) == expected
    whole = "".join(docs)
    assert ours.encode(whole) == ref.encode(whole, add_special_tokens=False).ids


def test_batch_equals_one_by_one(kind):
    _, ours = pair(kind)
    texts = SAMPLES * 3
    assert ours.encode_batch(texts, num_threads=3) == [ours.encode(t) for t in texts]
    ids = [ours.encode(t) for t in texts]
    assert ours.decode_batch(ids, num_threads=2) == [ours.decode(i) for i in ids]


@pytest.mark.parametrize("text", SAMPLES)
def test_decode_matches_hf(kind, text):
    ref, ours = pair(kind)
    ids = ref.encode(text).ids
    for skip in (False, True):
        assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(
            ids, skip_special_tokens=skip
        )


def invertible(kind: str, text: str) -> bool:
    """Whether decoding must give ``text`` back: not when the normalizer rewrites it, a prefix
    space is added, or an added token swallows the spaces around it (lstrip/rstrip)."""
    return kind not in ("normalized", "gpt2_prefix") and not any(
        t in text for t in ("<mask>", " spaced")
    )


@pytest.mark.parametrize("text", SAMPLES)
def test_decode_inverts_encode(kind, text):
    _, ours = pair(kind)
    if not invertible(kind, text):
        pytest.skip("this tokenizer rewrites this text on purpose")
    assert ours.decode(ours.encode(text)) == text


def test_decode_of_arbitrary_ids_matches_hf(kind):
    """Random id sequences split UTF-8 characters: both sides must put U+FFFD the same way."""
    ref, ours = pair(kind)
    rng = random.Random(1)
    n = ref.get_vocab_size()
    for _ in range(300):
        ids = [rng.randrange(n) for _ in range(rng.randrange(0, 12))]
        assert ours.decode(ids) == ref.decode(ids, skip_special_tokens=False), ids


def test_vocabulary_lookups_match_hf(kind):
    ref, ours = pair(kind)
    assert ours.vocab_size == ref.get_vocab_size()
    assert ours.get_vocab() == ref.get_vocab()
    for token, token_id in sorted(ref.get_vocab().items()):
        assert ours.token_to_id(token) == token_id
        assert ours.id_to_token(token_id) == ref.id_to_token(token_id)
    assert ours.token_to_id("definitely not a token ☃☃☃") is None
    assert ours.id_to_token(10**9) is None


text_strategy = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\ufffd"),
    max_size=80,
) | st.lists(
    st.sampled_from(["<|endoftext|>", " ", "\n", "\t", "ab", "é", "👍", "1", "'s", "<mask>"])
).map("".join)


@pytest.mark.parametrize("kind_name", KINDS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=text_strategy)
def test_property_ids_and_round_trip(kind_name, text):
    ref, ours = pair(kind_name)
    ids = ours.encode(text)
    assert ids == ref.encode(text, add_special_tokens=False).ids
    assert ours.decode(ids) == ref.decode(ids, skip_special_tokens=False)
    if invertible(kind_name, text):
        assert ours.decode(ids) == text


@pytest.mark.parametrize("kind_name", KINDS)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_property_decode_stream_matches_decode(kind_name, data):
    _, ours = pair(kind_name)
    text = data.draw(text_strategy)
    ids = ours.encode(text)
    pieces = list(ours.decode_stream().feed(ids))
    assert "".join(pieces) == ours.decode(ids)
    assert all("\ufffd" not in p for p in pieces)
