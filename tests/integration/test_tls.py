"""TLS end to end, with a CA and certificates made here by the openssl
command in a temporary directory. The listener: curl --cacert and openssl
s_client as clients (TLS 1.1 refused, ALPN http/1.1, SNI picks the
certificate, handshake failures counted and their log lines bounded, a
handshake that never completes ends at limits.header_timeout, SIGHUP reloads
the certificates during a running stream). https backends: pitot itself
with a TLS listener in front of pitot-sim, verified by a CA file; a wrong
CA, a wrong name, verify: false, a client certificate, reuse of pooled TLS
connections, backpressure through two TLS hops, an https trace collector;
pitot -t on TLS files."""

import atexit
import http.server
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import (BUILD, HOST, RawBackend, Reader, ThreadedBackend, access_log,  # noqa: E402
                     build_request, chat_body, check, connect, finish, metric_value, metrics,
                     free_port, request, sse_data, start_pitot, start_sim, stop_pitot_clean,
                     wait_for)


class Certs:
    """A CA and certificates made with openssl req / openssl x509 into a
    temporary directory, removed at exit."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pitot-tls-")
        atexit.register(shutil.rmtree, self.dir, True)
        self.serial = 100
        self.ca("ca", "pitot test CA")
        self.ca("evil", "some other CA")
        self.leaf("server", "ca", "pitot.test", "DNS:pitot.test,DNS:localhost,IP:127.0.0.1",
                  rsa=True)
        self.leaf("other", "ca", "other.test", "DNS:other.test,DNS:*.other.test")
        self.leaf("reloaded", "ca", "reloaded.pitot.test", "DNS:pitot.test,IP:127.0.0.1")
        self.leaf("evil-server", "evil", "pitot.test", "DNS:pitot.test,IP:127.0.0.1")
        self.leaf("client", "ca", "pitot client", "DNS:pitot.client")

    def path(self, name):
        return os.path.join(self.dir, name)

    def _openssl(self, *args):
        out = subprocess.run(["openssl"] + list(args), capture_output=True, text=True)
        assert out.returncode == 0, out.stderr

    def ca(self, name, cn):
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-keyout", self.path(name + ".key"), "-out", self.path(name + ".crt"),
                      "-days", "2", "-subj", "/CN=" + cn,
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def leaf(self, name, ca, cn, san, rsa=False):
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n" % san)
        key = ["-newkey", "rsa:2048"] if rsa else ["-newkey", "ec", "-pkeyopt",
                                                   "ec_paramgen_curve:prime256v1"]
        self._openssl("req", *key, "-nodes", "-keyout", self.path(name + ".key"),
                      "-out", self.path(name + ".csr"), "-subj", "/CN=" + cn)
        self.serial += 1
        self._openssl("x509", "-req", "-in", self.path(name + ".csr"),
                      "-CA", self.path(ca + ".crt"), "-CAkey", self.path(ca + ".key"),
                      "-set_serial", str(self.serial), "-days", "2",
                      "-out", self.path(name + ".crt"), "-extfile", ext)


CERTS = Certs()
CA = CERTS.path("ca.crt")


def tls_args(name="server"):
    return ["--tls-cert", CERTS.path(name + ".crt"), "--tls-key", CERTS.path(name + ".key")]


def tls_connect(port, server_hostname="pitot.test", timeout=30.0, cafile=CA):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx.wrap_socket(connect(port, timeout), server_hostname=server_hostname)


def tls_request(port, method, path, body=None, headers=None, cafile=CA, **kw):
    s = tls_connect(port, cafile=cafile)
    try:
        s.sendall(build_request(method, path, body, headers, port))
        return Reader(s).read(is_head=(method == "HEAD"), **kw)
    finally:
        s.close()


def tls_metrics(port, cafile=CA):
    r = tls_request(port, "GET", "/metrics", cafile=cafile)
    assert r.status == 200, r.status
    return r.body.decode()


def s_client(port, *args, timeout=20):
    """openssl s_client against the port, stdin closed; (rc, output)."""
    out = subprocess.run(["openssl", "s_client", "-connect", "%s:%d" % (HOST, port),
                          "-CAfile", CA] + list(args), stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=timeout)
    return out.returncode, out.stdout + out.stderr


def curl(*args, timeout=30):
    out = subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", "20"] + list(args),
                         capture_output=True, text=True, timeout=timeout)
    return out.returncode, out.stdout, out.stderr


def handshake_failures(port, reason, cafile=CA):
    return metric_value(tls_metrics(port, cafile), "pitot_tls_handshake_failures_total",
                        reason=reason)


def one_event_per_chunk(r):
    for c in r.chunks:
        assert c.endswith(b"\n\n") and c.count(b"\n\n") == 1, "a chunk is not one event: %r" % c


def https_backend(name, port, **tls):
    """A backends item (YAML) for https://127.0.0.1:port with tls keys."""
    lines = ["  - url: https://%s:%d" % (HOST, port), "    name: %s" % name]
    if tls:
        lines.append("    tls:")
        lines += ["      %s: %s" % (k, json.dumps(v) if isinstance(v, str) else
                                     str(v).lower()) for k, v in tls.items()]
    return "\n".join(lines) + "\n"


# ---- the listener --------------------------------------------------------

