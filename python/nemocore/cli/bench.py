"""``nemocore bench``: our kernels against their peers, side by side, as ratios."""

from __future__ import annotations

import json
import sys

import torch

from nemocore.bench import CASES, BenchResult, run_case


def select_cases(device: str, text: str):
    have_cuda = torch.cuda.is_available()
    chosen = []
    for case in CASES:
        if device != "all" and case.device != device:
            continue
        if case.device == "cuda" and not have_cuda:
            continue
        if text and text not in case.name and text not in case.shape:
            continue
        chosen.append(case)
    return chosen


def markdown_table(results: list[BenchResult]) -> str:
    lines = [
        "| op | shape | device | nemocore (ms) | nemocore rate | peer | peer (ms) | speedup |",
        "|---|---|---|---:|---:|---|---:|---:|",
    ]
    for r in results:
        rate = (
            f"{r.ours_gflops:.1f} GFLOP/s"
            if r.ours_gflops
            else (f"{r.ours_gbps:.1f} GB/s" if r.ours_gbps else "")
        )
        lines.append(
            f"| {r.name} | {r.shape} | {r.device} | {r.ours_ms:.3f} | {rate} | {r.peer} | "
            f"{r.peer_ms:.3f} | {r.speedup:.2f}x |"
        )
    return "\n".join(lines)


def plot_speedups(results: list[BenchResult], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise SystemExit(f"--plot needs matplotlib: pip install matplotlib ({e})") from e
    labels = [f"{r.name}\n{r.shape} ({r.device})" for r in results]
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(results) + 1.5))
    bars = ax.barh(
        range(len(results)),
        [r.speedup for r in results],
        color=["#4c9a2a" if r.speedup >= 1 else "#c0392b" for r in results],
    )
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(results)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("speedup over the peer (peer time / nemocore time, median)")
    ax.set_title("nemocore kernels vs peers")
    for bar, r in zip(bars, results):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {r.speedup:.2f}x",
            va="center",
            fontsize=8,
        )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_bench(
    device: str = "all",
    text: str = "",
    quick: bool = False,
    json_path: str | None = None,
    markdown_path: str | None = None,
    plot_path: str | None = None,
) -> int:
    cases = select_cases(device, text)
    if not cases:
        print("no benchmark case matches (GPU cases need a visible GPU)", file=sys.stderr)
        return 1
    print(
        f"nemocore bench: {len(cases)} cases, {torch.get_num_threads()} CPU threads"
        + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    )
    results = []
    for i, case in enumerate(cases, 1):
        print(
            f"  [{i}/{len(cases)}] {case.name} {case.shape} ({case.device}) ...", end="", flush=True
        )
        r = run_case(case, rounds=2 if quick else 3, min_time_s=0.1 if quick else 0.5)
        results.append(r)
        print(f" {r.speedup:.2f}x", flush=True)
        if case.device == "cuda":
            torch.cuda.empty_cache()
    print()
    table = markdown_table(results)
    print(table)
    if json_path:
        with open(json_path, "w") as f:
            json.dump([r.as_dict() for r in results], f, indent=2)
    if markdown_path:
        with open(markdown_path, "w") as f:
            f.write(table + "\n")
    if plot_path:
        plot_speedups(results, plot_path)
        print(f"\nplot written to {plot_path}")
    return 0
