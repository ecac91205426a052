#!/usr/bin/env bash
# Slow-client resilience: slowloris, slow body and slow read (slowhttptest) against
# `relevo demo`, while a probe client checks every 0.5 s that others are still served;
# then the RSS of relevo under 5,000 concurrent slow clients.
#   bench/slow.sh [seconds per attack, default 40]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-40}
PORT=${PORT:-18180}
OUT=${OUT:-/tmp/relevo-slow}
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"   # 3,000-5,000 sockets each side
cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
"$ROOT/target/release/relevo" demo --listen "127.0.0.1:$PORT" --threads 1 2>"$OUT/relevo.log" &
PID=$!
trap 'kill $PID 2>/dev/null' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" -H 'Host: demo.test' && break; sleep 0.1; done

probe() {  # probe SECONDS NAME: one request every 0.5 s; counts answers other than 200
    local end=$((SECONDS + $1)) ok=0 bad=0 code
    while ((SECONDS < end)); do
        code=$(curl -s -m 3 -o /dev/null -w '%{http_code}' -H 'Host: demo.test' "http://127.0.0.1:$PORT/") || true
        if [[ $code == 200 ]]; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
        sleep 0.5
    done
    echo "$2: probe answered $ok/$((ok + bad)) requests with 200"
}

attack() {  # attack NAME slowhttptest-options...
    local name=$1; shift
    slowhttptest "$@" -l "$SECS" -u "http://localhost:$PORT/" -p 3 -g -o "$OUT/$name" >"$OUT/$name.txt" 2>&1 &
    local sp=$!
    sleep 3
    probe $((SECS - 5)) "$name"
    wait $sp || true
    grep -E "service available|closed|pending|connected" "$OUT/$name.txt" | tail -4 | sed "s/^/  $name: /" || true
    echo "  $name: relevo RSS $(awk '/VmRSS/ {print $2, $3}' /proc/$PID/status), peak $(awk '/VmHWM/ {print $2, $3}' /proc/$PID/status)"
}

attack slowloris -H -c 3000 -i 5 -r 500
attack slowbody -B -c 3000 -i 5 -r 500 -s 8192
attack slowread -X -c 1000 -r 200 -w 512 -y 1024 -n 5 -z 32 -k 3
python3 "$ROOT/bench/slow_clients.py" "$PORT" "$PID" 5000
