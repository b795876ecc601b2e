"""The status page and runtime control on the admin listener: /status.json's
fields and values over three pitot-sim backends (a killed one shows down; a
disabled one gets no new request while its stream in flight finishes, shows
draining, then disabled; enable brings it back), admin_token on the POSTs,
404 on the client port, and the page itself loaded in headless Chromium,
asserted on its rendered DOM."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import (HOST, Reader, access_log, build_request, canary_headers, check,  # noqa: E402
                     connect, finish, free_port, request, sse_data, start_pitot, start_sim,
                     stop_pitot_clean, wait_for, chat_body)

NAMES = ("alpha", "bravo", "charlie")
TOKEN = "adm-tok-5f19e0"


def config(sims, admin, extra=""):
    lines = ["admin_listen: %s:%d" % (HOST, admin), "health:", "  interval: 200ms",
             "backends:"]
    for name, sim in zip(NAMES, sims):
        lines += ["  - url: http://%s:%d" % (HOST, sim.port), "    name: %s" % name]
    return "\n".join(lines) + "\n" + extra


def status(admin):
    r = request(admin, "GET", "/status.json")
    assert r.status == 200, (r.status, r.body)
    assert r.header("content-type") == "application/json", r.headers
    return json.loads(r.body)


def backend(st, name):
    for b in st["backends"]:
        if b["name"] == name:
            return b
    raise AssertionError("no backend %s in %s" % (name, st))


def states(admin):
    return {b["name"]: b["state"] for b in status(admin)["backends"]}


def post(admin, path, token=None, rid=None):
    hdrs = [("Authorization", "Bearer " + token if token else None)]
    if rid:
        hdrs.append(("X-Request-Id", rid))
    return request(admin, "POST", path, headers=hdrs)


def chromium_dom(url):
    """The DOM of url after the page's first refreshes, by headless Chromium."""
    exe = shutil.which("chromium")
    assert exe, "chromium is not installed (apt-get install chromium; make deps installs it)"
    prof = tempfile.mkdtemp(prefix="pitot-chromium-")
    try:
        out = subprocess.run([exe, "--headless=new", "--no-sandbox", "--disable-gpu",
                              "--no-first-run", "--user-data-dir=" + prof,
                              "--virtual-time-budget=3000", "--dump-dom", url],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=90)
    finally:
        shutil.rmtree(prof, ignore_errors=True)
    assert out.returncode == 0, "chromium exit %d" % out.returncode
    return out.stdout.decode()


def dom_rows(dom):
    """{name: state} of the backend rows the page rendered."""
    return dict(re.findall(r'<tr class="be" data-name="([^"]*)" data-state="([^"]*)">', dom))


def start_stream(port, max_tokens):
    """A streaming chat request left running; read it later with its Reader."""
    s = connect(port)
    s.sendall(build_request("POST", "/v1/chat/completions",
                            chat_body(max_tokens=max_tokens), canary_headers(None), port))
    return s, Reader(s)


def send_marked(pitot, tag, n=6):
    """n short chat requests, each with its own X-Request-Id; their ids."""
    ids = ["%s-%d-%d" % (tag, os.getpid(), i) for i in range(n)]
    for rid in ids:
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2),
                    headers=[("X-Request-Id", rid)])
        assert r.status == 200, r.status
    return ids


def marked_lines(pitot, ids):
    """The access-log lines of those requests."""
    ok = lambda: [l for l in access_log(pitot) if l["id"] in ids]  # noqa: E731
    wait_for(lambda: len(ok()) == len(ids), 5)
    return ok()


