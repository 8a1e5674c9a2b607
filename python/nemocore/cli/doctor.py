"""``nemocore doctor``: what was built, and what this machine can run."""

from __future__ import annotations

import json
import os
import platform
import sys

import torch

from nemocore import _native
from nemocore._version import __version__


def openmp_runtimes() -> list[str]:
    """The OpenMP runtimes mapped into this process (one is right: _C shares torch's)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libgomp" in line or "libiomp" in line}
    except OSError:
        return []
    return sorted(paths)


def collect() -> dict:
    report: dict = {
        "nemocore": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else [],
    }
    try:
        report["kernels"] = dict(_native.kernels().build_info())
        report["kernels"]["openmp_runtimes"] = openmp_runtimes()
    except ImportError as e:
        report["kernels"] = {"error": str(e)}
    try:
        report["rust"] = dict(_native.rust().build_info())
    except ImportError as e:
        report["rust"] = {"error": str(e)}
    return report


def _lines(report: dict) -> list[tuple[str, str, bool]]:
    """(label, text, ok) rows of the human-readable report."""
    rows = [
        ("nemocore", report["nemocore"], True),
        ("python", f"{report['python']} ({report['platform']})", True),
        ("torch", f"{report['torch']}, {report['torch_threads']} CPU threads", True),
    ]
    k = report["kernels"]
    if "error" in k:
        rows.append(("CPU kernels", k["error"], False))
    else:
        omp = k["openmp_runtimes"]
        rows.append(
            (
                "CPU kernels",
                f"built with {k['compiler']}; variants "
                f"{', '.join(k['cpu_isas_compiled'])}; running {k['cpu_isa_active']} "
                f"(CPU has: {k['cpu_features']})",
                True,
            )
        )
        rows.append(
            (
                "OpenMP",
                "on, sharing torch's runtime"
                if len(omp) <= 1
                else f"{len(omp)} runtimes loaded (threads may fight): {', '.join(omp)}",
                k["openmp"] and len(omp) <= 1,
            )
        )
        if k["cuda"]:
            rt = k["cuda_runtime_version"]
            rows.append(
                (
                    "CUDA kernels",
                    f"compiled for {k['cuda_archs']} (CUDA runtime {rt // 1000}.{rt % 1000 // 10})",
                    True,
                )
            )
            families = {
                "causal_conv1d": True,
                "ssd_fwd": k.get("cuda_ssd_fwd", False),
                "ssd_bwd": k.get("cuda_ssd_bwd", False),
                "ssd_update": k.get("cuda_ssd_update", False),
                "moe": k.get("cuda_moe", False),
            }
            built = [name for name, ok in families.items() if ok]
            missing = [name for name, ok in families.items() if not ok]
            text = ", ".join(built) + (f" (CPU only: {', '.join(missing)})" if missing else "")
            rows.append(("CUDA ops", text, True))
        else:
            rows.append(
                (
                    "CUDA kernels",
                    "not built (no CUDA compiler at build time, or NEMOCORE_CUDA=0)",
                    True,
                )
            )
    r = report["rust"]
    if "error" in r:
        rows.append(("Rust core", r["error"], False))
    else:
        rows.append(
            ("Rust core", f"{r['version']} ({r['profile']}, {r['target']}, {r['rustc']})", True)
        )
    gpus = report["gpus"]
    rows.append(("GPU", ", ".join(gpus) if gpus else "none visible", True))
    return rows


def run_doctor(as_json: bool = False) -> int:
    report = collect()
    rows = _lines(report)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        width = max(len(label) for label, _, _ in rows)
        color = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None
        for label, text, ok in rows:
            mark = "ok " if ok else "!! "
            if color:
                mark = f"\033[32m{mark}\033[0m" if ok else f"\033[31m{mark}\033[0m"
            print(f"{mark}{label:<{width}}  {text}")
    return 0 if all(ok for _, _, ok in rows) else 1
