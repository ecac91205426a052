#!/bin/bash
# Usage: bench/active.sh BIN   (nginx, wrk, curl installed; needs 20,000 open files)
HERE=$(cd "$(dirname "$0")" && pwd)
# Peak RSS of relevo with 10,000 active clients: wrk -t2 -c10000 -d10s, two nginx backends.
BIN=$1
W=$(mktemp -d); sed "s|/tmp/cg|$W|g" $HERE/callgrind/nginx.conf > $W/nginx.conf
ulimit -n 20000
nginx -c $W/nginx.conf & NG=$!
source "$HERE/relevo_conf.sh"; relevo_conf $W/relevo.toml "max_connections = 20000"
$BIN run --config $W/relevo.toml 2>$W/err & P=$!
for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:29110/ && break; sleep 0.1; done
wrk -t2 -c10000 -d10s --timeout 20s http://127.0.0.1:29110/ > $W/wrk.out 2>&1
echo "$(basename $BIN): $(grep VmHWM /proc/$P/status) $(grep -E 'Requests/sec|Socket errors|Non-2xx' $W/wrk.out | tr '\n' ' ')"
kill $P $NG; wait 2>/dev/null
