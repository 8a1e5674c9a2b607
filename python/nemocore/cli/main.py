"""``nemocore``: the command-line entry point.

nemocore --version
nemocore doctor            what was built, and what this machine can run
nemocore bench             our kernels against their peers, side by side
nemocore demo              a short tour of what works today
"""

from __future__ import annotations

import argparse
import sys

from nemocore._version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nemocore",
        description="Kernels, models and decoding for hybrid Mamba-Transformer MoE models.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `nemocore COMMAND --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"nemocore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    doctor = sub.add_parser(
        "doctor",
        help="report what was built (CPU/CUDA kernels, Rust core) and what runs here",
        description="Reports the compiled parts of nemocore and what this machine can run: CPU "
        "kernels and the SIMD level they use, CUDA kernels and their architectures, the Rust "
        "core, and the GPUs torch can see. Exits with 1 when a compiled part is missing.",
    )
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")

    bench = sub.add_parser(
        "bench",
        help="time our kernels against their peers and print the ratios",
        description="Times each kernel and the peer it replaces on the same inputs, in "
        "alternating rounds, and prints medians and the speedup (peer time / our time; above "
        "1 means nemocore is faster). Machines are noisy: compare ratios, not single times.",
    )
    bench.add_argument(
        "--device",
        choices=["cpu", "cuda", "all"],
        default="all",
        help="which cases to run (default: all that this machine supports)",
    )
    bench.add_argument(
        "-k",
        "--filter",
        default="",
        metavar="TEXT",
        help="only cases whose name or shape contains TEXT",
    )
    bench.add_argument("--quick", action="store_true", help="shorter timing (noisier)")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bench.add_argument("--markdown", metavar="FILE", help="also write a markdown table")
    bench.add_argument("--plot", metavar="FILE.png", help="also draw the speedups to a PNG")

    demo = sub.add_parser(
        "demo",
        help="a short tour of what nemocore does today",
        description="Checks the kernels against their references, decodes "
        "with a rolling state, trains a few steps and times one kernel.",
    )
    demo.add_argument("--quick", action="store_true", help="smaller sizes")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "doctor":
        from nemocore.cli.doctor import run_doctor

        return run_doctor(as_json=args.json)
    if args.command == "bench":
        from nemocore.cli.bench import run_bench

        return run_bench(
            device=args.device,
            text=args.filter,
            quick=args.quick,
            json_path=args.json,
            markdown_path=args.markdown,
            plot_path=args.plot,
        )
    if args.command == "demo":
        from nemocore.cli.demo import run_demo

        return run_demo(quick=args.quick)
    build_parser().print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
