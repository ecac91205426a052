#!/usr/bin/env bash
# relevo and nginx as TLS front ends, HTTP/2 and HTTP/1.1 (h2load --h1), side by side:
# requests per second and the proxy's CPU time per request (utime + stime from
# /proc/PID/stat over the run). Both proxies run one worker pinned to CPU 1; h2load and
# the nginx backend share CPU 0.
#   bench/h2load.sh [REQUESTS] [CLIENTS] [STREAMS]     (defaults 20000 20 10)
# Needs h2load (Debian nghttp2-client), nginx, openssl, python3, taskset.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-20000}
C=${2:-20}
M=${3:-10}
BIN=${BIN:-$ROOT/target/release/relevo}
[[ -x $BIN ]] || cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
WORK=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BACKEND=$(free_port); NGINX=$(free_port); RELEVO=$(free_port); PLAIN=$(free_port)
TICK=$(getconf CLK_TCK)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -subj /CN=127.0.0.1 \
    -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null

mkdir -p "$WORK/backend/logs" "$WORK/front/logs"
cat >"$WORK/backend/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; error_log stderr error; pid backend.pid;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000;
  server { listen 127.0.0.1:$BACKEND; location / { return 200 "hello from the backend\n"; } } }
CONF
cat >"$WORK/front/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; error_log stderr error; pid front.pid;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000; http2_max_concurrent_streams 100;
  upstream b { server 127.0.0.1:$BACKEND; keepalive 64; }
  server { listen 127.0.0.1:$NGINX ssl http2;
    ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem;
    location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
cat >"$WORK/relevo.toml" <<CONF
listen = "127.0.0.1:$PLAIN"
access_log = false
log_level = "warn"
[tls]
listen = "127.0.0.1:$RELEVO"
certs = [{ cert = "$WORK/cert.pem", key = "$WORK/key.pem" }]
[hosts]
"127.0.0.1" = ["127.0.0.1:$BACKEND"]
CONF

taskset -c 0 nginx -p "$WORK/backend" -c nginx.conf & pids+=($!)
taskset -c 1 nginx -p "$WORK/front" -c nginx.conf & NGINX_PID=$!; pids+=($NGINX_PID)
taskset -c 1 "$BIN" run --threads 1 --config "$WORK/relevo.toml" 2>"$WORK/relevo.log" & RELEVO_PID=$!; pids+=($RELEVO_PID)
for port in $BACKEND $NGINX $RELEVO; do
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

printf '%-7s %-9s %10s %12s %12s\n' proxy protocol req/s cpu_ms cpu_us/req
for proto in h2 h1; do
    mode=()
    [[ $proto == h1 ]] && mode=(--h1)
    streams=$M
    [[ $proto == h1 ]] && streams=1
    for name in nginx relevo; do
        if [[ $name == nginx ]]; then pid=$NGINX_PID port=$NGINX; else pid=$RELEVO_PID port=$RELEVO; fi
        # A short warm-up: handshakes, upstream connections, allocator.
        taskset -c 0 h2load "${mode[@]}" -n 1000 -c "$C" "https://127.0.0.1:$port/" >/dev/null 2>&1 || true
        before=$(cpu_ticks "$pid")
        out=$(taskset -c 0 h2load "${mode[@]}" -n "$N" -c "$C" -m "$streams" "https://127.0.0.1:$port/" 2>&1)
        after=$(cpu_ticks "$pid")
        ok=$(sed -n 's/.* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
        rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
        [[ ${ok:-0} -gt 0 ]] || { echo "$name $proto: h2load failed:"; echo "$out"; exit 1; }
        cpu_ms=$(( (after - before) * 1000 / TICK ))
        printf '%-7s %-9s %10s %12s %12s\n' "$name" "$proto" "$rps" "$cpu_ms" \
            "$(python3 -c "print(f'{$cpu_ms * 1000 / $ok:.1f}')")"
    done
done
