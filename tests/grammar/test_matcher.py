"""Token masks and the xgrammar-shaped matcher API (decoding.md 4.10 (5), (6)).

Masks are checked by brute force on small vocabularies: token t is allowed iff the bytes so far
plus t's bytes are still a viable prefix (``Grammar.accepts_prefix``), stop tokens iff the text
is complete, special and padding ids never. Documents sampled token by token from the masks of a
JSON Schema must validate with ``jsonschema``; rollback must give the masks of a fresh matcher
fed the shorter prefix; prefix/suffix (fill-in-the-middle) must only let the middle end where
prefix + middle + suffix is a sentence."""

from __future__ import annotations

import json
import random

import pytest
import torch

from nemocore.grammar import (
    GrammarCompiler,
    GrammarMatcher,
    TokenizerInfo,
    allocate_token_bitmask,
    apply_token_bitmask_inplace,
)
from nemocore.ref.token_bitmask import unpack_bitmask

jsonschema = pytest.importorskip("jsonschema")

# Single characters plus multi-character pieces that cross token boundaries of JSON.
PIECES = [chr(c) for c in range(32, 127)] + [
    '{"', '":', '", "', "true", "null", "fal", "se", "123", '"}', "}]", "\n  ", "é", "\\u00", "ab",
    'name": "', "age", "\\n", "\t",
]  # fmt: skip
EOS, SPECIAL = "<eos>", "<pad>"


def small_info(padding: int = 5) -> TokenizerInfo:
    vocab = [p.encode() for p in PIECES] + [EOS.encode(), SPECIAL.encode(), b"\xc3", b"\xa9"]
    return TokenizerInfo(
        vocab,
        vocab_size=len(vocab) + padding,
        stop_token_ids=[len(PIECES)],
        special_token_ids=[len(PIECES) + 1],
    )


def allowed_ids(matcher: GrammarMatcher, info: TokenizerInfo) -> set[int]:
    bitmask = allocate_token_bitmask(1, info.vocab_size)
    matcher.fill_next_token_bitmask(bitmask)
    return set(unpack_bitmask(bitmask, info.vocab_size)[0].nonzero().flatten().tolist())


