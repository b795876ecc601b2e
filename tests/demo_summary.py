"""Helpers for tests/demo.sh (Python 3 stdlib only).

  demo_summary.py table METRICS_FILE     per-backend, per-API table from pitot's /metrics text
  demo_summary.py accesslog LOG_FILE     lines per API, one line pretty-printed, one per other API

Quantiles are estimated from the histogram buckets the way Prometheus'
histogram_quantile() does: find the bucket holding the rank, interpolate
linearly inside it."""

import json
import math
import re
import sys

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """[(name, {label: value}, float)] for every sample line."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            continue
        labels = {k: v.replace('\\"', '"').replace("\\\\", "\\")
                  for k, v in LABEL_RE.findall(m.group(2) or "")}
        out.append((m.group(1), labels, float(m.group(3))))
    return out


# The api label's values in the order pitot declares them.
API_ORDER = ("chat", "completions", "responses", "messages", "embeddings", "other")
ALL = "all"  # the row of a backend summed over its APIs


def api_key(api):
    return (API_ORDER.index(api) if api in API_ORDER else len(API_ORDER), api)


def row_keys(lab):
    """The table rows a sample adds to: its backend's ALL row and, when it
    has the api label, its (backend, api) row."""
    keys = [(lab["backend"], ALL)]
    if "api" in lab:
        keys.append((lab["backend"], lab["api"]))
    return keys


def by_backend(samples, name, where=None):
    """Sum of a counter family per (backend, api), over model, tier, code...;
    also per (backend, ALL). A family without the api label has only the
    (backend, ALL) sums."""
    acc = {}
    for n, lab, v in samples:
        if n != name or "backend" not in lab:
            continue
        if where and any(lab.get(k) != want for k, want in where.items()):
            continue
        for k in row_keys(lab):
            acc[k] = acc.get(k, 0.0) + v
    return acc


def buckets_by_backend(samples, family):
    """{(backend, api): [(le, cumulative count)] sorted by le}, summed over
    model/tier; (backend, ALL) over every api too."""
    acc = {}
    for n, lab, v in samples:
        if n != family + "_bucket" or "backend" not in lab:
            continue
        le = float(lab["le"])  # "+Inf" parses as inf
        for k in row_keys(lab):
            b = acc.setdefault(k, {})
            b[le] = b.get(le, 0.0) + v
    return {k: sorted(v.items()) for k, v in acc.items()}


def quantile(q, buckets):
    """histogram_quantile(q, ...) for one series; None when it has no samples."""
    if not buckets or buckets[-1][0] != math.inf:
        return None
    total = buckets[-1][1]
    if total == 0:
        return None
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for i, (le, count) in enumerate(buckets):
        if count >= rank:
            if le == math.inf:
                # Prometheus answers the highest finite bound here.
                return buckets[i - 1][0] if i > 0 else None
            if i == 0 and le <= 0:
                return le
            in_bucket = count - prev_count
            if in_bucket == 0:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / in_bucket
        prev_le, prev_count = le, count
    return None


def fmt_ms(x):
    return "-" if x is None else "%.0f" % (x * 1000.0)


def fmt_s(x):
    return "-" if x is None else "%.2f" % x


def fmt_n(x):
    return "%d" % round(x)


def table(path):
    with open(path) as f:
        samples = parse(f.read())

    backends = sorted({lab["backend"] for n, lab, v in samples
                       if n == "pitot_backend_up" and "backend" in lab})
    reqs = by_backend(samples, "pitot_requests_total")
    errs = by_backend(samples, "pitot_upstream_errors_total")  # no api label
    tin = by_backend(samples, "pitot_prompt_tokens_total")
    tout = by_backend(samples, "pitot_completion_tokens_total")
    refusals = by_backend(samples, "pitot_refusals_total")
    trunc = by_backend(samples, "pitot_finish_reason_total", {"reason": "length"})
    stalls = by_backend(samples, "pitot_stream_stalls_total")
    ttft = buckets_by_backend(samples, "pitot_time_to_first_token_seconds")
    itl = buckets_by_backend(samples, "pitot_inter_token_latency_seconds")
    e2e = buckets_by_backend(samples, "pitot_e2e_request_latency_seconds")

    # Two header rows: the quantity, then the statistic and unit.
    head = [("", "backend", "<"), ("", "api", "<"), ("", "reqs", ">"), ("", "errors", ">"),
            ("TTFT", "p50 ms", ">"), ("TTFT", "p95 ms", ">"),
            ("ITL", "p50 ms", ">"), ("ITL", "p95 ms", ">"), ("E2E", "p95 s", ">"),
            ("tokens", "in", ">"), ("tokens", "out", ">"),
            ("", "refusals", ">"), ("", "truncated", ">"), ("", "stalls", ">")]
    rows = []
    for b in backends:
        # The APIs the backend answered, then its sum when there are several;
        # backend failures are counted per backend only, so on that line.
        apis = sorted((a for (bk, a), v in reqs.items() if bk == b and a != ALL and v > 0),
                      key=api_key)
        keys = [(b, a) for a in apis] + ([(b, ALL)] if len(apis) != 1 else [])
        for k in keys:
            whole = k[1] == ALL or len(apis) == 1
            rows.append([
                b if k == keys[0] else "",
                k[1],
                fmt_n(reqs.get(k, 0)),
                fmt_n(errs.get((b, ALL), 0)) if whole else "",
                fmt_ms(quantile(0.50, ttft.get(k))),
                fmt_ms(quantile(0.95, ttft.get(k))),
                fmt_ms(quantile(0.50, itl.get(k))),
                fmt_ms(quantile(0.95, itl.get(k))),
                fmt_s(quantile(0.95, e2e.get(k))),
                fmt_n(tin.get(k, 0)),
                fmt_n(tout.get(k, 0)),
                fmt_n(refusals.get(k, 0)),
                fmt_n(trunc.get(k, 0)),
                fmt_n(stalls.get(k, 0)),
            ])
    cols = [[h1, h2] + [r[i] for r in rows] for i, (h1, h2, _) in enumerate(head)]
    widths = [max(len(c) for c in col) for col in cols]

    def line(cells):
        parts = []
        for (_, _, align), w, c in zip(head, widths, cells):
            parts.append(c.ljust(w) if align == "<" else c.rjust(w))
        return "  " + "  ".join(parts).rstrip()

    print(line([h[0] for h in head]))
    print(line([h[1] for h in head]))
    print("  " + "  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def accesslog(path):
    with open(path) as f:
        recs = [json.loads(l) for l in f if l.strip()]
    if not recs:
        print("  (the access log is empty)")
        return
    per_api = {}
    for r in recs:
        per_api[r.get("api")] = per_api.get(r.get("api"), 0) + 1
    print("  %d lines; by api: %s" % (len(recs), ", ".join(
        "%s %d" % (a, n) for a, n in sorted(per_api.items(), key=lambda x: api_key(str(x[0]))))))
    # A stalled stream shows more of what the log records than a clean one.
    ok = [r for r in recs if r.get("status") == 200] or recs
    pick = next((r for r in ok if r.get("stalls")), ok[0])
    why = "it stalled once" if pick.get("stalls") else "a clean stream"
    print("\n  request %s to %s (api %s, %s), 1 of %d lines:" % (
        pick.get("id"), pick.get("backend"), pick.get("api"), why, len(recs)))
    for l in json.dumps(pick, indent=2).splitlines():
        print("  " + l)
    others = []
    for a in sorted(per_api, key=lambda x: api_key(str(x))):
        r = next((r for r in ok if r.get("api") == a), None)
        if a != pick.get("api") and r is not None:
            others.append(r)
    if others:
        print("\n  and one line of each other api, in part:")
        for r in others:
            print("    " + json.dumps({k: r.get(k) for k in
                                       ("id", "api", "path", "status", "backend", "ttft_ms",
                                        "e2e_ms", "prompt_tokens", "completion_tokens",
                                        "finish_reason", "outcome")}))
    failed = [r for r in recs if r.get("status") != 200]
    if failed:
        print("\n  %d request(s) failed; the access log says why:" % len(failed))
        for r in failed[:5]:
            print("    " + json.dumps({k: r.get(k) for k in
                                       ("id", "time", "status", "api", "backend", "outcome",
                                        "error", "e2e_ms")}))


def main(argv):
    if len(argv) != 3 or argv[1] not in ("table", "accesslog"):
        sys.stderr.write(__doc__)
        return 2
    (table if argv[1] == "table" else accesslog)(argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
