"""MoE and LatentMoE layers end to end on the CPU, tokens per second at (about) equal active
FLOPs: Nemotron-3-Nano's MoE block (d 2688, 128 experts, top-6, f 1856, shared 3712) against
its LatentMoE version at l = d/4 (512 experts, top-24, same f), each run through nemocore's ops
and through the same layer's loop-over-experts torch version (``reference_forward``).

    python benches/cpu/moe_layers.py [--tokens 1024] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from nemocore.layers import MoE, MoEConfig


def _median_s(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    nano = MoEConfig(
        hidden_size=2688,
        n_routed_experts=128,
        num_experts_per_tok=6,
        moe_intermediate_size=1856,
        moe_shared_expert_intermediate_size=3712,
        routed_scaling_factor=2.5,
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.tokens} tokens")
    print(
        "| layer | experts / top-k | active GFLOP/token | nemocore tokens/s | loop tokens/s "
        "| speedup |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for name, config in (("MoE", nano), ("LatentMoE l=672", nano.latent(672))):
        torch.manual_seed(0)
        layer = MoE(config).eval()
        u = torch.randn(args.tokens, config.hidden_size)
        with torch.no_grad():
            ours = _median_s(lambda layer=layer, u=u: layer(u), args.reps)
            loop = _median_s(lambda layer=layer, u=u: layer.reference_forward(u), args.reps)
        print(
            f"| {name} | {config.n_routed_experts} / {config.num_experts_per_tok} | "
            f"{config.flops_per_token() / 1e9:.3f} | {args.tokens / ours:.0f} | "
            f"{args.tokens / loop:.0f} | {loop / ours:.2f}x |",
            flush=True,
        )
        del layer


if __name__ == "__main__":
    main()
