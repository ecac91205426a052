#!/usr/bin/env bash
# Instructions per request of nginx as the proxy, under callgrind, in the set-up of
# run.sh (the same two nginx backends, wrk -t1 -c50 for 10 s): the yardstick for
# relevo's count. nginx runs as the harness configures it (../shared/bench/conf/
# nginx-proxy.conf: one worker, upstream keep-alive), in one process
# (`master_process off`), so callgrind sees the worker.
#   bench/callgrind/nginx.sh
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
CONF=${HARNESS_CONF:-$HERE/../../../shared/bench/conf/nginx-proxy.conf}
WORK=$(mktemp -d /tmp/nginx-callgrind.XXXX)
mkdir -p "$WORK/b"
sed "s|/tmp/cg|$WORK/b|g" "$HERE/nginx.conf" > "$WORK/backends.conf"
sed -e 's/{threads}/1/; s/{nofile}/20000/; s/{maxconn}/4096/; s/{keepalive}/1024/' \
    -e "s|{rundir}|$WORK|g; s/{backend1}/127.0.0.1:29101/; s/{backend2}/127.0.0.1:29102/" \
    -e 's/{listen}/127.0.0.1:29110/; s/^worker_processes 1;/worker_processes 1;\nmaster_process off;/' \
    "$CONF" > "$WORK/proxy.conf"
nginx -c "$WORK/backends.conf" & BACKENDS=$!
valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
    nginx -c "$WORK/proxy.conf" 2>"$WORK/valgrind.err" &
VP=$!
trap 'kill $BACKENDS 2>/dev/null || true; kill $VP 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:29110/ && break; sleep 0.2; done
wrk -t1 -c50 -d10s http://127.0.0.1:29110/ > "$WORK/wrk.out"
# nginx stops at SIGQUIT (graceful) as well; SIGINT is its fast stop.
kill -INT $VP; wait $VP 2>/dev/null || true
REQ=$(grep -oE '^ +[0-9]+ requests' "$WORK/wrk.out" | grep -oE '[0-9]+')
IR=$(callgrind_annotate "$WORK/callgrind.out" 2>/dev/null | grep -m1 "PROGRAM TOTALS" | grep -oE '^[0-9,]+' | tr -d ,)
echo "nginx (proxy): requests=$REQ instructions=$IR per-request=$((IR / REQ))"
