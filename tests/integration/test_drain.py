"""pitot's graceful drain on SIGTERM: requests in progress finish byte for
byte, new connections are refused, idle keep-alive connections close at once,
shutdown.drain_timeout cuts what is left, a second signal stops at once, a
request held in the overload queue is still served. Real pitot-sim, real
pitot, raw clients."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import (HOST, Reader, access_log, build_request, chat_body, check, connect,  # noqa: E402
                     finish, metric_value, metrics, request, sse_data, start_pitot, start_sim,
                     wait_for)

VOLATILE = re.compile(r'"(id|created|system_fingerprint)":("[^"]*"|\d+)|"timings":\{[^}]*\}')


def normalise(payloads):
    return [VOLATILE.sub(lambda m: '"%s":_' % (m.group(1) or "timings"), p) for p in payloads]


def drain_conf(timeout, rest=""):
    return "shutdown:\n  drain_timeout: %s\n" % timeout + rest


def open_stream(port, max_tokens):
    """A streamed chat request on its own connection; returns (sock, reader)."""
    s = connect(port)
    s.sendall(build_request("POST", "/v1/chat/completions", chat_body(max_tokens=max_tokens),
                            port=port))
    return s, Reader(s)


def refused(port):
    try:
        socket.create_connection((HOST, port), timeout=2).close()
        return False
    except (ConnectionRefusedError, ConnectionResetError):
        # reset: it reached a worker's listener as that one closed (each
        # worker has its own, SO_REUSEPORT); never accepted either way
        return True


def rest_of_chunks(rd):
    """The rest of a chunked body a Reader stopped in (read(max_events=..)
    returns at a chunk boundary): (bytes, True if the last chunk came)."""
    body = b""
    while True:
        line = rd._line()
        if line is None:
            return body, False
        size = int(line.split(b";")[0], 16)
        if size == 0:
            rd._line()
            return body, True
        data = rd._take(size)
        if data is None or rd._take(2) is None:
            return body + (data or b""), False
        body += data


def wait_exit(pitot, timeout):
    """pitot's own exit status, once it ended by itself; the stderr checks of
    stop_pitot_clean."""
    try:
        rc = pitot.p.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("pitot still running %.0f s after SIGTERM: %s"
                             % (timeout, pitot.stderr()[-2000:]))
    err = pitot.stderr()
    assert rc == 0, "pitot exit status %s: %s" % (rc, err[-2000:])
    assert "Sanitizer" not in err and "runtime error" not in err, err[-4000:]
    return err


def sim_stats(port):
    r = request(port, "GET", "/sim/stats")
    assert r.status == 200, r.status
    return json.loads(r.body)


def t_stream_finishes():
    # same seed, same request number: the same events, as in test_proxy
    direct = start_sim("--seed", "7", "--tokens-per-s", "400")
    sim = start_sim("--seed", "7", "--tokens-per-s", "20", "--prefill-tokens-per-s", "5000")
    pitot = start_pitot([sim.port], config=drain_conf("20s"))
    ref = request(direct.port, "POST", "/v1/chat/completions", chat_body(max_tokens=60))
    assert ref.status == 200 and ref.complete, ref.status
    s, rd = open_stream(pitot.port, 60)
    head = rd.read(max_events=2)
    assert head.status == 200 and len(head.events) == 2, head.status
    # two requests whose heads are half sent when the signal comes: they are
    # answered, then their connections close
    ready = connect(pitot.port)
    ready.sendall(b"GET /readyz HTTP/1.1\r\n")
    health = connect(pitot.port)
    health.sendall(b"GET /healthz HTTP/1.1\r\n")
    time.sleep(0.3)  # generous: pitot has read the partial heads
    pitot.p.send_signal(signal.SIGTERM)
    assert wait_for(lambda: refused(pitot.port)), "a new connection was accepted during the drain"
    assert pitot.p.poll() is None, "pitot exited before the stream was done"
    ready.sendall(b"Host: x\r\n\r\n")
    r = Reader(ready).read()
    assert r.status == 503 and r.body == b'{"status":"draining"}', (r.status, r.body)
    assert (r.header("connection") or "").lower() == "close", r.headers
    assert Reader(ready).closed_by_peer(5.0)
    health.sendall(b"Host: x\r\n\r\n")
    r = Reader(health).read()
    assert r.status == 200 and r.body == b'{"status":"ok"}', (r.status, r.body)
    assert (r.header("connection") or "").lower() == "close", r.headers
    ready.close()
    health.close()
    # the stream goes on to its end, every event of it
    more, done = rest_of_chunks(rd)
    body = b"".join(head.chunks) + more
    assert done, "stream cut after %d bytes" % len(body)
    events = [(0, e) for e in re.findall(rb".*?\n\n", body, re.S)]
    got = normalise(sse_data(events))
    want = normalise(sse_data(ref.events))
    assert got == want, [(a, b) for a, b in zip(got, want) if a != b][:2]
    assert got[-1] == "[DONE]", got[-1]
    assert rd.closed_by_peer(5.0), "the connection was kept alive during the drain"
    s.close()
    err = wait_exit(pitot, 15)
    assert "pitot: signal 15, draining 3 connections (drain_timeout 20s)" in err, err
    assert "pitot: drained, exiting" in err, err
    log = access_log(pitot, 1)
    assert len(log) == 1 and log[0]["outcome"] == "ok" and log[0]["status"] == 200, log
    assert log[0]["completion_tokens"] == 60, log[0]


def t_idle_closed_at_once():
    sim = start_sim("--tokens-per-s", "20", "--prefill-tokens-per-s", "5000")
    pitot = start_pitot([sim.port], config=drain_conf("20s"))
    idle = connect(pitot.port)
    idle.sendall(build_request("GET", "/healthz", port=pitot.port))
    ird = Reader(idle)
    r = ird.read()
    assert r.status == 200 and r.header("connection") is None, r.headers
    s, rd = open_stream(pitot.port, 60)
    assert rd.read(max_events=1).status == 200
    pitot.p.send_signal(signal.SIGTERM)
    assert ird.closed_by_peer(2.0), "the idle connection stayed open"
    assert pitot.p.poll() is None, "pitot exited with a stream in progress"
    s.close()  # the client leaves: nothing is left to drain
    wait_exit(pitot, 10)
    log = access_log(pitot, 1)
    assert log[-1]["outcome"] == "client_cancel", log


def t_drain_timeout_cuts():
    sim = start_sim("--tokens-per-s", "20", "--prefill-tokens-per-s", "5000")
    pitot = start_pitot([sim.port], config=drain_conf("1s"))
    s, rd = open_stream(pitot.port, 400)  # 20 s of tokens
    r = rd.read(max_events=2)
    assert r.status == 200 and len(r.events) == 2, r.status
    t0 = time.monotonic()
    pitot.p.send_signal(signal.SIGTERM)
    err = wait_exit(pitot, 15)
    took = time.monotonic() - t0
    assert took < 10, "exit %.1f s after SIGTERM, drain_timeout is 1 s" % took
    assert "draining 1 connection (drain_timeout 1s)" in err, err
    assert "pitot: drain_timeout reached, 1 connection cut, exiting" in err, err
    # the client sees a cut stream: no terminating chunk
    more, done = rest_of_chunks(rd)
    assert not done and b"[DONE]" not in more, more[-80:]
    s.close()
    log = access_log(pitot, 1)
    assert len(log) == 1 and log[0]["outcome"] == "shutdown" and log[0]["status"] == 200, log
    assert log[0]["error"] == "shutdown", log
    st = wait_for(lambda: sim_stats(sim.port)["cancelled"] == 1 and sim_stats(sim.port))
    assert st and st["busy"] == 0, sim_stats(sim.port)


def t_second_signal_stops():
    sim = start_sim("--tokens-per-s", "20", "--prefill-tokens-per-s", "5000")
    pitot = start_pitot([sim.port], config=drain_conf("60s"))
    s, rd = open_stream(pitot.port, 400)
    assert rd.read(max_events=1).status == 200
    pitot.p.send_signal(signal.SIGTERM)
    assert wait_for(lambda: "draining 1 connection" in pitot.stderr())
    assert pitot.p.poll() is None
    t0 = time.monotonic()
    pitot.p.send_signal(signal.SIGINT)
    err = wait_exit(pitot, 10)
    assert time.monotonic() - t0 < 5, "the second signal did not stop pitot at once"
    assert "pitot: signal 2, stopping at once" in err, err
    assert "drain interrupted, 1 connection closed" in err, err
    # the stream's last events may still wait in the socket: then its end
    s.settimeout(2.0)
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        pass
    s.close()


def t_queued_request_served():
    sim = start_sim("--slots", "2", "--tokens-per-s", "50", "--prefill-tokens-per-s", "5000")
    conf = drain_conf("20s", "routing:\n  saturation:\n    max_in_flight: 1\n")
    pitot = start_pitot([sim.port], config=conf)
    hog, hrd = open_stream(pitot.port, 50)  # about 1 s
    assert hrd.read(head_only=True).status == 200
    q = connect(pitot.port)
    q.sendall(build_request("POST", "/v1/chat/completions", chat_body(max_tokens=4, stream=False),
                            port=pitot.port))
    assert wait_for(lambda: metric_value(metrics(pitot.port), "pitot_queue_depth") == 1), \
        metrics(pitot.port)
    pitot.p.send_signal(signal.SIGTERM)
    q.settimeout(15)
    r = Reader(q).read()
    assert r.status == 200 and r.complete, (r.status, r.body)
    assert (r.header("connection") or "").lower() == "close", r.headers
    assert json.loads(r.body)["usage"]["completion_tokens"] == 4, r.body
    assert Reader(q).closed_by_peer(5.0)
    hog.settimeout(15)
    more, done = rest_of_chunks(hrd)
    assert done and more.endswith(b"data: [DONE]\n\n"), more[-80:]
    hog.close()
    q.close()
    wait_exit(pitot, 15)
    log = access_log(pitot, 2)
    assert sorted(l["outcome"] for l in log) == ["ok", "ok"], log


check("drain: a stream in progress finishes, new connections are refused, exit 0",
      t_stream_finishes)
check("drain: an idle keep-alive connection closes at once", t_idle_closed_at_once)
check("drain: drain_timeout cuts the rest and exits 0", t_drain_timeout_cuts)
check("drain: a second signal stops at once", t_second_signal_stops)
check("drain: a request held in the overload queue is served", t_queued_request_served)
finish()
