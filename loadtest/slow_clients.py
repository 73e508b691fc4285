#!/usr/bin/env python3
"""Slow clients against the gateway (issue #11): opens N connections that send a partial request
head and never finish it, then reports the gateway's RSS and open descriptors while they are
held, whether the API still answers, and how many the gateway closed within 12 s (header
timeout, or 503 beyond --max-connections).

    expressway gateway --no-auth --brokers 127.0.0.1:1 --listen 127.0.0.1:9931 --metrics-listen 127.0.0.1:9932 &
    ulimit -n 20000; python3 loadtest/slow_clients.py 9931 19000 $(pgrep -f 'listen 127.0.0.1:9931')
    curl -s localhost:9932/metrics | grep ^expressway_http
"""
import socket, sys, time, json, urllib.request, resource, os
port = int(sys.argv[1]); n = int(sys.argv[2]); pid = int(sys.argv[3])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return l.split()[1] + " kB"
def fds(): return len(os.listdir(f"/proc/{pid}/fd"))
def api():
    t=time.time()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=b"{}", headers={"Content-Type":"application/x-amz-json-1.0","X-Amz-Target":"AWSStepFunctions.ListStateMachines"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r: return r.status, round((time.time()-t)*1000,1)
    except Exception as e: return str(e)[:60], round((time.time()-t)*1000,1)
print("before", rss(), fds(), api())
socks=[]; refused=0
t0=time.time()
for i in range(n):
    try:
        s=socket.create_connection(("127.0.0.1",port), timeout=5)
        s.send(b"POST / HTTP/1.1\r\nHost: x\r\n")  # partial head, never finished
        socks.append(s)
    except Exception as e:
        refused+=1
print(f"opened {len(socks)} partial-header connections in {time.time()-t0:.1f}s (connect errors {refused})")
time.sleep(2)
print("holding", rss(), "fds", fds(), "api", api())
time.sleep(10)
closed = 0
for s in socks:
    s.setblocking(False)
    try:
        d = s.recv(100)
        if d == b"" or d.startswith(b"HTTP/1.1 503") or d.startswith(b"HTTP/1.1 408"): closed += 1
    except BlockingIOError: pass
    except Exception: closed += 1
print("after 12 s: closed by the gateway", closed, "of", len(socks), rss(), "fds", fds(), "api", api())
