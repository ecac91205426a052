#!/bin/bash
# Usage: bench/syscalls.sh BIN [small|large] [CONNS]   (strace, nginx, wrk, curl installed)
# System calls per request: strace -c on relevo during a 5 s wrk run (relevo pinned to
# CPU 1, wrk and two nginx backends to CPU 0). small = a 128-byte body from memory,
# large = a 64 KiB file; CONNS defaults to 50.
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$1; BODY=${2:-small}; CONNS=${3:-50}
W=$(mktemp -d)
if [[ $BODY == large ]]; then
    head -c 65536 /dev/zero | tr '\0' x > $W/big; URL=/big
    cat > $W/nginx.conf <<EOT
worker_processes 1;
daemon off;
pid $W/nginx.pid;
error_log $W/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:29101; root $W; }
  server { listen 127.0.0.1:29102; root $W; }
}
EOT
else
    sed "s|/tmp/cg|$W|g" $HERE/callgrind/nginx.conf > $W/nginx.conf; URL=/
fi
source "$HERE/relevo_conf.sh"; relevo_conf $W/relevo.toml "max_idle_per_backend = 1024"
taskset -c 0 nginx -c $W/nginx.conf & NG=$!
taskset -c 1 $BIN run --config $W/relevo.toml 2>/dev/null & P=$!
for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:29110$URL && break; sleep 0.1; done
taskset -c 0 wrk -t1 -c$CONNS -d2s http://127.0.0.1:29110$URL > /dev/null
strace -c -f -p $P -o $W/strace.out & S=$!
sleep 0.5
taskset -c 0 wrk -t1 -c$CONNS -d5s http://127.0.0.1:29110$URL > $W/wrk.out
kill -INT $S; sleep 0.5; kill $P $NG; wait 2>/dev/null
R=$(grep -oE '^ +[0-9]+ requests' $W/wrk.out | grep -oE '[0-9]+')
echo "$(basename $BIN) $BODY c=$CONNS requests=$R"
awk -v r=$R 'NR>2 && $4 ~ /^[0-9]+$/ {e=($5 ~ /^[0-9]+$/)?$5:0; printf "%-14s %.2f/req  errors %.2f/req\n", $NF, $4/r, e/r}' $W/strace.out | head -8