def t_stream_through_tls_listener():
    sim = start_sim("--tokens-per-s", "20")
    pitot = start_pitot([sim.port], extra=tls_args())
    # curl: verified by the CA, HTTP/1.1, the stream whole
    body = json.dumps(chat_body(max_tokens=6))
    rc, out, err = curl("--cacert", CA, "-N", "-H", "Content-Type: application/json", "-d", body,
                        "-w", "\n%{http_code} %{http_version} %{ssl_verify_result}",
                        "https://%s:%d/v1/chat/completions" % (HOST, pitot.port))
    assert rc == 0, err
    assert out.rstrip().endswith("200 1.1 0"), out[-200:]
    assert out.count("data: ") == 6 + 3 and "data: [DONE]" in out, out
    # a TLS client sees each event in its own chunk, as they are generated
    direct = request(sim.port, "POST", "/v1/chat/completions", chat_body(max_tokens=8))
    r = tls_request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=8))
    assert r.status == 200 and r.complete, (r.status, r.body[-300:])
    assert r.header("transfer-encoding") == "chunked"
    one_event_per_chunk(r)
    assert len(r.events) == len(direct.events) == 8 + 3, (len(r.events), len(direct.events))
    assert sse_data(r.events)[-1] == "[DONE]"
    # 8 tokens at 20/s: the events arrive spread out, not held and sent together
    spread = r.events[-2][0] - r.events[1][0]
    assert spread > 0.2, "events arrived within %.3f s" % spread
    log = access_log(pitot, 2)
    assert [l["outcome"] for l in log] == ["ok", "ok"] and log[-1]["stream"], log
    assert log[-1]["completion_tokens"] == 8 and log[-1]["ttft_ms"] is not None, log[-1]
    # pitot-load over https: verified, kept-alive connections, every stream whole
    out = subprocess.run([os.path.join(BUILD, "pitot-load"), "--url",
                          "https://127.0.0.1:%d" % pitot.port, "--cacert", CA, "--concurrency", "3",
                          "--requests", "9", "--max-tokens", "3"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "requests: 9 ok: 9 failed: 0 " in out.stdout, out
    assert len(access_log(pitot, 11)) == 11
    out = subprocess.run([os.path.join(BUILD, "pitot-load"), "--url",
                          "https://127.0.0.1:%d" % pitot.port, "--requests", "2"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "ok: 0 failed: 2 (connect: 2)" in out.stdout, out  # system CAs
    m = tls_metrics(pitot.port)
    assert metric_value(m, "pitot_tls_handshake_failures_total", reason="unknown_ca") == 2, m
    assert metric_value(m, "pitot_tls_handshake_failures_total") == 2, m
    stop_pitot_clean(pitot)


def t_admin_listener_stays_plain():
    """With a TLS listener, admin_listen still speaks plain HTTP (Prometheus
    and probes need no CA), and the client port stays TLS only."""
    sim = start_sim()
    admin = free_port()
    pitot = start_pitot([sim.port], config="admin_listen: 127.0.0.1:%d\n" % admin, extra=tls_args())
    r = request(admin, "GET", "/metrics")
    assert r.status == 200 and b"pitot_tls_handshake_failures_total" in r.body, r.status
    assert request(admin, "GET", "/readyz").status in (200, 503)
    assert tls_request(pitot.port, "GET", "/metrics").status == 404  # not on the client port
    s = connect(pitot.port, 5)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP on the TLS port
    assert Reader(s).read().status is None
    s.close()
    stop_pitot_clean(pitot)


def t_handshake_refusals_counted_and_logged():
    sim = start_sim()
    pitot = start_pitot([sim.port], extra=tls_args())
    # TLS 1.1 (the client allowed to offer it at all): refused
    rc, out = s_client(pitot.port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert rc != 0 and "alert protocol version" in out, out
    assert "Protocol  : TLSv1.1" in out or "TLSv1.1" in out, out
    # ALPN: http/1.1 chosen among the offers; only h2 is refused
    rc, out = s_client(pitot.port, "-servername", "pitot.test", "-alpn", "h2,http/1.1")
    assert rc == 0 and "ALPN protocol: http/1.1" in out and "Verify return code: 0 (ok)" in out, out
    rc, out = s_client(pitot.port, "-alpn", "h2")
    assert rc != 0 and "no application protocol" in out, out
    # no ALPN at all is fine
    rc, out = s_client(pitot.port, "-servername", "pitot.test")
    assert rc == 0 and "No ALPN negotiated" in out, out
    # plain HTTP to the TLS port
    rc, out, err = curl("http://%s:%d/healthz" % (HOST, pitot.port))
    assert rc != 0, out
    m = tls_metrics(pitot.port)
    for reason, n in (("protocol_version", 1), ("no_application_protocol", 1),
                      ("http_request", 1), ("timeout", 0), ("other", 0)):
        got = metric_value(m, "pitot_tls_handshake_failures_total", reason=reason)
        assert got == n, "%s: %s" % (reason, got)
    assert wait_for(lambda: "TLS handshake from 127.0.0.1 failed: protocol_version "
                            "(unsupported protocol)" in pitot.stderr()), pitot.stderr()
    # a burst of failures: every one counted, at most one log line a second
    t0 = time.monotonic()
    for _ in range(40):
        s = connect(pitot.port)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(10)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        s.close()
    elapsed = time.monotonic() - t0
    assert wait_for(lambda: handshake_failures(pitot.port, "http_request") == 41)
    lines = [l for l in pitot.stderr().splitlines() if "TLS handshake from" in l]
    # the window runs from the first line (before the burst) to now
    assert len(lines) <= 4 + elapsed + 1, (elapsed, lines)
    # the next line, a second later, says how many were left out
    time.sleep(1.1)
    rc, out = s_client(pitot.port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert rc != 0
    assert wait_for(lambda: re.search(r"TLS handshake from 127\.0\.0\.1 failed: protocol_version "
                                      r"\(unsupported protocol\); \d+ more failed handshakes not "
                                      r"logged", pitot.stderr())), pitot.stderr()[-1000:]
    stop_pitot_clean(pitot)


def t_sni_picks_the_certificate():
    sim = start_sim()
    cfg = ("tls:\n  certificates:\n"
           "    - cert: %s\n      key: %s\n"
           "    - cert: %s\n      key: %s\n" % (CERTS.path("server.crt"), CERTS.path("server.key"),
                                                CERTS.path("other.crt"), CERTS.path("other.key")))
    pitot = start_pitot([sim.port], config=cfg)
    for name, cn in (("other.test", "other.test"), ("api.other.test", "other.test"),
                     ("pitot.test", "pitot.test"), ("unknown.test", "pitot.test")):
        rc, out = s_client(pitot.port, "-servername", name, "-brief")
        assert rc == 0 and "Peer certificate: CN = %s" % cn in out, (name, out)
    rc, out = s_client(pitot.port, "-noservername", "-brief")
    assert rc == 0 and "Peer certificate: CN = pitot.test" in out, out
    # curl checks the name it asked for against the certificate it got
    for name in ("other.test", "pitot.test"):
        rc, out, err = curl("--cacert", CA, "--resolve", "%s:%d:%s" % (name, pitot.port, HOST),
                            "https://%s:%d/healthz" % (name, pitot.port))
        assert rc == 0 and json.loads(out)["status"] == "ok", (name, out, err)
    assert metric_value(tls_metrics(pitot.port), "pitot_tls_handshake_failures_total") == 0
    stop_pitot_clean(pitot)


def t_min_version_13():
    sim = start_sim()
    pitot = start_pitot([sim.port], config="tls:\n  min_version: \"1.3\"\n", extra=tls_args())
    rc, out = s_client(pitot.port, "-tls1_2", "-brief")
    assert rc != 0 and "alert protocol version" in out, out
    rc, out = s_client(pitot.port, "-tls1_3", "-brief")
    assert rc == 0 and "Protocol version: TLSv1.3" in out, out
    assert handshake_failures(pitot.port, "protocol_version") == 1
    stop_pitot_clean(pitot)
    # the default, 1.2, takes a TLS 1.2 client (with the intermediate ciphers)
    pitot = start_pitot([sim.port], extra=tls_args())
    rc, out = s_client(pitot.port, "-tls1_2", "-brief")
    assert rc == 0 and "Protocol version: TLSv1.2" in out and "ECDHE-RSA-AES" in out, out
    rc, out = s_client(pitot.port, "-tls1_2", "-cipher", "AES128-SHA256", "-brief")
    assert rc != 0, out  # no forward secrecy: not in the list
    assert handshake_failures(pitot.port, "no_shared_cipher") == 1
    stop_pitot_clean(pitot)


def t_handshake_timeout():
    sim = start_sim()
    pitot = start_pitot([sim.port], config="limits:\n  header_timeout: 300ms\n", extra=tls_args())
    silent = connect(pitot.port)           # sends nothing
    partial = connect(pitot.port)          # half a record header
    partial.sendall(b"\x16\x03")
    for s in (silent, partial):
        s.settimeout(10)
        assert s.recv(1) == b"", "the server should have closed the connection"
        s.close()
    assert wait_for(lambda: handshake_failures(pitot.port, "timeout") == 2)
    # a client that closes during the handshake
    s = connect(pitot.port)
    s.close()
    assert wait_for(lambda: handshake_failures(pitot.port, "eof") == 1)
    stop_pitot_clean(pitot)


def t_sighup_reload_during_stream():
    live = tempfile.mkdtemp(prefix="pitot-tls-live-")
    try:
        for ext in ("crt", "key"):
            shutil.copy(CERTS.path("server." + ext), os.path.join(live, "live." + ext))
        sim = start_sim("--tokens-per-s", "20")
        pitot = start_pitot([sim.port], extra=["--tls-cert", os.path.join(live, "live.crt"),
                                               "--tls-key", os.path.join(live, "live.key")])
        s = tls_connect(pitot.port)
        assert s.getpeercert()["subject"] == ((("commonName", "pitot.test"),),)
        s.sendall(build_request("POST", "/v1/chat/completions", chat_body(max_tokens=30),
                                port=pitot.port))
        rd = Reader(s)
        r = rd.read(max_events=3)
        assert r.status == 200 and len(r.events) >= 3
        # new certificate files, then SIGHUP, while the stream runs
        for ext in ("crt", "key"):
            shutil.copy(CERTS.path("reloaded." + ext), os.path.join(live, "live." + ext))
        pitot.p.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "certificates reloaded" in pitot.stderr()), pitot.stderr()
        s2 = tls_connect(pitot.port)
        assert s2.getpeercert()["subject"] == ((("commonName", "reloaded.pitot.test"),),)
        s2.close()
        # the running stream goes on to its end on the old session
        rest = b""
        while True:
            line = rd._line()
            assert line is not None, "stream cut after the reload"
            size = int(line.split(b";")[0], 16)
            if size == 0:
                break
            rest += rd._take(size)
            rd._take(2)
        s.close()
        events = len(r.events) + rest.count(b"\n\n")
        assert events == 30 + 3 and rest.endswith(b"data: [DONE]\n\n"), (events, rest[-200:])
        assert b'"error"' not in rest
        log = access_log(pitot, 1)
        assert log[-1]["outcome"] == "ok" and log[-1]["completion_tokens"] == 30, log[-1]
        # files that do not load: the error is logged, the certificates stay
        with open(os.path.join(live, "live.crt"), "w") as f:
            f.write("not a certificate\n")
        pitot.p.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reloading the listener's certificates" in pitot.stderr())
        err = [l for l in pitot.stderr().splitlines() if "reloading the listener" in l][0]
        assert "not a PEM certificate" in err and "the old ones stay" in err, err
        r = tls_request(pitot.port, "GET", "/healthz")
        assert r.status == 200
        stop_pitot_clean(pitot)
    finally:
        shutil.rmtree(live, ignore_errors=True)


def t_reload_other_certificate_files():
    sim = start_sim()
    first = "tls:\n  certificates:\n    - cert: %s\n      key: %s\n" % (
        CERTS.path("server.crt"), CERTS.path("server.key"))
    pitot = start_pitot([sim.port], config=first)
    s = tls_connect(pitot.port)
    assert s.getpeercert()["subject"] == ((("commonName", "pitot.test"),),)
    # other files (and a second certificate, and TLS 1.3 only) in the file
    with open(pitot.config_file, "w") as f:
        f.write("tls:\n  min_version: \"1.3\"\n  certificates:\n"
                "    - cert: %s\n      key: %s\n    - cert: %s\n      key: %s\n"
                % (CERTS.path("reloaded.crt"), CERTS.path("reloaded.key"),
                   CERTS.path("other.crt"), CERTS.path("other.key")))
    pitot.p.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "configuration reloaded" in pitot.stderr()), pitot.stderr()
    assert "reload: tls.certificates changed: new handshakes use them" in pitot.stderr()
    s2 = tls_connect(pitot.port)
    assert s2.getpeercert()["subject"] == ((("commonName", "reloaded.pitot.test"),),)
    s2.close()
    rc, out = s_client(pitot.port, "-servername", "other.test", "-brief")
    assert rc == 0 and "Peer certificate: CN = other.test" in out, out
    rc, out = s_client(pitot.port, "-tls1_2", "-brief")
    assert rc != 0 and "alert protocol version" in out, out
    # the connection made before goes on with what it has
    s.sendall(build_request("GET", "/healthz", port=pitot.port))
    r = Reader(s).read()
    assert r.status == 200, r.status
    s.close()
    # TLS off takes a restart: said, and the listener stays TLS
    with open(pitot.config_file, "w") as f:
        f.write("limits:\n  max_body_bytes: 1000\n")
    pitot.p.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "tls (on or off) changed: that takes a restart" in pitot.stderr()), \
        pitot.stderr()[-800:]
    r = tls_request(pitot.port, "GET", "/healthz")
    assert r.status == 200
    stop_pitot_clean(pitot)


# ---- https backends -------------------------------------------------------

def t_https_backend_is_pitot_with_tls():
    sim = start_sim("--tokens-per-s", "40")
    front = start_pitot([sim.port], extra=tls_args())
    cfg = ("health:\n  interval: 200ms\nbackends:\n" +
           https_backend("tls-a", front.port, ca_file=CA) +
           https_backend("tls-b", front.port, ca_file=CA, server_name="pitot.test"))
    pitot = start_pitot([], config=cfg)
    assert wait_for(lambda: metric_value(metrics(pitot.port), "pitot_backend_up") == 2), \
        metrics(pitot.port)
    direct = request(sim.port, "POST", "/v1/chat/completions", chat_body(max_tokens=8))
    for _ in range(4):
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=8))
        assert r.status == 200 and r.complete, (r.status, r.body[-300:])
        one_event_per_chunk(r)
        assert len(r.events) == len(direct.events) == 8 + 3
        assert r.events[-2][0] - r.events[1][0] > 0.1  # 8 tokens at 40/s, not held back
    log = access_log(pitot, 4)
    assert {l["backend"] for l in log} == {"tls-a", "tls-b"}, log
    assert all(l["outcome"] == "ok" and l["completion_tokens"] == 8 for l in log), log
    # non-streamed too, and the front saw every request
    r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(stream=False, max_tokens=3))
    assert r.status == 200 and json.loads(r.body)["usage"]["completion_tokens"] == 3
    def chats():
        return [l for l in access_log(front) if l["path"] == "/v1/chat/completions"]
    assert wait_for(lambda: len(chats()) == 5), chats()
    assert all(l["outcome"] == "ok" for l in chats()), chats()
    m = metrics(pitot.port)
    assert metric_value(m, "pitot_upstream_errors_total") in (None, 0), m
    assert "backend tls-a: down" not in pitot.stderr(), pitot.stderr()
    assert metric_value(tls_metrics(front.port), "pitot_tls_handshake_failures_total") == 0
    stop_pitot_clean(pitot)
    stop_pitot_clean(front)


