"""CPU NVFP4 quantize / dequantize throughput against its peers and the copy ceiling, all timed
in one process (kernels.md 4.10 "CPU", 7).

Contenders for an (M, K) bf16 tensor (1D rowwise blocks, the RNE path; the 2D and SR paths of
nemocore are listed too):
    copy       ``x.clone()``: the memory ceiling (bytes read + written), allocating its output
               as the quantizer does; ``copy_`` into a preallocated buffer is listed too
    nemocore   ``nemocore.quant.nvfp4_quantize`` / ``.dequantize`` (C++ kernels, abs-max pass
               included)
    torchao    torchao 0.18 ``NVFP4Tensor.to_nvfp4`` / ``.dequantize`` (its CPU path)
    torch      ``nemocore.ref.quant`` (the pure-PyTorch reference)
GB/s counts the bytes a kernel must move: quantize reads the input (2 B/elem for bf16) and
writes codes (0.5 B) + scales (1/16 B); dequantize reads those and writes bf16. Medians of
``--reps`` runs, contenders interleaved so machine noise hits them alike; the fastest run is
listed too (on a shared machine it shows what a contender does when nothing else runs).

    python benches/cpu/quant_bench.py [--rows 4096] [--cols 4096] [--reps 5] [--no-peers]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from nemocore import _native, quant
from nemocore.ref import quant as ref


def timed(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def contenders(x: torch.Tensor, peers: bool) -> dict[str, tuple]:
    """name -> (fn, bytes moved)."""
    n = x.numel()
    q_bytes = n * x.element_size() + n // 2 + n // 16
    d_bytes = n // 2 + n // 16 + n * x.element_size()
    t = quant.nvfp4_quantize(x)
    gen = torch.Generator().manual_seed(0)
    dst = torch.empty_like(x)
    runs = {
        "copy": (lambda: x.clone(), 2 * n * x.element_size()),
        "copy_ (preallocated)": (lambda: dst.copy_(x), 2 * n * x.element_size()),
        "nemocore quantize": (lambda: quant.nvfp4_quantize(x), q_bytes),
        "nemocore quantize 2D": (lambda: quant.nvfp4_quantize(x, block_2d=True), q_bytes),
        "nemocore quantize SR": (
            lambda: quant.nvfp4_quantize(x, stochastic_rounding=True, generator=gen),
            q_bytes,
        ),
        "nemocore dequantize": (lambda: t.dequantize(torch.bfloat16), d_bytes),
    }
    runs.update(kernel_only(x, t, q_bytes, d_bytes))
    if peers:
        from torchao.prototype.mx_formats import nvfp4_tensor as ao

        def ao_quantize():
            pts = ao.per_tensor_amax_to_scale(x.float().abs().amax())
            return ao.NVFP4Tensor.to_nvfp4(x, per_tensor_scale=pts)

        ao_t = ao_quantize()
        runs["torchao quantize"] = (ao_quantize, q_bytes)
        runs["torchao dequantize"] = (lambda: ao_t.dequantize(torch.bfloat16), d_bytes)
        runs["torch quantize"] = (lambda: ref.nvfp4_quantize(x), q_bytes)
        runs["torch dequantize"] = (lambda: ref.nvfp4_dequantize(t, torch.bfloat16), d_bytes)
    return runs


def kernel_only(x: torch.Tensor, t, q_bytes: int, d_bytes: int) -> dict[str, tuple]:
    """The C++ kernels into preallocated outputs (no page faults of fresh allocations, which
    cost as much as the kernels here): the numbers to hold against ``copy_``. The two passes
    of quantize are also timed alone (the abs-max pass counts the bytes it reads)."""
    kernels = _native.kernels()
    threads = torch.get_num_threads()
    bits = torch.zeros(1, dtype=torch.int32)
    qdata, scales, ts = torch.empty_like(t.qdata), torch.empty_like(t.scales), torch.zeros(())
    out = torch.empty_like(x)

    def abs_max():
        kernels.abs_max(x, bits, threads, 0)

    def quantize_pass():
        kernels.nvfp4_quantize(x, float(t.amax), 0, False, None, qdata, scales, ts, threads, 0)

    def quantize():
        abs_max()
        quantize_pass()

    def quantize_fused():  # what nemocore.quant.nvfp4_quantize calls on the CPU
        kernels.nvfp4_quantize(x, 0.0, 0, False, None, qdata, scales, ts, threads, 0, bits)

    def dequantize():
        kernels.nvfp4_dequantize(t.qdata, t.scales, t.tensor_scale, out, threads, 0)

    n = x.numel()
    return {
        "kernel quantize (one call, block maxima kept)": (quantize_fused, q_bytes),
        "kernel quantize (abs-max + quantize)": (quantize, q_bytes),
        "kernel abs-max pass alone": (abs_max, n * x.element_size()),
        "kernel quantize pass alone": (quantize_pass, q_bytes),
        "kernel dequantize": (dequantize, d_bytes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--no-peers", action="store_true", help="skip torchao and pure torch")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x = torch.randn(args.rows, args.cols, dtype=torch.bfloat16)
    runs = contenders(x, not args.no_peers)
    times = {name: [] for name in runs}
    for _ in range(args.reps):  # interleaved
        for name, (fn, _) in runs.items():
            times[name].append(timed(fn, 1))
    copy_gbs = runs["copy"][1] / statistics.median(times["copy"]) / 1e9
    copy_pre = (
        runs["copy_ (preallocated)"][1] / statistics.median(times["copy_ (preallocated)"]) / 1e9
    )
    print(f"{args.rows}x{args.cols} bf16, {torch.get_num_threads()} threads, reps={args.reps}")
    print("fraction of copy: against copy (clone) for allocating contenders, copy_ for kernels")
    print("| contender | median ms | min ms | GB/s | fraction of copy |\n|---|---|---|---|---|")
    for name, (_, nbytes) in runs.items():
        sec = statistics.median(times[name])
        gbs = nbytes / sec / 1e9
        ceiling = copy_pre if name.startswith(("kernel", "copy_")) else copy_gbs
        best = min(times[name]) * 1e3
        print(f"| {name} | {sec * 1e3:.2f} | {best:.2f} | {gbs:.2f} | {gbs / ceiling:.2f} |")


if __name__ == "__main__":
    main()
