"""Soak: steady streaming load through pitot for DURATION (30s, 5m, 30m, 2h):
pitot-load with CONCURRENCY streams against two pitot-sim backends. Prints
pitot's resident memory, open fds and requests/s every minute (every tenth of
the run when it is shorter than ten minutes), then the growth per hour of
memory and fds after a warm-up (the first sixth of the run): the slope of a
least-squares line over every sample taken after it (one every 5 s), as a
share of their mean. Exits non-zero when pitot or a backend died, a request
failed, or (runs of 10 minutes or more) a growth is over MAX_GROWTH percent
per hour; a shorter run is a smoke test and gives no verdict on growth.

Environment: PITOT_BUILD (build), DURATION (30m), CONCURRENCY (24),
TOKENS_PER_S (60, per stream), MAX_TOKENS (64), MAX_GROWTH (1.0)."""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness as h  # noqa: E402

SAMPLE_S = 5.0


def parse_duration(v):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", v.strip())
    if not m:
        raise SystemExit("soak: DURATION: expected 30s, 5m, 30m or 2h, got %r" % v)
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS for pid %d" % pid)


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def requests_total(port):
    """pitot_requests_total summed over every label set."""
    r = h.request(port, "GET", "/metrics", timeout=10.0)
    return h.metric_value(r.body.decode(), "pitot_requests_total") or 0.0


def slope_per_hour(samples):
    """Least-squares slope of (t_s, value) samples, in value per hour."""
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    stt = sum((t - mt) ** 2 for t, _ in samples)
    if stt == 0:
        return 0.0
    return sum((t - mt) * (v - mv) for t, v in samples) / stt * 3600.0


def main():
    duration = parse_duration(os.environ.get("DURATION") or "30m")
    conc = int(os.environ.get("CONCURRENCY") or 24)
    tps = float(os.environ.get("TOKENS_PER_S") or 60)
    max_tokens = int(os.environ.get("MAX_TOKENS") or 64)
    max_growth = float(os.environ.get("MAX_GROWTH") or 1.0)
    print_every = 60.0 if duration >= 600 else max(duration / 10.0, SAMPLE_S)
    warmup = duration / 6.0
    verdict = duration >= 600

    sims = [h.start_sim("--seq", "--slots", str(conc), "--tokens-per-s", str(tps),
                        "--prefill-tokens-per-s", "5000", "--seed", str(i + 1)) for i in range(2)]
    argv = [os.path.join(h.BUILD, "pitot"), "--listen", "%s:%d" % (h.HOST, h.free_port()),
            "--access-log", "/dev/null"]
    for s in sims:
        argv += ["--backend", "http://%s:%d" % (h.HOST, s.port)]
    port = int(argv[2].rsplit(":", 1)[1])
    pitot = h.Proc(argv, "pitot", r"listening on")
    pid = pitot.p.pid
    idle_before = (rss_bytes(pid), open_fds(pid))
    load = subprocess.Popen(
        [os.path.join(h.BUILD, "pitot-load"), "--url", "http://%s:%d/v1/chat/completions" % (h.HOST, port),
         "--concurrency", str(conc), "--duration", "%g" % duration, "--max-tokens", str(max_tokens),
         "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print("soak: %gs, %d streams of %d tokens at %g tokens/s through pitot (pid %d) to 2 pitot-sim; "
          "warm-up %gs" % (duration, conc, max_tokens, tps, pid, warmup), flush=True)
    print("%8s %10s %6s %10s" % ("t_s", "rss_KiB", "fds", "req/s"), flush=True)

    t0 = time.monotonic()
    samples = []          # (t_s, rss, fds)
    last_print = (0.0, requests_total(port))
    next_print = print_every
    problems = []
    try:
        # samples while the load runs at full strength only: not its last
        # seconds, when streams end and none start
        while load.poll() is None and time.monotonic() - t0 + SAMPLE_S < duration:
            time.sleep(SAMPLE_S)
            t = time.monotonic() - t0
            if pitot.p.poll() is not None or any(s.p.poll() is not None for s in sims):
                problems.append("a process died at %.0fs" % t)
                break
            samples.append((t, rss_bytes(pid), open_fds(pid)))
            if t >= next_print:
                n = requests_total(port)
                rate = (n - last_print[1]) / (t - last_print[0])
                last_print = (t, n)
                next_print += print_every
                print("%8.0f %10d %6d %10.1f" % (t, samples[-1][1] // 1024, samples[-1][2], rate),
                      flush=True)
        out = load.communicate(timeout=120)[0]
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    for line in out.strip().splitlines():
        print("pitot-load: " + line, flush=True)
    m = re.search(r"failed: (\d+)", out)
    if load.returncode != 0:
        problems.append("pitot-load exit %s: %s" % (load.returncode, out[-500:]))
    elif not m:
        problems.append("pitot-load printed no failed count: %s" % out[-500:])
    elif int(m.group(1)) != 0:
        problems.append("%s requests failed" % m.group(1))

    time.sleep(2.0)
    if pitot.p.poll() is None:
        print("idle before the load: rss %d KiB, %d fds; after it: rss %d KiB, %d fds"
              % (idle_before[0] // 1024, idle_before[1], rss_bytes(pid) // 1024, open_fds(pid)),
              flush=True)
    post = [s for s in samples if s[0] >= warmup]
    if len(post) >= 3:
        for name, k in (("rss", 1), ("fds", 2)):
            pts = [(s[0], s[k]) for s in post]
            mean = sum(v for _, v in pts) / len(pts)
            per_h = slope_per_hour(pts)
            pct = 100.0 * per_h / mean if mean else 0.0
            unit = "KiB" if name == "rss" else "fds"
            scale = 1024.0 if name == "rss" else 1.0
            print("growth %s: %+.1f %s/h over %d samples after warm-up (mean %.0f %s): %+.2f%%/h"
                  % (name, per_h / scale, unit, len(pts), mean / scale, unit, pct), flush=True)
            if verdict and pct > max_growth:
                problems.append("%s grows %.2f%%/h (target under %g%%/h)" % (name, pct, max_growth))
    else:
        problems.append("too few samples after the warm-up")
    if not verdict:
        print("soak: a run under 10 minutes is a smoke test: no verdict on growth", flush=True)
    rc = pitot.stop()
    for s in sims:
        s.stop()
    if rc != 0:
        problems.append("pitot exit status %s: %s" % (rc, pitot.stderr()[-1000:]))
    if problems:
        print("soak: FAIL: " + "; ".join(problems), flush=True)
        return 1
    print("soak: ok", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        h.stop_all()
