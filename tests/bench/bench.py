"""Figures for tests/bench/bench.sh, make bench (Python 3 stdlib only).

  bench.py serve RUNS_JSONL
      answers the script's requests line by line (see serve()); "record
      KEY=VALUE..." turns one run of one contender into figures, from
      pitot-load's summary and --json lines, pitot's access log and what the
      script read from /proc. Keys: scenario, contender, round, workers,
      streams, load_out, load_json, access, cpu_ticks, clk_tck, rss_idle_kib,
      rss_peak_kib, retry_after.
  bench.py meta KEY=VALUE...
      the run's setup as a JSON object (numbers as numbers)
  bench.py report RUNS_JSONL META_JSON OUT_JSON
      the table (figures by contender, medians over the rounds, ratios of
      pitot to nginx and to HAProxy), the accuracy table, and OUT_JSON with
      every median and every round's value.

Percentiles are exact, nearest rank (the smallest value with at least q*n
values at or below it), never interpolated. A figure's value is the median
over the rounds of its per-round values; an "added" figure's per-round value
is the contender's minus direct's in the same round (contenders alternate
within a round, so both saw the same noise)."""

import json
import math
import re
import socket
import statistics
import sys

CONTENDERS = ["direct", "pitot", "nginx", "haproxy"]
RATIOS = [("pitot/nginx", "pitot", "nginx"), ("pitot/haproxy", "pitot", "haproxy")]
ACCURACY_TARGET_MS = 0.5


def nearest_rank(values, q):
    """Exact q-quantile (0 < q <= 1) by nearest rank; None when empty."""
    if not values:
        return None
    s = sorted(values)
    return s[max(1, math.ceil(q * len(s))) - 1]


def summary_dist(text, name):
    """{"p50":, "p95":, "p99":, "max":} (ms) from pitot-load's summary line
    "NAME p50 X p95 Y p99 Z max W"; {} when absent or "-"."""
    for line in text.splitlines():
        f = line.split()
        if len(f) == 9 and f[0] == name:
            try:
                return {f[1]: float(f[2]), f[3]: float(f[4]), f[5]: float(f[6]),
                        f[7]: float(f[8])}
            except ValueError:
                return {}
    return {}


