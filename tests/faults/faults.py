"""Fault suite helpers on top of tests/integration/harness.py: streams whose
every token carries its index (pitot-sim --seq) read and judged per API,
and pitot's open descriptors and resident memory from /proc/PID."""

import json
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness as h  # noqa: E402,F401 - re-exported for the tests

# the path and body of a streamed request per API, max_tokens tokens
PATHS = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "responses": "/v1/responses",
    "messages": "/v1/messages",
    "native": "/completion",
}


def stream_body(api, max_tokens, model="small"):
    b = _stream_body(api, max_tokens)
    if api != "native":
        b["model"] = model
    return b


def _stream_body(api, max_tokens):
    if api == "chat":
        return h.chat_body(max_tokens=max_tokens)
    if api == "completions":
        return {"model": "small", "prompt": "Hello " + h.CANARY_PROMPT, "max_tokens": max_tokens,
                "stream": True}
    if api == "responses":
        return {"model": "small", "input": "Hello " + h.CANARY_PROMPT,
                "max_output_tokens": max_tokens, "stream": True}
    if api == "messages":
        return {"model": "small", "max_tokens": max_tokens, "stream": True,
                "messages": [{"role": "user", "content": "Hello " + h.CANARY_PROMPT}]}
    if api == "native":
        return {"prompt": "Hello " + h.CANARY_PROMPT, "n_predict": max_tokens, "stream": True}
    raise ValueError(api)


def stream_headers(api):
    if api == "messages":
        return [("anthropic-version", "2023-06-01")]
    return []


# A JSON string that is exactly one --seq token: " t0007". Whole texts of two
# tokens or more (the Responses API's output_text.done, a final body) never
# match, so a stream of max_tokens >= 2 yields each token once.
SEQ_TOKEN = re.compile(rb'"(?: t(\d{4,}))"')


class Stream:
    """One streamed request's fate: status (None: closed before a head),
    tokens (the --seq indices in arrival order), complete (the terminating
    chunk came), final (the API's own last event came: [DONE],
    response.completed, message_stop, or llama.cpp's "stop":true),
    error_event (the last event is the API's error event)."""

    def __init__(self, api, max_tokens):
        self.api = api
        self.max_tokens = max_tokens
        self.status = None
        self.tokens = []
        self.complete = False
        self.final = False
        self.error_event = False
        self.body = b""
        self.closed = False

    def in_order(self):
        """Every token once and in order: 0, 1, 2, ... with no gap."""
        return self.tokens == list(range(len(self.tokens)))

    def whole(self):
        """A complete answer: 200, every token once and in order, all of them,
        the API's final event and the terminating chunk."""
        return (self.status == 200 and self.complete and self.final and self.in_order()
                and len(self.tokens) == self.max_tokens and not self.error_event)

    def cut_properly(self):
        """Cut the way the README says: 200, the tokens so far in order, the
        API's error event last, no final event, no terminating chunk."""
        return (self.status == 200 and not self.complete and not self.final
                and self.error_event and self.in_order())

    def describe(self):
        return ("%s status %s, %d tokens of %d (in order: %s), complete %s, final %s, "
                "error event %s, body tail %r" % (self.api, self.status, len(self.tokens),
                                                   self.max_tokens, self.in_order(),
                                                   self.complete, self.final, self.error_event,
                                                   self.body[-300:]))


def judge(st, r):
    """Fills Stream st from the harness Response r."""
    st.status = r.status
    st.complete = r.complete
    st.closed = r.closed
    st.body = r.body
    if r.status != 200:
        return st
    evs = [ev for _, ev in r.events]
    for ev in evs:
        st.tokens += [int(m) for m in SEQ_TOKEN.findall(ev)]
    last = evs[-1].decode("utf-8", "replace") if evs else ""
    data = h.sse_data(r.events[-1:]) if evs else []
    payload = data[-1] if data else ""
    if st.api in ("chat", "completions"):
        st.final = any(d == "[DONE]" for d in h.sse_data(r.events))
        st.error_event = payload.startswith('{"error":')
    elif st.api == "responses":
        st.final = any(b"event: response.completed" in ev or b"event: response.incomplete" in ev
                       for ev in evs)
        st.error_event = last.startswith("event: error") and '"type":"error"' in payload
    elif st.api == "messages":
        st.final = any(b"event: message_stop" in ev for ev in evs)
        st.error_event = last.startswith("event: error") and '"type":"error"' in payload
    elif st.api == "native":
        st.final = any(b'"stop":true' in ev for ev in evs)
        st.error_event = payload.startswith('{"error":')
    return st


def stream(port, api="chat", max_tokens=16, timeout=60.0, model="small"):
    """One streamed request on a fresh connection, read to its end; a Stream."""
    st = Stream(api, max_tokens)
    try:
        s = h.connect(port, timeout)
    except OSError:
        return st
    try:
        s.sendall(h.build_request("POST", PATHS[api], stream_body(api, max_tokens, model),
                                  h.canary_headers(stream_headers(api)), port))
        r = h.Reader(s).read()
        judge(st, r)
    except (OSError, ValueError):
        pass
    finally:
        s.close()
    return st


# ---- pitot's own resources ------------------------------------------------

def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def sanitized(pid):
    """True when pid runs a sanitizer build (its RSS says nothing about leaks:
    ASan keeps freed memory in quarantine)."""
    with open("/proc/%d/maps" % pid) as f:
        return any("libasan" in l or "libtsan" in l for l in f)


def rss_back(pid, before_kib, after_kib):
    """Asserts RSS came back near its level: at most 20% or 2 MiB above it
    (the larger), except on a sanitizer build. Returns what it checked."""
    if sanitized(pid):
        return "not checked: sanitizer build"
    assert after_kib <= max(before_kib * 1.2, before_kib + 2048), (before_kib, after_kib)
    return "within 20% or 2 MiB of it"


def fds_settled(pid, want=None, timeout=20.0):
    """pitot's open descriptors once idle: the least count seen over 1 s
    (a health probe or a scrape may hold one for a moment), waiting up to
    timeout for it to reach want (when given). Returns (count, listing) with
    the listing of /proc/PID/fd at the end, for a failure message."""
    deadline = time.time() + timeout
    while True:
        low = None
        t_end = time.time() + 1.0
        while time.time() < t_end:
            n = open_fds(pid)
            low = n if low is None else min(low, n)
            time.sleep(0.05)
        if want is None or low <= want or time.time() > deadline:
            break
    listing = []
    for fd in sorted(os.listdir("/proc/%d/fd" % pid), key=int):
        try:
            listing.append("%s->%s" % (fd, os.readlink("/proc/%d/fd/%s" % (pid, fd))))
        except OSError:
            pass
    return low, listing


def sim_stats(port):
    r = h.request(port, "GET", "/sim/stats", timeout=5.0)
    return json.loads(r.body)


def upstream_errors(port):
    """pitot_upstream_errors_total by kind."""
    out = {}
    for line in h.metrics(port).splitlines():
        m = re.match(r'pitot_upstream_errors_total\{(.*)\} (\S+)$', line)
        if m:
            kind = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1))).get("kind", "?")
            out[kind] = out.get(kind, 0) + float(m.group(2))
    return out


def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((h.HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()
