"""``TokenizerInfo``: the vocabulary a grammar masks, as bytes per token id."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cached_property

from nemocore._native import rust

__all__ = ["TokenizerInfo"]

# Names of end-of-sequence tokens in common tokenizers, used when stop_token_ids is not given.
_STOP_NAMES = ("</s>", "<|endoftext|>", "<|im_end|>", "<|end_of_text|>", "<|eot_id|>", "<eos>")


def _byte_level_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the character each byte is written as, inverted."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = {b: b for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = 256 + extra
            extra += 1
    return {chr(c): b for b, c in chars.items()}


def _hf_token_bytes(tok: object) -> tuple[list[bytes], list[int]]:
    """Bytes of every id of a Hugging Face ``tokenizers.Tokenizer``, and its special ids."""
    vocab = tok.get_vocab(with_added_tokens=True)
    size = max(vocab.values(), default=-1) + 1
    added = tok.get_added_tokens_decoder()
    special = sorted(i for i, t in added.items() if t.special)
    decoder = _byte_level_decoder()
    byte_level = "ByteLevel" in repr(tok.decoder) or "ByteLevel" in repr(tok.pre_tokenizer)
    out = [b""] * size
    for piece, i in vocab.items():
        if i in added:
            out[i] = piece.encode("utf-8")
        elif byte_level:
            out[i] = bytes(decoder[c] for c in piece) if all(c in decoder for c in piece) else b""
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            out[i] = bytes([int(piece[3:5], 16)])  # byte fallback
        else:
            out[i] = piece.replace("\u2581", " ").encode("utf-8")  # metaspace
    return out, special


class TokenizerInfo:
    """A tokenizer's vocabulary for token masks.

    encoded_vocab: bytes of each token id (``b""`` for ids without text). vocab_size: the
    model's vocabulary (logits width, may exceed the tokenizer's; extra ids are never allowed).
    stop_token_ids: ids allowed exactly where the grammar may end. special_token_ids: never
    allowed (the stop tokens excepted).
    """

    def __init__(
        self,
        encoded_vocab: Sequence[bytes],
        *,
        vocab_size: int | None = None,
        stop_token_ids: Iterable[int] | None = None,
        special_token_ids: Iterable[int] = (),
    ) -> None:
        self.encoded_vocab = [bytes(t) for t in encoded_vocab]
        self.vocab_size = len(self.encoded_vocab) if vocab_size is None else int(vocab_size)
        if self.vocab_size < len(self.encoded_vocab):
            raise ValueError(
                f"vocab_size: {self.vocab_size} is smaller than the tokenizer's "
                f"{len(self.encoded_vocab)} tokens; pass the model's vocabulary size"
            )
        if stop_token_ids is None:
            named = {t: i for i, t in enumerate(self.encoded_vocab) if t}
            stop_token_ids = [named[n.encode()] for n in _STOP_NAMES if n.encode() in named][:1]
        self.stop_token_ids = sorted(set(stop_token_ids))
        stops = set(self.stop_token_ids)
        self.special_token_ids = sorted(set(special_token_ids) - stops)
        for name, ids in (("stop", self.stop_token_ids), ("special", self.special_token_ids)):
            bad = [i for i in ids if not 0 <= i < len(self.encoded_vocab)]
            if bad:
                raise ValueError(
                    f"{name}_token_ids: {bad} are not token ids of this vocabulary "
                    f"(0..{len(self.encoded_vocab) - 1})"
                )

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer: object,
        *,
        vocab_size: int | None = None,
        stop_token_ids: Iterable[int] | None = None,
    ) -> TokenizerInfo:
        """From a ``nemocore.tokenizer.Tokenizer``, a Hugging Face ``tokenizers.Tokenizer`` or a
        list of token bytes. Stop tokens default to the first of ``</s>``, ``<|endoftext|>``,
        ``<|im_end|>``, ... present in the vocabulary."""
        if hasattr(tokenizer, "all_token_bytes") and hasattr(tokenizer, "special_token_ids"):
            vocab, special = tokenizer.all_token_bytes(), tokenizer.special_token_ids()
        elif hasattr(tokenizer, "get_vocab") and hasattr(tokenizer, "get_added_tokens_decoder"):
            vocab, special = _hf_token_bytes(tokenizer)
        elif isinstance(tokenizer, Sequence) and all(isinstance(t, bytes) for t in tokenizer):
            vocab, special = list(tokenizer), []
        else:
            raise TypeError(
                "tokenizer: expected a nemocore Tokenizer, a tokenizers.Tokenizer or a list of "
                f"bytes, got {type(tokenizer).__name__}"
            )
        return cls(
            vocab,
            vocab_size=vocab_size,
            stop_token_ids=stop_token_ids,
            special_token_ids=special,
        )

    @cached_property
    def table(self) -> object:
        """The engine's token table (built once, on first use)."""
        return rust().TokenTable(
            self.encoded_vocab, self.special_token_ids, self.stop_token_ids, self.vocab_size
        )

    def __repr__(self) -> str:
        return (
            f"TokenizerInfo(tokens={len(self.encoded_vocab)}, vocab_size={self.vocab_size}, "
            f"stop_token_ids={self.stop_token_ids})"
        )