def t_https_backends_reload():
    # https backends added, changed (other TLS settings), removed and back by
    # SIGHUP: each time served through the right TLS client, and pitot exits
    # clean (every client freed once: stop_pitot_clean, ASan in CI)
    sim = start_sim("--tokens-per-s", "400")
    front = start_pitot([sim.port], extra=tls_args())
    head = "health:\n  interval: 200ms\nbackends:\n  - {url: http://%s:%d, name: plain}\n" % (
        HOST, sim.port)
    pitot = start_pitot([], config=head)

    def reload(text, want):
        n = pitot.stderr().count("configuration reloaded")
        with open(pitot.config_file, "w") as f:
            f.write(text)
        pitot.p.send_signal(signal.SIGHUP)
        assert wait_for(lambda: pitot.stderr().count("configuration reloaded") > n), \
            pitot.stderr()[-800:]
        assert want in pitot.stderr(), pitot.stderr()[-800:]
        assert wait_for(lambda: metric_value(metrics(pitot.port), "pitot_backend_up",
                                             backend="tls") == 1), metrics(pitot.port)

    def served_by_tls():
        n = len(access_log(pitot))
        for _ in range(3):
            r = request(pitot.port, "POST", "/v1/chat/completions",
                        chat_body(stream=False, max_tokens=2))
            assert r.status == 200, r.status
        return [l["backend"] for l in access_log(pitot, n + 3)[n:]].count("tls")

    reload(head + https_backend("tls", front.port, ca_file=CA), "backend tls added")
    assert served_by_tls() >= 1
    reload(head + https_backend("tls", front.port, ca_file=CA, server_name="pitot.test"),
           "backend tls changed")
    assert served_by_tls() >= 1
    with open(pitot.config_file, "w") as f:
        f.write(head)
    pitot.p.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "backend tls removed" in pitot.stderr()), pitot.stderr()[-800:]
    assert served_by_tls() == 0
    # back, and a new https name in the slots beside it
    reload(head + https_backend("tls", front.port, ca_file=CA) +
           https_backend("tls2", front.port, ca_file=CA), "backend tls2 added")
    assert served_by_tls() >= 1
    stop_pitot_clean(pitot)
    stop_pitot_clean(front)


