#!/usr/bin/env python3
"""Backends by DNS name: every address a backend, looked up again.

A small DNS server on loopback (routing.resolver) answers for pool.test with
addresses the test changes; pitot-sim replicas listen on 127.0.0.2..5 (all
loopback), on one port, as pods behind a Kubernetes headless Service do.
"""
import http.client
import json
import re
import socket
import struct
import threading
import time

from harness import (HOST, BUILD, Proc, check, chat_body, finish, free_port, metric_value,
                     metrics, request, start_pitot, stop_pitot_clean, wait_for)
import os


class FakeDNS:
    """Answers A queries for one name with self.addrs (AAAA: no data).
    mode: "ok", "servfail", "nxdomain" or "silent" (no answer at all)."""

    def __init__(self, name):
        self.name = name.lower().rstrip(".")
        self.addrs = []
        self.mode = "ok"
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.stopped = False
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def set(self, addrs, mode="ok"):
        self.addrs = list(addrs)
        self.mode = mode

    def _loop(self):
        while not self.stopped:
            try:
                q, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            r = self._answer(q)
            if r is not None:
                self.sock.sendto(r, peer)

    def _answer(self, q):
        if len(q) < 12:
            return None
        qid, flags, qd = struct.unpack(">HHH", q[:6])
        pos, labels = 12, []
        while pos < len(q) and q[pos] != 0:
            n = q[pos]
            labels.append(q[pos + 1:pos + 1 + n].decode("ascii", "replace"))
            pos += 1 + n
        pos += 1
        qtype, qclass = struct.unpack(">HH", q[pos:pos + 4])
        question = q[12:pos + 4]
        name = ".".join(labels).lower()
        self.queries += 1
        mode = self.mode
        if mode == "silent":
            return None
        rcode = {"ok": 0, "servfail": 2, "nxdomain": 3}[mode]
        if mode == "ok" and name != self.name:
            rcode = 3
        answers = b""
        count = 0
        if rcode == 0 and qtype == 1:
            for a in self.addrs:
                answers += struct.pack(">HHHIH", 0xC00C, 1, 1, 1, 4) + socket.inet_aton(a)
                count += 1
        head = struct.pack(">HHHHHH", qid, 0x8180 | rcode | (flags & 0x0100), 1, count, 0, 0)
        return head + question + answers

    def close(self):
        self.stopped = True
        self.sock.close()


def start_sim_at(ip, port, *args):
    pr = Proc([os.path.join(BUILD, "pitot-sim"), "--listen", "%s:%d" % (ip, port)] + list(args),
              "pitot-sim@" + ip, r"listening on")
    pr.ip, pr.port = ip, port
    return pr


def sim_requests(sim):
    c = http.client.HTTPConnection(sim.ip, sim.port, timeout=5)
    c.request("GET", "/sim/stats")
    n = json.loads(c.getresponse().read())["requests"]
    c.close()
    return n


def common_port():
    """A port free on every loopback address the test uses."""
    for _ in range(50):
        p = free_port()
        ok = True
        for ip in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"):
            s = socket.socket()
            try:
                s.bind((ip, p))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return p
    raise RuntimeError("no common free port")


def config(dns_port, port, extra=""):
    return ("backends:\n"
            "  - url: http://pool.test:%d\n"
            "    name: pool\n"
            "routing:\n"
            "  resolver: %s:%d\n"
            "  dns_interval: 200ms\n"
            "  max_addresses: 3\n"
            "  scrape_interval: 100ms\n"
            "  scrape_timeout: 100ms\n"
            "health:\n"
            "  interval: 100ms\n" % (port, HOST, dns_port)) + extra


def backend_labels(port):
    text = metrics(port)
    return sorted(set(re.findall(r'^pitot_backend_up\{backend="([^"]+)"\}', text, re.M)))


def send(pitot, n, stream=False):
    for _ in range(n):
        r = request(pitot.port, "POST", "/v1/chat/completions",
                    chat_body(stream=stream, max_tokens=2))
        assert r.status == 200, (r.status, r.body[:200])


