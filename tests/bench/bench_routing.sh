#!/usr/bin/env bash
# make bench-routing: one heterogeneous pool of simulated llama.cpp replicas
# (two fast, one half as fast) under the same open-loop load behind three
# front ends in turn: pitot least_busy, pitot round_robin, nginx least_conn.
# Prints client-side figures and the ratios to nginx, per seed and pooled over
# the seeds, next to an idealised model of the pool fed the same arrivals. A
# benchmark, not a test: it fails only when something cannot be set up.
#
# Environment: BUILD (build), BENCH_SECONDS (60, arrival window per front
# end), BENCH_SLO_TTFT_MS (2000), BENCH_SLO_TPOT_MS (100), BENCH_LOAD (0.8,
# fraction of the pool's capacity offered), BENCH_SEEDS (the arrival
# sequences, one run of the three front ends each; default BENCH_SEED, 7),
# BENCH_PITOT_CAPACITY (0: pitot's default, each backend's /props slot count;
# else every backend's capacity), BENCH_PITOT_ROUTING (extra YAML lines for
# pitot's routing: section, for experiments, e.g. "speed_aware: false"),
# BENCH_KEEP (a directory to keep every log, access log and figure in),
# BENCH_FRONTS (a subset of "least_busy round_robin nginx", for experiments),
# BENCH_PITOT_CONFIG (extra top-level YAML lines for pitot, e.g. a tier whose
# max_wait sheds what would miss the SLO anyway).
set -euo pipefail

cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
SECONDS_RUN=${BENCH_SECONDS:-60}
SLO_TTFT_MS=${BENCH_SLO_TTFT_MS:-2000}
SLO_TPOT_MS=${BENCH_SLO_TPOT_MS:-100}
LOAD=${BENCH_LOAD:-0.8}
SEEDS=${BENCH_SEEDS:-${BENCH_SEED:-7}}
PITOT_CAPACITY=${BENCH_PITOT_CAPACITY:-0}
PITOT_ROUTING=${BENCH_PITOT_ROUTING:-}
PITOT_EXTRA=${BENCH_PITOT_CONFIG:-}
KEEP=${BENCH_KEEP:-}
FRONTS=${BENCH_FRONTS:-least_busy round_robin nginx}
HOST=127.0.0.1
PROMPT_TOKENS=200
MAX_TOKENS=32
CONCURRENCY=64      # high enough that it never limits the open loop
JITTER=0.05
SCRAPE_INTERVAL=200ms
REPORT=tests/bench/bench_report.py

# The pool: "name slots prefill_tok/s decode_tok/s seed", one replica a line.
REPLICAS=(
    "fast-a 2 400 40 11"
    "fast-b 2 400 40 12"
    "slow-c 2 200 20 13"
)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pitot-bench.XXXXXX")
PIDS=()           # every process started and not yet stopped
POOL_PORTS=()     # ports of the running replicas, in REPLICAS order
POOL_PIDS=()

# shellcheck source=tests/bench/procs.sh
BENCH_NAME=bench-routing
. tests/bench/procs.sh

# free_port: a loopback port nobody listens on now (for nginx, which cannot
# take port 0 and tell us the port).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# pool_start: a fresh set of replicas, so nothing carries over between runs.
pool_start() {
    local spec name slots prefill decode seed i
    POOL_PIDS=()
    POOL_PORTS=()
    for spec in "${REPLICAS[@]}"; do
        read -r name slots prefill decode seed <<<"$spec"
        start "$name" "$BUILD/pitot-sim" --listen "$HOST:0" --slots "$slots" \
            --prefill-tokens-per-s "$prefill" --tokens-per-s "$decode" \
            --jitter "$JITTER" --seed "$seed"
        POOL_PIDS+=("$LAST_PID")
    done
    i=0
    for spec in "${REPLICAS[@]}"; do
        read -r name _ <<<"$spec"
        POOL_PORTS+=("$(wait_listening "$name" "${POOL_PIDS[$i]}")")
        wait_http "http://$HOST:${POOL_PORTS[$i]}/health" 200
        i=$((i + 1))
    done
}

# pool_stop TAG: saves each replica's /sim/stats as $TMP/TAG.NAME.stats, then
# stops the replicas.
pool_stop() {
    local tag=$1 spec name i=0
    for spec in "${REPLICAS[@]}"; do
        read -r name _ <<<"$spec"
        curl -sf "http://$HOST:${POOL_PORTS[$i]}/sim/stats" >"$TMP/$tag.$name.stats" ||
            echo '{}' >"$TMP/$tag.$name.stats"
        i=$((i + 1))
    done
    stop "${POOL_PIDS[@]}"
}

