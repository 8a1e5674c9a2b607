"""The `nemocore` command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nemocore.bench.cases import conv_update
from nemocore.bench.runner import run_case
from nemocore.cli.bench import markdown_table, plot_speedups
from nemocore.cli.doctor import collect, openmp_runtimes
from nemocore.cli.main import build_parser, main


def nemocore_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nemocore.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_version():
    out = nemocore_cli("--version")
    assert out.returncode == 0
    assert out.stdout.startswith("nemocore ")


def test_help_lists_commands():
    text = build_parser().format_help()
    for command in ("doctor", "bench", "demo"):
        assert command in text


def test_doctor_reports_every_part():
    out = nemocore_cli("doctor")
    assert out.returncode == 0, out.stdout + out.stderr
    for label in ("CPU kernels", "CUDA kernels", "Rust core", "OpenMP", "GPU"):
        assert label in out.stdout


def test_doctor_json():
    out = nemocore_cli("doctor", "--json")
    report = json.loads(out.stdout)
    assert report["kernels"]["cpu_isa_active"] in ("base", "avx2", "avx512")
    assert "version" in report["rust"]


def test_one_openmp_runtime_shared_with_torch():
    collect()  # loads _C
    runtimes = openmp_runtimes()
    assert len(runtimes) <= 1, runtimes


def test_bench_table_and_plot(tmp_path):
    result = run_case(conv_update(2, 64, 4), rounds=1, min_time_s=0.01)
    assert result.ours_ms > 0
    assert result.peer_ms > 0
    assert "causal_conv1d_update" in markdown_table([result])
    png = tmp_path / "speedups.png"
    plot_speedups([result], str(png))
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_bench_with_no_matching_case_fails(capsys):
    assert main(["bench", "-k", "no-such-kernel"]) == 1


@pytest.mark.slow
def test_demo_quick_runs():
    out = nemocore_cli("demo", "--quick")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "done." in out.stdout