def t_every_address_a_backend_and_stable_slots():
    dns = FakeDNS("pool.test")
    try:
        port = common_port()
        sims = {ip: start_sim_at(ip, port) for ip in
                ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")}
        dns.set(["127.0.0.2", "127.0.0.3"])
        pitot = start_pitot([], config=config(dns.port, port))
        # two addresses: two backends; the third slot is not exposed
        assert backend_labels(pitot.port) == ["pool", "pool/1"], backend_labels(pitot.port)
        err = pitot.stderr()
        assert "backend pool: address 127.0.0.2:%d, from pool.test" % port in err, err
        assert "backend pool/1: address 127.0.0.3:%d, from pool.test" % port in err, err
        wait_for(lambda: metric_value(metrics(pitot.port), "pitot_backend_requests_running",
                                      backend="pool/1") is not None, 5)
        send(pitot, 12)
        a, b = sim_requests(sims["127.0.0.2"]), sim_requests(sims["127.0.0.3"])
        assert a > 0 and b > 0 and a + b == 12, (a, b)
        # the answer changes order and .2 leaves, .4 arrives: .3 keeps pool/1
        dns.set(["127.0.0.4", "127.0.0.3"])
        wait_for(lambda: "address 127.0.0.4:%d (was 127.0.0.2:%d)" % (port, port)
                 in pitot.stderr(), 5)
        assert "backend pool/1" not in pitot.stderr().split("(was 127.0.0.2")[1]
        before = {ip: sim_requests(s) for ip, s in sims.items()}
        send(pitot, 12)
        after = {ip: sim_requests(s) for ip, s in sims.items()}
        assert after["127.0.0.2"] == before["127.0.0.2"], (before, after)
        assert after["127.0.0.4"] > before["127.0.0.4"], (before, after)
        assert after["127.0.0.3"] > before["127.0.0.3"], (before, after)
        # a third address fills the last slot; a fourth finds none and is said
        dns.set(["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.2"])
        wait_for(lambda: backend_labels(pitot.port) == ["pool", "pool/1", "pool/2"], 5)
        wait_for(lambda: "pool.test has 4 addresses, routing.max_addresses is 3: 1 not used"
                 in pitot.stderr(), 5)
        # the name shrinks to one address: the other slots leave the metrics
        dns.set(["127.0.0.5"])
        wait_for(lambda: backend_labels(pitot.port) == ["pool/2"], 5)
        text = metrics(pitot.port)
        assert 'backend="pool"' not in text and 'backend="pool/1"' not in text, text
        before = sim_requests(sims["127.0.0.5"])
        send(pitot, 5, stream=True)
        assert sim_requests(sims["127.0.0.5"]) == before + 5
        stop_pitot_clean(pitot)
    finally:
        dns.close()


def t_failed_lookup_keeps_the_addresses():
    dns = FakeDNS("pool.test")
    try:
        port = common_port()
        sims = [start_sim_at(ip, port) for ip in ("127.0.0.2", "127.0.0.3")]
        dns.set(["127.0.0.2", "127.0.0.3"])
        pitot = start_pitot([], config=config(dns.port, port))
        assert backend_labels(pitot.port) == ["pool", "pool/1"]
        for mode in ("servfail", "nxdomain", "silent"):
            q = dns.queries
            dns.set([], mode)
            wait_for(lambda: dns.queries >= q + 2, 5)  # lookups came and failed
            assert backend_labels(pitot.port) == ["pool", "pool/1"], mode
            send(pitot, 4)
        err = pitot.stderr()
        assert "backend pool: cannot resolve pool.test" in err, err
        assert "keeping 2 addresses" in err, err
        assert sum(sim_requests(s) for s in sims) == 12
        dns.set(["127.0.0.2", "127.0.0.3"])
        wait_for(lambda: "pool.test resolves again" in pitot.stderr(), 20)
        # stopped while a lookup waits for an answer: cancelled, clean exit
        q = dns.queries
        dns.set([], "silent")
        wait_for(lambda: dns.queries > q, 5)
        stop_pitot_clean(pitot)
    finally:
        dns.close()


def t_name_without_address_at_start():
    """pitot starts while the name has no address yet (a headless Service
    with no ready pod): not ready, 503; ready once the name resolves."""
    dns = FakeDNS("pool.test")
    try:
        port = common_port()
        start_sim_at("127.0.0.3", port)
        dns.set([], "nxdomain")
        pitot = start_pitot([], config=config(dns.port, port))
        assert request(pitot.port, "GET", "/readyz").status == 503
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(stream=False))
        assert r.status == 503 and b"no_backend" in r.body, (r.status, r.body)
        assert backend_labels(pitot.port) == [], backend_labels(pitot.port)
        dns.set(["127.0.0.3"])
        wait_for(lambda: request(pitot.port, "GET", "/readyz").status == 200, 5)
        send(pitot, 2)
        assert backend_labels(pitot.port) == ["pool"]
        stop_pitot_clean(pitot)
    finally:
        dns.close()


def t_system_resolver_hosts_file():
    """Without routing.resolver, names come from /etc/resolv.conf and
    /etc/hosts: localhost is 127.0.0.1 (IPv4 preferred by dns_family auto)."""
    port = free_port()
    start_sim_at(HOST, port)
    pitot = start_pitot([], extra=("--backend", "http://localhost:%d" % port))
    assert "backend localhost:%d: address 127.0.0.1:%d" % (port, port) in pitot.stderr()
    send(pitot, 2)
    assert backend_labels(pitot.port) == ["localhost:%d" % port]
    stop_pitot_clean(pitot)


check("every address of a name is a backend, each keeps its slot", t_every_address_a_backend_and_stable_slots)
check("a failed lookup keeps the addresses", t_failed_lookup_keeps_the_addresses)
check("a name without an address at start: 503 until it resolves", t_name_without_address_at_start)
check("system resolver: localhost from /etc/hosts", t_system_resolver_hosts_file)
finish()
