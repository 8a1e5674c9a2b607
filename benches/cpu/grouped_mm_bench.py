"""CPU grouped GEMM (MoE) against its peers, all timed in one process (kernels.md 3.4, 7).

For each shape: the nemocore kernel (``_C.grouped_mm`` / ``_C.grouped_mm_wgrad``), a per-expert
``torch.mm`` loop, ``torch._grouped_mm`` and one dense ``torch.mm`` of the same FLOPs (the sgemm
rate the goal is a fraction of). Times are medians of ``--reps`` runs, interleaved so machine
noise hits every contender alike. bf16 rows compare against torch upcasting each expert's
operands to fp32 and multiplying in fp32 (torch's own bf16 CPU matmul is ~1 GFLOP/s).

    python benches/cpu/grouped_mm_bench.py [--reps 5] [--shapes nano,small] [--dtypes fp32,bf16]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from nemocore import _C

# name: (experts, k, n, rows); rows = tokens * top-6.
SHAPES = {
    "nano": (128, 2688, 1856, 6144),
    "nano-down": (128, 1856, 2688, 6144),
    "small": (64, 1024, 512, 4096),
    "e8": (8, 2688, 1856, 6144),
    # the MoE issue's grid: 4096 tokens x top-6 at Nano's expert shapes, 8/64/128 experts
    "nano-4k": (128, 2688, 1856, 24576),
    "e64-4k": (64, 2688, 1856, 24576),
    "e8-4k": (8, 2688, 1856, 24576),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def batch_sizes(experts: int, rows: int, gen: torch.Generator) -> torch.Tensor:
    """Uneven loads: rows drawn from a skewed distribution over experts."""
    weights = torch.rand(experts, generator=gen) + 0.25
    return torch.multinomial(weights, rows, replacement=True, generator=gen).bincount(
        minlength=experts
    )


def contenders(kind, a, b, y, bs, threads):
    """Callables (name -> fn) for one shape; kind is 'fwd' or 'wgrad'."""
    rows, n = a.shape[0], b.shape[2]
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), bs.cumsum(0)])
    offs32 = bs.cumsum(0).to(torch.int32)
    spans = list(zip(offsets[:-1].tolist(), offsets[1:].tolist()))
    up = a.dtype != torch.float32
    if kind == "fwd":
        out = torch.empty(rows, n, dtype=a.dtype)
        out32 = torch.empty(rows, n)

        def ours():
            _C.grouped_mm(a, b, offsets, out, False, threads, 0)

        def loop():
            for e, (s, t) in enumerate(spans):
                if t > s:
                    if up:
                        torch.mm(a[s:t].float(), b[e].float(), out=out32[s:t])
                    else:
                        torch.mm(a[s:t], b[e], out=out32[s:t])

        fns = {"nemocore": ours, "loop": loop}
        if not up:
            fns["_grouped_mm"] = lambda: torch._grouped_mm(a, b, offs=offs32)
            fns["dense mm"] = lambda: torch.mm(a, b[0])
        return fns
    experts, m = b.shape[0], a.shape[1]
    out = torch.empty(experts, m, n, dtype=a.dtype)
    out32 = torch.empty(experts, m, n)

    def ours_w():
        _C.grouped_mm_wgrad(a, y, offsets, out, threads, 0)

    def loop_w():
        for e, (s, t) in enumerate(spans):
            if up:
                torch.mm(a[s:t].float().T, y[s:t].float(), out=out32[e])
            else:
                torch.mm(a[s:t].T, y[s:t], out=out32[e])

    fns = {"nemocore": ours_w, "loop": loop_w}
    if not up:
        fns["_grouped_mm"] = lambda: torch._grouped_mm(a.T, y, offs=offs32)
        fns["dense mm"] = lambda: torch.mm(a.T, y)
    return fns


def bench(fns, reps):
    times = {k: [] for k in fns}
    for fn in fns.values():  # warm-up: page in outputs, build thread pools
        fn()
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--shapes", default="nano,small")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--kinds", default="fwd,wgrad")
    args = ap.parse_args()
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, ISA {_C.cpu_isa()}, reps {args.reps}")
    print(
        f"{'shape':<10} {'kind':<6} {'dtype':<5} {'contender':<12} {'ms':>9} {'GFLOP/s':>8}"
        f" {'ours vs':>8}"
    )
    gen = torch.Generator().manual_seed(0)
    for shape in args.shapes.split(","):
        experts, k, n, rows = SHAPES[shape]
        bs = batch_sizes(experts, rows, gen)
        flops = 2.0 * rows * k * n
        for dname in args.dtypes.split(","):
            dt = DTYPES[dname]
            a = torch.randn(rows, k, generator=gen).to(dt)
            b = torch.randn(experts, k, n, generator=gen).to(dt)
            y = torch.randn(rows, n, generator=gen).to(dt)
            for kind in args.kinds.split(","):
                t = bench(contenders(kind, a, b, y, bs, threads), args.reps)
                for name, sec in t.items():
                    ratio = t[name] / t["nemocore"]
                    print(
                        f"{shape:<10} {kind:<6} {dname:<5} {name:<12} {sec * 1e3:9.1f}"
                        f" {flops / sec / 1e9:8.1f} {ratio:7.2f}x"
                    )
            del a, b, y


if __name__ == "__main__":
    main()
