#!/bin/bash
# Usage: bench/syscalls.sh BIN   (strace, nginx, wrk, curl installed): system calls per request
HERE=$(cd "$(dirname "$0")" && pwd)
# syscalls per request: strace -c on relevo during a 5 s wrk run
BIN=$1
W=$(mktemp -d); sed "s|/tmp/cg|$W|g" $HERE/callgrind/nginx.conf > $W/nginx.conf
nginx -c $W/nginx.conf & NG=$!
$BIN run --config $HERE/callgrind/relevo.toml 2>/dev/null & P=$!
for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:29110/ && break; sleep 0.1; done
strace -c -f -p $P -o $W/strace.out & S=$!
sleep 0.5
wrk -t1 -c50 -d5s http://127.0.0.1:29110/ > $W/wrk.out
kill -INT $S; sleep 0.5; kill $P $NG; wait 2>/dev/null
R=$(grep -oE '^ +[0-9]+ requests' $W/wrk.out | grep -oE '[0-9]+')
echo "requests=$R"; awk -v r=$R 'NR>2 && $4 ~ /^[0-9]+$/ {printf "%-16s %.2f/req\n", $NF, $4/r}' $W/strace.out | head -12; cat $W/strace.out | head -20