def t_status_json_drain_and_page():
    sims = [start_sim("--tokens-per-s", "10") for _ in NAMES]
    admin = free_port()
    pitot = start_pitot([], config=config(sims, admin))
    assert wait_for(lambda: set(states(admin).values()) == {"up"}, 5), states(admin)
    st = status(admin)
    for k in ("version", "uptime_s", "workers", "rss_bytes", "open_fds", "reloads", "reload",
              "window_s", "backends", "tiers"):
        assert k in st, (k, st)
    assert st["workers"] >= 1 and st["rss_bytes"] > 0 and st["open_fds"] > 0, st
    assert st["reload"] is True and st["reloads"] == {"ok": 0, "failed": 0}, st
    assert [b["name"] for b in st["backends"]] == list(NAMES), st
    assert [t["name"] for t in st["tiers"]] == ["default"], st
    b = backend(st, "alpha")
    for k in ("state", "disabled", "saturated", "ejected_left_s", "flavor", "capacity",
              "in_flight", "running", "waiting", "scrape_age_s", "cache", "tpot_ms",
              "ttft_p50_ms", "ttft_p95_ms", "requests_1m", "errors_1m", "error_rate", "load"):
        assert k in b, (k, b)
    # flavor and capacity from its first scrape (llama.cpp's /props: 2 slots)
    assert wait_for(lambda: backend(status(admin), "alpha")["flavor"] == "llamacpp", 5)
    b = wait_for(lambda: (lambda x: x if x["capacity"] == 2 else None)(
        backend(status(admin), "alpha")), 5)
    assert b and b["disabled"] is False and b["running"] == 0 and b["waiting"] == 0, b

    # a few requests: the last minute's figures move
    for _ in range(4):
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2))
        assert r.status == 200, r.status
    assert wait_for(lambda: sum(b["requests_1m"] for b in status(admin)["backends"]) == 4, 4), \
        status(admin)
    st = status(admin)
    served = [b for b in st["backends"] if b["requests_1m"]]
    assert all(b["ttft_p50_ms"] is not None and b["ttft_p95_ms"] >= b["ttft_p50_ms"]
               and b["error_rate"] == 0 and b["tpot_ms"] is not None for b in served), served
    assert st["window_s"] >= 1 and all(len(b["load"]) >= 2 for b in st["backends"]), st

    # a stream in flight on one backend, which is then disabled
    s, rd = start_stream(pitot.port, 80)  # 8 s at 10 tokens/s: time for a browser
    busy = wait_for(lambda: [b["name"] for b in status(admin)["backends"] if b["in_flight"]], 3)
    assert busy and len(busy) == 1, status(admin)
    name = busy[0]
    r = post(admin, "/admin/backends/%s/disable" % name)
    assert r.status == 200, (r.status, r.body)
    assert json.loads(r.body) == {"backend": name, "disabled": True, "backends": 1}, r.body
    b = backend(status(admin), name)
    assert b["state"] == "draining" and b["disabled"] is True and b["in_flight"] == 1, b
    # the page, in a real browser, while it drains
    dom = chromium_dom("http://%s:%d/status" % (HOST, admin))
    rows = dom_rows(dom)
    print("  chromium DOM while draining: %s" % rows)
    assert rows.get(name) == "draining", rows
    assert all(rows.get(n) == "up" for n in NAMES if n != name), rows
    assert int(re.search(r'<body[^>]*data-refreshes="(\d+)"', dom).group(1)) >= 1, dom[:400]
    # no new request reaches it
    sent = send_marked(pitot, "off")
    lines = marked_lines(pitot, sent)
    assert len(lines) == 6 and all(l["backend"] != name for l in lines), lines
    # its stream finishes whole
    resp = rd.read()
    s.close()
    data = sse_data(resp.events)
    assert resp.status == 200 and data and data[-1] == "[DONE]", (resp.status, data[-3:])
    assert len([d for d in data if d != "[DONE]" and json.loads(d)["choices"]
                and json.loads(d)["choices"][0]["delta"].get("content")]) >= 30, len(data)
    assert wait_for(lambda: backend(status(admin), name)["state"] == "disabled", 3), \
        backend(status(admin), name)
    # /readyz: the others are up
    assert request(admin, "GET", "/readyz").status == 200

    # a killed backend shows down
    killed = [sm for sm, n in zip(sims, NAMES) if n != name][0]
    kname = NAMES[sims.index(killed)]
    killed.stop(signal.SIGKILL)
    assert wait_for(lambda: states(admin)[kname] == "down", 5), states(admin)

    dom = chromium_dom("http://%s:%d/status" % (HOST, admin))
    rows = dom_rows(dom)
    print("  chromium DOM after drain and kill: %s" % rows)
    want = {n: "disabled" if n == name else "down" if n == kname else "up" for n in NAMES}
    assert rows == want, (rows, want)
    summary = re.search(r'<span id="summary">(.*?)</span>\s*<span class="kv">', dom, re.S)
    assert summary and "1 disabled" in summary.group(1) and "1 down" in summary.group(1), \
        summary and summary.group(1)

    # enable brings it back: it serves again
    r = post(admin, "/admin/backends/%s/enable" % name)
    assert r.status == 200 and json.loads(r.body)["disabled"] is False, (r.status, r.body)
    assert states(admin)[name] == "up", states(admin)
    sent = send_marked(pitot, "on")
    lines = marked_lines(pitot, sent)
    assert len(lines) == 6 and any(l["backend"] == name for l in lines), lines
    assert all(l["backend"] != kname for l in lines), lines
    stop_pitot_clean(pitot)


