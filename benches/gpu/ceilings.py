"""The two ceilings every GPU benchmark is read against (kernels.md 0): device-to-device copy
bandwidth (bytes read + written) and the bf16 matmul rate, measured in the same run."""

from __future__ import annotations

import argparse
import json

import torch


def _median_ms(fn, reps: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def copy_gbps(numel: int = 512 * 2**20) -> float:
    """Device-to-device copy of 2 GiB, bytes read + written."""
    src = torch.randn(numel, device="cuda", dtype=torch.float32)
    dst = torch.empty_like(src)
    return 2 * numel * 4 / _median_ms(lambda: dst.copy_(src)) / 1e6


def matmul_tflops(n: int = 8192) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    return 2 * n**3 / _median_ms(lambda: a @ b) / 1e9


def measure() -> dict:
    return {
        "copy_GBps": copy_gbps(),
        "bf16_matmul_TFLOPs": matmul_tflops(),
        "device": torch.cuda.get_device_name(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no GPU visible")
    result = measure()
    print(json.dumps(result, indent=2))
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
