"""Several workers: event loops on their own threads, accepting on the same
port, sharing the backends (probed and scraped once), the overload queue (in
tier order across loops), the metrics (merged), the drain."""

import json
import os
import signal
import socket
import threading
import time

from harness import (HOST, RawBackend, Reader, access_log, build_request, chat_body, check,
                     connect, finish, free_port, metric_value, metrics, request, start_pitot,
                     start_sim, stop_pitot_clean, wait_for)


def worker_threads(pid):
    """The names of the process's worker threads ("pitot/1", ...)."""
    names = []
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
            names.append(f.read().strip())
    return sorted(n for n in names if n.startswith("pitot/"))


def t_workers_share_one_port():
    sim = start_sim("--slots", "64", "--tokens-per-s", "2000")
    pitot = start_pitot([sim.port], extra=["--workers", "3"])
    assert "3 workers" in pitot.stderr(), pitot.stderr()
    # worker 0 on the main thread, the others on theirs (started just after
    # the line that says pitot listens)
    assert wait_for(lambda: worker_threads(pitot.p.pid) == ["pitot/1", "pitot/2"]), \
        worker_threads(pitot.p.pid)
    n = 60
    for _ in range(n):
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2))
        assert r.status == 200 and r.complete
    m = metrics(pitot.port)
    per = [metric_value(m, "pitot_connections_accepted_total", worker=str(i)) for i in range(3)]
    assert all(v is not None for v in per), per
    # the client connections of the requests and of the scrapes so far
    assert sum(per) >= n, per
    assert sum(1 for v in per if v > 0) >= 2, "the kernel gave one worker everything: %s" % per
    # merged: one series per label set, the sum of every worker's
    assert metric_value(m, "pitot_requests_total", code="200") == n, m
    assert metric_value(m, "pitot_completion_tokens_total") == 2 * n, m
    assert metric_value(m, "pitot_requests_in_flight") == 0, m
    assert len(access_log(pitot, n)) == n
    stop_pitot_clean(pitot)


def t_backends_probed_once():
    """Health checks and scrapes run once per process, not once per worker."""
    be = RawBackend()
    try:
        pitot = start_pitot([be.port], extra=["--workers", "4"],
                            config="health:\n  interval: 200ms\n"
                                   "routing:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\n"
                                   "  scrape_stale: 1s\n")
        time.sleep(2.0)
        n = len(be.probe_conns)  # pitot's own connections: probes and scrapes
        # 2 s at 200 ms: about 10 health checks and 10 scrapes (+ /v1/models);
        # four workers probing each would be over 80
        assert 10 <= n <= 40, "%d probe connections in 2 s" % n
        stop_pitot_clean(pitot)
    finally:
        be.close()


class GatedBackend(RawBackend):
    """Answers each request only when the test opens the gate for it, and
    records the order in which requests arrived (their X-Req header)."""

    def __init__(self):
        self.order = []
        self.gates = {}
        self.lock = threading.Lock()
        RawBackend.__init__(self, self.respond_gated)

    def respond_gated(self, head, body):
        name = [l.split(":", 1)[1].strip() for l in head.split("\r\n")
                if l.lower().startswith("x-req:")]
        name = name[0] if name else "?"
        with self.lock:
            self.order.append(name)
            ev = self.gates.setdefault(name, threading.Event())
        ev.wait(20)
        return RawBackend.json_reply(b'{"ok":true}')

    def release(self, name):
        with self.lock:
            self.gates.setdefault(name, threading.Event()).set()


