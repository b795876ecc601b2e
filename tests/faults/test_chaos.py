"""Chaos: three pitot-sim --seq backends under steady streaming load through
pitot, one of them killed with SIGKILL at seeded random moments and started
again on the same port, for CHAOS_SECONDS (40). Every stream is whole or cut
the way the README says (its API's error event, no final event, no
terminating chunk), no token is duplicated or reordered, every request that
had no answer yet when its backend died was served by another one (no
client ever gets a 5xx), and pitot's descriptors and memory come back to
their level before the run."""

import os
import random
import signal
import threading
import time

from faults import fds_settled, h, port_free, rss_back, rss_kib, stream, upstream_errors

SECONDS = float(os.environ.get("CHAOS_SECONDS") or 40)
SEED = int(os.environ.get("CHAOS_SEED") or 11)
CLIENTS = 24
APIS = ("chat", "chat", "completions", "responses", "messages")

CONFIG = """
health:
  interval: 500ms
routing:
  saturation:
    max_waiting: 4
  eject:
    base: 300ms
    max: 1s
upstream:
  connect_timeout: 2s
"""


def sim_args():
    # 3 x 6 slots for 24 clients, and pitot lets each backend queue 4: some
    # requests wait in a backend's queue, with no answer yet, when it dies
    return ("--seq", "--slots", "6", "--tokens-per-s", "40", "--prefill-tokens-per-s", "2000",
            "--jitter", "0.3")


def start_backend(port):
    # the port was ours a moment ago: wait (briefly) for the kernel to let go
    h.wait_for(lambda: port_free(port), timeout=5.0)
    return h.start_sim(*sim_args(), port=port)


def load(port, stop, rng_seed, results, lock):
    rng = random.Random(rng_seed)
    while not stop.is_set():
        st = stream(port, rng.choice(APIS), max_tokens=rng.randint(8, 48), timeout=60.0)
        with lock:
            results.append(st)


def run_load(pitot_port, seconds, kill=None):
    """CLIENTS closed-loop clients for seconds; kill(stop) runs beside them.
    Returns the list of Streams."""
    stop = threading.Event()
    results, lock = [], threading.Lock()
    threads = [threading.Thread(target=load, args=(pitot_port, stop, SEED * 1000 + i, results, lock),
                                daemon=True) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    killer = None
    if kill:
        killer = threading.Thread(target=kill, args=(stop,), daemon=True)
        killer.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(90)
        assert not t.is_alive(), "a client thread is still running 90 s after the end"
    if killer:
        killer.join(30)
    return results


def t_chaos():
    sims = [h.start_sim(*sim_args()) for _ in range(3)]
    ports = [s.port for s in sims]
    pitot = h.start_pitot(ports, config=CONFIG)
    pid = pitot.p.pid
    h.wait_for(lambda: h.metric_value(h.metrics(pitot.port), "pitot_backend_up") == 3, timeout=10)

    # warm-up: the same load, no fault, so the allocator and pools reach their
    # working size before the level the run is compared against is taken
    warm = run_load(pitot.port, 4.0)
    assert warm and all(s.whole() for s in warm), [s.describe() for s in warm if not s.whole()][:3]
    time.sleep(5.0)  # idle upstream connections are closed after 4 s
    fds0, list0 = fds_settled(pid)
    rss0 = rss_kib(pid)

    kills = []
    rng = random.Random(SEED)

    def killer(stop):
        while not stop.wait(rng.uniform(1.5, 4.0)):
            i = rng.randrange(3)
            sims[i].stop(sig=signal.SIGKILL)
            kills.append((round(time.monotonic(), 2), i))
            if stop.wait(rng.uniform(0.3, 1.5)):
                break
            sims[i] = start_backend(ports[i])
        for i in range(3):  # every backend up at the end
            if sims[i].p.poll() is not None:
                sims[i] = start_backend(ports[i])

    res = run_load(pitot.port, SECONDS, killer)
    whole = [s for s in res if s.whole()]
    cut = [s for s in res if s.cut_properly()]
    other = [s for s in res if not s.whole() and not s.cut_properly()]
    dup = [s for s in res if not s.in_order()]
    no_head = [s for s in res if s.status != 200]
    errs = upstream_errors(pitot.port)
    print("chaos: %d s, seed %d, %d clients, %d kills of backends %s" %
          (SECONDS, SEED, CLIENTS, len(kills), "".join(str(i) for _, i in kills)))
    print("chaos: requests sent %d, completed %d, failed %d (cut mid-stream with the error "
          "event %d, any other way %d, not 200 %d); duplicated or reordered tokens in %d "
          "streams; tokens received %d" % (len(res), len(whole), len(res) - len(whole), len(cut),
                                           len(other), len(no_head), len(dup),
                                           sum(len(s.tokens) for s in res)))
    print("chaos: backend failures pitot saw (pitot_upstream_errors_total): %s" %
          ", ".join("%s %d" % kv for kv in sorted(errs.items())))
    assert kills, "no backend was killed"
    assert not dup, "tokens duplicated or reordered: " + dup[0].describe()
    assert not no_head, ("%d requests got no 200 (a try that failed before the answer must go "
                         "elsewhere): %s" % (len(no_head), no_head[0].describe()))
    assert not other, "%d streams neither whole nor cut properly: %s" % (len(other),
                                                                         other[0].describe())
    assert cut, "no stream was cut: the kills did not hit a running stream"
    assert len(whole) > 5 * len(cut), (len(whole), len(cut))
    # a try that failed before its answer is a connect error or a reset with no
    # head: each such request went elsewhere (none got a 5xx, above)
    retried = errs.get("upstream_connect", 0) + errs.get("upstream_reset", 0) - len(cut)
    print("chaos: tries that failed before any answer, each retried on another backend: %d"
          % retried)
    assert retried > 0, "no request was caught before its answer: %s" % errs

    # the backends are all up again; idle upstream connections leave after 4 s
    h.wait_for(lambda: h.metric_value(h.metrics(pitot.port), "pitot_backend_up") == 3, timeout=10)
    fds1, list1 = fds_settled(pid, want=fds0, timeout=20)
    rss1 = rss_kib(pid)
    print("chaos: pitot open fds %d before, %d after; RSS %d KiB before, %d KiB after (%+.1f%%)"
          % (fds0, fds1, rss0, rss1, 100.0 * (rss1 - rss0) / rss0))
    assert fds1 == fds0, "fds %d -> %d: %s" % (fds0, fds1, sorted(set(list1) - set(list0)))
    print("chaos: RSS %s" % rss_back(pid, rss0, rss1))
    # and pitot still serves every API whole
    for api in ("chat", "completions", "responses", "messages"):
        st = stream(pitot.port, api, max_tokens=5)
        assert st.whole(), st.describe()
    h.stop_pitot_clean(pitot)


h.check("chaos: a backend SIGKILLed and restarted under load: streams whole or cut with "
        "the error event, no token lost twice or out of order, no 5xx, fds and RSS back", t_chaos)
h.finish()
