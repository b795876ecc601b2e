#!/usr/bin/env bash
# make demo: pitot in front of two simulated llama.cpp replicas, a burst of
# streaming chat requests and a few on the Responses and Messages APIs, then
# what pitot measured per backend and API, read back from its /metrics.
# pitot's own endpoints and its status page are on an admin listener; the
# demo prints the page's URL. KEEP=1 leaves the three processes running;
# BUILD selects the build directory; SCREENSHOT=FILE.png (or --screenshot
# FILE.png) saves the status page as headless Chromium renders it in the
# middle of the load.
set -euo pipefail

SCREENSHOT=${SCREENSHOT:-}
while [ $# -gt 0 ]; do
    case $1 in
    --screenshot) SCREENSHOT=${2:?--screenshot needs a file}; shift 2 ;;
    --screenshot=*) SCREENSHOT=${1#--screenshot=}; shift ;;
    *) echo "usage: $0 [--screenshot FILE.png]" >&2; exit 2 ;;
    esac
done
[ -n "$SCREENSHOT" ] && SCREENSHOT=$(realpath -m -- "$SCREENSHOT")

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
KEEP=${KEEP:-}
HOST=127.0.0.1
REQUESTS=24
CONCURRENCY=4
PROMPT_TOKENS=200
MAX_TOKENS=32
API_REQUESTS=3 # per API (Responses, Messages), sent together after the chat load
API_PROMPT_TOKENS=64
API_MAX_TOKENS=16

for b in pitot pitot-sim pitot-load; do
    [ -x "$BUILD/$b" ] || { echo "demo: $BUILD/$b is missing; run make first" >&2; exit 1; }
done
for t in python3 curl; do
    command -v "$t" >/dev/null || { echo "demo: needs $t" >&2; exit 1; }
