#!/bin/bash
# Usage: bench/user_sys.sh BIN   (nginx, wrk, curl installed)
# user and system µs per request of a relevo binary (wrk -t1 -c50 8 s, relevo pinned to cpu 1)
BIN=$1
W=$(mktemp -d); sed "s|/tmp/cg|$W|g" /work/main/bench/callgrind/nginx.conf > $W/nginx.conf
taskset -c 0 nginx -c $W/nginx.conf & NG=$!
taskset -c 1 $BIN run --config /work/main/bench/callgrind/relevo.toml 2>/dev/null & P=$!
for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:29110/ && break; sleep 0.1; done
taskset -c 0 wrk -t1 -c50 -d2s http://127.0.0.1:29110/ > /dev/null
read -r U0 S0 F0 < <(awk "{print \$14, \$15, \$10}" /proc/$P/stat)
taskset -c 0 wrk -t1 -c50 -d8s http://127.0.0.1:29110/ > $W/wrk.out
read -r U1 S1 F1 < <(awk "{print \$14, \$15, \$10}" /proc/$P/stat)
kill $P $NG; wait 2>/dev/null
R=$(grep -oE '^ +[0-9]+ requests' $W/wrk.out | grep -oE '[0-9]+')
TCK=$(getconf CLK_TCK)
echo "$(basename $BIN) requests=$R user_us=$(( (U1-U0)*1000000/TCK/R )) sys_us=$(( (S1-S0)*1000000/TCK/R )) minflt=$((F1-F0))"
