"""Tokenizer.apply_chat_template: the chat module's rendering, optionally encoded."""

from __future__ import annotations

from nemocore import Tokenizer
from nemocore.chat import apply_chat_template, split_reasoning

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Two plus two?"},
]


def _tokenizer() -> Tokenizer:
    texts = [apply_chat_template(MESSAGES, reasoning=r) for r in ("on", "off")] * 50
    return Tokenizer.train(
        texts,
        vocab_size=400,
        min_frequency=1,
        special_tokens=["<|im_start|>", "<|im_end|>", "<think>", "</think>"],
    )


def test_text_and_ids_agree():
    tok = _tokenizer()
    for reasoning in ("on", "off"):
        text = tok.apply_chat_template(MESSAGES, reasoning=reasoning)
        assert text == apply_chat_template(MESSAGES, reasoning=reasoning)
        ids = tok.apply_chat_template(MESSAGES, reasoning=reasoning, tokenize=True)
        assert ids == tok.encode(text)
        assert tok.decode(ids) == text
        assert tok.token_to_id("<|im_start|>") in ids


def test_reply_splits_into_reasoning_and_answer():
    reasoning, answer = split_reasoning("<think>\n2 + 2 = 4\n</think>\nFour.")
    assert "2 + 2 = 4" in reasoning
    assert answer.strip() == "Four."