def t_https_backend_not_verified_is_down():
    sim = start_sim()
    front = start_pitot([sim.port], extra=tls_args())
    evil = start_pitot([sim.port], extra=tls_args("evil-server"))
    cfg = ("health:\n  interval: 100ms\nbackends:\n" +
           https_backend("wrong-ca", evil.port, ca_file=CA) +
           https_backend("wrong-name", front.port, ca_file=CA, server_name="other.test") +
           https_backend("system-cas", front.port) +
           https_backend("unverified", evil.port, ca_file=CA, verify=False))
    pitot = start_pitot([], config=cfg)
    want = {
        "wrong-ca": "certificate verify failed: unable to get local issuer certificate",
        "wrong-name": "certificate verify failed: hostname mismatch",
        "system-cas": "certificate verify failed: unable to get local issuer certificate",
    }
    for name, why in want.items():
        line = "pitot: warn: backend %s: down: GET /health: TLS handshake: %s" % (name, why)
        assert wait_for(lambda: line in pitot.stderr()), (line, pitot.stderr())
    assert "pitot: warn: backend unverified: tls.verify is false: its certificate is not " \
           "checked" in pitot.stderr()
    m = metrics(pitot.port)
    for name in want:
        assert metric_value(m, "pitot_backend_up", backend=name) == 0, m
    assert metric_value(m, "pitot_backend_up", backend="unverified") == 1
    # never silently trusted: only the unverified backend (so configured) gets requests
    for _ in range(6):
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2))
        assert r.status == 200 and r.complete
    assert {l["backend"] for l in access_log(pitot, 6)} == {"unverified"}
    # one line per change, not per probe
    n = wait_for(lambda: metric_value(metrics(pitot.port), "pitot_backend_scrapes_total",
                                      backend="wrong-ca") > 10)
    assert n, metrics(pitot.port)
    for name in want:
        assert pitot.stderr().count("backend %s: down" % name) == 1, pitot.stderr()
    # the servers saw pitot refuse their certificates
    assert handshake_failures(evil.port, "unknown_ca", CERTS.path("evil.crt")) > 0
    assert handshake_failures(front.port, "unknown_ca") > 0
    assert handshake_failures(front.port, "bad_certificate") > 0
    stop_pitot_clean(pitot)
    # no backend verified at all: 503, nothing sent anywhere
    front_log = len([l for l in access_log(front) if l["path"] == "/v1/chat/completions"])
    cfg = "health:\n  interval: 100ms\nbackends:\n" + https_backend("wrong-name", front.port,
                                                                     ca_file=CA,
                                                                     server_name="x.test")
    pitot = start_pitot([], config=cfg)
    assert wait_for(lambda: "backend wrong-name: down" in pitot.stderr())
    r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2))
    assert r.status in (502, 503), r.status
    assert json.loads(r.body)["error"]["code"] == r.status
    assert len([l for l in access_log(front) if l["path"] == "/v1/chat/completions"]) == \
        front_log, "a request reached an unverified backend"
    stop_pitot_clean(pitot)
    stop_pitot_clean(front)
    stop_pitot_clean(evil)


