"""The CUDA SSD kernels' own source (csrc/cuda/ssd_fwd.cu, ssd_update.cu) run on the CPU
through the CUDA emulator of tests/cuda_emu, against a float64 recurrence
(tests/cuda_emu/ssd_emu.cpp); see tests/test_cuda_emulated.py for how and why."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from test_cuda_emulated import cuda_include_dir

ROOT = Path(__file__).resolve().parents[1]
EMU = ROOT / "tests" / "cuda_emu"


@pytest.mark.slow
@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_cuda_ssd_kernels_under_emulation(tmp_path, order):
    include = cuda_include_dir()
    if shutil.which("g++") is None or include is None:
        pytest.skip("needs g++ and the CUDA headers")
    binary = tmp_path / "ssd_emu"
    # The emulator's cuda/common/launch.cuh shadows the real one: -I order matters.
    compile_cmd = [
        "g++", "-std=c++17", "-O1", "-w", "-x", "c++",
        f"-I{EMU}", f"-I{ROOT / 'csrc'}", f"-I{ROOT / 'csrc' / 'include'}", f"-I{include}",
        str(EMU / "ssd_emu.cpp"), "-o", str(binary),
    ]  # fmt: skip
    subprocess.run(compile_cmd, check=True, timeout=600)
    env = {"EMU_REVERSE": "1"} if order == "reverse" else {}
    run = subprocess.run(
        [str(binary), "quick"], capture_output=True, text=True, timeout=1200, env=env
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "OK (0 failures" in run.stdout
