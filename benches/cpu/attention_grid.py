"""Decode attention on the CPU over issue 6's grid: batch 1/8/32/64 x context 1k/8k/32k, GQA
32/8, head dim 128, fp32, one decode step of one layer with 64 decoded tokens per sample,
against SDPA over the replicated cache (kernels.md 5.3). Prints a markdown table with the bytes
the bifurcated step reads (the context once, each sample's own tokens) and the ratio.

    python benches/cpu/attention_grid.py [--max-replicated-gb 5]

Cells whose replicated cache would not fit in --max-replicated-gb are skipped and say so.
"""

from __future__ import annotations

import argparse

import torch

from nemocore.bench import run_case
from nemocore.bench.cases import bifurcated_decode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-replicated-gb", type=float, default=5.0)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        "| batch | context | KV bytes read (bifurcated) | nemocore (ms) | GB/s "
        "| SDPA replicated (ms) | speedup |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for ctx in (1024, 8192, 32768):
        for b in (1, 8, 32, 64):
            replicated_gb = b * 8 * (ctx + 64) * 128 * 4 * 2 / 1e9
            case = bifurcated_decode(b, ctx)
            if replicated_gb > args.max_replicated_gb:
                print(
                    f"| {b} | {ctx} | {case.bytes_moved / 1e6:.1f} MB | | | not run: the "
                    f"replicated cache needs {replicated_gb:.1f} GB | |"
                )
                continue
            r = run_case(case, rounds=2, min_time_s=0.3)
            print(
                f"| {b} | {ctx} | {case.bytes_moved / 1e6:.1f} MB | {r.ours_ms:.2f} | "
                f"{r.ours_gbps:.1f} | {r.peer_ms:.2f} | {r.speedup:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
