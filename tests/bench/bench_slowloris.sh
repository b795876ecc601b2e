#!/usr/bin/env bash
# make bench-slowloris: pitot in front of two simulated llama.cpp replicas
# under a steady streaming load (pitot-load, open loop), run twice: alone,
# then while 1,000 more connections trickle request heads one byte every few
# seconds (tests/bench/slowloris.py; each is answered 408 when
# limits.header_timeout runs out, and opened again at once). Prints the
# normal requests' TTFT p50/p95 and pitot's memory (VmRSS, VmHWM) for both.
# A benchmark, not a test: it fails only when something cannot be set up.
#
# Environment: BUILD (build), BENCH_SECONDS (30, load per run), BENCH_RATE
# (8 requests/s), BENCH_ATTACK (1000 connections), BENCH_GAP (3, seconds
# between two bytes of a slow head), BENCH_KEEP (a directory for every log).
set -euo pipefail

cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
SECONDS_RUN=${BENCH_SECONDS:-30}
RATE=${BENCH_RATE:-8}
ATTACK=${BENCH_ATTACK:-1000}
GAP=${BENCH_GAP:-3}
KEEP=${BENCH_KEEP:-}
HOST=127.0.0.1
WARMUP=5 # seconds for the slow connections to be open before the load starts

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pitot-slowloris.XXXXXX")
PIDS=()

# shellcheck source=tests/bench/procs.sh
BENCH_NAME=bench-slowloris
. tests/bench/procs.sh

# kib FIELD PID: a /proc/PID/status field (VmRSS, VmHWM) in KiB.
kib() {
    awk -v f="$1:" '$1 == f { print $2 }' "/proc/$2/status"
}

# run TAG ATTACK: fresh replicas and pitot, ATTACK slow connections (0: none),
# the load; figures in $TMP/TAG.result.
run() {
    local tag=$1 attack=$2 a b pitot port url sampler rss_max=0 rss hwm ttft slow=-
    start "$tag.sim-a" "$BUILD/pitot-sim" --listen "$HOST:0" --slots 8 --tokens-per-s 100 \
        --prefill-tokens-per-s 4000 --seed 1
    a=$LAST_PID
    start "$tag.sim-b" "$BUILD/pitot-sim" --listen "$HOST:0" --slots 8 --tokens-per-s 100 \
        --prefill-tokens-per-s 4000 --seed 2
    b=$LAST_PID
    local pa pb
    pa=$(wait_listening "$tag.sim-a" "$a")
    pb=$(wait_listening "$tag.sim-b" "$b")
    start "$tag.pitot" "$BUILD/pitot" --listen "$HOST:0" --access-log "$TMP/$tag.access" \
        --backend "http://$HOST:$pa" --backend "http://$HOST:$pb"
    pitot=$LAST_PID
    port=$(wait_listening "$tag.pitot" "$pitot")
    url=http://$HOST:$port
    wait_http "$url/readyz" 200
    local loris=
    if [ "$attack" -gt 0 ]; then
        start "$tag.slowloris" python3 tests/bench/slowloris.py --port "$port" \
            --connections "$attack" --gap "$GAP"
        loris=$LAST_PID
        sleep "$WARMUP"
    fi
    # pitot's resident memory every half second while the load runs
    (
        while kill -0 "$pitot" 2>/dev/null; do
            kib VmRSS "$pitot" || true
            sleep 0.5
        done
    ) >"$TMP/$tag.rss" 2>/dev/null &
    sampler=$!
    "$BUILD/pitot-load" --url "$url/v1/chat/completions" --rate "$RATE" --concurrency 64 \
        --duration "$SECONDS_RUN" --prompt-tokens 32 --max-tokens 16 --seed 7 \
        >"$TMP/$tag.load" 2>"$TMP/$tag.load.err" || die "pitot-load failed: $(cat "$TMP/$tag.load.err")"
    rss=$(kib VmRSS "$pitot")
    hwm=$(kib VmHWM "$pitot")
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    rss_max=$(sort -n "$TMP/$tag.rss" | tail -1)
    if [ -n "$loris" ]; then
        stop "$loris"
        slow=$(tail -1 "$TMP/$tag.slowloris.out")
    fi
    ttft=$(awk '$1 == "ttft_ms" { print $3, $5 }' "$TMP/$tag.load")
    {
        echo "requests $(head -1 "$TMP/$tag.load")"
        echo "ttft_p50_p95_ms $ttft"
        echo "rss_kib_end $rss"
        echo "rss_kib_max $rss_max"
        echo "hwm_kib $hwm"
        echo "slowloris $slow"
        echo "pitot_stderr_lines $(wc -l <"$TMP/$tag.pitot.err")"
    } >"$TMP/$tag.result"
    stop "$pitot" "$a" "$b"
}

main() {
    local b
    for b in pitot pitot-sim pitot-load; do
        [ -x "$BUILD/$b" ] || die "$BUILD/$b is missing; run make first"
    done
    for b in python3 curl; do
        command -v "$b" >/dev/null || die "needs $b"
    done
    echo "== Slow-head clients against normal streams (pitot $(git describe --always --dirty 2>/dev/null || echo '?'))"
    echo "   2 pitot-sim replicas (8 slots, prefill 4000 tok/s, decode 100 tok/s); pitot defaults:"
    echo "   limits.header_timeout 10s, limits.max_clients 4096, RLIMIT_NOFILE $(ulimit -Hn) (hard; pitot raises"
    echo "   its soft limit to it)"
    echo "   normal load: pitot-load open loop, $RATE req/s for ${SECONDS_RUN}s, 32-token prompts, 16 tokens, streamed"
    echo "   attack: $ATTACK connections, each sending its head one byte every ${GAP}s, reopened when answered"
    run baseline 0
    run attack "$ATTACK"
    printf '\n%-10s %-34s %-20s %-26s %s\n' run "requests" "TTFT p50/p95 ms" "pitot VmRSS end/max, KiB" "VmHWM KiB"
    for b in baseline attack; do
        printf '%-10s %-34s %-20s %-26s %s\n' "$b" \
            "$(sed -n 's/^requests requests: \([0-9]*\) ok: \([0-9]*\) failed: \([0-9]*\).*/\1 sent, \2 ok, \3 failed/p' "$TMP/$b.result")" \
            "$(awk '$1 == "ttft_p50_p95_ms" { print $2 " / " $3 }' "$TMP/$b.result")" \
            "$(awk '$1 == "rss_kib_end" { e = $2 } $1 == "rss_kib_max" { m = $2 } END { print e " / " m }' "$TMP/$b.result")" \
            "$(awk '$1 == "hwm_kib" { print $2 }' "$TMP/$b.result")"
    done
    echo
    echo "slow clients (attack run): $(sed -n 's/^slowloris //p' "$TMP/attack.result")"
    echo "  (opened: connections made; answered: 408s received; closed: ended without an answer;"
    echo "   open_max: slow connections open at once)"
    echo "pitot stderr lines: baseline $(sed -n 's/^pitot_stderr_lines //p' "$TMP/baseline.result"), attack $(sed -n 's/^pitot_stderr_lines //p' "$TMP/attack.result")"
}

main "$@"