# pitot_start POLICY TAG: pitot in front of the pool; its URL in FRONT_URL.
pitot_start() {
    local policy=$1 tag=$2 spec name i=0 port
    {
        echo "listen: $HOST:0"
        echo "backends:"
        for spec in "${REPLICAS[@]}"; do
            read -r name _ <<<"$spec"
            echo "  - url: http://$HOST:${POOL_PORTS[$i]}"
            echo "    name: $name"
            echo "    capacity: $PITOT_CAPACITY"
            i=$((i + 1))
        done
        echo "routing:"
        echo "  policy: $policy"
        echo "  scrape_interval: $SCRAPE_INTERVAL"
        echo "  scrape_timeout: 150ms"
        [ -n "$PITOT_ROUTING" ] && printf '%s\n' "$PITOT_ROUTING" | sed 's/^/  /'
        [ -n "$PITOT_EXTRA" ] && printf '%s\n' "$PITOT_EXTRA"
        echo "log:"
        echo "  access_log: $TMP/$tag.access"
    } >"$TMP/$tag.yaml"
    "$BUILD/pitot" -t -c "$TMP/$tag.yaml" >/dev/null ||
        die "pitot rejects its configuration: $("$BUILD/pitot" -t -c "$TMP/$tag.yaml" 2>&1)"
    start "$tag" "$BUILD/pitot" -c "$TMP/$tag.yaml"
    FRONT_PID=$LAST_PID
    port=$(wait_listening "$tag" "$FRONT_PID")
    FRONT_URL=http://$HOST:$port
    wait_http "$FRONT_URL/readyz" 200
    # Every policy scrapes, and asks /props for the slot count after the
    # first good scrape: the run starts with the capacities known.
    pitot_wait_scraped
}

# pitot_wait_scraped: until pitot has read every replica's /metrics once (it
# asks /props for the slot count right after), so the run starts with the
# replicas' capacities known rather than the default.
pitot_wait_scraped() {
    local n
    for _ in $(seq 1 100); do
        n=$(curl -sf "$FRONT_URL/metrics" |
            grep -c '^pitot_backend_scrapes_total{.*result="ok".*} [1-9]' || true)
        [ "${n:-0}" -ge "${#REPLICAS[@]}" ] && { sleep 0.5; return 0; }
        sleep 0.05
    done
    die "pitot did not scrape every replica within 5 s"
}

# nginx_start: nginx least_conn in front of the pool, in a prefix of its own.
nginx_start() {
    local dir=$TMP/nginx port i t user_line=
    mkdir -p "$dir/tmp"
    port=$(free_port)
    # As root nginx would switch to www-data; stay root (the prefix is ours).
    [ "$(id -u)" = 0 ] && user_line="user root;"
    {
        echo "$user_line"
        echo "worker_processes 1;"
        echo "events { worker_connections 1024; }"
        echo "http {"
        echo "    access_log off;"
        for t in client_body proxy fastcgi uwsgi scgi; do
            echo "    ${t}_temp_path $dir/tmp/$t;"
        done
        echo "    upstream pool {"
        echo "        least_conn;"
        for i in "${!POOL_PORTS[@]}"; do
            echo "        server $HOST:${POOL_PORTS[$i]};"
        done
        echo "        keepalive 32;"
        # Below the replicas' own 5 s keep-alive (llama.cpp's, and pitot-sim's):
        # else nginx may reuse a connection the replica is closing, answer
        # 502 (a POST is not retried) and disable that replica for 10 s.
        echo "        keepalive_timeout 4s;"
        echo "    }"
        echo "    server {"
        echo "        listen $HOST:$port;"
        echo "        location / {"
        echo "            proxy_pass http://pool;"
        echo "            proxy_http_version 1.1;"
        echo "            proxy_set_header Connection \"\";"
        echo "            proxy_buffering off;"
        echo "            proxy_cache off;"
        echo "            proxy_read_timeout 600s;"
        echo "        }"
        echo "    }"
        echo "}"
    } >"$dir/nginx.conf"
    local args=(-p "$dir" -c "$dir/nginx.conf" -e stderr
        -g "daemon off; pid $dir/nginx.pid; error_log stderr warn;")
    nginx -t "${args[@]}" >"$TMP/nginx-t.err" 2>&1 ||
        die "nginx -t rejects $dir/nginx.conf: $(cat "$TMP/nginx-t.err")"
    start nginx nginx "${args[@]}"
    FRONT_PID=$LAST_PID
    FRONT_URL=http://$HOST:$port
    # Any path reaches a replica; the simulator answers /health.
    wait_http "$FRONT_URL/health" 200
}

