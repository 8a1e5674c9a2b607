"""Training gives the merges Hugging Face's BpeTrainer gives on the same corpus."""

from __future__ import annotations

import json

import pytest
from tests.tokenizer.conftest import CL100K, EXTRA, O200K, _byte_level, _split, corpus, hf
from tokenizers import models, pre_tokenizers, trainers

from nemocore import Tokenizer

SPECIALS = ["<|endoftext|>", "<|pad|>"]

PRE = {
    "gpt2": lambda: _byte_level(False),
    "cl100k": lambda: _split(CL100K),
    "llama3": lambda: _split(CL100K),
    "o200k": lambda: _split(O200K),
}


def hf_train(kind: str, texts: list[str], vocab_size: int, min_frequency: int):
    tok = hf.Tokenizer(models.BPE(ignore_merges=kind == "llama3"))
    tok.pre_tokenizer = PRE[kind]()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


@pytest.mark.parametrize("kind", list(PRE))
@pytest.mark.parametrize(("vocab_size", "min_frequency"), [(2000, 2), (1200, 40)])
def test_same_merges_and_vocab_as_hf(kind, vocab_size, min_frequency):
    texts = [*corpus(300_000, skip_bytes=500_000), EXTRA]
    ref = hf_train(kind, texts, vocab_size, min_frequency)
    ours = Tokenizer.train(
        texts,
        vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIALS,
        pre_tokenizer=kind,
    )
    ref_model = json.loads(ref.to_str())["model"]
    our_model = json.loads(ours.to_str())["model"]
    assert our_model["merges"] == ref_model["merges"]
    assert our_model["vocab"] == ref_model["vocab"]
    assert ours.get_vocab() == ref.get_vocab()


def test_saved_trained_tokenizer_loads_in_hf(tmp_path):
    texts = corpus(200_000)
    ours = Tokenizer.train(texts, 1500, special_tokens=SPECIALS, pre_tokenizer="cl100k")
    path = tmp_path / "trained.json"
    ours.save(path)
    loaded = hf.Tokenizer.from_file(str(path))
    sample = [*corpus(50_000, skip_bytes=900_000), "x<|endoftext|>y", "東京 👍"]
    assert [e.ids for e in loaded.encode_batch(sample)] == ours.encode_batch(sample)
    assert loaded.decode(ours.encode(sample[0])) == sample[0]
    assert ours.token_to_id("<|endoftext|>") == 0
    assert ours.special_token_ids() == [0, 1]


def test_files_are_read_line_by_line_like_hf(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(corpus(150_000)), encoding="utf-8")
    ref = hf.Tokenizer(models.BPE())
    ref.pre_tokenizer = PRE["gpt2"]()
    ref.train(
        [str(path)],
        trainers.BpeTrainer(
            vocab_size=800,
            special_tokens=SPECIALS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    ours = Tokenizer.train([path], 800, special_tokens=SPECIALS)
    assert (
        json.loads(ours.to_str())["model"]["merges"] == json.loads(ref.to_str())["model"]["merges"]
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="pre_tokenizer"):
        Tokenizer.train(["abc"], 300, pre_tokenizer="bert")
    with pytest.raises(TypeError, match="texts_or_files"):
        Tokenizer.train([b"bytes"], 300)
    with pytest.raises(ValueError, match="vocab_size"):
        Tokenizer.train(["abc"], 0)