def brute_force_allowed(grammar, consumed: bytes, info: TokenizerInfo, suffix=b"") -> set[int]:
    out = set()
    for i, data in enumerate(info.encoded_vocab):
        if i in info.stop_token_ids:
            if grammar.accepts(consumed + suffix):
                out.add(i)
        elif i not in info.special_token_ids and data and grammar.accepts_prefix(consumed + data):
            out.add(i)
    return out


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 6},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["a", "b", True]}, "maxItems": 2},
    },
    "required": ["name"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("source", ["json", "schema"])
def test_masks_equal_brute_force_along_a_document(source):
    info = small_info()
    compiler = GrammarCompiler(info)
    compiled = (
        compiler.compile_builtin("json")
        if source == "json"
        else compiler.compile_json_schema(SCHEMA)
    )
    grammar = compiled.grammar
    doc = '{"name": "ab\\n", "age": 7, "tags": ["a", true]}'
    matcher = GrammarMatcher(compiled)
    consumed = b""
    for ch in doc:
        want = brute_force_allowed(grammar, consumed, info)
        assert allowed_ids(matcher, info) == want, consumed
        token = PIECES.index(ch) if ch in PIECES else None
        assert token is not None
        assert token in want  # soundness: the true next token is allowed
        assert matcher.accept_token(token)
        consumed += ch.encode()
    assert matcher.can_terminate()
    assert allowed_ids(matcher, info) == brute_force_allowed(grammar, consumed, info)
    assert matcher.accept_token(info.stop_token_ids[0])
    assert matcher.is_terminated()
    assert allowed_ids(matcher, info) == set()


def sample_document(matcher, info, rng, max_steps=400) -> str | None:
    """Random walk over the masks; stops (EOS) with probability 0.5 once allowed."""
    out = b""
    bitmask = allocate_token_bitmask(1, info.vocab_size)
    logits = torch.zeros(1, info.vocab_size)
    for _ in range(max_steps):
        matcher.fill_next_token_bitmask(bitmask)
        scores = logits.clone()
        apply_token_bitmask_inplace(scores, bitmask)
        allowed = torch.isfinite(scores[0]).nonzero().flatten().tolist()
        assert allowed, f"no token allowed after {out!r}"
        stop = info.stop_token_ids[0]
        token = stop if stop in allowed and rng.random() < 0.5 else rng.choice(allowed)
        assert matcher.accept_token(token)
        if token == stop:
            return out.decode("utf-8")
        out += info.encoded_vocab[token]
    return None


def test_sampled_documents_validate_with_jsonschema():
    info = small_info()
    compiled = GrammarCompiler(info).compile_json_schema(SCHEMA)
    rng = random.Random(7)
    done = 0
    for _ in range(12):
        doc = sample_document(GrammarMatcher(compiled), info, rng)
        if doc is None:
            continue
        jsonschema.validate(json.loads(doc), SCHEMA)
        done += 1
    assert done >= 3


def test_rollback_gives_the_masks_of_a_fresh_matcher():
    info = small_info()
    compiled = GrammarCompiler(info).compile_builtin("json")
    tokens = [PIECES.index(p) for p in ['{"', "ab", '":', " ", "[", "123", ",", "true", "]", "}"]]
    matcher = GrammarMatcher(compiled)
    for t in tokens:
        assert matcher.accept_token(t)
    assert matcher.accept_token(info.stop_token_ids[0])
    kept = len(tokens) + 1  # the stop token is a step too
    for n in [1, 3, 4, 2]:
        matcher.rollback(n)
        kept -= n
        fresh = GrammarMatcher(compiled)
        for t in tokens[:kept]:
            assert fresh.accept_token(t)
        assert allowed_ids(matcher, info) == allowed_ids(fresh, info)
        assert not matcher.is_terminated()
    with pytest.raises(ValueError, match="roll back"):
        matcher.rollback(1000)
    matcher.reset()
    assert allowed_ids(matcher, info) == allowed_ids(GrammarMatcher(compiled), info)


def test_rejected_tokens_leave_the_state_unchanged():
    info = small_info()
    matcher = GrammarMatcher(GrammarCompiler(info).compile_builtin("json"))
    before = allowed_ids(matcher, info)
    assert not matcher.accept_token(PIECES.index("}"))
    assert not matcher.accept_token(info.stop_token_ids[0])  # nothing to end yet
    assert not matcher.accept_token(info.special_token_ids[0])
    assert not matcher.accept_token(info.vocab_size - 1)  # padding id
    assert allowed_ids(matcher, info) == before
    assert info.special_token_ids[0] not in before
    assert all(i < len(info.encoded_vocab) for i in before)


def test_prefix_and_suffix_fill_in_the_middle():
    info = small_info()
    compiled = GrammarCompiler(info).compile_grammar('start: "(" "a"* ")" "!"')
    matcher = GrammarMatcher(compiled, prefix="(a", suffix=")!")
    stop = info.stop_token_ids[0]
    assert matcher.can_terminate()  # "(a" + "" + ")!"
    assert stop in allowed_ids(matcher, info)
    assert matcher.accept_token(PIECES.index("a"))
    assert matcher.can_terminate()
    # "(aa)" + ")!" can never be a sentence: the right context rules ")" out of the middle.
    assert PIECES.index(")") not in allowed_ids(matcher, info)
    assert not matcher.accept_token(PIECES.index(")"))
    assert stop in allowed_ids(matcher, info)
    with pytest.raises(ValueError, match="left context"):
        GrammarMatcher(compiled, prefix=")")


def test_python_grammar_masks_follow_indentation():
    pieces = ["def", " f", "():", "\n", "    ", "pass", "x", "<eos>"]
    info = TokenizerInfo([p.encode() for p in pieces], stop_token_ids=[7])
    compiled = GrammarCompiler(info).compile_builtin("python")
    matcher = GrammarMatcher(compiled)
    for t in [0, 1, 2, 3, 4, 5, 3]:
        assert matcher.accept_token(t), t
    assert matcher.can_terminate()
    assert 7 in allowed_ids(matcher, info)


def test_tokenizer_info_from_nemocore_and_hf_tokenizers():
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    hf.train_from_iterator(['{"key": "välue", "n": [1, 2]}'] * 20, trainer)
    info = TokenizerInfo.from_tokenizer(hf, vocab_size=320)
    assert info.stop_token_ids == [hf.token_to_id("<|endoftext|>")]
    ids = hf.encode('{"key": "välue"}').ids
    assert b"".join(info.encoded_vocab[i] for i in ids) == '{"key": "välue"}'.encode()
    matcher = GrammarMatcher(GrammarCompiler(info).compile_builtin("json"))
    for i in ids:
        assert i in allowed_ids(matcher, info)
        assert matcher.accept_token(i)
    assert matcher.accept_token(info.stop_token_ids[0])
    del tokenizers


def test_bad_arguments_raise():
    info = small_info()
    compiled = GrammarCompiler(info).compile_builtin("json")
    with pytest.raises(ValueError, match="vocab_size"):
        TokenizerInfo([b"a", b"b"], vocab_size=1)
    with pytest.raises(ValueError, match="stop_token_ids"):
        TokenizerInfo([b"a"], stop_token_ids=[3])
    with pytest.raises(TypeError, match="CompiledGrammar"):
        GrammarMatcher("start: x")
    with pytest.raises(ValueError, match="words"):
        GrammarMatcher(compiled).fill_next_token_bitmask(torch.zeros(1, 1, dtype=torch.int32))
    with pytest.raises(ValueError, match="syntax"):
        GrammarCompiler(info).compile_grammar("x", syntax="ebnf")


def test_python_fill_in_the_middle():
    pieces = ["x", " +", " 1", "(", ")", ":", "\n", "<eos>"]
    info = TokenizerInfo([p.encode() for p in pieces], stop_token_ids=[7])
    compiled = GrammarCompiler(info).compile_builtin("python")
    prefix, suffix = "def f(x):\n    return ", "\n\nprint(f(2))\n"
    matcher = GrammarMatcher(compiled, prefix=prefix, suffix=suffix)
    assert matcher.can_terminate()  # an empty middle: a bare `return`
    for t in [0, 1, 2]:  # "x + 1"
        assert matcher.accept_token(t)
    assert matcher.can_terminate()
    assert 7 in allowed_ids(matcher, info)
    assert matcher.accept_token(1)  # "x + 1 +": viable, but the middle cannot end here
    assert not matcher.can_terminate()
    assert 7 not in allowed_ids(matcher, info)
    matcher.rollback(1)
    assert matcher.can_terminate()


def test_tokenizer_info_from_nemocore_tokenizer():
    from nemocore import Tokenizer

    tok = Tokenizer.train(['{"key": "välue", "n": [1, 2]}'] * 20, vocab_size=300,
                          special_tokens=["<|endoftext|>"])  # fmt: skip
    info = TokenizerInfo.from_tokenizer(tok, vocab_size=320)
    eos = tok.token_to_id("<|endoftext|>")
    assert info.stop_token_ids == [eos]
    ids = tok.encode('{"n": [1, 2]}')
    matcher = GrammarMatcher(GrammarCompiler(info).compile_builtin("json"))
    for i in ids:
        assert i in allowed_ids(matcher, info)
        assert matcher.accept_token(i)
    assert matcher.accept_token(eos)
    assert matcher.is_terminated()


def test_bitmask_rows_layouts_and_errors():
    """Every bitmask layout gets the same row: the fast contiguous path (any row, negative
    indices), rows wider than the vocabulary (tail cleared), strided and 1-D rows."""
    info = small_info()
    compiled = GrammarCompiler(info).compile_builtin("json")
    matcher = GrammarMatcher(compiled)
    assert matcher.accept_string('{"a": [1, ')
    words = (info.vocab_size + 31) // 32
    expected = allocate_token_bitmask(1, info.vocab_size)
    matcher.fill_next_token_bitmask(expected)
    batch = allocate_token_bitmask(4, info.vocab_size)
    matcher.fill_next_token_bitmask(batch, index=2)
    matcher.fill_next_token_bitmask(batch, index=-1)
    assert torch.equal(batch[2], expected[0])
    assert torch.equal(batch[3], expected[0])
    assert (batch[0] == -1).all()
    assert (batch[1] == -1).all()
    wide = torch.full((2, words + 3), -1, dtype=torch.int32)
    matcher.fill_next_token_bitmask(wide, index=1)
    assert torch.equal(wide[1, :words], expected[0])
    assert (wide[1, words:] == 0).all()
    strided = torch.full((words, 2), -1, dtype=torch.int32).t()
    matcher.fill_next_token_bitmask(strided, index=0)
    assert torch.equal(strided[0], expected[0])
    assert (strided[1] == -1).all()
    flat = torch.full((words,), -1, dtype=torch.int32)
    matcher.fill_next_token_bitmask(flat)
    assert torch.equal(flat, expected[0])
    with pytest.raises(IndexError, match="out of range"):
        matcher.fill_next_token_bitmask(batch, index=4)
    with pytest.raises(TypeError, match="int32"):
        matcher.fill_next_token_bitmask(batch.to(torch.int64))
    with pytest.raises(TypeError, match="CPU"):
        matcher.fill_next_token_bitmask(torch.empty(1, words, dtype=torch.int32, device="meta"))
    # A row viewed out of a larger tensor (storage offset) and a wide strided row.
    offset = torch.full((3 * words + 5,), -1, dtype=torch.int32)[5:].view(3, words)
    matcher.fill_next_token_bitmask(offset, index=1)
    assert torch.equal(offset[1], expected[0])
    assert (offset[0] == -1).all()
    assert (offset[2] == -1).all()
    wide_strided = torch.full((words + 2, 2), -1, dtype=torch.int32).t()
    matcher.fill_next_token_bitmask(wide_strided, index=1)
    assert torch.equal(wide_strided[1, :words], expected[0])
    assert (wide_strided[1, words:] == 0).all()
    assert (wide_strided[0] == -1).all()
    # The native fast path writes only rows it has checked, and leaves the rest to Python.
    table, inner = info.table, matcher._inner
    ones = torch.full((2, words), -1, dtype=torch.int32)
    refused = [
        (ones.to(torch.int64), 0),  # dtype
        (ones[:, : words - 1], 0),  # too narrow
        (ones.t(), 0),  # strided
        (ones, 2),  # row out of range
        (ones, -3),
        (ones[None], 0),  # 3-D
    ]
    for tensor, index in refused:
        assert not inner.fill_bitmask_row(table, tensor, index, torch.int32)
    assert (ones == -1).all()
    assert inner.fill_bitmask_row(table, ones, -1, torch.int32)
    assert torch.equal(ones[1], expected[0])