def t_admin_errors_and_token():
    sims = [start_sim() for _ in NAMES]
    admin = free_port()
    pitot = start_pitot([], config=config(sims, admin, 'admin_token: "%s"\n' % TOKEN))
    # GET /status and /status.json need no token
    r = request(admin, "GET", "/status", headers=[("Authorization", None)])
    assert r.status == 200 and r.header("content-type") == "text/html; charset=utf-8", r.headers
    assert b"<title>pitot status</title>" in r.body and b"status.json" in r.body
    assert b"<script src" not in r.body and b"<link" not in r.body  # self-contained
    r = request(admin, "HEAD", "/status.json")
    assert r.status == 200 and r.body == b"", r.status
    # the POSTs do
    for tok in (None, "wrong", TOKEN + "x", TOKEN[:-1]):
        r = post(admin, "/admin/backends/alpha/disable", tok, rid="tok-401")
        assert r.status == 401, (tok, r.status, r.body)
        assert r.header("www-authenticate") == "Bearer", r.headers
        assert r.header("x-request-id") == "tok-401", r.headers
        assert json.loads(r.body)["error"]["code"] == 401, r.body
    r = request(admin, "POST", "/admin/backends/alpha/disable",
                headers=[("Authorization", "Basic " + TOKEN)])
    assert r.status == 401, r.status
    assert states(admin)["alpha"] != "disabled"
    r = post(admin, "/admin/backends/alpha/disable", TOKEN)
    assert r.status == 200, (r.status, r.body)
    assert states(admin)["alpha"] == "disabled"
    r = post(admin, "/admin/backends/alpha%2Fx/enable", TOKEN, rid="nf-1")
    assert r.status == 404 and r.header("x-request-id") == "nf-1", (r.status, r.headers)
    r = post(admin, "/admin/backends/alpha/pause", TOKEN, rid="nf-2")
    assert r.status == 404 and r.header("x-request-id") == "nf-2", (r.status, r.headers)
    r = post(admin, "/admin/backends/alpha/enable", TOKEN)
    assert r.status == 200 and states(admin)["alpha"] == "up", (r.status, states(admin))
    # other methods
    r = request(admin, "GET", "/admin/backends/alpha/disable", headers=[("X-Request-Id", "m-1")])
    assert r.status == 405 and r.header("allow") == "POST", (r.status, r.headers)
    assert r.header("x-request-id") == "m-1", r.headers
    r = request(admin, "POST", "/status.json", "{}")
    assert r.status == 405 and r.header("allow") == "GET, HEAD", (r.status, r.headers)
    # a reload through the admin listener: what SIGHUP does
    r = post(admin, "/admin/reload", TOKEN)
    assert r.status == 202, (r.status, r.body)
    assert wait_for(lambda: status(admin)["reloads"]["ok"] == 1, 3), status(admin)
    r = post(admin, "/admin/reload")
    assert r.status == 401, r.status
    # the token is written nowhere
    with open(pitot.access_log, "rb") as f:
        assert TOKEN.encode() not in f.read()
    assert TOKEN not in pitot.stderr()
    # every backend disabled: not ready
    for n in NAMES:
        assert post(admin, "/admin/backends/%s/disable" % n, TOKEN).status == 200
    r = request(admin, "GET", "/readyz")
    assert r.status == 503, r.status
    r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2))
    assert r.status == 503, r.status
    stop_pitot_clean(pitot)


def t_client_port():
    sim = start_sim()
    admin = free_port()
    pitot = start_pitot([], config=config([sim], admin))
    for method, path in (("GET", "/status"), ("GET", "/status.json"), ("HEAD", "/status"),
                         ("POST", "/admin/backends/alpha/disable"), ("POST", "/admin/reload")):
        r = request(pitot.port, method, path, headers=[("X-Request-Id", "cp-1")])
        assert r.status == 404, (method, path, r.status)
        assert r.header("x-request-id") == "cp-1", r.headers
    assert states(admin)["alpha"] == "up"
    # without admin_listen there is no status page: the path is the backend's
    plain = start_pitot([sim.port])
    r = request(plain.port, "GET", "/status")
    assert b"pitot status" not in r.body, r.body[:200]
    r = request(plain.port, "GET", "/status.json")
    assert b"backends" not in r.body, r.body[:200]
    stop_pitot_clean(pitot)
    stop_pitot_clean(plain)


check("status.json: fields, figures, a disabled backend drains and is skipped, a killed one is "
      "down, enable; the page in headless Chromium", t_status_json_drain_and_page)
check("admin_token on the POSTs, 401/404/405 with X-Request-Id, reload, all disabled: not ready",
      t_admin_errors_and_token)
check("status and /admin/ are 404 on the client port; nothing without admin_listen", t_client_port)
finish()
