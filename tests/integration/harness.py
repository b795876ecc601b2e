"""Integration harness: start pitot-sim, pitot and helper servers on free
loopback ports, talk raw HTTP/1.1 to them, and report one line per check
("PASS name" / "FAIL name: why"). Every process started here is stopped by
PID when the scenario ends, also when a check fails.

Canaries: the default chat body carries CANARY_PROMPT in its prompt,
request() sends "Authorization: Bearer CANARY_KEY" unless the caller gives
an Authorization header, and start_sim() makes pitot-sim put CANARY_OUTPUT
into its output. At the end of every check, before its processes are
stopped, the stderr of every process it started, every access log given
with --access-log and every /metrics body read through request() are
searched for them: a hit fails the check. Prompts, outputs and API keys
never belong in a log or a metric."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

BUILD = os.environ.get("PITOT_BUILD", "build")
FIXTURES = os.environ.get("PITOT_FIXTURES", "tests/fixtures")
HOST = "127.0.0.1"

_procs = []
_failures = 0

CANARY_PROMPT = "canary-prompt-7d41c2"
CANARY_KEY = "sk-canary-key-93be05"
CANARY_OUTPUT = "canaryout5a0e"
CANARIES = (("prompt", CANARY_PROMPT), ("API key", CANARY_KEY), ("output", CANARY_OUTPUT))

_check_procs = []  # every Proc started during the current check, also those already stopped
_scrapes = []      # (port, body) of every /metrics answer read during the current check


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Proc:
    """A child process with its stderr captured to a file."""

    def __init__(self, argv, name, ready_re=None, timeout=10.0):
        self.name = name
        self.errf = tempfile.NamedTemporaryFile(prefix=name + "-", suffix=".log", delete=False)
        # files the canary scan reads besides stderr: access logs it was given
        self.logs = [argv[i + 1] for i, a in enumerate(argv[:-1])
                     if a in ("--access-log", "-a") and argv[i + 1] != "-"]
        self.p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.errf,
                                  stdin=subprocess.DEVNULL)
        _procs.append(self)
        _check_procs.append(self)
        if ready_re:
            deadline = time.time() + timeout
            while time.time() < deadline:
                if re.search(ready_re, self.stderr()):
                    return
                if self.p.poll() is not None:
                    raise RuntimeError("%s exited early (%s): %s" % (name, self.p.returncode, self.stderr()))
                time.sleep(0.01)
            raise RuntimeError("%s not ready: %s" % (name, self.stderr()))

    def stderr(self):
        with open(self.errf.name, "r", errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Stops by PID; returns the exit status."""
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        if self in _procs:
            _procs.remove(self)
        return self.p.returncode


class ThreadedBackend:
    """A loopback test server on a free port: each connection is served in
    its own thread by serve(conn, conn_id), which subclasses define. A
    subclass sets its own state first, then calls ThreadedBackend.__init__."""

    def __init__(self, backlog=64):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.serve, args=(c, self.connections), daemon=True).start()

    def serve(self, conn, conn_id):
        raise NotImplementedError

    def close(self):
        self.sock.close()


