#!/bin/bash
# Usage: bench/switches.sh BIN: user and system time (10 ms ticks, x10 = µs per request) and context switches per 1000 requests, wrk -t1 -c50 8 s
BIN=$1
W=$(mktemp -d); sed "s|/tmp/cg|$W|g" /work/main/bench/callgrind/nginx.conf > $W/nginx.conf
taskset -c 0 nginx -c $W/nginx.conf & NG=$!
taskset -c 1 $BIN run --config /work/main/bench/callgrind/relevo.toml 2>/dev/null & P=$!
for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:29110/ && break; sleep 0.1; done
taskset -c 0 wrk -t1 -c50 -d2s http://127.0.0.1:29110/ > /dev/null
V0=$(awk '/^voluntary/ {print $2}' /proc/$P/status); N0=$(awk '/^nonvoluntary/ {print $2}' /proc/$P/status)
read -r U0 S0 < <(awk '{print $14, $15}' /proc/$P/stat)
taskset -c 0 wrk -t1 -c50 -d8s http://127.0.0.1:29110/ > $W/wrk.out
V1=$(awk '/^voluntary/ {print $2}' /proc/$P/status); N1=$(awk '/^nonvoluntary/ {print $2}' /proc/$P/status)
read -r U1 S1 < <(awk '{print $14, $15}' /proc/$P/stat)
R=$(grep -oE '^ +[0-9]+ requests' $W/wrk.out | grep -oE '[0-9]+')
NGW=$(pgrep -P $NG | head -1)
kill $P $NG; wait 2>/dev/null
echo "$(basename $BIN) req=$R user=$(( (U1-U0)*10000/R )) sys=$(( (S1-S0)*10000/R )) vol_cs/kreq=$(( (V1-V0)*1000/R )) invol/kreq=$(( (N1-N0)*1000/R ))"
