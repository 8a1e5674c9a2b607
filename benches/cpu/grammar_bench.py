"""Grammar-constrained decoding on the CPU: nemocore's engine against xgrammar and llguidance
(decoding.md 4.8), all in one process on the same tokenizer and the same documents.

For each vocabulary (byte-level BPE trained here on the Python standard library plus generated
JSON, 32k and 128k tokens, cached under ~/.cache/nemocore/bench/grammar) and each case (generic
JSON, a nested JSON Schema, the Python grammar), a valid document is decoded token by token:
before each token the next-token bitmask is filled (timed), then the mask is checked to allow
the true token and the token is accepted (not timed, the same for every engine). Reported:
grammar compile time (for this tokenizer) and the median and p99 of the per-token mask time.
Peers without a Python grammar with indentation are skipped for Python.

    python benches/cpu/grammar_bench.py [--vocabs 32k,128k] [--cases json,schema,python]
        [--peers xgrammar,llguidance] [--max-tokens 400]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import statistics
import sysconfig
import time
from functools import partial
from pathlib import Path

import torch

from nemocore.grammar import (
    GrammarCompiler,
    GrammarMatcher,
    TokenizerInfo,
    allocate_token_bitmask,
)

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nemocore/bench/grammar"
EOS = "<|endoftext|>"

SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "customer": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 40},
                "email": {"type": "string", "format": "email"},
                "address": {
                    "type": "object",
                    "properties": {
                        "street": {"type": "string"},
                        "city": {"type": "string"},
                        "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
                    },
                    "required": ["street", "city", "zip"],
                    "additionalProperties": False,
                },
            },
            "required": ["name", "address"],
            "additionalProperties": False,
        },
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string"},
                    "qty": {"type": "integer", "minimum": 1, "maximum": 99},
                    "kind": {"enum": ["book", "tool", "food"]},
                    "price": {"type": "number"},
                },
                "required": ["sku", "qty", "kind", "price"],
                "additionalProperties": False,
            },
            "minItems": 1,
        },
        "paid": {"type": "boolean"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["id", "customer", "items", "paid"],
    "additionalProperties": False,
}


def random_json(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([rng.randint(-1000, 10**6), round(rng.uniform(-100, 100), 3)])
    if kind in (2, 3):
        words = ["alpha", "beta", "gamma", "delta", "x", "value", "naïve", "tab\there"]
        return " ".join(rng.choice(words) for _ in range(rng.randint(0, 4)))
    if kind == 4:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    keys = ["id", "name", "items", "count", "meta", "tags", "enabled", "score"]
    return {
        rng.choice(keys) + str(i): random_json(rng, depth + 1) for i in range(rng.randint(0, 5))
    }


def schema_document(rng: random.Random) -> dict:
    items = [
        {"sku": f"SKU-{rng.randint(100, 999)}", "qty": rng.randint(1, 99),
         "kind": rng.choice(["book", "tool", "food"]), "price": round(rng.uniform(1, 500), 2)}
        for _ in range(rng.randint(2, 5))
    ]  # fmt: skip
    return {
        "id": "123e4567-e89b-12d3-a456-426614174000",
        "customer": {
            "name": "Ada Lovelace",
            "email": "ada@example.org",
            "address": {"street": "12 Analytical Row", "city": "London", "zip": "01234"},
        },
        "items": items,
        "paid": True,
        "note": None,
    }


def python_document() -> str:
    path = Path(sysconfig.get_paths()["stdlib"]) / "colorsys.py"
    return path.read_text(encoding="utf-8")


def corpus(limit_bytes: int = 60_000_000) -> list[str]:
    """Training texts: standard-library sources and generated JSON."""
    root = sysconfig.get_paths()["stdlib"]
    texts, total = [], 0
    for path in sorted(glob.glob(os.path.join(root, "**", "*.py"), recursive=True)):
        if total > limit_bytes:
            break
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        texts.append(text)
        total += len(text)
    rng = random.Random(0)
    texts += [json.dumps(random_json(rng), indent=rng.choice([None, 2])) for _ in range(20000)]
    # Records with made-up words, so that a 128k vocabulary has enough distinct merges.
    syllables = [a + b for a in "bcdfghklmnprstvz" for b in "aeiou"] + ["qu", "th", "ch", "sh"]
    for _ in range(60000):
        words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(12)]
        record = {w: rng.choice([rng.randint(0, 10**6), " ".join(words[:5]), True]) for w in words}
        texts.append(json.dumps(record))
    return texts


def trained_tokenizer(vocab_size: int) -> Path:
    """A byte-level BPE tokenizer.json of ``vocab_size`` tokens, trained once and cached."""
    path = CACHE / f"bpe-{vocab_size}.json"
    if path.exists():
        return path
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS], min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )  # fmt: skip
    tok.train_from_iterator(corpus(), trainer)
    CACHE.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def timed_decode(ids, fill, accept, bitmask: torch.Tensor, engine: str) -> list[float]:
    """Per-token seconds of ``fill()`` (the mask into row 0 of ``bitmask``); then, not timed,
    the mask must allow the document's token and ``accept(token)`` must take it. Every engine
    gets the same check, so each pays the same between two masks."""
    times = []
    for t in ids:
        t0 = time.perf_counter()
        fill()
        times.append(time.perf_counter() - t0)
        if not (int(bitmask[0, t // 32]) >> (t % 32)) & 1:
            raise RuntimeError(f"{engine}'s mask disallows token {t} of a valid document")
        if not accept(t):
            raise RuntimeError(f"{engine} rejected token {t} of a valid document")
    return times


def run_ours(case, text, ids, info):
    compiler = GrammarCompiler(info, cache_enabled=False)
    t0 = time.perf_counter()
    if case == "json":
        compiled = compiler.compile_builtin("json")
    elif case == "schema":
        compiled = compiler.compile_json_schema(SCHEMA)
    else:
        compiled = compiler.compile_builtin("python")
    matcher = GrammarMatcher(compiled)
    bitmask = allocate_token_bitmask(1, info.vocab_size)
    compile_s = time.perf_counter() - t0

    fill = partial(matcher.fill_next_token_bitmask, bitmask)
    return compile_s, timed_decode(ids, fill, matcher.accept_token, bitmask, "nemocore")


def run_xgrammar(case, text, ids, info, vocab_size):
    import xgrammar as xgr

    xinfo = xgr.TokenizerInfo(info.encoded_vocab, vocab_size=vocab_size,
                              stop_token_ids=info.stop_token_ids)  # fmt: skip
    compiler = xgr.GrammarCompiler(xinfo, cache_enabled=False)
    t0 = time.perf_counter()
    if case == "json":
        compiled = compiler.compile_builtin_json_grammar()
    else:
        compiled = compiler.compile_json_schema(json.dumps(SCHEMA), any_whitespace=True)
    matcher = xgr.GrammarMatcher(compiled)
    bitmask = xgr.allocate_token_bitmask(1, vocab_size)
    compile_s = time.perf_counter() - t0
    fill = partial(matcher.fill_next_token_bitmask, bitmask)
    return compile_s, timed_decode(ids, fill, matcher.accept_token, bitmask, "xgrammar")


def run_llguidance(case, text, ids, tokenizer_path, vocab_size):
    import llguidance
    import llguidance.torch as llt

    tok = llguidance.LLTokenizer(str(tokenizer_path), n_vocab=vocab_size)
    schema = {} if case == "json" else SCHEMA
    t0 = time.perf_counter()
    grammar = llguidance.LLMatcher.grammar_from_json_schema(
        schema, defaults={"whitespace_flexible": True}
    )
    matcher = llguidance.LLMatcher(tok, grammar)
    bitmask = llt.allocate_token_bitmask(1, vocab_size)
    compile_s = time.perf_counter() - t0
    if matcher.is_error():
        raise RuntimeError(matcher.get_error())
    fill = partial(llt.fill_next_token_bitmask, matcher, bitmask, 0)
    return compile_s, timed_decode(ids, fill, matcher.consume_token, bitmask, "llguidance")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocabs", default="32k,128k", help="comma list of 32k/128k")
    parser.add_argument("--cases", default="json,schema,python")
    parser.add_argument("--peers", default="xgrammar,llguidance")
    parser.add_argument("--max-tokens", type=int, default=400, help="tokens decoded per case")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from tokenizers import Tokenizer

    rng = random.Random(1)
    docs = {
        "json": json.dumps({"records": [random_json(rng) for _ in range(12)]}, ensure_ascii=False),
        "schema": json.dumps(schema_document(rng), indent=2),
        "python": python_document(),
    }
    print("| vocab | case | engine | compile (ms) | mask median (us) | mask p99 (us) | tokens |")
    print("|---|---|---|---|---|---|---|")
    for name in args.vocabs.split(","):
        vocab = {"32k": 32000, "128k": 128000}[name]
        path = trained_tokenizer(vocab)
        hf = Tokenizer.from_file(str(path))
        size = hf.get_vocab_size()
        t0 = time.perf_counter()
        info = TokenizerInfo.from_tokenizer(hf, vocab_size=size)
        _ = info.table
        setup_s = time.perf_counter() - t0
        print(f"<!-- {name}: {size} tokens; TokenizerInfo + token table {setup_s:.2f} s -->")
        for case in args.cases.split(","):
            ids = hf.encode(docs[case]).ids[: args.max_tokens]
            runs = {"nemocore": partial(run_ours, case, docs[case], ids, info)}
            if "xgrammar" in args.peers and case != "python":
                runs["xgrammar"] = partial(run_xgrammar, case, docs[case], ids, info, size)
            if "llguidance" in args.peers and case != "python":
                runs["llguidance"] = partial(run_llguidance, case, docs[case], ids, path, size)
            for engine, run in runs.items():
                report(name, case, engine, run)


def report(vocab: str, case: str, engine: str, run) -> None:
    """Runs one contender and prints its table row (an error is reported, not fatal)."""
    try:
        compile_s, times = run()
    except Exception as e:
        print(f"| {vocab} | {case} | {engine} | error: {str(e)[:60]} | | | |")
        return
    med = statistics.median(times) * 1e6
    p99 = percentile(times, 0.99) * 1e6
    print(
        f"| {vocab} | {case} | {engine} | {compile_s * 1e3:.1f} | {med:.1f} | {p99:.1f} | "
        f"{len(times)} |"
    )


if __name__ == "__main__":
    main()