class RawBackend(ThreadedBackend):
    """A backend that records every byte each connection sends it, raw, and
    answers each request (framed by Content-Length only, as pitot sends them)
    with `respond(head, body)`: by default 200 with a small JSON body.
    pitot's own probes and scrapes (User-Agent: pitot) are answered too but
    kept apart, so that proxied_bytes() is exactly what clients' requests
    made reach the backend."""

    def __init__(self, respond=None):
        self.raw = {}              # conn_id -> bytearray of everything received
        self.probe_conns = set()   # connections pitot opened for itself
        self.requests = []         # (head str, body bytes, conn_id), proxied only
        self.respond = respond or (lambda head, body: RawBackend.json_reply(b'{"ok":true}'))
        ThreadedBackend.__init__(self)

    @staticmethod
    def json_reply(body, status=b"200 OK", extra=b""):
        return (b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
                % (status, len(body), extra, body))

    def serve(self, c, conn_id):
        raw = self.raw.setdefault(conn_id, bytearray())
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    raw += d
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                if b"\r\nUser-Agent: pitot\r\n" in head + b"\r\n":
                    self.probe_conns.add(conn_id)
                m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                n = int(m.group(1)) if m else 0
                while len(buf) < n:
                    d = c.recv(65536)
                    if not d:
                        return
                    raw += d
                    buf += d
                body, buf = buf[:n], buf[n:]
                line = head.split(b"\r\n")[0]
                if conn_id in self.probe_conns:
                    if b" /health " in line:
                        c.sendall(RawBackend.json_reply(b'{"status":"ok"}', extra=b"Connection: close\r\n"))
                    else:
                        c.sendall(RawBackend.json_reply(b"{}", b"404 Not Found", b"Connection: close\r\n"))
                    continue
                self.requests.append((head.decode("latin-1"), body, conn_id))
                out = self.respond(head.decode("latin-1"), body)
                if out is None:          # close without answering
                    return
                c.sendall(out)
        except OSError:
            return
        finally:
            c.close()

    def proxied_bytes(self):
        """Every byte the backend received on connections that carried
        clients' requests (pitot's probes and scrapes left out)."""
        return b"".join(bytes(v) for k, v in sorted(self.raw.items()) if k not in self.probe_conns)


def stop_all():
    for pr in list(_procs):
        pr.stop()


def start_sim(*args, port=None):
    """pitot-sim on a free port; its output carries CANARY_OUTPUT (--canary)."""
    port = port or free_port()
    pr = Proc([os.path.join(BUILD, "pitot-sim"), "--listen", "%s:%d" % (HOST, port),
               "--canary", CANARY_OUTPUT] + list(args),
              "pitot-sim", r"listening on")
    pr.port = port
    return pr


def start_pitot(backends, config=None, extra=(), port=None):
    """backends: list of ports; config: YAML text (written to a temp file)."""
    port = port or free_port()
    logf = tempfile.NamedTemporaryFile(prefix="pitot-access-", suffix=".log", delete=False)
    argv = [os.path.join(BUILD, "pitot"), "--listen", "%s:%d" % (HOST, port),
            "--access-log", logf.name]
    if config is not None:
        cf = tempfile.NamedTemporaryFile("w", prefix="pitot-", suffix=".yaml", delete=False)
        cf.write(config)
        cf.close()
        argv += ["-c", cf.name]
    for b in backends:
        argv += ["--backend", "http://%s:%d" % (HOST, b)]
    argv += list(extra)
    pr = Proc(argv, "pitot", r"listening on")
    pr.port = port
    pr.access_log = logf.name
    pr.config_file = cf.name if config is not None else None
    return pr


def access_log(pitot, n=None, timeout=5.0):
    """The access-log lines as dicts; waits until at least n are there."""
    deadline = time.time() + timeout
    while True:
        with open(pitot.access_log) as f:
            lines = [json.loads(l) for l in f if l.strip()]
        if n is None or len(lines) >= n or time.time() > deadline:
            return lines
        time.sleep(0.02)


def stop_pitot_clean(pitot):
    """Stops pitot and asserts a clean exit with no sanitizer report."""
    rc = pitot.stop()
    err = pitot.stderr()
    assert rc == 0, "pitot exit status %s: %s" % (rc, err[-2000:])
    assert "Sanitizer" not in err and "runtime error" not in err, err[-4000:]


# ---- raw HTTP ------------------------------------------------------------

class Response:
    def __init__(self):
        self.status = None
        self.reason = ""
        self.headers = []          # [(name, value)] in order
        self.body = b""            # de-chunked
        self.chunks = []           # raw chunk payloads, in order
        self.complete = False      # saw the terminating chunk / full length
        self.closed = False        # server closed the connection
        self.t_head = None
        self.events = []           # (t_arrival, bytes of the event)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def connect(port, timeout=30.0):
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def build_request(method, path, body=None, headers=None, port=None):
    hdrs = [("Host", "%s:%s" % (HOST, port or 0))]
    if body is not None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        hdrs.append(("Content-Type", "application/json"))
        hdrs.append(("Content-Length", str(len(body))))
    for k, v in (headers or []):
        hdrs.append((k, v))
    head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join("%s: %s\r\n" % kv for kv in hdrs) + "\r\n"
    return head.encode() + (body or b"")


