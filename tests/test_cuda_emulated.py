"""The CUDA kernels' own source, run on the CPU through a small CUDA emulator.

CI has no GPU, so besides compiling the CUDA code with nvcc it compiles csrc/cuda/*.cu with the
host compiler against tests/cuda_emu/emu.h (threads as coroutines, real barriers) and checks
every kernel path against a float64 reference (tests/cuda_emu/causal_conv1d_emu.cpp for conv1d,
tests/cuda_emu/ssd_emu.cpp for the SSD forward scan and decode step, ssd_bwd_emu.cpp for the SSD
backward, tests/cuda_emu/moe_emu.cpp for the MoE grouped GEMMs and permute kernels,
moe_sm90_emu.cpp for the Hopper (wgmma) grouped GEMM, tests/cuda_emu/attention_emu.cpp for
decode attention, tests/cuda_emu/quant_emu.cpp for NVFP4, its Hopper nvfp4_mm included).
"reverse" schedules threads in reverse order; "eager" runs cp.async copies when issued
instead of as late as possible, which catches a stage refilled while an MMA still reads it. Needs
g++ and the CUDA headers (the nvidia-cuda-* wheels of requirements/dev.txt, or a toolkit).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EMU = ROOT / "tests" / "cuda_emu"


def cuda_include_dir() -> Path | None:
    candidates = [
        Path(p) / "include" for p in (os.environ.get("CUDA_HOME"), "/usr/local/cuda") if p
    ]
    spec = importlib.util.find_spec("nvidia")
    for base in (spec.submodule_search_locations if spec else []) or []:
        candidates += [Path(base) / "cu13" / "include", Path(base) / "cuda_runtime" / "include"]
    return next((c for c in candidates if (c / "cuda_bf16.h").exists()), None)


def compile_emulated(source: str, out: Path) -> Path:
    """Compiles tests/cuda_emu/<source> (which includes the real csrc/cuda kernels) for the host."""
    include = cuda_include_dir()
    if shutil.which("g++") is None or include is None:
        pytest.skip("needs g++ and the CUDA headers")
    binary = out / Path(source).stem
    # The emulator's cuda/common/launch.cuh shadows the real one: -I order matters.
    compile_cmd = [
        "g++", "-std=c++17", "-O1", "-w", "-x", "c++",
        f"-I{EMU}", f"-I{ROOT / 'csrc'}", f"-I{ROOT / 'csrc' / 'include'}", f"-I{include}",
        str(EMU / source), "-o", str(binary),
    ]  # fmt: skip
    subprocess.run(compile_cmd, check=True, timeout=600)
    return binary


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "order"),
    [
        ("causal_conv1d_emu.cpp", "forward"),  # conv1d: fwd, bwd and update, every path
        ("ssd_emu.cpp", "forward"),  # SSD: forward scan and decode step vs a float64 recurrence
        ("ssd_emu.cpp", "reverse"),  # threads scheduled in reverse: order dependences show up
        ("ssd_bwd_emu.cpp", "forward"),  # SSD backward: every gradient vs a float64 reverse sweep
        ("ssd_bwd_emu.cpp", "reverse"),
        ("moe_emu.cpp", "forward"),  # MoE: grouped GEMMs (emulated mma fragments), permute
        ("moe_emu.cpp", "reverse"),
        ("moe_sm90_emu.cpp", "forward"),  # Hopper grouped GEMM: lazy cp.async/wgmma, swizzle
        ("moe_sm90_emu.cpp", "reverse"),
        ("attention_emu.cpp", "forward"),  # decode attention: split-KV partials, LSE merge
        ("attention_emu.cpp", "reverse"),
        ("token_bitmask_emu.cpp", "forward"),  # grammar token bitmask: awkward vocabs, strides
        ("token_bitmask_emu.cpp", "reverse"),
        ("quant_emu.cpp", "forward"),  # NVFP4 quantize/dequantize vs the CPU kernels, nvfp4_mm
        ("quant_emu.cpp", "reverse"),  # (portable and Hopper)
        ("quant_emu.cpp", "eager"),  # copies when issued: a stage refilled too early shows up
        ("moe_sm90_emu.cpp", "eager"),
    ],
)
def test_cuda_kernels_under_emulation(tmp_path, source, order):
    binary = compile_emulated(source, tmp_path)
    flag = {"reverse": "EMU_REVERSE", "eager": "EMU_EAGER_COPIES"}.get(order)
    env = {**os.environ, flag: "1"} if flag else None
    run = subprocess.run(
        [str(binary), "quick"], capture_output=True, text=True, timeout=1200, env=env
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "OK (0 failures" in run.stdout