class TLSBackend(RawBackend):
    """RawBackend behind TLS (server certificate: server.crt), optionally
    asking for a client certificate signed by the test CA; records the client
    certificate's CN per connection."""

    def __init__(self, respond=None, require_client_cert=False):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(CERTS.path("server.crt"), CERTS.path("server.key"))
        if require_client_cert:
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(CA)
        self.client_cns = {}
        self.handshake_errors = []
        RawBackend.__init__(self, respond)

    def serve(self, c, conn_id):
        try:
            c = self.ctx.wrap_socket(c, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.handshake_errors.append(str(e))
            c.close()
            return
        peer = c.getpeercert()
        if peer:
            self.client_cns[conn_id] = dict(x[0] for x in peer["subject"])["commonName"]
        RawBackend.serve(self, c, conn_id)


def t_client_certificate():
    be = TLSBackend(require_client_cert=True)
    try:
        cfg = ("health:\n  interval: 100ms\nbackends:\n" +
               https_backend("mtls", be.port, ca_file=CA, cert=CERTS.path("client.crt"),
                             key=CERTS.path("client.key")) +
               https_backend("no-cert", be.port, ca_file=CA))
        pitot = start_pitot([], config=cfg)
        assert wait_for(lambda: "backend no-cert: down: GET /health: " in pitot.stderr()), \
            pitot.stderr()
        m = metrics(pitot.port)
        assert metric_value(m, "pitot_backend_up", backend="mtls") == 1, m
        assert metric_value(m, "pitot_backend_up", backend="no-cert") == 0, m
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(stream=False))
        assert r.status == 200 and json.loads(r.body) == {"ok": True}
        assert len(be.requests) == 1
        cid = be.requests[0][2]
        assert be.client_cns[cid] == "pitot client", be.client_cns
        assert access_log(pitot, 1)[-1]["backend"] == "mtls"
        assert be.handshake_errors, "the backend never refused the client without a certificate"
        stop_pitot_clean(pitot)
    finally:
        be.close()


