#!/usr/bin/env bash
# Benchmarks relevo beside nginx and HAProxy with the shared harness.
#   bench/run.sh [compare.sh options...]          e.g. bench/run.sh --quick
#   ALGOS=1 bench/run.sh ...                      also relevo with round-robin and p2c
#   BEFORE=/path/to/old/relevo bench/run.sh ...   also an older relevo binary (A/B in one run)
#   ADMIN=1 bench/run.sh ...                      also relevo with the admin listener on
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARNESS=${HARNESS:-$ROOT/../shared/bench/compare.sh}
cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
BIN=$ROOT/target/release/relevo
args=(--candidate "$BIN run --config {config}" --candidate-config "$ROOT/bench/relevo.toml.in" --candidate-name relevo)
if [[ ${ALGOS:-0} == 1 ]]; then
    # The default template balances with least-conn (the default since issue 8).
    for algo in round-robin p2c; do
        args+=(--candidate "$BIN run --config {config}" --candidate-config "$ROOT/bench/relevo-$algo.toml.in"
               --candidate-name "relevo-$algo")
    done
fi
if [[ ${ADMIN:-0} == 1 ]]; then
    args+=(--candidate "$BIN run --config {config}" --candidate-config "$ROOT/bench/relevo-admin.toml.in"
           --candidate-name relevo-admin)
fi
if [[ -n ${BEFORE:-} ]]; then
    args+=(--candidate "$BEFORE run --config {config}" --candidate-config "$ROOT/bench/relevo.toml.in"
           --candidate-name relevo-before)
fi
exec "$HARNESS" "${args[@]}" "$@"