done
if [ -n "$SCREENSHOT" ] && ! command -v chromium >/dev/null; then
    echo "demo: SCREENSHOT needs chromium (apt-get install chromium)" >&2
    exit 1
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pitot-demo.XXXXXX")
PIDS=()
kept=0
t_start=$SECONDS

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$kept" = 1 ]; then
        exit "$rc"
    fi
    local p
    for p in ${PIDS[@]+"${PIDS[@]}"}; do
        kill "$p" 2>/dev/null || true
    done
    for p in ${PIDS[@]+"${PIDS[@]}"}; do
        # Up to ~2 s for a clean exit, then SIGKILL.
        for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ "$rc" -eq 130 ] || [ "$rc" -eq 143 ]; then
        echo "demo: interrupted; replicas and pitot stopped" >&2
    elif [ "$rc" -ne 0 ]; then
        echo "demo: failed (exit $rc); the last lines each process logged:" >&2
        for f in "$TMP"/*.err; do
            [ -s "$f" ] && { echo "--- $(basename "$f")"; tail -5 "$f"; }
        done >&2
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

header() {
    printf '\n== %s\n' "$1"
    shift
    local l
    for l in "$@"; do
        printf '   %s\n' "$l"
    done
    echo
}

# wait_listening NAME ERRFILE PID: prints the port from "... listening on HOST:PORT".
wait_listening() {
    local name=$1 err=$2 pid=$3 port
    for _ in $(seq 1 100); do
        port=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$err" | head -1)
        if [ -n "$port" ]; then
            echo "$port"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "demo: $name exited early:" >&2
            cat "$err" >&2
            return 1
        fi
        sleep 0.05
    done
    echo "demo: $name did not report its port within 5 s:" >&2
    cat "$err" >&2
    return 1
}

# start NAME ARGV...: runs ARGV in the background, stderr to $TMP/NAME.err;
# the PID goes to PIDS and LAST_PID. stdin/stdout are detached so KEEP=1
# leaves nothing holding the terminal or a pipe.
start() {
    local name=$1
    shift
    "$@" </dev/null >"$TMP/$name.out" 2>"$TMP/$name.err" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

header "Starting two simulated llama.cpp replicas and pitot in front of them" \
    "replica-a: 2 slots, prefill 400 tok/s, decode 40 tok/s, steady" \
    "replica-b: 2 slots, prefill 200 tok/s, decode 20 tok/s +-30% jitter," \
    "           and a 1.5 s pause after the 20th token of every answer (a simulated hiccup)" \
    "pitot counts a gap between tokens longer than 1 s as a stall (measure.stall, 10 s by default)"

start replica-a "$BUILD/pitot-sim" --listen "$HOST:0" --slots 2 \
    --prefill-tokens-per-s 400 --tokens-per-s 40 --seed 1
pid_a=$LAST_PID
start replica-b "$BUILD/pitot-sim" --listen "$HOST:0" --slots 2 \
    --prefill-tokens-per-s 200 --tokens-per-s 20 --jitter 0.3 --seed 2 \
    --stall-after 20 --stall-ms 1500
pid_b=$LAST_PID
port_a=$(wait_listening replica-a "$TMP/replica-a.err" "$pid_a")
port_b=$(wait_listening replica-b "$TMP/replica-b.err" "$pid_b")

# Finer histogram buckets than the default around token gaps (20-50 ms), so the
# bucket-estimated quantiles below land close to the true values.
cat >"$TMP/pitot.yaml" <<EOF
listen: $HOST:0
admin_listen: $HOST:0
backends:
  - url: http://$HOST:$port_a
    name: replica-a
  - url: http://$HOST:$port_b
    name: replica-b
measure:
  stall: 1s
  buckets: [0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.05, 0.06, 0.07, 0.08,
            0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 1, 1.25, 1.5, 2, 2.5, 3, 3.5,
            4, 5, 6, 7.5, 10, 15, 20, 30, 60, 120]
EOF
start pitot "$BUILD/pitot" -c "$TMP/pitot.yaml" --access-log "$TMP/access.log"
pid_p=$LAST_PID
port_p=$(wait_listening pitot "$TMP/pitot.err" "$pid_p")
URL=http://$HOST:$port_p
# the admin port is logged before the "listening on" line
port_adm=$(sed -n 's/.*admin endpoints on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$TMP/pitot.err" | head -1)
ADMIN=http://$HOST:$port_adm

ready=0
for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$ADMIN/readyz" || true)
    if [ "$code" = 200 ]; then
        ready=1
        break
    fi
    kill -0 "$pid_p" 2>/dev/null || break
    sleep 0.05
done
if [ "$ready" != 1 ]; then
    echo "demo: pitot's $ADMIN/readyz did not answer 200 within 5 s (last: ${code:-none})" >&2
    exit 1
fi
printf '   %-10s %-22s pid %s\n' replica-a "$HOST:$port_a" "$pid_a" \
    replica-b "$HOST:$port_b" "$pid_b" pitot "$HOST:$port_p" "$pid_p"
grep 'listening on' "$TMP/pitot.err" | head -1 | sed 's/^/   /'
echo "   $ADMIN/readyz answers 200: both backends passed their health check"
echo "   status page (live, refreshed every second): $ADMIN/status"

# The status page as a browser shows it in the middle of the load.
if [ -n "$SCREENSHOT" ]; then
    mkdir -p "$(dirname "$SCREENSHOT")"
    (sleep 7 && chromium --headless=new --no-sandbox --disable-gpu --no-first-run \
        --hide-scrollbars --user-data-dir="$TMP/chromium" --virtual-time-budget=3000 \
        --window-size=1280,480 --screenshot="$SCREENSHOT" "$ADMIN/status" >/dev/null 2>&1) &
    shot_pid=$!
fi

header "Client side: pitot-load sends $REQUESTS streaming chat requests through pitot" \
    "$CONCURRENCY at a time, $PROMPT_TOKENS-token prompts, max_tokens $MAX_TOKENS; what the client measured:"
"$BUILD/pitot-load" --url "$URL/v1/chat/completions" --concurrency "$CONCURRENCY" \
    --requests "$REQUESTS" --prompt-tokens "$PROMPT_TOKENS" --max-tokens "$MAX_TOKENS" | sed 's/^/   /'

header "Client side: $API_REQUESTS streaming requests on each of two more APIs, at the same time" \
    "OpenAI Responses (POST /v1/responses: input, max_output_tokens) and Anthropic" \
    "Messages (POST /v1/messages: anthropic-version, max_tokens); neither ends in [DONE]:" \
    "a stream is complete at response.completed / message_stop. $API_PROMPT_TOKENS-token prompts, $API_MAX_TOKENS tokens out."
api_pids=()
for api in responses messages; do
    "$BUILD/pitot-load" --url "$URL/v1/$api" --concurrency "$API_REQUESTS" \
        --requests "$API_REQUESTS" --prompt-tokens "$API_PROMPT_TOKENS" \
        --max-tokens "$API_MAX_TOKENS" >"$TMP/load-$api.out" 2>&1 &
    api_pids+=("$!")
done
for p in "${api_pids[@]}"; do
    wait "$p"
done
for api in responses messages; do
    echo "   /v1/$api:"
    sed 's/^/     /' "$TMP/load-$api.out"
done

# The access log line is written when the response ends; give the last one a moment.
for _ in $(seq 1 40); do
    n=$(grep -c . "$TMP/access.log" 2>/dev/null || true)
    [ "${n:-0}" -ge $((REQUESTS + 2 * API_REQUESTS)) ] && break
    sleep 0.05
done

curl -sf "$ADMIN/metrics" >"$TMP/metrics.txt"
header "Proxy side: what pitot measured per backend and API (the api label), from $ADMIN/metrics" \
    "TTFT = time to first token, ITL = gap between tokens, E2E = whole request." \
    "Quantiles are estimates from the histogram buckets (linear interpolation," \
    "as Prometheus' histogram_quantile does), not exact values: each can be off" \
    "by up to its bucket's width; the client's exact numbers are above." \
    "truncated = finish_reason \"length\" (hit max_tokens; llama.cpp's Responses API says" \
    "\"completed\" even then); stalls = token gaps over 1 s. errors = backend failures," \
    "counted per backend only: on its \"all\" line (or its only line)."
python3 tests/demo_summary.py table "$TMP/metrics.txt"

header "Access log: pitot writes one JSON line per request (--access-log FILE)"
python3 tests/demo_summary.py accesslog "$TMP/access.log"
# pitot logs to stderr only what goes wrong (past its start lines): show it if so.
if [ "$(grep -vc 'listening on\|admin endpoints on' "$TMP/pitot.err" || true)" -gt 0 ]; then
    echo
    echo "  pitot's own log (stderr):"
    grep -v 'listening on\|admin endpoints on' "$TMP/pitot.err" | tail -10 | sed 's/^/    /'
fi

header "Status page: $ADMIN/status" \
    "one self-contained page, refreshed every second from $ADMIN/status.json:" \
    "each backend's state, load, TTFT and errors over the last minute; tiers; the process"
curl -sf "$ADMIN/status.json" | python3 -c '
import json, sys
s = json.load(sys.stdin)
for b in s["backends"]:
    f = lambda v, u="": "-" if v is None else "%g%s" % (v, u)
    print("   %-10s %-8s requests/min %-3d TTFT p50 %-9s p95 %-9s time/token %s" % (
        b["name"], b["state"], b["requests_1m"], f(b["ttft_p50_ms"], " ms"),
        f(b["ttft_p95_ms"], " ms"), f(b["tpot_ms"], " ms")))'
if [ -n "$SCREENSHOT" ]; then
    wait "$shot_pid" || { echo "demo: chromium could not take the screenshot" >&2; exit 1; }
    echo "   screenshot (headless Chromium, 1280x480, 7 s into the chat load): $SCREENSHOT"
fi

elapsed=$((SECONDS - t_start))
if [ "$KEEP" = 1 ]; then
    kept=1
    header "KEEP=1: leaving the processes running (demo took ${elapsed} s)"
    printf '   %-10s pid %-8s http://%s:%s\n' replica-a "$pid_a" "$HOST" "$port_a" \
        replica-b "$pid_b" "$HOST" "$port_b" pitot "$pid_p" "$HOST" "$port_p"
    printf '   %-10s              %s (admin: /status, /metrics, /readyz)\n' "" "$ADMIN"
    cat <<EOF

   stream a chat answer through pitot:
     curl -N $URL/v1/chat/completions -H 'Content-Type: application/json' -d '{"model":"small","stream":true,"max_tokens":16,"messages":[{"role":"user","content":"Hello"}]}'
   the same on the Anthropic Messages API (as Anthropic's SDK sends it):
     curl -N $URL/v1/messages -H 'Content-Type: application/json' -H 'anthropic-version: 2023-06-01' -d '{"model":"small","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"Hello"}]}'
   status page: $ADMIN/status (data: $ADMIN/status.json)
   take replica-b out (in-flight requests finish), then back:
     curl -X POST $ADMIN/admin/backends/replica-b/disable; curl -X POST $ADMIN/admin/backends/replica-b/enable
   metrics:     curl -s $ADMIN/metrics
   access log:  tail -f $TMP/access.log
   stop them:   kill $pid_a $pid_b $pid_p; rm -rf $TMP
EOF
else
    header "Done in ${elapsed} s; replicas and pitot stopped. Run 'make demo KEEP=1' to keep them running."
fi
