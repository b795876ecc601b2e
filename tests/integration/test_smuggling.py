"""The front door against request smuggling and malformed framing, raw bytes
in, raw bytes checked out: the status, that the connection closes, and that
zero bytes of a refused request reached the backend (a RawBackend records
everything it receives). Also the well-formed edge cases that must pass
through intact: trailers split over reads, absolute-form targets, pipelining,
a backend that names its framing headers in Connection."""

import json
import re
import socket
import time

from harness import (HOST, RawBackend, Reader, access_log, check, connect, finish, start_pitot,
                     stop_pitot_clean, wait_for)

CONFIG = ("health:\n  interval: 60s\n"
          "limits:\n  header_timeout: 20s\n  max_body_bytes: 64k\n  max_header_bytes: 4k\n"
          "  max_uri_bytes: 1k\n")

H = b"Host: x\r\n"

# (name, pieces sent with a pause between them, status, what the error says)
REFUSED = [
    # llhttp's strict mode
    ("chunk data longer than its size",
     [b"POST /v1/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"], 400),
    ("bare CR ends a chunk-size line",
     [b"POST /v1/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\rhello\r\n0\r\n\r\n"], 400),
    ("blank in a field name: X Content-Length",
     [b"POST /v1/x HTTP/1.1\r\n" + H + b"X Content-Length: 35\r\n\r\n"
      b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"], 400),
    ("blank in a field name: Transfer Encoding",
     [b"POST /v1/x HTTP/1.1\r\n" + H + b"Transfer Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
      b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"], 400),
    ("bare LF line ends in the head",
     [b"GET /v1/models HTTP/1.1\nHost: x\n\n"], 400),
    # obs-fold, also with an empty first line
    ("obs-fold Transfer-Encoding with an empty first line",
     [b"POST /v1/x HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n chunked\r\n\r\n"
      b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"], 400),
    ("obs-fold Content-Length with an empty first line",
     [b"POST /v1/x HTTP/1.1\r\n" + H + b"Content-Length:\r\n 4\r\n\r\nabcd"], 400),
    ("obs-fold Host with an empty first line",
     [b"GET /v1/models HTTP/1.1\r\nHost:\r\n x\r\n\r\n"], 400),
    ("obs-fold of any field, with a tab",
     [b"GET /v1/models HTTP/1.1\r\n" + H + b"X-A:\r\n\tb\r\n\r\n"], 400),
    ("obs-fold after a value",
     [b"GET /v1/models HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n"], 400),
    # empty field names
    ("empty field name with a value", [b"GET /v1/models HTTP/1.1\r\n" + H + b": x\r\n\r\n"], 400),
    ("empty field name, empty value", [b"GET /v1/models HTTP/1.1\r\n" + H + b":\r\n\r\n"], 400),
    # HTTP/1.0 with Transfer-Encoding (RFC 9112 6.1)
    ("HTTP/1.0 with Transfer-Encoding",
     [b"POST /v1/x HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
      b"5\r\nhello\r\n0\r\n\r\n"], 400),
    # request targets and lines
    ("CONNECT", [b"CONNECT backend:443 HTTP/1.1\r\nHost: backend:443\r\n\r\n"], 405),
    ("asterisk-form target", [b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n"], 400),
    ("absolute-form with another scheme", [b"GET ftp://x/v1/models HTTP/1.1\r\n" + H + b"\r\n"], 400),
    ("absolute-form with user information", [b"GET http://u:p@x/v1/models HTTP/1.1\r\n" + H + b"\r\n"], 400),
    ("extra space in the request line", [b"GET  /v1/models HTTP/1.1\r\n" + H + b"\r\n"], 400),
    ("space before the version's end", [b"GET /v1/models HTTP/1.1 \r\n" + H + b"\r\n"], 400),
    ("leading space", [b" GET /v1/models HTTP/1.1\r\n" + H + b"\r\n"], 400),
    # what already held: CL and TE
    ("Content-Length then Transfer-Encoding",
     [b"POST /v1/x HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"], 400),
    ("Transfer-Encoding then Content-Length",
     [b"POST /v1/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"], 400),
    ("duplicate Content-Length, same value",
     [b"POST /v1/x HTTP/1.1\r\n" + H + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}"], 400),
    ("duplicate Content-Length, different values",
     [b"POST /v1/x HTTP/1.1\r\n" + H + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}x"], 400),
    ("Content-Length list", [b"POST /v1/x HTTP/1.1\r\n" + H + b"Content-Length: 2, 2\r\n\r\n{}"], 400),
    ("Content-Length with a sign", [b"POST /v1/x HTTP/1.1\r\n" + H + b"Content-Length: +2\r\n\r\n{}"], 400),
    ("negative Content-Length", [b"POST /v1/x HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n"], 400),
    ("Content-Length with letters", [b"POST /v1/x HTTP/1.1\r\n" + H + b"Content-Length: 2x\r\n\r\n{}"], 400),
    ("Content-Length in hex", [b"POST /v1/x HTTP/1.1\r\n" + H + b"Content-Length: 0x2\r\n\r\n{}"], 400),
    ("Content-Length overflow",
     [b"POST /v1/x HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\n"], 400),
    ("Transfer-Encoding gzip, chunked",
     [b"POST /v1/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"], 501),
    ("Transfer-Encoding chunked, identity",
     [b"POST /v1/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"], 501),
    ("Transfer-Encoding identity", [b"POST /v1/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n"], 501),
    ("Transfer-Encoding xchunked",
     [b"POST /v1/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"], 501),
    ("Transfer-Encoding chunked twice in one field",
     [b"POST /v1/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"], 501),
    ("Transfer-Encoding in two fields",
     [b"POST /v1/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
      b"0\r\n\r\n"], 501),
    ("Transfer-Encoding empty", [b"POST /v1/x HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n\r\n"], 501),
    ("Transfer-Encoding with a vertical tab",
     [b"POST /v1/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n"], 400),
    ("NUL in a value", [b"GET /v1/models HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n"], 400),
    ("CR in a value", [b"GET /v1/models HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n"], 400),
    ("bare LF inside a value", [b"GET /v1/models HTTP/1.1\r\n" + H + b"X-A: a\nb\r\n\r\n"], 400),
    ("missing Host", [b"GET /v1/models HTTP/1.1\r\n\r\n"], 400),
    ("doubled Host", [b"GET /v1/models HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"], 400),
    ("Host with a blank before the colon", [b"GET /v1/models HTTP/1.1\r\nHost : a\r\n\r\n"], 400),
    ("HTTP/2 preface", [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"], 400),
    ("HTTP/3.0", [b"GET /v1/models HTTP/3.0\r\n" + H + b"\r\n"], 505),
    ("body over max_body_bytes, announced", [b"POST /v1/x HTTP/1.1\r\n" + H + b"Content-Length: 70000\r\n\r\n"], 413),
    ("body over max_body_bytes, chunked",
     [b"POST /v1/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n10000\r\n" + b"a" * 65536
      + b"\r\n10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n"], 413),
    ("target over max_uri_bytes", [b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n" + H + b"\r\n"], 414),
    ("head over max_header_bytes", [b"GET /v1/models HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 5000 + b"\r\n\r\n"], 431),
    ("Expect other than 100-continue", [b"GET /v1/models HTTP/1.1\r\n" + H + b"Expect: magic\r\n\r\n"], 417),
    ("nothing is read after a 400",
     [b"GET /v1/models HTTP/1.1\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"], 400),
]

# Refused as soon as the bytes arrive, although the head is not complete:
# the response comes before the rest is sent (header_timeout is 20 s).
EARLY = [
    ("HTTP/0.9 request line", b"GET /v1/models\r\n"),
    ("bare CR in the head", b"GET /v1/models HTTP/1.1\r\nHost: x\rX"),
    ("bare CR in a chunk-size line",
     b"POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\rh"),
    ("obs-fold line", b"GET /v1/models HTTP/1.1\r\nHost: x\r\n y"),
    ("field name with a blank", b"GET /v1/models HTTP/1.1\r\nHost: x\r\nA B"),
]


def send_pieces(s, pieces):
    for i, p in enumerate(pieces):
        if i:
            time.sleep(0.2)
        try:
            s.sendall(p)
        except (BrokenPipeError, ConnectionResetError):
            return


def t_refused_zero_bytes():
    be = RawBackend()
    try:
        pitot = start_pitot([be.port], config=CONFIG)
        for name, pieces, want in REFUSED:
            s = connect(pitot.port, timeout=10)
            send_pieces(s, pieces)
            rd = Reader(s)
            r = rd.read()
            assert r.status == want, (name, r.status, want)
            assert r.header("connection") == "close", (name, r.headers)
            err = json.loads(r.body)["error"]
            assert err["code"] == want and err["message"], (name, err)
            if want == 405:
                assert "POST" in (r.header("allow") or ""), (name, r.headers)
            assert rd.closed_by_peer(), "%s: connection left open" % name
            s.close()
            assert be.proxied_bytes() == b"", "%s: bytes reached the backend: %r" % (name, be.proxied_bytes()[:200])
        time.sleep(0.3)
        assert be.proxied_bytes() == b"", be.proxied_bytes()[:300]
        assert be.requests == []
        # each refusal has its access-log line, in order, with no backend
        log = access_log(pitot, len(REFUSED))
        assert [l["status"] for l in log] == [want for _, _, want in REFUSED], \
            [(l["status"], l["error"]) for l in log]
        for line, (name, _, want) in zip(log, REFUSED):
            assert line["backend"] is None and line["outcome"] == "bad_request", (name, line)
            assert line["error"] and len(line["id"]) > 0, (name, line)
        stop_pitot_clean(pitot)
    finally:
        be.close()


def t_refused_at_once():
    be = RawBackend()
    try:
        pitot = start_pitot([be.port], config=CONFIG)
        for name, raw in EARLY:
            s = connect(pitot.port, timeout=3)
            t0 = time.monotonic()
            s.sendall(raw)
            rd = Reader(s)
            r = rd.read()
            took = time.monotonic() - t0
            assert r.status == 400, (name, r.status)
            # generous: the point is "not after header_timeout (20 s)"
            assert took < 2.5, (name, took)
            assert rd.closed_by_peer(), name
            s.close()
        assert be.proxied_bytes() == b""
        stop_pitot_clean(pitot)
    finally:
        be.close()


def t_chunk_extensions_bounded():
    be = RawBackend()
    try:
        pitot = start_pitot([be.port], config=CONFIG)
        s = connect(pitot.port, timeout=10)
        s.sendall(b"POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=")
        sent = 0
        try:
            while sent < 100 << 20:       # 100 MiB of extension, unless refused first
                s.sendall(b"v" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = Reader(s).read()
        assert r.status == 431, r.status
        # what the client wrote includes what the kernel buffers held after
        # pitot stopped reading (a few MiB on loopback): far below 100 MiB
        assert sent < 16 << 20, "%d extension bytes were taken before the refusal" % sent
        s.close()
        # trailer fields count too
        s = connect(pitot.port, timeout=10)
        try:
            s.sendall(b"POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
                      + b"".join(b"X-T%d: %s\r\n" % (i, b"v" * 100) for i in range(100)) + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = Reader(s).read()
        assert r.status == 431, r.status
        s.close()
        assert be.proxied_bytes() == b""
        stop_pitot_clean(pitot)
    finally:
        be.close()


def t_trailer_split_over_reads():
    """The trailer line split across two reads (pitot once kept a pointer
    into the first read's memory): the request passes, de-chunked, with a
    fresh Content-Length and no trailer."""
    be = RawBackend()
    try:
        pitot = start_pitot([be.port], config=CONFIG)
        for _ in range(3):
            s = connect(pitot.port, timeout=10)
            send_pieces(s, [b"POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"5\r\nhello\r\n0\r\nX-Trailer: aaaaaaaa", b"bbbbbbbb\r\n\r\n"])
            r = Reader(s).read()
            assert r.status == 200, r.status
            s.close()
        assert len(be.requests) == 3
        head, body, _ = be.requests[-1]
        assert body == b"hello", body
        assert "\r\nContent-Length: 5" in head and "Transfer-Encoding" not in head, head
        assert "X-Trailer" not in head and b"X-Trailer" not in be.proxied_bytes()
        stop_pitot_clean(pitot)
    finally:
        be.close()


def t_absolute_form_target():
    be = RawBackend()
    try:
        pitot = start_pitot([be.port], config=CONFIG)
        s = connect(pitot.port, timeout=10)
        s.sendall(b"GET http://api.example:8080/v1/models?x=1 HTTP/1.1\r\nHost: other\r\n\r\n")
        r = Reader(s).read()
        assert r.status == 200, r.status
        head = be.requests[-1][0]
        assert head.split("\r\n")[0] == "GET /v1/models?x=1 HTTP/1.1", head.split("\r\n")[0]
        # pitot's own paths are recognised in absolute-form too, never proxied
        s.sendall(b"GET HTTP://pitot/metrics HTTP/1.1\r\nHost: pitot\r\n\r\n")
        r = Reader(s).read()
        assert r.status == 200 and b"pitot_requests_total" in r.body, r.status
        assert len(be.requests) == 1
        s.close()
        stop_pitot_clean(pitot)
    finally:
        be.close()


def t_pipelined_in_order():
    def respond(head, body):
        path = head.split(" ")[1].encode()
        return RawBackend.json_reply(b'{"path":"%s"}' % path)
    be = RawBackend(respond)
    try:
        pitot = start_pitot([be.port], config=CONFIG)
        s = connect(pitot.port, timeout=10)
        s.sendall(b"GET /v1/a HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"POST /v1/b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
                  b"GET /v1/c HTTP/1.1\r\nHost: x\r\n\r\n")
        rd = Reader(s)
        got = [json.loads(rd.read().body)["path"] for _ in range(3)]
        assert got == ["/v1/a", "/v1/b", "/v1/c"], got
        assert [h.split(" ")[1] for h, _, _ in be.requests] == ["/v1/a", "/v1/b", "/v1/c"]
        # a bad one in the middle: the first is answered, the bad one refused,
        # and the third never reaches the backend
        s2 = connect(pitot.port, timeout=10)
        s2.sendall(b"GET /v1/d HTTP/1.1\r\nHost: x\r\n\r\n"
                   b"GET /v1/e HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"
                   b"GET /v1/f HTTP/1.1\r\nHost: x\r\n\r\n")
        rd2 = Reader(s2)
        assert rd2.read().status == 200
        r = rd2.read()
        assert r.status == 400, r.status
        assert rd2.closed_by_peer()
        time.sleep(0.2)
        assert [h.split(" ")[1] for h, _, _ in be.requests][-1] == "/v1/d"
        stop_pitot_clean(pitot)
    finally:
        be.close()


def t_backend_names_framing_in_connection():
    """A backend's Connection: Content-Length (or Transfer-Encoding) must not
    strip the framing: the client always gets a framed response and the
    connection stays usable."""
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: Content-Length\r\n"
        b"Content-Length: 11\r\n\r\n{\"a\":\"one\"}",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: Transfer-Encoding\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n6\r\n\"two\"}\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive, content-length, X-Hop\r\n"
        b"X-Hop: 1\r\nContent-Length: 13\r\n\r\n{\"a\":\"three\"}",
    ]
    n = [0]

    def respond(head, body):
        n[0] += 1
        return answers[(n[0] - 1) % len(answers)]
    be = RawBackend(respond)
    try:
        pitot = start_pitot([be.port], config=CONFIG)
        s = connect(pitot.port, timeout=5)
        rd = Reader(s)
        for want in ("one", "two", "three"):
            s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
            r = rd.read()
            assert r.status == 200 and r.complete, (want, r.headers)
            assert r.header("content-length") or r.header("transfer-encoding") == "chunked", r.headers
            assert json.loads(r.body)["a"] == want, r.body
            assert r.header("connection") != "close"
            assert r.header("x-hop") is None, r.headers
        s.close()
        stop_pitot_clean(pitot)
    finally:
        be.close()


def t_response_framing_faults_are_502():
    """A backend whose framing is faulty gets the client a 502, never a
    response pitot cannot frame."""
    bad = [
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A:\r\n folded\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\n: empty\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    ]
    for raw in bad:
        be = RawBackend(lambda head, body, raw=raw: raw)
        try:
            pitot = start_pitot([be.port], config=CONFIG + "routing:\n  retry: false\n")
            s = connect(pitot.port, timeout=5)
            s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
            r = Reader(s).read()
            assert r.status == 502, (raw[:50], r.status)
            assert json.loads(r.body)["error"]["type"] == "upstream_protocol", r.body
            s.close()
            stop_pitot_clean(pitot)
        finally:
            be.close()


check("refused inputs: status, connection closed, zero bytes to the backend", t_refused_zero_bytes)
check("input that can never become a request is refused as it arrives", t_refused_at_once)
check("chunk extensions and trailers count against the limits", t_chunk_extensions_bounded)
check("a trailer split over two reads passes, de-chunked", t_trailer_split_over_reads)
check("absolute-form targets are forwarded in origin-form", t_absolute_form_target)
check("pipelined requests in order; nothing after a bad one reaches the backend", t_pipelined_in_order)
check("a backend naming framing headers in Connection: still framed", t_backend_names_framing_in_connection)
check("faulty response framing from a backend: 502", t_response_framing_faults_are_502)
finish()