def t_pooled_tls_connections():
    be = TLSBackend(lambda head, body: RawBackend.json_reply(b'{"n":%d}' % len(be.requests)))
    try:
        # idle connections are pooled per worker: one worker, one pool to see
        cfg = ("workers: 1\n"
               "health:\n  interval: 10s\nrouting:\n  scrape_interval: 10s\n  scrape_stale: 20s\n"
               "  scrape_timeout: 1s\nbackends:\n" + https_backend("pool", be.port, ca_file=CA))
        pitot = start_pitot([], config=cfg)
        for i in range(3):
            r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(stream=False))
            assert r.status == 200 and json.loads(r.body) == {"n": i + 1}, (r.status, r.body)
        conns = [cid for _, _, cid in be.requests]
        assert len(set(conns)) == 1, "pooled TLS connection not reused: %s" % conns
        stop_pitot_clean(pitot)
    finally:
        be.close()


def t_pooled_tls_connection_closed_by_backend():
    """The backend answers, then closes the kept connection (as llama-server
    does after 5 s): the next request must go out on a fresh connection,
    whether pitot saw the close while idle or only as it reused it."""
    class OneShot(TLSBackend):
        def serve(self, c, conn_id):
            try:
                c = self.ctx.wrap_socket(c, server_side=True)
            except (ssl.SSLError, OSError):
                c.close()
                return
            buf = b""
            try:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, rest = buf.split(b"\r\n\r\n", 1)
                m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                n = int(m.group(1)) if m else 0
                while len(rest) < n:
                    rest += c.recv(65536)
                if b"User-Agent: pitot" not in head:
                    self.requests.append((head.decode("latin-1"), rest[:n], conn_id))
                # keep-alive in words, closed in deed
                c.sendall(RawBackend.json_reply(b'{"conn":%d}' % conn_id))
            except OSError:
                pass
            finally:
                c.close()

    be = OneShot()
    try:
        cfg = ("health:\n  interval: 10s\nrouting:\n  scrape_interval: 10s\n  scrape_stale: 20s\n"
               "  scrape_timeout: 1s\nbackends:\n" + https_backend("oneshot", be.port, ca_file=CA))
        pitot = start_pitot([], config=cfg)
        seen = []
        for i in range(6):
            r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(stream=False))
            assert r.status == 200, (i, r.status, r.body)
            seen.append(json.loads(r.body)["conn"])
            if i % 2:
                time.sleep(0.2)  # sometimes the close is seen while idle, sometimes not
        assert len(set(seen)) == 6, seen
        log = access_log(pitot, 6)
        assert all(l["outcome"] == "ok" for l in log), log
        assert metric_value(metrics(pitot.port), "pitot_upstream_errors_total") in (None, 0)
        stop_pitot_clean(pitot)
    finally:
        be.close()