def t_queue_order_across_workers():
    """Requests held on different loops leave in tier order, FIFO within a
    tier, whichever loop frees the capacity."""
    be = GatedBackend()
    premium = "sk-premium-workers-1"
    admin = free_port()  # metrics read there: only the test's requests are client connections
    cfg = ("workers: 2\nadmin_listen: 127.0.0.1:%d\n" % admin +
           "health:\n  interval: 60s\n"
           "routing:\n  scrape_interval: 60s\n  scrape_timeout: 1s\n  scrape_stale: 120s\n"
           "backends:\n  - url: http://%s:%d\n    flavor: openai\n    capacity: 1\n"
           "tiers:\n  - name: default\n    max_wait: 30s\n"
           "  - name: premium\n    priority: 10\n    max_wait: 30s\n    keys: [\"%s\"]\n"
           % (HOST, be.port, premium))
    socks = []
    try:
        pitot = start_pitot([], config=cfg)

        def send(name, key=None):
            hdr = [("X-Req", name)] + ([("Authorization", "Bearer " + key)] if key else [])
            s = connect(pitot.port, timeout=30)
            s.sendall(build_request("POST", "/v1/chat/completions", chat_body(stream=False),
                                    hdr, pitot.port))
            socks.append((name, s))

        def depth():
            return metric_value(metrics(admin), "pitot_queue_depth") or 0

        send("hog")
        assert wait_for(lambda: be.order == ["hog"], 5), be.order
        names = []
        for i in range(4):
            for name, key in (("d%d" % i, None), ("p%d" % i, premium)):
                send(name, key)
                names.append(name)
                assert wait_for(lambda: depth() == len(names), 5), (names, depth())
        # held on both loops (new connections are spread by the kernel)
        m = metrics(admin)
        per = [metric_value(m, "pitot_connections_accepted_total", worker=str(i)) or 0
               for i in range(2)]
        assert sum(per) == 9 and all(v > 0 for v in per), "the 9 requests' connections: %s" % per
        # each answer frees the one slot: the next is the queue's head
        be.release("hog")
        want = ["hog", "p0", "p1", "p2", "p3", "d0", "d1", "d2", "d3"]
        for k in range(1, len(want)):
            assert wait_for(lambda: len(be.order) > k, 10), (be.order, want)
            be.release(be.order[k])
        for name, s in socks:
            r = Reader(s).read()
            assert r.status == 200, (name, r.status)
        assert be.order == want, be.order
        m = metrics(admin)
        assert metric_value(m, "pitot_queue_wait_seconds_count", tier="premium") == 4, m
        assert metric_value(m, "pitot_queue_wait_seconds_count", tier="default") == 4, m
        assert metric_value(m, "pitot_queue_depth") == 0, m
        stop_pitot_clean(pitot)
    finally:
        for _, s in socks:
            s.close()
        for name in ["hog"] + ["%s%d" % (t, i) for t in "dp" for i in range(4)]:
            be.release(name)
        be.close()


def t_drain_reaches_every_worker():
    sim = start_sim("--slots", "32", "--tokens-per-s", "20")
    admin = free_port()
    pitot = start_pitot([sim.port], extra=["--workers", "2"],
                        config="admin_listen: 127.0.0.1:%d\n" % admin)
    socks = []

    def per_worker():
        return [metric_value(metrics(admin), "pitot_connections_accepted_total",
                             worker=str(i)) or 0 for i in range(2)]
    try:
        # 8 streams, and more while the kernel put them all on one worker
        # (SO_REUSEPORT hashes each connection: 8 on one, 1 time in 128)
        while len(socks) < 8 or (min(per_worker()) == 0 and len(socks) < 24):
            s = connect(pitot.port, timeout=30)
            s.sendall(build_request("POST", "/v1/chat/completions", chat_body(max_tokens=20),
                                    None, pitot.port))
            socks.append(s)
            if len(socks) >= 8:
                assert wait_for(lambda: sum(per_worker()) == len(socks), 5), per_worker()
        readers = [Reader(s) for s in socks]
        for rd in readers:
            assert rd.read(head_only=True).status == 200
        per = per_worker()
        assert sum(per) == len(socks) and all(v > 0 for v in per), \
            "streams on one worker only: %s" % per
        pitot.p.send_signal(signal.SIGTERM)
        assert wait_for(lambda: "draining" in pitot.stderr(), 5), pitot.stderr()
        # no new connections on either worker's listener
        time.sleep(0.2)
        refused = 0
        for _ in range(4):
            try:
                c = socket.create_connection((HOST, pitot.port), timeout=2)
                c.close()
            except OSError:
                refused += 1
        assert refused == 4, "%d of 4 new connections refused while draining" % refused
        # every stream on every worker finishes whole
        events = []
        for rd, s in zip(readers, socks):
            rd.s.settimeout(10)
            # the rest of the stream: the chunks until the terminating one
            n = 0
            while True:
                line = rd._line()
                if line is None:
                    break
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    rd._line()
                    break
                rd._take(size + 2)
                n += 1
            events.append(n)
        assert all(n > 0 for n in events), events
        assert pitot.p.wait(15) == 0, pitot.stderr()
        assert "drained, exiting" in pitot.stderr(), pitot.stderr()
        log = access_log(pitot, 8)
        assert len(log) == 8 and all(l["outcome"] == "ok" for l in log), log
    finally:
        for s in socks:
            s.close()


check("workers accept on one port; metrics merged; connections per worker", t_workers_share_one_port)
check("backends are probed and scraped once, not once per worker", t_backends_probed_once)
check("the overload queue releases in tier order across workers", t_queue_order_across_workers)
check("a drain reaches every worker: streams finish, listeners close", t_drain_reaches_every_worker)
finish()
