"""Nemotron-H end to end on the CPU: nemocore's model against transformers' NemotronH (its
pure-torch path, the same weights) on a small config with every block type (8 layers
``ME*M-EM*``, width 512, LatentMoE; ``presets.bench_small``).

Prefill: tokens/s of one forward over the prompt that fills the cache (nemocore: HybridCache;
transformers: its own cache, ``use_cache=True``). Decode: tokens/s of greedy one-token steps
after the prompt, each library's leanest loop (transformers: model(...) with its cache, argmax;
nemocore: ``decode_step`` + ``cache.advance``, eager and, with --compile, under torch.compile).
Then the cache memory per sequence at long contexts against an all-attention model of the
same width and depth, from the allocated cache tensors.

    python benches/cpu/model_bench.py [--prompt 256] [--new 32] [--reps 3] [--compile]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time

import torch

from nemocore.models import NemotronHForCausalLM, presets


def _alternating(ours, theirs, reps: int) -> tuple[float, float, float]:
    """Median seconds of ours and theirs, and the median of the per-round ratios theirs/ours.
    The two alternate within each round, so load from other processes on this shared machine
    hits both alike (each callable returns its own timed seconds, or None to time the call)."""

    def timed(fn):
        t0 = time.perf_counter()
        inner = fn()
        return inner if isinstance(inner, float) else time.perf_counter() - t0

    timed(ours), timed(theirs)  # warm-up (and compilation)
    rounds = [(timed(ours), timed(theirs)) for _ in range(reps)]
    ratio = statistics.median(t / o for o, t in rounds)
    return statistics.median(o for o, _ in rounds), statistics.median(t for _, t in rounds), ratio


def _ours_prefill(model, ids, new):
    cache = model.make_cache(ids.shape[0], ids.shape[1], new + 1)
    return model(ids, cache=cache).logits[:, -1], cache


def _ours_decode(model, ids, new, step):
    logits, cache = _ours_prefill(model, ids, new)
    t0 = time.perf_counter()
    for _ in range(new):
        logits = step(logits.argmax(-1), cache)
        cache.advance(1)
    return time.perf_counter() - t0


def _hf_prefill(model, ids):
    out = model(ids, use_cache=True, logits_to_keep=1)  # like generate: last logits only
    return out.logits[:, -1], out.past_key_values


def _hf_decode(model, ids, new):
    logits, past = _hf_prefill(model, ids)
    t0 = time.perf_counter()
    for _ in range(new):
        out = model(logits.argmax(-1)[:, None], cache=past, use_cache=True)
        logits, past = out.logits[:, -1], out.past_key_values
    return time.perf_counter() - t0


def speed_table(args) -> None:
    import transformers

    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.manual_seed(0)
    ours = NemotronHForCausalLM(presets.bench_small()).eval()
    with tempfile.TemporaryDirectory() as tmp:
        ours.save_pretrained(tmp)
        theirs = transformers.NemotronHForCausalLM.from_pretrained(tmp).eval()
    compiled = torch.compile(ours.decode_step, fullgraph=True) if args.compile else None
    threads = torch.get_num_threads()
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {threads} threads, "
        f"prompt {args.prompt}, {args.new} new tokens"
    )
    print("| batch | phase | transformers tokens/s | nemocore tokens/s | speedup |")
    print("|---:|---|---:|---:|---:|")
    with torch.no_grad():
        for batch in args.batches:
            ids = torch.randint(3, ours.config.vocab_size, (batch, args.prompt))
            us, hf, ratio = _alternating(
                lambda ids=ids: _ours_prefill(ours, ids, args.new),
                lambda ids=ids: _hf_prefill(theirs, ids),
                args.reps,
            )
            n = batch * args.prompt
            print(f"| {batch} | prefill | {n / hf:.0f} | {n / us:.0f} | {ratio:.2f}x |")
            short, n = ids[:, :64], batch * args.new
            steps = [("decode", ours.decode_step)] + (
                [("decode (compiled)", compiled)] if compiled else []
            )
            for name, step in steps:
                us, hf, ratio = _alternating(
                    lambda st=step, s=short: _ours_decode(ours, s, args.new, st),
                    lambda s=short: _hf_decode(theirs, s, args.new),
                    args.reps,
                )
                print(
                    f"| {batch} | {name} | {n / hf:.0f} | {n / us:.0f} | {ratio:.2f}x |", flush=True
                )


def memory_table() -> None:
    hybrid = presets.bench_small()
    pattern = hybrid.hybrid_override_pattern
    all_attention = presets.bench_small(hybrid_override_pattern="*" * len(pattern))
    rows = [("bench_small", hybrid, all_attention)]
    nano = presets.nemotron_3_nano_30b_a3b()
    nano_att = presets.nemotron_3_nano_30b_a3b(
        hybrid_override_pattern="".join(
            "*" if c == "M" else c for c in nano.hybrid_override_pattern
        )
    )
    rows.append(("Nemotron-3-Nano (Mamba -> attention)", nano, nano_att))
    print("\n| model | context | hybrid cache MiB/seq | all-attention MiB/seq | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, cfg, att in rows:
        for context in (1024, 8192, 32768):
            sizes = []
            for c in (cfg, att):
                with torch.device("meta"):
                    model = NemotronHForCausalLM(c)
                cache = model.make_cache(1, context, 1, device="meta", dtype=torch.bfloat16)
                sizes.append(cache.memory_bytes()["total"] / 2**20)
            print(f"| {name} | {context} | {sizes[0]:.1f} | {sizes[1]:.1f} | "
                  f"{sizes[1] / sizes[0]:.1f}x |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--compile", action="store_true", help="also time a compiled decode step")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--memory-only", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.memory_only:
        speed_table(args)
    memory_table()


if __name__ == "__main__":
    main()
