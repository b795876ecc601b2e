"""pitot's process_* families and pitot_build_info against what the kernel
says about the same PID: open descriptors as /proc/PID/fd lists them, the
descriptor limit of /proc/PID/limits, resident memory near VmRSS, the start
time the test saw, CPU seconds that never go back and grow under load; on the
client and on the admin listener, with a program name (comm) holding spaces
and parentheses, so a /proc/PID/stat read from the first ')' gives wrong
numbers; `promtool check metrics` clean; and with /proc hidden the scrape
still answers, without the families /proc feeds."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import (BUILD, HOST, Proc, check, finish, free_port, metric_value, metrics,  # noqa: E402
                     start_sim, stop_pitot_clean)

# 15 bytes, the most comm keeps; a stat parser that stops at the first ')'
# reads " (t o" onwards as fields and gets every number wrong
NAME = "pi) (t o) 4 5 6"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
FAMILIES = {"pitot_build_info": "gauge", "process_cpu_seconds_total": "counter",
            "process_max_fds": "gauge", "process_open_fds": "gauge",
            "process_resident_memory_bytes": "gauge", "process_start_time_seconds": "gauge",
            "process_virtual_memory_bytes": "gauge"}
FROM_PROC = {"process_open_fds", "process_resident_memory_bytes", "process_start_time_seconds",
             "process_virtual_memory_bytes"}
HELP = {"process_cpu_seconds_total": "Total user and system CPU time spent in seconds.",
        "process_open_fds": "Number of open file descriptors.",
        "process_max_fds": "Maximum number of open file descriptors.",
        "process_resident_memory_bytes": "Resident memory size in bytes.",
        "process_virtual_memory_bytes": "Virtual memory size in bytes.",
        "process_start_time_seconds": "Start time of the process since unix epoch in seconds."}


def version():
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "include", "pitot", "util",
                           "version.h")) as f:
        return re.search(r'#define PITOT_VERSION "([^"]+)"', f.read()).group(1)


def start_named(backends, admin=False, wrap=()):
    """pitot run through a symlink called NAME (so that is its comm); with
    admin, /metrics is on an admin listener (admin_listen), else on the client
    one: .mport either way. wrap: argv run before it (it must exec pitot in
    place, keeping the PID)."""
    d = tempfile.mkdtemp(prefix="pitot-name-")
    exe = os.path.join(d, NAME)
    os.symlink(os.path.abspath(os.path.join(BUILD, "pitot")), exe)
    port, aport = free_port(), free_port()
    argv = list(wrap) + [exe, "--listen", "%s:%d" % (HOST, port)]
    if admin:
        cf = os.path.join(d, "pitot.yaml")
        with open(cf, "w") as f:
            f.write("admin_listen: %s:%d\n" % (HOST, aport))
        argv += ["-c", cf]
    for b in backends:
        argv += ["--backend", "http://%s:%d" % (HOST, b)]
    try:
        pr = Proc(argv, "pitot", r"listening on")
    finally:
        shutil.rmtree(d)  # read at start: comm and the config outlive the files
    pr.port, pr.mport = port, aport if admin else port
    return pr


def families(text):
    """{family: type} from the TYPE lines, {family: help} from the HELP lines."""
    return (dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)),
            dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.M)))


def proc_value(text, name):
    v = metric_value(text, name)
    assert v is not None, "no %s sample in /metrics" % name
    return v


def soft_nofile(pid):
    with open("/proc/%d/limits" % pid) as f:
        m = re.search(r"^Max open files\s+(\d+)\s+", f.read(), re.M)
    assert m, "no Max open files in /proc/%d/limits" % pid
    return int(m.group(1))


def status_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        m = re.search(r"^%s:\s+(\d+) kB$" % field, f.read(), re.M)
    assert m, "no %s in /proc/%d/status" % (field, pid)
    return int(m.group(1)) * 1024


def stat_seconds(pid):
    """(user+system CPU s, start as Unix time) from /proc/PID/stat and
    /proc/stat's btime, parsed here independently of pitot."""
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    with open("/proc/stat") as f:
        btime = int(re.search(r"^btime (\d+)$", f.read(), re.M).group(1))
    hz = os.sysconf("SC_CLK_TCK")
    # rest[0] is field 3: utime 14, stime 15, starttime 22
    return (int(rest[11]) + int(rest[12])) / hz, btime + int(rest[19]) / hz