class Reader:
    """Incremental HTTP/1.1 response reader over a socket, timestamping SSE
    events as their terminating blank line arrives."""

    def __init__(self, sock):
        self.s = sock
        self.buf = bytearray()
        self.eof = False

    def _fill(self):
        if self.eof:
            return False
        try:
            d = self.s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            d = b""
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                break
            if not self._fill():
                return None
        line = bytes(self.buf[:i])
        del self.buf[:i + 2]
        return line

    def _take(self, n):
        while len(self.buf) < n:
            if not self._fill():
                return None
        d = self.buf[:n]
        del self.buf[:n]
        return bytes(d)

    def read(self, head_only=False, max_events=None, is_head=False):
        r = Response()
        line = self._line()
        if line is None:
            r.closed = True
            return r
        parts = line.decode().split(" ", 2)
        r.status = int(parts[1])
        r.reason = parts[2] if len(parts) > 2 else ""
        while True:
            line = self._line()
            if line is None:
                r.closed = True
                return r
            if line == b"":
                break
            k, v = line.decode().split(":", 1)
            r.headers.append((k, v.strip()))
        r.t_head = time.monotonic()
        if head_only:
            return r
        sse = (r.header("content-type") or "").startswith("text/event-stream")
        pending = b""

        def feed(data):
            nonlocal pending
            pending += data
            while True:
                m = re.search(rb"(\r\n\r\n|\n\n|\r\r)", pending)
                if not m:
                    break
                ev, pending = pending[:m.end()], pending[m.end():]
                r.events.append((time.monotonic(), ev))

        if is_head or r.status in (204, 304) or 100 <= r.status < 200:
            r.complete = True
            return r
        te = (r.header("transfer-encoding") or "").lower()
        cl = r.header("content-length")
        if te == "chunked":
            while True:
                line = self._line()
                if line is None:
                    r.closed = True
                    r.body = b"".join(r.chunks)
                    return r
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    self._line()
                    r.complete = True
                    r.body = b"".join(r.chunks)
                    return r
                data = self._take(size)
                if data is None or self._take(2) is None:
                    r.closed = True
                    if data:
                        r.chunks.append(data)
                    r.body = b"".join(r.chunks)
                    return r
                r.chunks.append(data)
                if sse:
                    feed(data)
                    if max_events and len(r.events) >= max_events:
                        r.body = b"".join(r.chunks)
                        return r
        elif cl is not None:
            data = self._take(int(cl))
            if data is None:
                r.body = bytes(self.buf)
                r.closed = True
                return r
            r.body = data
            r.complete = True
        else:
            while self._fill():
                pass
            r.body, self.buf = bytes(self.buf), bytearray()
            r.closed = True
            r.complete = True
            if sse:
                feed(r.body)
        return r

    def closed_by_peer(self, timeout=2.0):
        self.s.settimeout(timeout)
        try:
            d = self.s.recv(1)
            return d == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


def canary_headers(headers):
    """headers plus "Authorization: Bearer CANARY_KEY" when they have no
    Authorization; a header given with the value None is left out (so
    ("Authorization", None) sends none at all)."""
    headers = list(headers or [])
    if not any(k.lower() == "authorization" for k, _ in headers):
        headers.append(("Authorization", "Bearer " + CANARY_KEY))
    return [(k, v) for k, v in headers if v is not None]


def request(port, method, path, body=None, headers=None, timeout=30.0, **kw):
    """One request on a fresh connection; headers pass canary_headers()."""
    s = connect(port, timeout)
    try:
        t0 = time.monotonic()
        s.sendall(build_request(method, path, body, canary_headers(headers), port))
        rd = Reader(s)
        r = rd.read(is_head=(method == "HEAD"), **kw)
        r.t_send = t0
        if path.split("?")[0] == "/metrics":  # every scrape is searched for canaries
            _scrapes.append((port, r.body))
        return r
    finally:
        s.close()


