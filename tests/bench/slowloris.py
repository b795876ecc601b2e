#!/usr/bin/env python3
"""Slow-head clients for make bench-slowloris: N connections that each send a
request head one byte every GAP seconds and never finish it. A connection
the server answers (408) or closes is opened again at once, so N stay open
for the whole run. Prints one JSON line of counters when it ends (SIGTERM,
SIGINT or --duration). Loopback only; a benchmark tool, not a test."""

import argparse
import errno
import json
import random
import resource
import selectors
import signal
import socket
import time

HEAD = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"X-Padding: " + b"a" * 65536)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--gap", type=float, default=3.0, help="seconds between two bytes of a head")
    ap.add_argument("--duration", type=float, default=3600.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.host not in ("127.0.0.1", "::1", "localhost"):
        ap.error("loopback addresses only")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.connections + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.connections + 1024), hard))
    rnd = random.Random(a.seed)
    sel = selectors.DefaultSelector()
    st = {"opened": 0, "answered": 0, "closed": 0, "refused": 0, "bytes": 0, "open_max": 0,
          "open": 0}
    conns = {}  # socket -> [next send time, bytes sent]
    stop = [False]

    def on_signal(*_):
        stop[0] = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def open_one(now):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect((a.host, a.port))
        except BlockingIOError:
            pass
        except OSError:
            st["refused"] += 1
            s.close()
            return
        conns[s] = [now + rnd.uniform(0.0, a.gap), 0]
        sel.register(s, selectors.EVENT_READ)
        st["opened"] += 1

    def drop(s):
        sel.unregister(s)
        del conns[s]
        s.close()

    end = time.monotonic() + a.duration
    now = time.monotonic()
    for _ in range(a.connections):
        open_one(now)
    while not stop[0] and now < end:
        due = min((c[0] for c in conns.values()), default=now + 0.1)
        for key, _ in sel.select(max(0.0, min(due - now, 0.1))):
            s = key.fileobj
            try:
                d = s.recv(4096)
            except OSError:
                d = b""
            if d.startswith(b"HTTP/1.1 408"):
                st["answered"] += 1
            elif not d:
                st["closed"] += 1
            drop(s)
        now = time.monotonic()
        for s, c in list(conns.items()):
            if c[0] > now:
                continue
            try:
                n = s.send(HEAD[c[1]:c[1] + 1])
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.ENOTCONN):
                    c[0] = now + 0.05  # still connecting
                    continue
                st["closed"] += 1
                drop(s)
                continue
            c[1] += n
            st["bytes"] += n
            c[0] = now + a.gap
        while len(conns) < a.connections and not stop[0]:
            open_one(now)
        st["open_max"] = max(st["open_max"], len(conns))
    st["open"] = len(conns)
    for s in list(conns):
        drop(s)
    print(json.dumps(st), flush=True)


if __name__ == "__main__":
    main()
