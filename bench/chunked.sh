#!/usr/bin/env bash
# The chunked scenario the shared harness lacks: two nginx backends answer every
# request with a chunked body (sub_filter on a 4 KiB page: the length is unknown, so
# nginx sends Transfer-Encoding: chunked), and nginx (the harness's proxy config) and
# relevo (its template) balance them, each pinned to one core with one worker. Per
# proxy: req/s, CPU µs per request (utime+stime from /proc/PID/stat over the run),
# peak RSS, and upstream connections opened per 1000 requests (conn/1k: TIME_WAIT
# sockets toward the backends after the run, which is 0 when every connection was
# reused), over ROUNDS rounds taken in turns.
#   bench/chunked.sh [ROUNDS=3] [CONNS=50] [DURATION=8]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-3}; CONNS=${2:-50}; DURATION=${3:-8}
BIN=$ROOT/target/release/relevo
cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
W=$(mktemp -d /tmp/relevo-chunked.XXXX)
head -c 4096 /dev/zero | tr '\0' 'a' > "$W/page.html"
cat > "$W/backends.conf" <<EOT
worker_processes 1; daemon off; pid $W/b.pid; error_log $W/b.err;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  default_type text/html;
  server { listen 127.0.0.1:29201; root $W; location / { sub_filter_once off; sub_filter 'aaaa' 'b1aa'; } }
  server { listen 127.0.0.1:29202; root $W; location / { sub_filter_once off; sub_filter 'aaaa' 'b2aa'; } }
}
EOT
sed -e "s|{threads}|1|; s|{nofile}|20000|; s|{rundir}|$W|g; s|{maxconn}|10000|; s|{backend1}|127.0.0.1:29201|; s|{backend2}|127.0.0.1:29202|; s|{keepalive}|1024|; s|{listen}|127.0.0.1:29210|" \
    "$ROOT/../shared/bench/conf/nginx-proxy.conf" > "$W/nginx-proxy.conf"
sed -e "s|{listen}|127.0.0.1:29211|; s|{threads}|1|; s|{maxconn}|10000|; s|{keepalive}|1024|; s|{backend1}|127.0.0.1:29201|; s|{backend2}|127.0.0.1:29202|" \
    "$ROOT/bench/relevo.toml.in" > "$W/relevo.toml"
taskset -c 0 nginx -c "$W/backends.conf" & BACK=$!
trap 'kill $BACK 2>/dev/null || true' EXIT
sleep 0.5
curl -sS -D - -o /dev/null http://127.0.0.1:29201/page.html | grep -qi '^transfer-encoding: chunked' \
    || { echo "backend does not answer chunked" >&2; exit 1; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
printf '%-7s %5s %9s %10s %9s %8s\n' proxy round req/s cpu_us/req rss_MiB conn/1k
for round in $(seq "$ROUNDS"); do
    for proxy in nginx relevo; do
        if [[ $proxy == nginx ]]; then
            taskset -c 1 nginx -c "$W/nginx-proxy.conf" & P=$!; PORT=29210
        else
            taskset -c 1 "$BIN" run --config "$W/relevo.toml" 2>"$W/relevo.err" & P=$!; PORT=29211
        fi
        for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/page.html" && break; sleep 0.1; done
        # The master of nginx forks the worker: measure the worker.
        WORKER=$(pgrep -P "$P" || true); PID=${WORKER:-$P}
        wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$PORT/page.html" > /dev/null
        tw0=$(ss -tan state time-wait '( dport = :29201 or dport = :29202 )' | tail -n +2 | wc -l)
        c0=$(cpu "$PID")
        out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$PORT/page.html")
        c1=$(cpu "$PID")
        tw1=$(ss -tan state time-wait '( dport = :29201 or dport = :29202 )' | tail -n +2 | wc -l)
        req=$(echo "$out" | grep -oE '^ +[0-9]+ requests' | grep -oE '[0-9]+')
        rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
        rss=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$PID/status")
        tick=$(getconf CLK_TCK)
        awk -v p=$proxy -v r=$round -v rps="$rps" -v c=$((c1 - c0)) -v t="$tick" -v n="$req" -v rss="$rss" -v tw=$((tw1 - tw0)) \
            'BEGIN { printf "%-7s %5d %9.0f %10.2f %9s %8.2f\n", p, r, rps, c / t * 1e6 / n, rss, (tw < 0 ? 0 : tw) * 1000 / n }'
        kill "$P"; wait "$P" 2>/dev/null || true
    done
done