# run_one NAME TAG KIND SEED [POLICY]: a fresh pool, the front end, the load
# of arrival sequence SEED, the figures appended to $TMP/results.jsonl, then
# everything stopped.
run_one() {
    local name=$1 tag=$2 kind=$3 seed=$4 policy=${5:-} metrics=- reps=() spec rep
    printf '\n== %s, seed %s\n' "$name" "$seed"
    pool_start
    if [ "$kind" = pitot ]; then
        pitot_start "$policy" "$tag"
    else
        nginx_start
    fi
    echo "   front end $FRONT_URL, replicas on ports ${POOL_PORTS[*]}; ${SECONDS_RUN} s of load"
    "$BUILD/pitot-load" --url "$FRONT_URL/v1/chat/completions" --concurrency "$CONCURRENCY" \
        --rate "$RATE" --duration "$SECONDS_RUN" --seed "$seed" \
        --prompt-tokens "$PROMPT_TOKENS" --max-tokens "$MAX_TOKENS" \
        --json "$TMP/$tag.jsonl" >"$TMP/$tag.load" 2>"$TMP/$tag.load.err" ||
        die "pitot-load failed against $name: $(cat "$TMP/$tag.load.err")"
    sed 's/^/   /' "$TMP/$tag.load"
    if [ "$kind" = pitot ]; then
        curl -sf "$FRONT_URL/metrics" >"$TMP/$tag.metrics" && metrics=$TMP/$tag.metrics
    fi
    stop "$FRONT_PID"
    pool_stop "$tag"
    for spec in "${REPLICAS[@]}"; do
        read -r rep _ <<<"$spec"
        reps+=("$rep=$TMP/$tag.$rep.stats")
    done
    python3 "$REPORT" summarize "$name" "$seed" "$SECONDS_RUN" "$SLO_TTFT_MS" "$SLO_TPOT_MS" \
        "$TMP/$tag.jsonl" "$TMP/$tag.load" "$metrics" "${reps[@]}" >>"$TMP/results.jsonl"
}

main() {
    local b spec specs=() cap name slots prefill decode seed
    for b in pitot pitot-sim pitot-load; do
        [ -x "$BUILD/$b" ] || die "$BUILD/$b is missing; run make first"
    done
    for b in python3 curl nginx; do
        command -v "$b" >/dev/null || die "needs $b"
    done
    for seed in $SEEDS; do
        [[ "$seed" =~ ^[0-9]+$ ]] || die "BENCH_SEEDS: '$seed' is not a number"
    done
    for b in $FRONTS; do
        [[ "$b" =~ ^(least_busy|round_robin|nginx)$ ]] || die "BENCH_FRONTS: unknown '$b'"
    done
    for spec in "${REPLICAS[@]}"; do
        read -r _ slots prefill decode _ <<<"$spec"
        specs+=("$slots:$prefill:$decode")
    done
    read -r cap RATE < <(python3 "$REPORT" capacity "$PROMPT_TOKENS" "$MAX_TOKENS" "$LOAD" "${specs[@]}")

    printf '== Routing benchmark: the same pool and load behind three front ends\n'
    for spec in "${REPLICAS[@]}"; do
        read -r name slots prefill decode seed <<<"$spec"
        printf '   %-7s %s slots, prefill %s tok/s, decode %s tok/s, jitter %s, seed %s\n' \
            "$name" "$slots" "$prefill" "$decode" "$JITTER" "$seed"
    done
    echo "   request: $PROMPT_TOKENS-token prompt, max_tokens $MAX_TOKENS, streamed"
    echo "   capacity: sum of slots / service time, service = prompt/prefill +" \
        "(max_tokens - 1)/decode (the first token ends the prefill) = $cap req/s"
    if [ "$PITOT_CAPACITY" = 0 ]; then
        echo "   pitot: backend capacity from /props (every policy asks after its first scrape)"
    else
        echo "   pitot: every backend configured with capacity $PITOT_CAPACITY"
    fi
    [ -n "$PITOT_ROUTING" ] && echo "   pitot routing extra: $(tr '\n' ' ' <<<"$PITOT_ROUTING")"
    echo "   offered: open loop, exponential arrivals at $LOAD x capacity = $RATE req/s," \
        "at most $CONCURRENCY in flight, ${SECONDS_RUN} s per front end;" \
        "arrival sequences (seeds): $SEEDS"

    for seed in $SEEDS; do
        for b in $FRONTS; do
            case $b in
            least_busy | round_robin) run_one "pitot $b" "$b.$seed" pitot "$seed" "$b" ;;
            nginx) run_one "nginx least_conn" "nginx.$seed" nginx "$seed" ;;
            esac
        done
    done

    printf '\n== Results (%s s at %s req/s per front end and seed)\n' "$SECONDS_RUN" "$RATE"
    python3 "$REPORT" report "$TMP/results.jsonl" "$SLO_TTFT_MS" "$SLO_TPOT_MS" \
        "$RATE" "$SECONDS_RUN" "$PROMPT_TOKENS" "$MAX_TOKENS" "$JITTER" "${specs[@]}"
}

main "$@"