def chat_body(content="Hello there, how are you? " + CANARY_PROMPT, stream=True, max_tokens=8,
              **extra):
    b = {"model": "small", "messages": [{"role": "user", "content": content}],
         "stream": stream, "max_tokens": max_tokens}
    b.update(extra)
    return b


def metrics(port):
    """The /metrics text (kept for the canary scan by request())."""
    r = request(port, "GET", "/metrics")
    assert r.status == 200, r.status
    return r.body.decode()


def metric_value(text, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        if not m or m.group(1) != name:
            continue
        lab = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(lab.get(k) == str(v) for k, v in labels.items()):
            total += float(m.group(4))
            found = True
    return total if found else None


def sse_data(events):
    """The data payloads (str) of a list of raw events."""
    out = []
    for _, ev in events:
        lines = ev.decode().replace("\r\n", "\n").split("\n")
        data = [l[5:].lstrip(" ") if l.startswith("data:") else None for l in lines]
        data = [d for d in data if d is not None]
        if data:
            out.append("\n".join(data))
    return out


def wait_for(pred, timeout=5.0, step=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


# ---- checks --------------------------------------------------------------

# ---- canaries ------------------------------------------------------------

def canary_leaks():
    """Where a canary (CANARIES) shows up in what the current check's
    processes wrote (stderr, access logs) or in the /metrics bodies it read:
    ["API key in pitot access log /tmp/...", ...]; empty when clean."""
    found = []
    for pr in _check_procs:
        for what, path in [("%s stderr %s" % (pr.name, pr.errf.name), pr.errf.name)] + \
                [("%s access log %s" % (pr.name, p), p) for p in pr.logs]:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            found += ["%s in %s" % (kind, what) for kind, c in CANARIES if c.encode() in data]
    for port, body in _scrapes:
        found += ["%s in a /metrics scrape of port %d" % (kind, port)
                  for kind, c in CANARIES if c.encode() in body]
    return sorted(set(found))


def canary_forget():
    """Ends the current check's canary scan here: what its processes wrote
    and the scrapes read so far are no longer searched (for a check that
    puts canaries where they are searched on purpose)."""
    del _check_procs[:]
    del _scrapes[:]


def check(name, fn):
    """Runs one check; processes it started are stopped afterwards. Before
    that, a canary in their output fails it (canary_leaks)."""
    global _failures
    canary_forget()
    leaks = []
    try:
        try:
            fn()
        finally:
            leaks = canary_leaks()
        if leaks:
            raise AssertionError("a prompt, output or API key was written where it must never "
                                 "be: " + "; ".join(leaks))
        print("PASS %s" % name, flush=True)
    except Exception as e:  # noqa: BLE001 - report every failure as a line
        _failures += 1
        tb = traceback.format_exc().strip().splitlines()
        where = next((l.strip() for l in reversed(tb) if l.strip().startswith("File")), "")
        msg = (str(e) or type(e).__name__)[:600]
        if leaks and "where it must never be" not in msg:
            msg += " (and canaries leaked: %s)" % "; ".join(leaks)
        print("FAIL %s: %s %s" % (name, msg, where), flush=True)
        for pr in _procs:
            sys.stdout.write("  [%s stderr tail] %s\n" % (pr.name, pr.stderr()[-800:].replace("\n", "\n  ")))
    finally:
        stop_all()
        canary_forget()


def finish():
    stop_all()
    sys.exit(1 if _failures else 0)


# ---- Prometheus ----------------------------------------------------------

def start_prometheus(targets, scrape_interval="1s", rules_files=None):
    """Starts /usr/bin/prometheus scraping `targets` ("host:port" strings, or
    ports on 127.0.0.1) as job "pitot", with its config and TSDB in a fresh
    temp dir that is removed when the process is stopped. rules_files: paths
    of rule files to load. Started by start_prometheus_config(): returns the
    Proc, with .port and .dir, once GET /-/ready answers 200 (30 s at most)."""
    tg = [t if isinstance(t, str) else "%s:%d" % (HOST, t) for t in targets]
    conf = ["global:",
            "  scrape_interval: %s" % scrape_interval,
            "  evaluation_interval: %s" % scrape_interval]
    if rules_files:
        # relative paths would resolve against the temp dir
        conf.append("rule_files:")
        conf += ["  - %s" % json.dumps(os.path.abspath(f)) for f in rules_files]
    conf += ["scrape_configs:",
             "  - job_name: pitot",
             "    static_configs:",
             "      - targets: %s" % json.dumps(tg)]
    return start_prometheus_config("\n".join(conf) + "\n")


def prom_query(port, expr):
    """The "data" object of the instant query /api/v1/query?query=expr on the
    Prometheus at `port`; raises with Prometheus's error text if it fails."""
    import urllib.error
    import urllib.parse
    import urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = "http://%s:%d/api/v1/query?%s" % (HOST, port, urllib.parse.urlencode({"query": expr}))
    try:
        with opener.open(url, timeout=10.0) as r:
            reply = json.loads(r.read())
    except urllib.error.HTTPError as e:  # bad expression: 400 with a JSON error
        body = e.read()
        try:
            reply = json.loads(body)
        except ValueError:
            raise RuntimeError("query %r: HTTP %d %r" % (expr, e.code, body[:300]))
    if reply.get("status") != "success":
        raise RuntimeError("query %r: %s: %s" % (expr, reply.get("errorType"), reply.get("error")))
    return reply["data"]


def start_prometheus_config(config, port=None):
    """Starts /usr/bin/prometheus with `config`, the text of a whole
    prometheus.yml (absolute paths for rule files: a relative one would
    resolve against the temp dir), listening on `port` (free_port() if None;
    pass it when the config scrapes Prometheus itself). TSDB in a fresh temp
    dir removed when the process is stopped. Returns the Proc, with .port and
    .dir, once GET /-/ready answers 200 (30 s at most)."""
    import shutil
    import urllib.request
    d = tempfile.mkdtemp(prefix="pitot-prom-")
    try:
        cfg = os.path.join(d, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write(config)
        port = port or free_port()
        pr = Proc(["/usr/bin/prometheus", "--config.file=" + cfg,
                   "--storage.tsdb.path=" + os.path.join(d, "data"),
                   "--storage.tsdb.retention.time=1h",
                   "--web.listen-address=%s:%d" % (HOST, port)], "prometheus")
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise
    pr.port = port
    pr.dir = d
    proc_stop = pr.stop

    def stop(*args, **kw):
        try:
            return proc_stop(*args, **kw)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    pr.stop = stop  # what stop_all() and check() call

    # loopback only: never through an http_proxy from the environment
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.time() + 30.0
    while True:
        if pr.p.poll() is not None:
            raise RuntimeError("prometheus exited early (%s): %s" % (pr.p.returncode, pr.stderr()[-2000:]))
        try:
            with opener.open("http://%s:%d/-/ready" % (HOST, port), timeout=2.0) as r:
                if r.status == 200:
                    return pr
        except OSError:  # refused while starting, 503 until the TSDB is open
            pass
        if time.time() > deadline:
            raise RuntimeError("prometheus not ready after 30 s: %s" % pr.stderr()[-2000:])
        time.sleep(0.05)


def prom_api(port, path, params=None):
    """The "data" of GET /api/v1/<path>?<params> on the Prometheus at `port`
    (params: dict, or list of pairs for repeated keys such as match[]);
    raises with Prometheus's error text if it fails."""
    import urllib.error
    import urllib.parse
    import urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = "http://%s:%d/api/v1/%s" % (HOST, port, path)
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with opener.open(url, timeout=10.0) as r:
            reply = json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            reply = json.loads(body)
        except ValueError:
            raise RuntimeError("GET %s: HTTP %d %r" % (url, e.code, body[:300]))
    if reply.get("status") != "success":
        raise RuntimeError("GET %s: %s: %s" % (url, reply.get("errorType"), reply.get("error")))
    return reply["data"]
