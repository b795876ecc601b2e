"""Reload under load: 200 streams running back to back through pitot while
its configuration file is changed and SIGHUP sent six times: a backend
added, a limit changed, a backend removed, an invalid file, the routing
policy changed, and the first file again. No stream is cut and no token
lost (pitot-sim --seq), new requests follow the new configuration, the
invalid file is refused with its FILE:LINE, a backend added gets requests,
one removed gets none (and leaves /metrics once its streams ended), and
pitot's descriptors come back to their level."""

import os
import random
import re
import signal
import tempfile
import threading
import time

from faults import fds_settled, h, sim_stats, stream

STREAMS = 200
LONG_URI = "/v1/models?pad=" + "x" * 2000


def conf(ports, extra=""):
    return ("backends:\n" + "".join("  - url: http://%s:%d\n    name: b%d\n" % (h.HOST, p, i)
                                     for i, p in ports) + extra)


class Pitot:
    def __init__(self, text):
        self.file = tempfile.NamedTemporaryFile("w", prefix="pitot-", suffix=".yaml",
                                                delete=False).name
        self.write(text)
        self.port = h.free_port()
        self.proc = h.Proc([os.path.join(h.BUILD, "pitot"), "-c", self.file, "--listen",
                            "%s:%d" % (h.HOST, self.port), "--access-log", "/dev/null"],
                           "pitot", r"listening on")
        self.proc.port = self.port

    def write(self, text):
        with open(self.file, "w") as f:
            f.write(text)

    def reloads(self):
        text = h.metrics(self.port)
        return sum(h.metric_value(text, "pitot_config_reloads_total", result=r) or 0
                   for r in ("success", "failure"))

    def reload(self, text):
        """Writes text, sends SIGHUP, waits until pitot counted the reload;
        returns what pitot wrote on stderr meanwhile (a line repeated within
        the log's repeat limit is held back: "configuration reloaded" may
        be missing)."""
        before = self.proc.stderr()
        n = self.reloads()
        self.write(text)
        self.proc.p.send_signal(signal.SIGHUP)
        ok = h.wait_for(lambda: self.reloads() > n, timeout=10.0)
        assert ok, "the reload was never counted: " + self.proc.stderr()[-1000:]
        time.sleep(1.0)  # the rest of its lines; streams begin and end under it
        return self.proc.stderr()[len(before):]


def uri_status(port):
    return h.request(port, "GET", LONG_URI, timeout=10.0).status


def t_reload_under_load():
    sims = [h.start_sim("--seq", "--slots", "256", "--tokens-per-s", "10",
                        "--prefill-tokens-per-s", "5000") for _ in range(3)]
    a, b, c = [(i, s.port) for i, s in enumerate(sims)]
    first = conf([a, b])
    p = Pitot(first)
    pid = p.proc.p.pid
    assert h.wait_for(lambda: h.metric_value(h.metrics(p.port), "pitot_backend_up") == 2, 10)
    assert uri_status(p.port) == 200
    time.sleep(5.0)
    fds0, list0 = fds_settled(p.proc.p.pid)

    stop = threading.Event()
    results, lock = [], threading.Lock()

    def client(i):
        rng = random.Random(i)
        while not stop.is_set():
            st = stream(p.port, rng.choice(("chat", "completions", "messages")),
                        max_tokens=rng.randint(15, 40), timeout=60.0)
            with lock:
                results.append(st)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(STREAMS)]
    for t in threads:
        t.start()
    h.wait_for(lambda: sum(sim_stats(s.port)["busy"] for s in sims) >= STREAMS * 0.9, 15)
    busy = sum(sim_stats(s.port)["busy"] for s in sims)
    log = []

    # 1: backend c added
    out = p.reload(conf([a, b, c]))
    log.append(out)
    assert "that takes a restart" not in out, out
    assert h.wait_for(lambda: sim_stats(c[1])["requests"] > 0, 10), "c never got a request"
    # 2: a limit changed: a 2 KB request target is refused from now on
    out = p.reload(conf([a, b, c], "limits:\n  max_uri_bytes: 1k\n"))
    log.append(out)
    assert uri_status(p.port) == 414, "max_uri_bytes: 1k not applied"
    # 3: backend a removed
    out = p.reload(conf([b, c], "limits:\n  max_uri_bytes: 1k\n"))
    log.append(out)
    assert "reload: backend b0 removed" in out, out
    time.sleep(0.5)
    n_a = sim_stats(a[1])["requests"]
    time.sleep(2.0)
    assert sim_stats(a[1])["requests"] == n_a, "a removed but still given new requests"
    # 4: an invalid file: refused with FILE:LINE, nothing changes
    bad = conf([b, c], "limits:\n  max_uri_bytes: 1k\n  max_body_bytes: banana\n")
    out = p.reload(bad)
    log.append(out)
    line = len(bad.splitlines())
    assert re.search(r"reload: %s:%d: " % (re.escape(p.file), line), out), out
    assert uri_status(p.port) == 414, "the invalid file changed the limits"
    # 5: routing policy changed
    out = p.reload(conf([b, c], "limits:\n  max_uri_bytes: 1k\nrouting:\n  policy: round_robin\n"))
    log.append(out)
    # 6: the first file again
    out = p.reload(first)
    log.append(out)
    assert uri_status(p.port) == 200, "max_uri_bytes back to its default not applied"

    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join(90)
        assert not t.is_alive(), "a client is still running 90 s after the end"
    text = h.metrics(p.port)
    ok = h.metric_value(text, "pitot_config_reloads_total", result="success")
    failed = h.metric_value(text, "pitot_config_reloads_total", result="failure")
    bad_streams = [s for s in results if not s.whole()]
    print("reload: %d streams (%d running at the first reload), %d whole, %d not; "
          "tokens %d; reloads counted: success %s, failure %s"
          % (len(results), busy, len(results) - len(bad_streams), len(bad_streams),
             sum(len(s.tokens) for s in results), ok, failed))
    assert not bad_streams, "%d streams cut or short: %s" % (len(bad_streams),
                                                            bad_streams[0].describe())
    assert ok == 5 and failed == 1, (ok, failed)
    # a and b in the end: c, removed, has left /metrics with its last stream
    assert h.wait_for(lambda: h.metric_value(h.metrics(p.port), "pitot_backend_up") == 2, 10), \
        h.metrics(p.port)
    time.sleep(5.0)  # idle upstream connections close after 4 s
    fds1, list1 = fds_settled(pid, want=fds0, timeout=20)
    print("reload: pitot open fds %d before, %d after" % (fds0, fds1))
    assert fds1 == fds0, "fds %d -> %d: %s" % (fds0, fds1, sorted(set(list1) - set(list0)))
    h.stop_pitot_clean(p.proc)


h.check("reload under load: 200 streams through 6 SIGHUPs (backend added and removed, limits, "
        "policy, an invalid file): none cut, no token lost, new requests follow, FILE:LINE "
        "logged, fds back", t_reload_under_load)
h.finish()
