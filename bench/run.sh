#!/usr/bin/env bash
# Benchmarks relevo beside nginx and HAProxy with the shared harness.
#   bench/run.sh [compare.sh options...]     e.g. bench/run.sh --quick
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARNESS=${HARNESS:-$ROOT/../shared/bench/compare.sh}
cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
exec "$HARNESS" \
    --candidate "$ROOT/target/release/relevo run --config {config}" \
    --candidate-config "$ROOT/bench/relevo.toml.in" \
    --candidate-name relevo "$@"
