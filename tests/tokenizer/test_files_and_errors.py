"""tokenizer.json in and out, token bytes, streaming, and the errors bad input raises."""

from __future__ import annotations

import json

import pytest
from tests.tokenizer.conftest import hf, pair

from nemocore import Tokenizer
from nemocore import _rs as rs

TEXTS = ["Hello world <|endoftext|> x", "東京 👨‍👩‍👧 café\n\tdef f(): pass", ""]


def test_saved_file_loads_in_hf_and_encodes_identically(kind, tmp_path):
    ref, ours = pair(kind)
    path = tmp_path / "tokenizer.json"
    ours.save(path)
    assert not [p for p in tmp_path.iterdir() if p.name != "tokenizer.json"], "temp file left"
    reloaded_hf = hf.Tokenizer.from_file(str(path))
    reloaded = Tokenizer.from_file(path)
    for text in TEXTS:
        expected = ref.encode(text).ids
        assert reloaded_hf.encode(text).ids == expected
        assert reloaded.encode(text, add_special_tokens=True) == expected
    assert json.loads(path.read_text())["model"]["type"] == "BPE"


def test_save_replaces_an_existing_file(tmp_path):
    _, ours = pair("gpt2")
    path = tmp_path / "tokenizer.json"
    path.write_text("old contents")
    ours.save(str(path))
    assert Tokenizer.from_file(path).encode("abc") == ours.encode("abc")


def test_token_bytes_concatenate_to_the_utf8_text(kind):
    _, ours = pair(kind)
    if kind in ("normalized", "byte_fallback", "gpt2_prefix"):
        pytest.skip("the normalizer or prefix space rewrites the text; bytes follow that form")
    everything = ours.all_token_bytes()
    for text in TEXTS:
        ids = ours.encode(text)
        assert b"".join(ours.token_bytes(i) for i in ids) == text.encode()
        assert b"".join(everything[i] for i in ids) == text.encode()


def test_byte_fallback_token_bytes_are_single_bytes():
    _, ours = pair("byte_fallback")
    assert ours.token_bytes(ours.token_to_id("<0xE2>")) == b"\xe2"
    word = next(t for t in sorted(ours.get_vocab()) if t.startswith("▁") and len(t) > 2)
    assert ours.token_bytes(ours.token_to_id(word)) == word.replace("▁", " ").encode()


def test_decode_stream_matches_hf_stream(kind):
    ref, ours = pair(kind)
    from tokenizers.decoders import DecodeStream as HfDecodeStream

    text = "Hé 👨‍👩‍👧 東京 <|endoftext|> end"
    ids = ref.encode(text, add_special_tokens=False).ids
    for skip in (False, True):
        hf_stream, our_stream = HfDecodeStream(skip_special_tokens=skip), ours.decode_stream(skip)
        for i in ids:
            assert our_stream.step(i) == hf_stream.step(ref, i)


def gpt2_byte_char(b: int) -> str:
    """GPT-2's printable character for byte ``b``."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    if b in printable:
        return chr(b)
    return chr(256 + [x for x in range(256) if x not in printable].index(b))


def test_stream_holds_back_partial_characters():
    _, ours = pair("gpt2")
    pieces = [ours.token_to_id(gpt2_byte_char(b)) for b in "👍".encode()]
    stream = ours.decode_stream()
    assert [stream.step(i) for i in pieces] == [None, None, None, "👍"]
    assert ours.decode(pieces[:2]) == "\ufffd"
    assert ours.token_bytes(pieces[0]) == b"\xf0"


def test_decode_takes_tensors_and_arrays():
    import numpy as np
    import torch

    _, ours = pair("gpt2")
    ids = ours.encode("tensors too")
    assert ours.decode(torch.tensor(ids)) == "tensors too"
    assert ours.decode_batch([np.array(ids)]) == ["tensors too"]


def test_decode_rejects_unknown_ids():
    _, ours = pair("gpt2")
    with pytest.raises(rs.NemocoreInvalidArgumentError, match="out of range"):
        ours.decode([0, ours.vocab_size + 10])
    with pytest.raises(rs.NemocoreInvalidArgumentError, match="out of range"):
        ours.decode([-1])
    with pytest.raises(rs.NemocoreInvalidArgumentError, match="out of range"):
        ours.decode_batch([[1], [2**40]])
    with pytest.raises(rs.NemocoreInvalidArgumentError):
        ours.token_bytes(-5)
    stream = ours.decode_stream()
    with pytest.raises(rs.NemocoreInvalidArgumentError):
        stream.step(10**8)
    assert stream.step(ours.token_to_id("a")) == "a"


def _doc() -> dict:
    return json.loads(pair("cl100k")[0].to_str())


@pytest.mark.parametrize(
    ("edit", "field", "supported"),
    [
        (lambda d: d["model"].update(type="WordPiece"), "model.type", "BPE"),
        (
            lambda d: d.update(pre_tokenizer={"type": "Metaspace", "replacement": "▁"}),
            "pre_tokenizer.type",
            "ByteLevel, Split, Digits, Sequence",
        ),
        (
            lambda d: d["pre_tokenizer"]["pretokenizers"][0].update(behavior="Sideways"),
            "pre_tokenizer.pretokenizers[0].behavior",
            "Isolated",
        ),
        (lambda d: d.update(normalizer={"type": "BertNormalizer"}), "normalizer.type", "NFKC"),
        (lambda d: d.update(decoder={"type": "WordPiece"}), "decoder.type", "ByteFallback"),
        (
            lambda d: d.update(post_processor={"type": "BertProcessing"}),
            "post_processor.type",
            "TemplateProcessing",
        ),
        (lambda d: d["model"].update(dropout=0.1), "model.dropout", "null"),
        (lambda d: d.update(truncation={"max_length": 5}), "truncation", "null"),
        (lambda d: d["model"]["merges"].append(["zzz", "qqq"]), "model.merges[", "not in"),
        (lambda d: d["model"].pop("vocab"), "model.vocab", "object"),
        (lambda d: d["added_tokens"][0].pop("content"), "added_tokens[0].content", "string"),
    ],
)
def test_bad_files_name_the_field(edit, field, supported):
    doc = _doc()
    edit(doc)
    with pytest.raises(rs.NemocoreInvalidConfigError) as info:
        Tokenizer.from_str(json.dumps(doc))
    assert field in str(info.value)
    assert supported in str(info.value)
    assert isinstance(info.value, ValueError)


def test_malformed_json_and_missing_file(tmp_path):
    with pytest.raises(rs.NemocoreInvalidConfigError, match="not valid JSON"):
        Tokenizer.from_str("{not json")
    with pytest.raises(rs.NemocoreIoError) as info:
        Tokenizer.from_file(tmp_path / "missing.json")
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_megabyte_without_spaces_matches_hf(kind):
    ref, ours = pair(kind)
    for text in ("abcdefghij" * 100_000, "7" * 1_000_000, "é" * 500_000):
        assert ours.encode(text) == ref.encode(text, add_special_tokens=False).ids