class SilentBackend(ThreadedBackend):
    """Accepts connections and never says a word: no TLS handshake."""

    def __init__(self):
        self.conns = []
        ThreadedBackend.__init__(self)

    def serve(self, c, conn_id):
        self.conns.append(c)
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass

    def close(self):
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        ThreadedBackend.close(self)


def t_backend_handshake_bounded_by_connect_timeout():
    be = SilentBackend()
    try:
        cfg = ("upstream:\n  connect_timeout: 300ms\nhealth:\n  timeout: 300ms\n"
               "routing:\n  retry: false\nbackends:\n" + https_backend("silent", be.port, ca_file=CA))
        pitot = start_pitot([], config=cfg)
        t0 = time.monotonic()
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2), timeout=60)
        took = time.monotonic() - t0
        assert r.status == 504 and json.loads(r.body)["error"]["code"] == 504, (r.status, r.body)
        assert took < 30, "the handshake was not bounded: %.1f s" % took
        log = access_log(pitot, 1)[-1]
        assert log["error"] == "upstream_timeout", log
        assert wait_for(lambda: "backend silent: down: GET /health: no complete response within "
                                "300 ms" in pitot.stderr()), pitot.stderr()
        stop_pitot_clean(pitot)
    finally:
        be.close()


class FloodBackend(ThreadedBackend):
    """Streams `n` SSE events of ~1 KB as fast as the socket takes them and
    records how many bytes it managed to hand to the kernel."""

    def __init__(self, n):
        self.n = n
        self.sent = 0
        ThreadedBackend.__init__(self)

    def serve(self, c, conn_id):
        head = b""
        while b"\r\n\r\n" not in head:
            d = c.recv(65536)
            if not d:
                return
            head += d
        if not head.startswith(b"POST "):
            ok = b"/health" in head.split(b"\r\n")[0]
            c.sendall(b"HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                      % (b"200 OK" if ok else b"404 Not Found"))
            c.close()
            return
        c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        pad = "x" * 960
        batch = b"".join(b'data: {"choices":[{"index":0,"delta":{"content":"%d %s"}}]}\n\n'
                         % (k, pad.encode()) for k in range(64))
        try:
            for _ in range(self.n // 64):
                c.sendall(batch)
                self.sent += len(batch)
            c.sendall(b"data: [DONE]\n\n")
        except OSError:
            pass
        c.close()


def t_backpressure_through_two_tls_hops():
    """client (reads nothing) -> pitot -> https -> pitot (TLS listener) ->
    flooding backend: the stall propagates back through both TLS legs."""
    n = 32768  # ~33 MB
    be = FloodBackend(n)
    try:
        small = "upstream:\n  stream_buffer_bytes: 64k\n"
        front = start_pitot([be.port], config=small, extra=tls_args())
        pitot = start_pitot([], config=small + "backends:\n" +
                            https_backend("tls-front", front.port, ca_file=CA))
        s = connect(pitot.port)
        s.sendall(build_request("POST", "/v1/chat/completions", chat_body(max_tokens=n),
                                port=pitot.port))
        time.sleep(2.0)  # the client reads nothing
        stalled_at = be.sent
        print("  backend stalled after %.1f MB of %.1f MB" % (stalled_at / 1e6, n * 1.02e-3))
        # kernel buffers on five sockets, OpenSSL's records, two 64 KiB caps:
        # a few MB; without backpressure the backend would have sent 33 MB
        assert stalled_at < 16 * 1024 * 1024, "backend pushed %d bytes into a stalled client" % \
            stalled_at
        s.settimeout(120)
        r = Reader(s).read()
        s.close()
        assert r.status == 200 and r.complete
        data = sse_data(r.events)
        assert len(data) == n + 1 and data[-1] == "[DONE]", len(data)
        assert all(json.loads(d)["choices"][0]["delta"]["content"].startswith("%d " % (k % 64))
                   for k, d in enumerate(data[:-1])), "events lost or reordered"
        stop_pitot_clean(pitot)
        stop_pitot_clean(front)
    finally:
        be.close()


class TLSCollector:
    """A fake OTLP/HTTP collector over TLS (server.crt): counts the spans of
    each POST and answers 200."""

    def __init__(self):
        self.spans = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                doc = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                outer.spans += sum(len(ss["spans"]) for rs in doc["resourceSpans"]
                                   for ss in rs["scopeSpans"])
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.srv = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.srv.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(CERTS.path("server.crt"), CERTS.path("server.key"))
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def t_https_trace_collector():
    coll = TLSCollector()
    try:
        sim = start_sim("--tokens-per-s", "400")
        traces = ("opentelemetry:\n  traces:\n    endpoint: https://%s:%d\n    interval: 50ms\n"
                  % (HOST, coll.port))
        pitot = start_pitot([sim.port], config=traces + "    ca_file: %s\n" % CA)
        for _ in range(3):
            assert request(pitot.port, "POST", "/v1/chat/completions",
                           chat_body(max_tokens=2)).status == 200
        assert wait_for(lambda: metric_value(metrics(pitot.port),
                                             "pitot_trace_spans_exported_total") == 3, timeout=10), \
            metrics(pitot.port)
        assert coll.spans == 3
        stop_pitot_clean(pitot)
        # the system's CAs do not know the test CA: export fails, counted
        pitot = start_pitot([sim.port], config=traces)
        assert request(pitot.port, "POST", "/v1/chat/completions",
                       chat_body(max_tokens=2)).status == 200
        assert wait_for(lambda: metric_value(metrics(pitot.port), "pitot_trace_spans_dropped_total",
                                             reason="export_failed") == 1, timeout=10)
        assert metric_value(metrics(pitot.port), "pitot_trace_spans_exported_total") == 0
        assert coll.spans == 3
        stop_pitot_clean(pitot)
    finally:
        coll.close()


# ---- pitot -t ------------------------------------------------------------

def t_config_check():
    def check_config(text, *extra):
        path = os.path.join(CERTS.dir, "check.yaml")
        with open(path, "w") as f:
            f.write(text)
        out = subprocess.run([os.path.join(BUILD, "pitot"), "-t", "-c", path] + list(extra),
                             capture_output=True, text=True)
        return out.returncode, out.stdout + out.stderr, path

    good = ("tls:\n  certificates:\n    - cert: %s\n      key: %s\nbackends:\n"
            % (CERTS.path("server.crt"), CERTS.path("server.key")) +
            https_backend("b", 1, ca_file=CA, cert=CERTS.path("client.crt"),
                          key=CERTS.path("client.key")))
    rc, out, path = check_config(good)
    assert rc == 0 and "configuration OK" in out, out
    missing = CERTS.path("missing.crt")
    rc, out, path = check_config(good.replace(CERTS.path("server.crt"), missing))
    assert rc == 1 and out.strip() == ("%s:3: tls.certificates[0]: certificate '%s': cannot read: "
                                       "No such file or directory" % (path, missing)), out
    rc, out, path = check_config(good.replace(CERTS.path("server.key"), CERTS.path("other.key")))
    assert rc == 1 and out.strip() == ("%s:3: tls.certificates[0]: key '%s' does not match the "
                                       "certificate '%s'" % (path, CERTS.path("other.key"),
                                                             CERTS.path("server.crt"))), out
    rc, out, path = check_config(good.replace(CA, CERTS.path("nope.pem")))
    assert rc == 1 and out.startswith("%s:9: backend 'b': tls.ca_file '" % path), out
    rc, out, path = check_config(good.replace(CERTS.path("client.key"), CERTS.path("server.key")))
    assert rc == 1 and "backend 'b': tls (client certificate): key '" in out and \
        "does not match" in out, out
    rc, out, path = check_config("backends:\n  - url: http://127.0.0.1:1\n    tls:\n"
                                 "      verify: false\n")
    assert rc == 1 and out.strip() == ("%s:4: backends.tls: the URL 'http://127.0.0.1:1' is "
                                       "http://; tls is only for https://" % path), out
    rc, out, path = check_config("backends: [http://127.0.0.1:1]\n", "--tls-cert",
                                 CERTS.path("server.crt"))
    assert rc == 2 and "--tls-cert and --tls-key go together" in out, out
    rc, out, path = check_config("backends: [http://127.0.0.1:1]\n", *tls_args())
    assert rc == 0, out
    rc, out, path = check_config("backends: [http://127.0.0.1:1]\n", "--tls-cert",
                                 CERTS.path("server.crt"), "--tls-key", CERTS.path("other.key"))
    assert rc == 1 and out.startswith("pitot: --tls-cert/--tls-key: key '") and \
        "does not match" in out, out


check("a stream through the TLS listener: curl --cacert, one event per chunk, as generated",
      t_stream_through_tls_listener)
check("TLS 1.1, h2-only ALPN and plain HTTP refused, counted; log lines at most one a second",
      t_handshake_refusals_counted_and_logged)
check("admin_listen speaks plain HTTP beside a TLS client listener", t_admin_listener_stays_plain)
check("SNI picks the certificate (wildcards too), the first is the default", t_sni_picks_the_certificate)
check("tls.min_version 1.3 refuses TLS 1.2; 1.2 takes the intermediate ciphers only", t_min_version_13)
check("a handshake that never completes ends at limits.header_timeout", t_handshake_timeout)
check("SIGHUP reloads certificates for new handshakes; a running stream goes on", t_sighup_reload_during_stream)
check("a reload with other certificate files: new handshakes use them, connections made go on; "
      "TLS off takes a restart", t_reload_other_certificate_files)
check("an https backend: pitot with a TLS listener in front of pitot-sim", t_https_backend_is_pitot_with_tls)
check("https backends added, changed, removed and back by a reload", t_https_backends_reload)
check("unverified backend certificates: down with a log line saying why, never used",
      t_https_backend_not_verified_is_down)
check("a client certificate for a backend that asks for one", t_client_certificate)
check("pooled TLS connections to a backend are reused", t_pooled_tls_connections)
check("a pooled TLS connection the backend closed is not used", t_pooled_tls_connection_closed_by_backend)
check("a backend that never completes the TLS handshake: 504 at upstream.connect_timeout",
      t_backend_handshake_bounded_by_connect_timeout)
check("backpressure through two TLS hops: bounded memory, nothing lost", t_backpressure_through_two_tls_hops)
check("an https trace collector, verified by opentelemetry.traces.ca_file", t_https_trace_collector)
check("pitot -t checks TLS files: readable, PEM, keys matching, FILE:LINE", t_config_check)
finish()
