"""Misbehaving peers, all at once on one pitot, each backend serving a model
of its own: a stream that stalls, a slow one its client leaves, a backend
holding one request while two more wait in pitot's queue and leave, garbage
framing, a backend that accepts and never answers (and a client leaving it),
a /metrics of garbage and one that never ends, beside healthy streams. Each
ends the way the README says, is counted (metrics, access log), and pitot's
descriptors and memory come back to where they were."""

import collections
import socket
import threading
import time

from faults import fds_settled, h, rss_back, rss_kib, sim_stats, stream, upstream_errors


class MetricsBackend(h.ThreadedBackend):
    """Healthy to /health, answers every other request with a small chat
    body, and serves /metrics as `mode` says: "garbage" (200 with bytes that
    are no Prometheus text) or "endless" (200, chunked, a comment line every
    20 ms, never ending)."""

    def __init__(self, mode):
        self.mode = mode
        self.stop = threading.Event()
        self.scrapes = 0
        h.ThreadedBackend.__init__(self)

    def serve(self, c, conn_id):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                n = 0
                for line in head.split(b"\r\n")[1:]:
                    if line.lower().startswith(b"content-length:"):
                        n = int(line.split(b":", 1)[1])
                while len(buf) < n:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                buf = buf[n:]
                target = head.split(b" ")[1]
                if target == b"/health":
                    c.sendall(h.RawBackend.json_reply(b'{"status":"ok"}'))
                elif target == b"/metrics":
                    self.scrapes += 1
                    if self.mode == "garbage":
                        body = b"llamacpp:requests_processing {{{ \x00\xff not prometheus\n" * 40
                        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                    else:
                        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n")
                        while not self.stop.wait(0.02):
                            c.sendall(b"f\r\n# more to come\n\r\n")
                        return
                elif target.startswith(b"/v1/models"):
                    c.sendall(h.RawBackend.json_reply(b"{}", b"404 Not Found"))
                else:
                    c.sendall(h.RawBackend.json_reply(
                        b'{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,'
                        b'"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],'
                        b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}'))
        except OSError:
            return
        finally:
            c.close()


def config(ports):
    def be(name, port, flavor="auto"):
        return ("  - url: http://%s:%d\n    name: %s\n    flavor: %s\n    models: [%s]\n"
                % (h.HOST, port, name, flavor, name))
    return ("backends:\n" + "".join(be(n, p, f) for n, p, f in ports) + """
measure:
  stall: 500ms
  stall_timeout: 1500ms
upstream:
  header_timeout: 2s
routing:
  unknown_model: reject
  scrape_interval: 500ms
  scrape_timeout: 400ms
  eject:
    failures: 0
""")


def chat(port, model, stream_=True, max_tokens=8, close_after=None, timeout=30.0):
    """A chat request for model; close_after: close the socket that many
    seconds after sending (None: read the answer). Returns the Response or
    None."""
    s = h.connect(port, timeout)
    try:
        body = h.chat_body(max_tokens=max_tokens, stream=stream_)
        body["model"] = model
        s.sendall(h.build_request("POST", "/v1/chat/completions", body, h.canary_headers([]), port))
        if close_after is not None:
            time.sleep(close_after)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return None
        return h.Reader(s).read()
    finally:
        s.close()


def t_peers():
    good = h.start_sim("--seq", "--tokens-per-s", "200", "--slots", "16", "--model", "good")
    stall = h.start_sim("--seq", "--tokens-per-s", "200", "--stall-after", "3", "--stall-ms",
                        "60000", "--model", "stall")
    slow = h.start_sim("--seq", "--tokens-per-s", "2", "--model", "slow")
    tiny = h.start_sim("--seq", "--tokens-per-s", "10", "--slots", "1", "--model", "tiny")
    held = threading.Event()
    garbage = h.RawBackend(lambda head, body: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                                              b"Content-Length: 6\r\n\r\nhello")
    silent = h.RawBackend(lambda head, body: held.wait(60) and None)
    badm = MetricsBackend("garbage")
    endless = MetricsBackend("endless")
    backends = [("good", good.port, "auto"), ("stall", stall.port, "auto"),
                ("slow", slow.port, "auto"), ("tiny", tiny.port, "auto"),
                ("garbage", garbage.port, "openai"), ("silent", silent.port, "openai"),
                ("badmetrics", badm.port, "llamacpp"), ("endless", endless.port, "llamacpp")]
    try:
        pitot = h.start_pitot([], config=config(backends))
        pid = pitot.p.pid
        up = h.wait_for(lambda: h.metric_value(h.metrics(pitot.port), "pitot_backend_up") == 8,
                        timeout=10)
        assert up, h.metrics(pitot.port)
        fds0, list0 = fds_settled(pid)
        rss0 = rss_kib(pid)

        out = collections.defaultdict(list)
        lock = threading.Lock()

        def run(name, fn):
            r = fn()
            with lock:
                out[name].append(r)

        jobs = []
        jobs += [("good", lambda: stream(pitot.port, "chat", max_tokens=30, model="good"))] * 8
        jobs += [("stall", lambda: stream(pitot.port, "chat", max_tokens=30, model="stall"))] * 2
        jobs += [("slow", lambda: chat(pitot.port, "slow", max_tokens=30, close_after=1.5))] * 2
        jobs += [("garbage", lambda: chat(pitot.port, "garbage", stream_=False))] * 3
        jobs += [("silent", lambda: chat(pitot.port, "silent"))] * 2
        jobs += [("silent-left", lambda: chat(pitot.port, "silent", close_after=0.5))]
        jobs += [("badmetrics", lambda: chat(pitot.port, "badmetrics", stream_=False))] * 2
        jobs += [("endless", lambda: chat(pitot.port, "endless", stream_=False))] * 2
        # tiny has one slot: one stream takes it, two more wait in pitot's queue
        # and their clients leave while they wait
        tiny_first = threading.Thread(target=run, args=("tiny", lambda: chat(
            pitot.port, "tiny", max_tokens=25)))
        tiny_first.start()
        h.wait_for(lambda: sim_stats(tiny.port)["requests"] == 1, timeout=5)
        jobs += [("tiny-left", lambda: chat(pitot.port, "tiny", close_after=0.5))] * 2
        threads = [threading.Thread(target=run, args=j) for j in jobs]
        for t in threads:
            t.start()
        for t in threads + [tiny_first]:
            t.join(60)
            assert not t.is_alive(), "a client is still waiting after 60 s"
        held.set()

        n_sent = len(jobs) + 1
        assert all(s.whole() for s in out["good"]), [s.describe() for s in out["good"]]
        for s in out["stall"]:  # ended at stall_timeout: error event, no end
            assert s.cut_properly() and s.tokens == [0, 1, 2], s.describe()
        assert all(r.status == 502 for r in out["garbage"]), [r.status for r in out["garbage"]]
        assert all(r.status == 504 for r in out["silent"]), [r.status for r in out["silent"]]
        for name in ("badmetrics", "endless", "tiny"):
            assert all(r.status == 200 and r.complete for r in out[name]), \
                (name, [(r.status, r.body[:200]) for r in out[name]])

        lines = h.access_log(pitot, n_sent, timeout=10)
        got = collections.Counter((l["backend"], l["status"], l["outcome"], l["error"])
                                  for l in lines)
        print("peers: access log (backend, status, outcome, error): " +
              "; ".join("%s x%d" % (k, v) for k, v in sorted(got.items(), key=str)))
        assert len(lines) == n_sent, (len(lines), n_sent)
        for key, n in ((("stall", 200, "stall_timeout", "stall_timeout"), 2),
                       (("slow", 200, "client_cancel", "client_cancel"), 2),
                       (("silent", 0, "client_cancel", "client_cancel"), 1),
                       ((None, 0, "client_cancel", "client_cancel"), 2),  # left pitot's queue
                       (("garbage", 502, "upstream_error", "upstream_protocol"), 3),
                       (("silent", 504, "upstream_error", "upstream_timeout"), 2)):
            assert got[key] == n, (key, got[key])
        text = h.metrics(pitot.port)
        errs = upstream_errors(pitot.port)
        shed = h.metric_value(text, "pitot_shed_total", reason="client_gone") or 0
        cancels = h.metric_value(text, "pitot_client_cancels_total", backend="slow") or 0
        stalls = h.metric_value(text, "pitot_stream_stalls_total", backend="stall") or 0
        bad_scrapes = h.metric_value(text, "pitot_backend_scrapes_total", backend="badmetrics",
                                     result="parse_error") or 0
        slow_scrapes = h.metric_value(text, "pitot_backend_scrapes_total", backend="endless",
                                      result="timeout") or 0
        print("peers: upstream errors %s; shed client_gone %d; client cancels (slow) %d; "
              "stalls %d; scrapes parse_error %d (garbage), timeout %d (endless)"
              % (dict(errs), shed, cancels, stalls, bad_scrapes, slow_scrapes))
        assert errs.get("stall_timeout") == 2, errs
        assert errs.get("upstream_protocol") == 3, errs
        assert errs.get("upstream_timeout") == 2, errs
        assert shed == 2, text
        assert cancels == 2, text
        assert stalls >= 2
        assert bad_scrapes > 0 and slow_scrapes > 0, (bad_scrapes, slow_scrapes)
        # the simulators saw the clients leave: the slow streams were cancelled
        assert sim_stats(slow.port)["cancelled"] == 2, sim_stats(slow.port)
        assert sim_stats(tiny.port)["requests"] == 1, sim_stats(tiny.port)

        fds1, list1 = fds_settled(pid, want=fds0, timeout=20)
        rss1 = rss_kib(pid)
        print("peers: %d requests; pitot open fds %d before, %d after; RSS %d KiB before, "
              "%d KiB after" % (n_sent, fds0, fds1, rss0, rss1))
        assert fds1 == fds0, "fds %d -> %d: %s" % (fds0, fds1, sorted(set(list1) - set(list0)))
        print("peers: RSS %s" % rss_back(pid, rss0, rss1))
        h.stop_pitot_clean(pitot)
    finally:
        held.set()
        badm.stop.set()
        endless.stop.set()
        for b in (garbage, silent, badm, endless):
            b.close()


h.check("peers: stall, slow, queued and streaming clients leaving, garbage framing, a silent "
        "backend, garbage and endless /metrics at once: each ends as documented, counted, "
        "no fd left", t_peers)
h.finish()
