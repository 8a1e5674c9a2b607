#!/usr/bin/env bash
# Run HERE before the device call: the GPU machine has no Rust toolchain, so build the Rust
# core as an abi3 wheel (one wheel serves its Python 3.12; built against this machine's glibc
# 2.36, older than the GPU image's) into .carry/, which the device tool
# carries (`carry: [".carry"]`) and benches/gpu/run.sh packages instead of running cargo.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
eval "$(bash "$ROOT/scripts/dev" shell)" 2>/dev/null || true
rm -rf "$ROOT/.carry" && mkdir -p "$ROOT/.carry"
maturin build --release --locked -m "$ROOT/rust/nemocore-py/Cargo.toml" --out "$ROOT/.carry" 2>&1 | tail -3
ls -l "$ROOT/.carry"
