#!/usr/bin/env bash
# Shared by the tests/vtc scripts (varnishtest has no include): makes the relevo that
# tests/varnishtest.rs started reload the host table the script has just written to
# ${relevo_conf}, and waits until that table is live. The new table must map
# "reload.test" to a dead backend (127.0.0.1:1): an unknown host before the reload
# (403), a backend that cannot be reached after it (502).
# Usage, in a script: shell {bash ${relevo_reload} ${relevo_pid} ${relevo_port}}
set -u
pid=$1 port=$2
kill -HUP "$pid" || exit 1

# The status code relevo answers to GET / for reload.test, or nothing.
status() {
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return
    printf 'GET / HTTP/1.1\r\nHost: reload.test\r\nConnection: close\r\n\r\n' >&3
    local line=""
    IFS= read -r -t 5 line <&3
    exec 3<&-
    echo "${line:9:3}"
}

for _ in $(seq 200); do
    s=$(status)
    case "$s" in
        403) sleep 0.05 ;;
        502) exit 0 ;;
        *)
            echo "reload.test answered '$s': 403 before the reload, 502 after expected" >&2
            exit 1
            ;;
    esac
done
echo "relevo did not take the new configuration within 10 s" >&2
exit 1
