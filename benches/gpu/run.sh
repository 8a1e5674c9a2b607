#!/usr/bin/env bash
# The one-call GPU check, for the lent H200 (Python 3.12, torch 2.11+cu130, nvcc 13.0, no Rust
# toolchain, no network). From the repository root, after benches/gpu/prepare.sh here:
#
#   device run:  bash benches/gpu/run.sh      (carry [".carry"], timeout_s ~540)
#
# 1. builds nemocore with CUDA kernels for sm_90, packaging the carried abi3 Rust wheel;
# 2. runs the whole test suite, GPU tests included;
# 3. measures the device ceilings (copy bandwidth, bf16 matmul) and runs the GPU benchmarks;
# 4. writes summary.md, results.json, the logs and a plot under $OUT (last lines: the summary).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$ROOT/build/gpu-out}"
mkdir -p "$OUT"
cd "$ROOT"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
status=0

step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv 2>&1 | tee "$OUT/machine.txt"
"$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/machine.txt"
command -v nvcc >/dev/null && nvcc --version | tail -1 | tee -a "$OUT/machine.txt"

step "build (NEMOCORE_CUDA=1, sm_90, prebuilt Rust core)"
WHEEL="$(ls "$ROOT"/.carry/nemocore_rs-*.whl 2>/dev/null | head -1)"
if [[ -z "$WHEEL" ]]; then
  echo "no .carry/nemocore_rs-*.whl: run benches/gpu/prepare.sh here first and carry .carry"
  exit 2
fi
export NEMOCORE_CUDA=1 NEMOCORE_RS_PREBUILT="$WHEEL" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)"
if ! "$PY" -m pip install --no-build-isolation --no-deps --no-index -v . >"$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"
  echo "BUILD FAILED (full log: build.log)"
  exit 1
fi
grep -E "nemocore: |nemocore [0-9]" "$OUT/build.log" | head -5
cd /tmp  # import the installed package, not the source tree
"$PY" -m nemocore.cli.main doctor | tee "$OUT/doctor.txt"

step "tests (GPU tests included)"
"$PY" -m pytest "$ROOT/tests" -q -p no:cacheprovider -x --junitxml="$OUT/tests.xml" \
  -o addopts="-ra" >"$OUT/tests.log" 2>&1 || status=1
tail -5 "$OUT/tests.log"

step "ceilings and GPU benchmarks"
"$PY" "$ROOT/benches/gpu/ceilings.py" --json "$OUT/ceilings.json" || status=1
"$PY" -m nemocore.cli.main bench --device cuda --json "$OUT/bench.json" \
  --markdown "$OUT/bench.md" --plot "$OUT/bench.png" >"$OUT/bench.log" 2>&1 || status=1
tail -3 "$OUT/bench.log"

step "summary"
"$PY" "$ROOT/benches/gpu/summarize.py" --out "$OUT" | tee "$OUT/summary.md"
exit $status
