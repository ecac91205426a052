#!/usr/bin/env bash
# Instructions per request of a relevo binary, under callgrind (repeatable whatever
# else the machine does): two nginx backends (ports 29101, 29102), relevo on 29110,
# wrk -t1 -c50 for 10 s, all instructions of the process / requests served.
#   bench/callgrind/run.sh target/release/relevo [relevo.toml|relevo-round-robin.toml]
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(realpath "$1"); CONF=$HERE/${2:-relevo.toml}
WORK=$(mktemp -d /tmp/relevo-callgrind.XXXX)
sed "s|/tmp/cg|$WORK|g" "$HERE/nginx.conf" > "$WORK/nginx.conf"
nginx -c "$WORK/nginx.conf" & NGINX=$!
trap 'kill $NGINX 2>/dev/null || true' EXIT
valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" "$BIN" run --config "$CONF" 2>"$WORK/valgrind.err" &
VP=$!
for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:29110/ && break; sleep 0.2; done
wrk -t1 -c50 -d10s http://127.0.0.1:29110/ > "$WORK/wrk.out"
kill -TERM $VP; wait $VP 2>/dev/null || true
REQ=$(grep -oE '^ +[0-9]+ requests' "$WORK/wrk.out" | grep -oE '[0-9]+')
IR=$(callgrind_annotate "$WORK/callgrind.out" 2>/dev/null | grep -m1 "PROGRAM TOTALS" | grep -oE '^[0-9,]+' | tr -d ,)
echo "$(basename "$BIN") $(basename "$CONF"): requests=$REQ instructions=$IR per-request=$((IR / REQ))"