def load(pitot, n=300):
    r = subprocess.run([os.path.join(BUILD, "pitot-load"), "--url",
                        "http://%s:%d/v1/chat/completions" % (HOST, pitot.port),
                        "--concurrency", "8", "--requests", str(n), "--prompt-tokens", "64",
                        "--max-tokens", "16", "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def values_match_kernel(sim, admin):
    t0 = time.time()
    pitot = start_named([sim.port], admin=admin)
    t1 = time.time()
    pid = pitot.p.pid
    with open("/proc/%d/comm" % pid) as f:
        comm = f.read().rstrip("\n")
    assert comm == NAME, "pitot's comm is %r, not %r: the parse is not put to the test" % (
        comm, NAME)
    for _ in range(2):
        port = pitot.mport
        text = metrics(port)
        fds_seen = len(os.listdir("/proc/%d/fd" % pid))
        rss_seen = status_kb(pid, "VmRSS")
        vm_seen = status_kb(pid, "VmSize")
        types, helps = families(text)
        for fam, kind in FAMILIES.items():
            assert types.get(fam) == kind, "%s: TYPE %s, want %s" % (fam, types.get(fam), kind)
        for fam, help_text in HELP.items():
            assert helps.get(fam) == help_text, "%s: HELP %r" % (fam, helps.get(fam))
        assert metric_value(text, "pitot_build_info", version=version()) == 1, \
            [l for l in text.splitlines() if "build_info" in l]
        # the scrape's own connection and the listing's descriptor come and go
        fds = proc_value(text, "process_open_fds")
        assert abs(fds - fds_seen) <= 3, "open fds %s, /proc/%d/fd lists %d" % (fds, pid, fds_seen)
        assert proc_value(text, "process_max_fds") == soft_nofile(pid)
        rss = proc_value(text, "process_resident_memory_bytes")
        assert 0.5 * rss_seen <= rss <= 1.5 * rss_seen, "RSS %s, VmRSS %d" % (rss, rss_seen)
        vm = proc_value(text, "process_virtual_memory_bytes")
        assert 0.5 * vm_seen <= vm <= 1.5 * vm_seen and vm >= rss, "vm %s, VmSize %d" % (
            vm, vm_seen)
        start = proc_value(text, "process_start_time_seconds")
        assert t0 - 5 <= start <= t1 + 5, "start %s, the test started it in [%s, %s]" % (
            start, t0, t1)
        assert abs(start - stat_seconds(pid)[1]) <= 1.5, (start, stat_seconds(pid))
        print("  port %d: open_fds %d (/proc %d), max_fds %d, rss %d (VmRSS %d), start %+.2f s"
              % (port, fds, fds_seen, proc_value(text, "process_max_fds"), rss, rss_seen,
                 start - t0), flush=True)
    stop_pitot_clean(pitot)


def t_values_match_kernel():
    sim = start_sim("--slots", "16", "--tokens-per-s", "5000")
    values_match_kernel(sim, admin=False)
    values_match_kernel(sim, admin=True)


def t_cpu_counts_up():
    sim = start_sim("--slots", "16", "--tokens-per-s", "5000")
    pitot = start_named([sim.port])
    c1 = proc_value(metrics(pitot.port), "process_cpu_seconds_total")
    c2 = proc_value(metrics(pitot.port), "process_cpu_seconds_total")
    assert c2 >= c1, "CPU seconds went back: %s then %s" % (c1, c2)
    load(pitot)
    c3 = proc_value(metrics(pitot.port), "process_cpu_seconds_total")
    kernel = stat_seconds(pitot.p.pid)[0]
    assert c3 > c2, "CPU seconds %s before 300 requests, %s after" % (c2, c3)
    assert abs(c3 - kernel) <= 0.1 + 0.1 * kernel, "CPU seconds %s, /proc stat says %s" % (
        c3, kernel)
    print("  cpu seconds %.6f, %.6f, after load %.6f (/proc stat %.2f)" % (c1, c2, c3, kernel),
          flush=True)
    stop_pitot_clean(pitot)


def promtool_check(text):
    if not os.access(PROMTOOL, os.X_OK):
        print("  promtool not installed (Debian package prometheus): exposition not linted",
              flush=True)
        return
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), \
        "promtool check metrics: %s" % (r.stdout + r.stderr)[-1500:]


def t_promtool_clean():
    sim = start_sim("--slots", "16", "--tokens-per-s", "5000")
    for admin in (False, True):
        pitot = start_named([sim.port], admin=admin)
        load(pitot, 20)
        promtool_check(metrics(pitot.mport))
        stop_pitot_clean(pitot)


def unshare_works():
    try:
        r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs none /proc && test ! -e /proc/self"],
                           capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def t_no_proc():
    if not unshare_works():
        print("  no unprivileged user namespace here: /proc cannot be hidden, not checked",
              flush=True)
        return
    sim = start_sim("--slots", "4")
    with open(os.path.join(BUILD, "pitot"), "rb") as f:
        if b"__asan_init" in f.read():
            # the sanitizers read their options and threads from /proc: a
            # sanitized pitot cannot start and stop without it
            print("  a sanitizer build (make asan) needs /proc: checked by make test", flush=True)
            return
    # a private mount namespace whose /proc is an empty tmpfs; exec keeps the PID
    hide = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
            'mount -t tmpfs none /proc && exec "$@"', "sh"]
    pitot = start_named([sim.port], admin=True, wrap=hide)
    for _ in range(2):
        text = metrics(pitot.mport)
        types, _ = families(text)
        assert not FROM_PROC & set(types), "with no /proc: %s" % sorted(FROM_PROC & set(types))
        assert not [l for l in text.splitlines() if l.split(" ")[0] in FROM_PROC], text[-800:]
        for fam in set(FAMILIES) - FROM_PROC:
            assert types.get(fam) == FAMILIES[fam], "%s missing without /proc" % fam
        assert proc_value(text, "process_max_fds") == soft_nofile(pitot.p.pid)
        assert "pitot_requests_total" in types
        promtool_check(text)
    stop_pitot_clean(pitot)


check("process_* values agree with /proc/PID on both listeners (comm with ') (' in it)",
      t_values_match_kernel)
check("process_cpu_seconds_total never goes back and grows under load", t_cpu_counts_up)
check("the exposition with the process families passes promtool check metrics", t_promtool_clean)
check("with /proc unreadable the scrape answers without the families /proc feeds", t_no_proc)
finish()
