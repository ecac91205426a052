#!/bin/bash
# Usage: bench/user_sys.sh BIN   (nginx, wrk, curl installed)
# User and system µs per request of a relevo binary, minor page faults, and context
# switches per 1000 requests (wrk -t1 -c50 for 8 s after a 2 s warm-up; relevo pinned
# to CPU 1, wrk and the two nginx backends of bench/callgrind/nginx.conf to CPU 0).
# /proc/PID/stat counts 10 ms ticks: compare runs of the same length.
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$1
W=$(mktemp -d); sed "s|/tmp/cg|$W|g" "$HERE/callgrind/nginx.conf" > $W/nginx.conf
taskset -c 0 nginx -c $W/nginx.conf & NG=$!
taskset -c 1 $BIN run --config "$HERE/callgrind/relevo.toml" 2>/dev/null & P=$!
for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:29110/ && break; sleep 0.1; done
taskset -c 0 wrk -t1 -c50 -d2s http://127.0.0.1:29110/ > /dev/null
sample() {  # utime stime minflt voluntary nonvoluntary
    echo "$(awk '{print $14, $15, $10}' /proc/$P/stat) $(awk '/^voluntary/ {print $2}' /proc/$P/status) $(awk '/^nonvoluntary/ {print $2}' /proc/$P/status)"
}
read -r U0 S0 F0 V0 N0 < <(sample)
taskset -c 0 wrk -t1 -c50 -d8s http://127.0.0.1:29110/ > $W/wrk.out
read -r U1 S1 F1 V1 N1 < <(sample)
kill $P $NG; wait 2>/dev/null
R=$(grep -oE '^ +[0-9]+ requests' $W/wrk.out | grep -oE '[0-9]+')
TCK=$(getconf CLK_TCK)
echo "$(basename $BIN) requests=$R user_us=$(( (U1-U0)*1000000/TCK/R )) sys_us=$(( (S1-S0)*1000000/TCK/R )) minflt=$((F1-F0)) voluntary_cs/1k=$(( (V1-V0)*1000/R )) involuntary_cs/1k=$(( (N1-N0)*1000/R ))"
