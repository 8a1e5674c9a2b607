"""Writes the markdown summary of a benches/gpu/run.sh run: the test result, the ceilings and
every benchmark with its speedup and its fraction of the copy bandwidth."""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="the run's output folder")
    out = Path(parser.parse_args().out)
    lines = ["# nemocore GPU run", ""]
    if (out / "machine.txt").exists():
        lines += ["```", (out / "machine.txt").read_text().strip(), "```", ""]
    if (out / "tests.xml").exists():
        suite = ET.parse(out / "tests.xml").getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        a = suite.attrib
        lines.append(
            f"tests: {a.get('tests')} run, {a.get('failures')} failed, "
            f"{a.get('errors')} errors, {a.get('skipped')} skipped"
        )
    ceilings = {}
    if (out / "ceilings.json").exists():
        ceilings = json.loads((out / "ceilings.json").read_text())
        lines.append(
            f"ceilings: copy {ceilings['copy_GBps']:.0f} GB/s, bf16 matmul "
            f"{ceilings['bf16_matmul_TFLOPs']:.0f} TFLOP/s"
        )
    if (out / "bench.json").exists():
        results = json.loads((out / "bench.json").read_text())
        lines += [
            "",
            "| op | shape | nemocore (ms) | peer | peer (ms) | speedup | % copy BW |",
            "|---|---|---:|---|---:|---:|---:|",
        ]
        for r in results:
            frac = (
                f"{100 * r['ours_gbps'] / ceilings['copy_GBps']:.0f}%"
                if r["ours_gbps"] and ceilings
                else ""
            )
            lines.append(
                f"| {r['name']} | {r['shape']} | {r['ours_ms']:.3f} | {r['peer']} | "
                f"{r['peer_ms']:.3f} | {r['speedup']:.2f}x | {frac} |"
            )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
