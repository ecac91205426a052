#!/usr/bin/env python3
"""Holds N slow clients against a proxy and prints the proxy's RSS.

Each client sends an incomplete request head (slowloris), then one more header line
every few seconds. Usage: slow_clients.py PORT PID [N]
"""
import socket, sys, time

port, pid = int(sys.argv[1]), int(sys.argv[2])
n = int(sys.argv[3]) if len(sys.argv) > 3 else 5000

def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

base = rss_kib()
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n")
    socks.append(s)
time.sleep(2)
for s in socks:
    try:
        s.sendall(b"X-More: 1\r\n")
    except OSError:
        pass
time.sleep(1)
peak = rss_kib()
print(f"slow clients: {n}  proxy RSS before: {base} KiB  with them: {peak} KiB  "
      f"growth per client: {(peak - base) / n:.2f} KiB")
for s in socks:
    s.close()