def read_jsonl(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def accuracy(load, access):
    """|pitot's TTFT - pitot-load's| and the same for E2E, over the requests
    both saw complete (joined on the request id)."""
    mine = {r["id"]: r for r in access if r.get("id")}
    d_ttft, d_e2e = [], []
    for r in load:
        p = mine.get(r["id"])
        if p is None or r.get("status") != 200 or p.get("status") != 200 or r.get("error"):
            continue
        if r.get("ttft_ms") is not None and p.get("ttft_ms") is not None:
            d_ttft.append(abs(p["ttft_ms"] - r["ttft_ms"]))
        if r.get("e2e_ms") is not None and p.get("e2e_ms") is not None:
            d_e2e.append(abs(p["e2e_ms"] - r["e2e_ms"]))
    return {
        "joined": len(d_ttft),
        "ttft_abs_p50_ms": nearest_rank(d_ttft, 0.50),
        "ttft_abs_p99_ms": nearest_rank(d_ttft, 0.99),
        "e2e_abs_p50_ms": nearest_rank(d_e2e, 0.50),
        "e2e_abs_p99_ms": nearest_rank(d_e2e, 0.99),
    }


def make_record(argv):
    """The figures of one run, from KEY=VALUE arguments (see record)."""
    a = dict(kv.split("=", 1) for kv in argv)
    rec = {
        "scenario": a["scenario"],
        "contender": a["contender"],
        "round": int(a["round"]),
        "workers": int(a.get("workers", "1")),
    }
    if a.get("streams"):
        rec["streams"] = int(a["streams"])
    with open(a["load_out"], encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"requests: (\d+) ok: (\d+) failed: (\d+)", text)
    if m:
        rec["requests"], rec["ok"], rec["failed"] = (int(x) for x in m.groups())
    m = re.search(r"failed: \d+ \(([^)]*)\)", text)
    rec["failures"] = m.group(1) if m else ""
    load = read_jsonl(a["load_json"])
    ok = [r for r in load if r.get("status") == 200 and not r.get("error")]
    rec["ttft_p50_ms"] = nearest_rank([r["ttft_ms"] for r in ok if r.get("ttft_ms") is not None], 0.5)
    rec["ttft_p99_ms"] = nearest_rank([r["ttft_ms"] for r in ok if r.get("ttft_ms") is not None], 0.99)
    rec["e2e_p50_ms"] = nearest_rank([r["e2e_ms"] for r in ok if r.get("e2e_ms") is not None], 0.5)
    rec["itl_p99_ms"] = summary_dist(text, "itl_ms").get("p99")
    rec["events"] = sum(r.get("events") or 0 for r in load)
    shed = [r["e2e_ms"] for r in load if r.get("status") == 503 and r.get("e2e_ms") is not None]
    if shed:
        rec["shed"] = len(shed)
        rec["shed_p50_ms"] = nearest_rank(shed, 0.5)
        rec["shed_p99_ms"] = nearest_rank(shed, 0.99)
    if a.get("retry_after"):
        rec["retry_after"] = a["retry_after"]
    m = re.search(r"duration: ([0-9.]+) s", text)
    wall = float(m.group(1)) if m else None
    if wall:
        rec["wall_s"] = wall
        rec["events_per_s"] = rec["events"] / wall
        rec["requests_per_s"] = len(ok) / wall
    if a.get("cpu_ticks") not in (None, ""):
        cpu = int(a["cpu_ticks"]) / float(a.get("clk_tck", "100"))
        rec["cpu_s"] = cpu
        if cpu > 0:
            rec["events_per_cpu_s"] = rec["events"] / cpu
            rec["requests_per_cpu_s"] = len(ok) / cpu
        if wall:
            rec["cpu_pct"] = 100.0 * cpu / wall
    for k in ("rss_idle_kib", "rss_peak_kib"):
        if a.get(k):
            rec[k] = int(a[k])
    if rec.get("streams") and "rss_idle_kib" in rec and "rss_peak_kib" in rec:
        rec["rss_per_stream_kib"] = (rec["rss_peak_kib"] - rec["rss_idle_kib"]) / rec["streams"]
    if rec.get("failed") is not None:
        rec["errors"] = rec["failed"] - len(shed)
    if a.get("access"):
        access = read_jsonl(a["access"])
        rec["access_lines"] = len(access)
        rec["accuracy"] = accuracy(load, access)
        rec["shed_logged"] = sum(1 for r in access if r.get("outcome") == "shed")
    return rec


def progress(r):
    """One line of a run's main figures."""
    parts = [f"   {r['scenario']:<11} {r['contender']:<8}"]
    if r.get("workers", 1) > 1:
        parts.append(f"{r['workers']} workers")
    if "ok" in r:
        parts.append(f"ok {r['ok']}/{r['requests']}")
    if r.get("errors"):
        parts.append(f"errors {r['errors']} ({r.get('failures', '')})")
    for k, label in (("ttft_p50_ms", "TTFT p50"), ("ttft_p99_ms", "p99"),
                     ("itl_p99_ms", "ITL p99"), ("shed_p50_ms", "503 p50"),
                     ("shed_p99_ms", "p99")):
        if r.get(k) is not None and (k != "ttft_p50_ms" or r["scenario"] not in ("short",)):
            parts.append(f"{label} {fmt(r[k])} ms")
    if r.get("cpu_s") is not None:
        parts.append(f"CPU {r['cpu_s']:.2f} s ({fmt(r.get('cpu_pct'))} %)")
    if r["scenario"] in ("sse", "syscalls") and r.get("events_per_cpu_s"):
        parts.append(f"{fmt(r['events_per_cpu_s'])} events/CPU-s")
    if r["scenario"] == "short" and r.get("requests_per_cpu_s"):
        parts.append(f"{fmt(r['requests_per_cpu_s'])} req/CPU-s")
    if r.get("rss_per_stream_kib") is not None:
        parts.append(f"RSS {fmt(r['rss_idle_kib'])} -> {fmt(r['rss_peak_kib'])} KiB, "
                     f"{fmt(r['rss_per_stream_kib'])} KiB/stream")
    if r.get("accuracy"):
        a = r["accuracy"]
        parts.append(f"|dTTFT| p99 {fmt(a['ttft_abs_p99_ms'])} |dE2E| p99 "
                     f"{fmt(a['e2e_abs_p99_ms'])} ms (n {a['joined']})")
    if r.get("retry_after"):
        parts.append(f"probe {r['retry_after']} (status/Retry-After)")
    return "  ".join(parts)


def add_syscalls(runs_path, contender, rnd, count):
    """Adds perf's count to the contender's syscalls run of round rnd; one
    progress line."""
    runs = read_jsonl(runs_path)
    msg = f"   {'':<11} {contender:<8}  no count"
    for r in runs:
        if (r["scenario"] == "syscalls" and r["contender"] == contender
                and r["round"] == int(rnd) and count.isdigit()):
            r["syscalls"] = int(count)
            if r.get("events"):
                r["syscalls_per_event"] = int(count) / r["events"]
            msg = (f"   {'':<11} {contender:<8}  {count} system calls, "
                   f"{fmt(r.get('syscalls_per_event'))} per SSE event")
    with open(runs_path, "w", encoding="utf-8") as f:
        for r in runs:
            f.write(json.dumps(r) + "\n")
    return msg


def serve(argv):
    """Answers the script's requests, one a line on stdin, fields separated
    by tabs, with one line on stdout each (one Python start for the whole
    benchmark): "record KEY=VALUE..." appends the run's figures to
    RUNS_JSONL and answers its progress line; "port" answers a free
    loopback port; "syscalls CONTENDER ROUND COUNT" adds a count."""
    runs_path = argv[0]
    for req in sys.stdin:
        f = req.rstrip("\n").split("\t")
        if f[0] == "record":
            rec = make_record(f[1:])
            with open(runs_path, "a", encoding="utf-8") as out:
                out.write(json.dumps(rec) + "\n")
            answer = progress(rec)
        elif f[0] == "port":
            with socket.socket() as sk:
                sk.bind(("127.0.0.1", 0))
                answer = str(sk.getsockname()[1])
        elif f[0] == "syscalls":
            answer = add_syscalls(runs_path, f[1], f[2], f[3] if len(f) > 3 else "")
        else:
            answer = f"unknown request {f[0]!r}"
        print(answer, flush=True)


def meta(argv):
    out = {}
    for kv in argv:
        k, v = kv.split("=", 1)
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    print(json.dumps(out))


# ---- the report -------------------------------------------------------------

ALL, PROXIES, PITOT = tuple(CONTENDERS), ("pitot", "nginx", "haproxy"), ("pitot",)


def figure_list(meta):
    """The rows: (key, label, scenario, workers, field, added, better, who);
    `added`: the per-round value less direct's; `who`: the contenders the
    figure exists for."""
    n1, n2, nw = meta["scale_small"], meta["scale_big"], meta["workers_n"]
    rows = []
    for sc, what in (("low", "1 stream"), ("moderate", "200 streams 50 tok/s")):
        rows += [
            (f"{sc}.ttft_p50_ms", f"{what}: TTFT p50, ms", sc, 1, "ttft_p50_ms", False, "lower",
             ALL),
            (f"{sc}.added_ttft_p50_ms", f"{what}: added TTFT p50, ms", sc, 1, "ttft_p50_ms",
             True, "lower", PROXIES),
            (f"{sc}.added_ttft_p99_ms", f"{what}: added TTFT p99, ms", sc, 1, "ttft_p99_ms",
             True, "lower", PROXIES),
            (f"{sc}.added_itl_p99_ms", f"{what}: added ITL p99, ms", sc, 1, "itl_p99_ms", True,
             "lower", PROXIES),
        ]
    rows += [
        ("sse.events_per_cpu_s", "SSE events per proxy CPU-second", "sse", 1,
         "events_per_cpu_s", False, "higher", PROXIES),
        ("sse.events_per_s", "  SSE events per second", "sse", 1, "events_per_s", False,
         "higher", ALL),
        ("sse.cpu_pct", "  proxy CPU use, %", "sse", 1, "cpu_pct", False, "lower", PROXIES),
        ("short.requests_per_cpu_s", "short requests per proxy CPU-second", "short", 1,
         "requests_per_cpu_s", False, "higher", PROXIES),
        ("short.requests_per_s", "  short requests per second", "short", 1, "requests_per_s",
         False, "higher", ALL),
        ("short.cpu_pct", "  proxy CPU use, %", "short", 1, "cpu_pct", False, "lower", PROXIES),
    ]
    for sc, n in (("scale_small", n1), ("scale_big", n2)):
        rows += [
            (f"{sc}.rss_per_stream_kib", f"{n:,} slow streams: RSS per stream, KiB", sc, 1,
             "rss_per_stream_kib", False, "lower", PROXIES),
            (f"{sc}.errors", f"{n:,} slow streams: errors", sc, 1, "errors", False, "lower", ALL),
            (f"{sc}.added_itl_p99_ms", f"{n:,} slow streams: added ITL p99, ms", sc, 1,
             "itl_p99_ms", True, "lower", PROXIES),
        ]
    rows += [
        ("idle.rss_kib", "idle RSS, KiB", "low", 1, "rss_idle_kib", False, "lower", PROXIES),
        ("overload.shed_p50_ms", "503 + Retry-After latency p50, ms", "overload", 1,
         "shed_p50_ms", False, "lower", PITOT),
        ("overload.shed_p99_ms", "503 + Retry-After latency p99, ms", "overload", 1,
         "shed_p99_ms", False, "lower", PITOT),
    ]
    if nw > 1:
        rows += [
            ("workers.sse.events_per_cpu_s", f"{nw} workers: SSE events per proxy CPU-second",
             "sse", nw, "events_per_cpu_s", False, "higher", PROXIES),
            ("workers.sse.events_per_s", f"  {nw} workers: SSE events per second", "sse", nw,
             "events_per_s", False, "higher", PROXIES),
            ("workers.short.requests_per_cpu_s",
             f"{nw} workers: short requests per proxy CPU-second", "short", nw,
             "requests_per_cpu_s", False, "higher", PROXIES),
            ("workers.short.requests_per_s", f"  {nw} workers: short requests per second",
             "short", nw, "requests_per_s", False, "higher", PROXIES),
        ]
    rows.append(("syscalls.per_event", "system calls per SSE event", "syscalls", 1,
                 "syscalls_per_event", False, "lower", PROXIES))
    return rows


def per_round(runs, scenario, workers, contender, field, added):
    """{round: value} for one figure and contender."""
    def val(c, r):
        for x in runs:
            if (x["scenario"] == scenario and x["workers"] == workers and x["contender"] == c
                    and x["round"] == r and x.get(field) is not None):
                return x[field]
        return None
    rounds = sorted({x["round"] for x in runs if x["scenario"] == scenario})
    out = {}
    for r in rounds:
        v = val(contender, r)
        if v is None:
            continue
        if added:
            if contender == "direct":
                continue
            d = val("direct", r)
            if d is None:
                continue
            v = v - d
        out[r] = v
    return out


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1 or v == 0:
        return f"{v:.2f}"
    return f"{v:.3f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def report(argv):
    runs = read_jsonl(argv[0])
    with open(argv[1], encoding="utf-8") as f:
        meta = json.load(f)
    out_path = argv[2]
    rows = figure_list(meta)
    figures = []
    for key, label, sc, w, field, added, better, who in rows:
        fig = {"key": key, "label": label.strip(), "better": better, "scenario": sc,
               "workers": w, "added_over_direct": added, "values": {}, "ratios": {}}
        for c in who:
            pr = per_round(runs, sc, w, c, field, added)
            if pr:
                fig["values"][c] = {"median": statistics.median(pr.values()),
                                    "rounds": [pr[r] for r in sorted(pr)]}
        for name, a, b in RATIOS:
            va = fig["values"].get(a, {}).get("median")
            vb = fig["values"].get(b, {}).get("median")
            fig["ratios"][name] = ratio(va, vb)
        figures.append(fig)

    cols = CONTENDERS + [n for n, _, _ in RATIOS]
    w = max(len(r[1]) for r in rows) + 2
    print(f"  {'median of ' + str(meta['rounds']) + ' rounds':<{w}}" +
          "".join(f"{c:>14}" for c in cols))
    for fig, row in zip(figures, rows):
        label, who = row[1], row[7]
        if not fig["values"]:
            continue  # a scenario left out (BENCH_SCENARIOS)
        cells = []
        for c in CONTENDERS:
            v = fig["values"].get(c, {}).get("median")
            if c not in who:
                cells.append("" if c == "direct" else "n/a")
            elif v is None and fig["workers"] > 1 and c == "pitot" and not meta["pitot_workers"]:
                cells.append("n/a")
            else:
                cells.append(fmt(v))
        for name, _, _ in RATIOS:
            r = fig["ratios"].get(name)
            cells.append("" if r is None else f"{r:.2f}")
        print((f"  {label:<{w}}" + "".join(f"{c:>14}" for c in cells)).rstrip())
    print("\n  ratio: pitot's figure over nginx's, over HAProxy's. Below 1 pitot's is lower "
          "(better for latency,\n  memory, CPU use, errors), above 1 higher (better for "
          "throughput). 'added': over direct, same round.")
    if meta["workers_n"] > 1 and not meta["pitot_workers"]:
        print(f"  {meta['workers_n']} workers: pitot has no --workers yet (n/a).")

    # accuracy: pitot only
    acc_rows = [("acc8", "8 streams, closed loop"), ("moderate", "200 streams, open loop"),
                ("burst", "200 streams opened at once")]
    accuracy_out = []
    print("\n  pitot's own timing against pitot-load's, per request (|difference|, ms; median "
          f"of the rounds, worst round in brackets; target p99 < {ACCURACY_TARGET_MS} ms)")
    print(f"  {'load':<30}{'joined':>8}{'TTFT p50':>12}{'TTFT p99':>18}{'E2E p50':>12}"
          f"{'E2E p99':>18}  p99 < {ACCURACY_TARGET_MS} ms")
    for sc, label in acc_rows:
        accs = [x["accuracy"] for x in sorted(runs, key=lambda x: x["round"])
                if x["scenario"] == sc and x["contender"] == "pitot" and x.get("accuracy")
                and x["accuracy"]["joined"]]
        row = {"scenario": sc, "label": label, "rounds": accs}
        if not accs:
            print(f"  {label:<30}{'-':>8}")
            accuracy_out.append(row)
            continue
        for k in ("joined", "ttft_abs_p50_ms", "ttft_abs_p99_ms", "e2e_abs_p50_ms",
                  "e2e_abs_p99_ms"):
            vals = [a[k] for a in accs if a.get(k) is not None]
            row[k] = statistics.median(vals) if vals else None
            row[k + "_worst"] = max(vals) if vals else None
        met = (row["ttft_abs_p99_ms"] is not None and row["e2e_abs_p99_ms"] is not None and
               row["ttft_abs_p99_ms"] < ACCURACY_TARGET_MS and
               row["e2e_abs_p99_ms"] < ACCURACY_TARGET_MS)
        row["target_met"] = met
        print(f"  {label:<30}{row['joined']:>8.0f}{fmt(row['ttft_abs_p50_ms']):>12}"
              f"{fmt(row['ttft_abs_p99_ms']) + ' (' + fmt(row['ttft_abs_p99_ms_worst']) + ')':>18}"
              f"{fmt(row['e2e_abs_p50_ms']):>12}"
              f"{fmt(row['e2e_abs_p99_ms']) + ' (' + fmt(row['e2e_abs_p99_ms_worst']) + ')':>18}"
              f"  {'yes' if met else 'no'}")
        accuracy_out.append(row)

    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "figures": figures, "accuracy": accuracy_out, "runs": runs}, f,
                  indent=1)
        f.write("\n")


def main():
    cmds = {"serve": serve, "meta": meta, "report": report}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
