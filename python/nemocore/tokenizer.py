"""Byte-level BPE tokenizer with Hugging Face ``tokenizers`` parity (the Rust core's).

``Tokenizer.from_file("tokenizer.json")`` reads the files Hugging Face tokenizers writes (BPE
model; ByteLevel/Split/Digits pre-tokenizers; NFC/NFKC/Lowercase/Prepend/Replace/Strip
normalizers; ByteLevel/ByteFallback/Fuse/Strip/Replace decoders) and gives the same ids.
Anything else raises :class:`nemocore._rs.NemocoreInvalidConfigError` naming the field and the
supported values. Batch calls run on all cores without the GIL.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from nemocore._native import rust

__all__ = ["DecodeStream", "Tokenizer"]

PRE_TOKENIZERS = ("gpt2", "cl100k", "llama3", "o200k")


def _id_list(ids: Sequence[int]) -> list[int]:
    """``ids`` as a list of ints; tensors and arrays convert through ``tolist()``."""
    tolist = getattr(ids, "tolist", None)
    return tolist() if callable(tolist) else list(ids)


class DecodeStream:
    """Decodes one id at a time; :meth:`step` returns text only once it is complete UTF-8.

    A token that ends inside a multi-byte character yields ``None`` until the character's last
    byte arrives, as Hugging Face's ``DecodeStream`` does.
    """

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def step(self, token_id: int) -> str | None:
        """Feeds ``token_id``; returns the newly completed text, or ``None``."""
        return self._inner.step(token_id)

    def feed(self, ids: Iterable[int]) -> Iterator[str]:
        """Feeds ``ids`` in order, yielding each completed piece of text."""
        for token_id in ids:
            text = self._inner.step(token_id)
            if text is not None:
                yield text


class Tokenizer:
    """A byte-level BPE tokenizer (see the module docstring for what it reads)."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Reads a Hugging Face tokenizer.json file."""
        return cls(rust().Tokenizer.from_file(os.fspath(path)))

    @classmethod
    def from_str(cls, text: str) -> Tokenizer:
        """Parses a Hugging Face tokenizer.json document."""
        return cls(rust().Tokenizer.from_str(text))

    @classmethod
    def train(
        cls,
        texts_or_files: Iterable[str | os.PathLike[str]],
        vocab_size: int,
        min_frequency: int = 2,
        special_tokens: Sequence[str] = (),
        pre_tokenizer: str = "gpt2",
        num_threads: int = 0,
    ) -> Tokenizer:
        """Learns a byte-level BPE vocabulary, with the merges Hugging Face's ``BpeTrainer`` learns.

        ``texts_or_files``: ``str`` items are texts; ``os.PathLike`` items (``pathlib.Path``)
        are files, read line by line as Hugging Face's ``train(files)`` does. ``vocab_size``
        counts the special tokens (ids ``0..len(special_tokens)``) and the 256 byte characters.
        ``pre_tokenizer`` is one of ``"gpt2"``, ``"cl100k"``, ``"llama3"``, ``"o200k"``.
        """
        texts: list[str] = []
        files: list[str] = []
        for item in texts_or_files:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, os.PathLike):
                files.append(os.fspath(item))
            else:
                raise TypeError(
                    f"texts_or_files: expected str texts or os.PathLike files, got {type(item)!r}"
                )
        if pre_tokenizer not in PRE_TOKENIZERS:
            raise ValueError(
                f"pre_tokenizer: expected one of {PRE_TOKENIZERS}, got {pre_tokenizer!r}"
            )
        if vocab_size <= 0:
            raise ValueError(f"vocab_size: expected a positive int, got {vocab_size}")
        inner = rust().Tokenizer.train(
            texts,
            files,
            vocab_size,
            min_frequency,
            list(special_tokens),
            pre_tokenizer,
            num_threads,
        )
        return cls(inner)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes tokenizer.json atomically (a temporary file renamed over ``path``)."""
        self._inner.save(os.fspath(Path(path)))

    def to_str(self) -> str:
        """The tokenizer.json document."""
        return self._inner.to_str()

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``; ``add_special_tokens`` applies the file's post-processor."""
        return self._inner.encode(text, add_special_tokens)

    def encode_batch(
        self, texts: Sequence[str], add_special_tokens: bool = False, num_threads: int = 0
    ) -> list[list[int]]:
        """:meth:`encode` of each text, on ``num_threads`` threads (0: one per core)."""
        return self._inner.encode_batch(list(texts), add_special_tokens, num_threads)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids`` (a sequence of ints, or a 1-D tensor/array); an id no token has
        raises ``NemocoreInvalidArgumentError``."""
        return self._inner.decode(_id_list(ids), skip_special_tokens)

    def decode_batch(
        self,
        batch: Sequence[Sequence[int]],
        skip_special_tokens: bool = False,
        num_threads: int = 0,
    ) -> list[str]:
        """:meth:`decode` of each id list, in parallel."""
        return self._inner.decode_batch(
            [list(ids) for ids in batch], skip_special_tokens, num_threads
        )

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, str]],
        add_generation_prompt: bool = True,
        reasoning: str | None = None,
        tokenize: bool = False,
    ) -> str | list[int]:
        """Renders ``messages`` with :func:`nemocore.chat.apply_chat_template` (Nemotron's
        format, reasoning ``"on"``/``"off"``); with ``tokenize`` returns the ids instead, the
        role markers encoded as the special tokens they are."""
        from nemocore.chat import apply_chat_template

        text = apply_chat_template(messages, add_generation_prompt, reasoning)
        return self.encode(text) if tokenize else text

    def decode_stream(self, skip_special_tokens: bool = False) -> DecodeStream:
        """A :class:`DecodeStream` over this tokenizer."""
        return DecodeStream(self._inner.decode_stream(skip_special_tokens))

    def token_to_id(self, token: str) -> int | None:
        """The id of ``token`` (added tokens included), or ``None``."""
        return self._inner.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        """The token string of ``token_id``, or ``None``."""
        return self._inner.id_to_token(token_id)

    @property
    def vocab_size(self) -> int:
        """Number of distinct tokens, added tokens included."""
        return self._inner.vocab_size

    def get_vocab(self) -> dict[str, int]:
        """Token -> id, added tokens included."""
        return self._inner.get_vocab()

    def special_token_ids(self) -> list[int]:
        """Ids of the special added tokens."""
        return self._inner.special_token_ids()

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes ``token_id`` stands for (may be part of a UTF-8 character)."""
        return self._inner.token_bytes(token_id)

    def all_token_bytes(self) -> list[bytes]:
        """:meth:`token_bytes` of every id from 0 to the largest (``b""`` for unused ids)."""
        return self._inner.all_token_bytes()
