#!/usr/bin/env bash
# make bench: pitot side by side with nginx and HAProxy, and with no proxy at
# all (direct: pitot-load spread over the simulators itself, the floor). The
# same two pitot-sim backends and the same pitot-load for every contender,
# everything on 127.0.0.1; every proxy gets the same worker count and the same
# CPUs, the load generator and the simulators the others (where there are any).
# Within each round the contenders alternate (direct, pitot, nginx, haproxy,
# scenario by scenario); the report is the median over the rounds. Scenarios:
# streaming latency at 1 and at 200 streams, SSE events and short requests per
# proxy CPU-second (utime+stime from /proc), thousands of slow streams (RSS per
# stream, errors, ITL), idle RSS, pitot's 503 + Retry-After latency, the same
# throughput with N workers, and pitot's own TTFT/E2E against pitot-load's per
# request. Prints one table and writes build/bench.json. A benchmark, not a
# test: it fails only when something cannot be set up.
#
# Environment: BUILD (build), BENCH_QUICK (1: short runs, smaller scale; under
# 5 minutes), BENCH_ROUNDS (3), BENCH_WORKERS (N for the workers scenario;
# default: the CPUs, less one for the load where there are more than 2),
# BENCH_SCENARIOS (a subset of "low moderate sse short scale workers overload
# accuracy syscalls", for experiments), BENCH_CONTENDERS (a subset of
# "direct pitot nginx haproxy", for experiments), BENCH_PITOT_WRAP (a command
# pitot runs under, for profiling: "perf record -g -o /tmp/%s.data --", %s
# the run's name), BENCH_JSON (build/bench.json),
# BENCH_KEEP (a directory to keep every config, log and raw file in).
set -euo pipefail

cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
QUICK=${BENCH_QUICK:-0}
ROUNDS=${BENCH_ROUNDS:-3}
SCENARIOS=${BENCH_SCENARIOS:-low moderate sse short scale workers overload accuracy syscalls}
OUT=${BENCH_JSON:-$BUILD/bench.json}
KEEP=${BENCH_KEEP:-}
HOST=127.0.0.1
REPORT=tests/bench/bench.py
read -r -a CONTENDERS <<<"${BENCH_CONTENDERS:-direct pitot nginx haproxy}"
PROXIES=()
for c in "${CONTENDERS[@]}"; do
    [ "$c" = direct ] || PROXIES+=("$c")
done

# Run lengths, seconds (full / BENCH_QUICK=1).
if [ "$QUICK" = 1 ]; then
    T_LOW=1.5 T_MODERATE=2 T_SSE=1.5 T_SHORT=1.5 T_OVERLOAD=1.5 T_ACC=1.5
    SCALE_TOKENS=3 SCALE_RAMP=4000
else
    T_LOW=15 T_MODERATE=15 T_SSE=8 T_SHORT=6 T_OVERLOAD=5 T_ACC=10
    SCALE_TOKENS=15 SCALE_RAMP=2000
fi
PROMPT=32             # prompt tokens (128 bytes)
MODERATE_STREAMS=200  # in flight on average: arrivals/s x stream length (1 s)
MODERATE_TOKENS=50    # at 50 tokens/s
SSE_STREAMS=64        # saturation: 64 streams of 200 tokens at 1000 tokens/s each
SHORT_CONC=32         # closed loop, non-streamed, 1 token

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pitot-bench.XXXXXX")
PIDS=()
WRAP=() # a command the next proxy starts under (perf stat), or none

# shellcheck source=tests/bench/procs.sh
BENCH_NAME=bench
. tests/bench/procs.sh

has() {
    [[ " $SCENARIOS " == *" $1 "* ]]
}

# ask FIELD...: one request to the figures helper (bench.py serve, started
# once: a Python start costs a third of a second here); its answer in ANSWER.
ask() {
    local IFS=$'\t'
    echo "$*" >&"${HELPER[1]}"
    IFS= read -r ANSWER <&"${HELPER[0]}" || die "the figures helper stopped: $(cat "$TMP/helper.err")"
}

helper_start() {
    coproc HELPER { exec python3 "$REPORT" serve "$TMP/runs.jsonl" 2>"$TMP/helper.err"; }
    PIDS+=("$HELPER_PID")
}


# cpu_ticks PID...: utime+stime of the processes (all their threads), in ticks.
cpu_ticks() {
    local p s t=0 f
    for p in "$@"; do
        s=$(<"/proc/$p/stat") || continue
        s=${s##*) } # after "pid (comm) ": field 3 (state) is $1, utime $12, stime $13
        read -r -a f <<<"$s"
        t=$((t + f[11] + f[12]))
    done
    echo "$t"
}

# rss_kib PID...: summed VmRSS.
rss_kib() {
    local p t=0 v
    for p in "$@"; do
        v=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$p/status" 2>/dev/null || true)
        t=$((t + ${v:-0}))
    done
    echo "$t"
}

# ---- the machine: CPUs, descriptors ------------------------------------------

setup_machine() {
    local hard n
    read -r -a CPUS < <(python3 -c 'import os; print(*sorted(os.sched_getaffinity(0)))')
    NCPU=${#CPUS[@]}
    if [ "$NCPU" -eq 1 ]; then
        PROXY_CPUS=${CPUS[0]} LOAD_CPUS=${CPUS[0]} WORKERS_N=1
        PROXY_CPUS_N=$PROXY_CPUS
    elif [ "$NCPU" -eq 2 ]; then
        # Two CPUs: the proxy on one, everything else on the other; N
        # workers share the proxy's CPU (their cost, not their gain).
        PROXY_CPUS=${CPUS[0]} LOAD_CPUS=${CPUS[1]} WORKERS_N=2
        PROXY_CPUS_N=$PROXY_CPUS
    else
        WORKERS_N=$((NCPU - 1))
        PROXY_CPUS=${CPUS[0]}
        PROXY_CPUS_N=$(IFS=,; echo "${CPUS[*]:0:WORKERS_N}")
        LOAD_CPUS=$(IFS=,; echo "${CPUS[*]:WORKERS_N}")
    fi
    WORKERS_N=${BENCH_WORKERS:-$WORKERS_N}
    [[ "$WORKERS_N" =~ ^[1-9][0-9]*$ ]] || die "BENCH_WORKERS: '$WORKERS_N' is not a count"
    if [ -n "${BENCH_WORKERS:-}" ] && [ "$NCPU" -gt 2 ]; then
        n=$((WORKERS_N < NCPU - 1 ? WORKERS_N : NCPU - 1))
        PROXY_CPUS_N=$(IFS=,; echo "${CPUS[*]:0:n}")
    fi
    # Every process started from here has the same descriptor limit: the
    # hard one. A proxy holds 2 per stream (client and backend).
    hard=$(ulimit -Hn)
    [ "$hard" = unlimited ] && hard=1048576
    ulimit -n "$hard" || die "cannot raise the descriptor limit to $hard"
    NOFILE=$(ulimit -n)
    SCALE_BIG=$(((NOFILE - 200) / 2))
    [ "$SCALE_BIG" -gt 10000 ] && SCALE_BIG=10000
    SCALE_SMALL=2000
    if [ "$QUICK" = 1 ]; then
        SCALE_SMALL=1000
        [ "$SCALE_BIG" -gt 2000 ] && SCALE_BIG=2000
    fi
    [ "$SCALE_SMALL" -gt "$SCALE_BIG" ] && SCALE_SMALL=$SCALE_BIG
    [ "$SCALE_SMALL" -ge 100 ] || die "RLIMIT_NOFILE $NOFILE is too low for the scale scenario"
    CAP=$((SCALE_BIG + 50)) # every proxy's connection capacity
    PITOT_WORKERS=0
    "$BUILD/pitot" --help 2>&1 | grep -q -- '--workers' && PITOT_WORKERS=1
    CLK_TCK=$(getconf CLK_TCK)
    # The client is the reference clock of the latency and accuracy runs:
    # where allowed it runs at the lowest real-time priority, so that the
    # simulators beside it on its CPU do not delay its reads (it sleeps in
    # epoll between events, and the kernel caps real-time use at 95 %).
    LOAD_RT=()
    chrt -f 1 true 2>/dev/null && LOAD_RT=(chrt -f 1)
}

# ---- the simulators ----------------------------------------------------------

# sims_start TAG SLOTS TOKENS_PER_S: two pitot-sim (vLLM's dialect: it keeps
# connections open after a stream, so upstream keep-alive is real), pinned to
# the load CPUs. Sets SIM_PIDS, SIM_PORTS.
sims_start() {
    local tag=$1 slots=$2 tps=$3 i
    SIM_PIDS=()
    SIM_PORTS=()
    for i in a b; do
        start "$tag.sim-$i" taskset -c "$LOAD_CPUS" "$BUILD/pitot-sim" --flavor vllm --model small \
            --listen "$HOST:0" --slots "$slots" --tokens-per-s "$tps" \
            --prefill-tokens-per-s 1000000 --seed "$([ $i = a ] && echo 1 || echo 2)"
        SIM_PIDS+=("$LAST_PID")
    done
    for i in 0 1; do
        SIM_PORTS+=("$(wait_listening "$tag.sim-$([ $i = 0 ] && echo a || echo b)" "${SIM_PIDS[$i]}")")
    done
}

sims_stop() {
    stop "${SIM_PIDS[@]}"
}

# ---- the contenders ----------------------------------------------------------

# front_start CONTENDER WORKERS TAG [PITOT_EXTRA_YAML]: the contender in front
# of the simulators, under the command in WRAP if any (perf stat). Sets URLS
# (pitot-load's --url arguments), FRONT_PIDS (the processes whose CPU and
# memory count: nginx's master and workers), FRONT_MAIN (the PID to stop, ""
# for direct), FRONT_WRAP (WRAP's PID, which ends with the proxy).
front_start() {
    local c=$1 w=$2 tag=$3 extra=${4:-} cpus port
    cpus=$PROXY_CPUS
    [ "$w" -gt 1 ] && cpus=$PROXY_CPUS_N
    FRONT_PIDS=()
    FRONT_MAIN=
    FRONT_WRAP=
    case $c in
    direct)
        URLS=(--url "http://$HOST:${SIM_PORTS[0]}/v1/chat/completions"
            --url "http://$HOST:${SIM_PORTS[1]}/v1/chat/completions")
        return 0
        ;;
    pitot)
        # BENCH_PITOT_WRAP: profiling, e.g. "perf record -g -o DIR/%s.data --" (%s: the run)
        if [ -n "${BENCH_PITOT_WRAP:-}" ] && [ "${#WRAP[@]}" -eq 0 ]; then
            read -r -a WRAP <<<"${BENCH_PITOT_WRAP//%s/$tag}"
            pitot_start "$w" "$tag" "$cpus" "$extra"
            WRAP=()
        else
            pitot_start "$w" "$tag" "$cpus" "$extra"
        fi
        ;;
    nginx) nginx_start "$w" "$tag" "$cpus" ;;
    haproxy) haproxy_start "$w" "$tag" "$cpus" ;;
    esac
    URLS=(--url "$FRONT_URL/v1/chat/completions")
}

front_stop() {
    [ -n "$FRONT_MAIN" ] || return 0
    stop "$FRONT_MAIN"
    # nginx's workers leave with their master; make sure of it
    [ "${#FRONT_PIDS[@]}" -gt 1 ] && stop "${FRONT_PIDS[@]:1}"
    if [ -n "$FRONT_WRAP" ]; then
        # it ends by itself with the proxy, having written its count: a
        # signal would lose the count
        for _ in $(seq 1 100); do
            kill -0 "$FRONT_WRAP" 2>/dev/null || break
            sleep 0.05
        done
        stop "$FRONT_WRAP"
    fi
    FRONT_MAIN=
    FRONT_WRAP=
}

# start_proxy TAG NAME CPUS ARGV...: ARGV pinned to CPUS, under WRAP if set;
# FRONT_MAIN is the proxy itself (found below the wrapper by its NAME).
start_proxy() {
    local tag=$1 name=$2 cpus=$3 q p k
    shift 3
    start "$tag" ${WRAP[@]+"${WRAP[@]}"} taskset -c "$cpus" "$@"
    FRONT_MAIN=$LAST_PID
    [ "${#WRAP[@]}" -eq 0 ] && return 0
    FRONT_WRAP=$LAST_PID
    for _ in $(seq 1 100); do
        q=("$FRONT_WRAP")
        while [ "${#q[@]}" -gt 0 ]; do
            p=${q[0]}
            q=("${q[@]:1}")
            if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$name" ]; then
                FRONT_MAIN=$p
                return 0
            fi
            k=()
            read -r -a k <"/proc/$p/task/$p/children" 2>/dev/null || true # no newline
            q+=(${k[@]+"${k[@]}"})
        done
        sleep 0.05
    done
    die "$name did not start under ${WRAP[*]}"
}

pitot_start() {
    local w=$1 tag=$2 cpus=$3 extra=$4 port i n args=()
    local cfg=$TMP/$tag.yaml
    {
        echo "listen: $HOST:0"
        echo "backends:"
        for i in 0 1; do
            echo "  - url: http://$HOST:${SIM_PORTS[$i]}"
            echo "    name: sim-$i"
            echo "    flavor: vllm"
            echo "    capacity: ${SIM_SLOTS:-1000}"
            echo "    models: [small]"
        done
        echo "limits:"
        echo "  max_clients: $CAP"
        echo "log:"
        echo "  access_log: $TMP/$tag.access"
        [ -n "$extra" ] && printf '%s\n' "$extra"
    } >"$cfg"
    "$BUILD/pitot" -t -c "$cfg" >/dev/null 2>&1 ||
        die "pitot rejects $cfg: $("$BUILD/pitot" -t -c "$cfg" 2>&1)"
    # pitot's default is a worker per CPU: give every run its count
    [ "$PITOT_WORKERS" = 1 ] && args=(--workers "$w")
    start_proxy "$tag" pitot "$cpus" "$BUILD/pitot" -c "$cfg" ${args[@]+"${args[@]}"}
    FRONT_PIDS=("$FRONT_MAIN")
    port=$(wait_listening "$tag" "$FRONT_MAIN")
    FRONT_URL=http://$HOST:$port
    wait_http "$FRONT_URL/readyz" 200
    # both backends up and scraped once, so routing starts with their load
    for _ in $(seq 1 100); do
        n=$(curl -sf "$FRONT_URL/metrics" |
            grep -c '^pitot_backend_scrapes_total{.*result="ok".*} [1-9]' || true)
        [ "${n:-0}" -ge 2 ] && return 0
        sleep 0.05
    done
    die "pitot did not scrape both simulators within 5 s"
}

nginx_start() {
    local w=$1 tag=$2 cpus=$3 port t user_line='' i
    local dir=$TMP/$tag.nginx
    mkdir -p "$dir/tmp"
    ask port # a free loopback port: nginx and HAProxy cannot take port 0 and tell
    port=$ANSWER
    [ "$(id -u)" = 0 ] && user_line="user root;" # stay the invoking user
    {
        echo "$user_line"
        echo "worker_processes $w;"
        echo "worker_rlimit_nofile $NOFILE;"
        # nginx starts closing idle and new connections once 15/16 of
        # worker_connections are in use: 2 per stream, plus that sixteenth
        echo "events { worker_connections $((2 * CAP * 16 / 15 + 64)); }"
        echo "http {"
        echo "    access_log off;"
        echo "    keepalive_requests 1000000;"
        for t in client_body proxy fastcgi uwsgi scgi; do
            echo "    ${t}_temp_path $dir/tmp/$t;"
        done
        echo "    upstream pool {"
        echo "        least_conn;"
        for i in 0 1; do
            echo "        server $HOST:${SIM_PORTS[$i]};"
        done
        echo "        keepalive 32;"
        echo "        keepalive_requests 1000000;"
        echo "        keepalive_timeout 4s;"
        echo "    }"
        echo "    server {"
        echo "        listen $HOST:$port backlog=511;"
        echo "        location / {"
        echo "            proxy_pass http://pool;"
        echo "            proxy_http_version 1.1;"
        echo "            proxy_set_header Connection \"\";"
        echo "            proxy_buffering off;"
        echo "            proxy_read_timeout 600s;"
        echo "        }"
        echo "    }"
        echo "}"
    } >"$dir/nginx.conf"
    local args=(-p "$dir" -c "$dir/nginx.conf" -e stderr
        -g "daemon off; pid $dir/nginx.pid; error_log stderr warn;")
    nginx -t "${args[@]}" >"$TMP/$tag.nginx-t.err" 2>&1 ||
        die "nginx -t rejects $dir/nginx.conf: $(cat "$TMP/$tag.nginx-t.err")"
    start_proxy "$tag" nginx "$cpus" nginx "${args[@]}"
    FRONT_URL=http://$HOST:$port
    wait_http "$FRONT_URL/health" 200
    local kids=()
    for _ in $(seq 1 100); do
        kids=()
        read -r -a kids <"/proc/$FRONT_MAIN/task/$FRONT_MAIN/children" || true # no newline
        [ "${#kids[@]}" -ge "$w" ] && break
        sleep 0.05
    done
    [ "${#kids[@]}" -ge "$w" ] || die "nginx started ${#kids[@]} of $w workers"
    FRONT_PIDS=("$FRONT_MAIN" "${kids[@]}")
}

haproxy_start() {
    local w=$1 tag=$2 cpus=$3 port
    local cfg=$TMP/$tag.haproxy.cfg
    ask port # a free loopback port: nginx and HAProxy cannot take port 0 and tell
    port=$ANSWER
    {
        echo "global"
        echo "    nbthread $w"
        echo "    maxconn $CAP"
        echo "defaults"
        echo "    mode http"
        echo "    timeout connect 5s"
        echo "    timeout client 600s"
        echo "    timeout server 600s"
        echo "    timeout http-keep-alive 75s"
        # send each SSE event at once: without it HAProxy may hold small
        # writes back (MSG_MORE) and events arrive in ~200 ms batches
        echo "    option http-no-delay"
        echo "    http-reuse always"
        echo "frontend fe"
        echo "    bind $HOST:$port backlog 511"
        echo "    default_backend pool"
        echo "backend pool"
        echo "    balance leastconn"
        echo "    server sim-a $HOST:${SIM_PORTS[0]}"
        echo "    server sim-b $HOST:${SIM_PORTS[1]}"
    } >"$cfg"
    haproxy -c -q -f "$cfg" >"$TMP/$tag.haproxy-c.err" 2>&1 ||
        die "haproxy -c rejects $cfg: $(cat "$TMP/$tag.haproxy-c.err")"
    start_proxy "$tag" haproxy "$cpus" haproxy -db -f "$cfg"
    FRONT_PIDS=("$FRONT_MAIN")
    FRONT_URL=http://$HOST:$port
    wait_http "$FRONT_URL/health" 200
}

# ---- one run -----------------------------------------------------------------

# measure SCENARIO CONTENDER ROUND WORKERS TAG [KEY=VALUE...] -- LOAD_ARGS...:
# pitot-load pinned to the load CPUs against URLS, the proxy's CPU ticks and
# RSS around it (RSS sampled throughout when KEY streams= is given), the run's
# figures appended to $TMP/runs.jsonl.
measure() {
    local sc=$1 c=$2 r=$3 w=$4 tag=$5 kv=() c0 c1 idle='' peak='' sampler=
    shift 5
    while [ "$1" != -- ]; do
        kv+=("$1")
        shift
    done
    shift
    if [ "${#FRONT_PIDS[@]}" -gt 0 ]; then
        idle=$(rss_kib "${FRONT_PIDS[@]}")
        c0=$(cpu_ticks "${FRONT_PIDS[@]}")
        if [[ " ${kv[*]} " == *" streams="* ]]; then
            (
                while :; do
                    rss_kib "${FRONT_PIDS[@]}"
                    sleep 0.2
                done
            ) >"$TMP/$tag.rss" 2>/dev/null &
            sampler=$!
        fi
    fi
    local prio=()
    case $sc in low | moderate | acc8 | burst) prio=(${LOAD_RT[@]+"${LOAD_RT[@]}"}) ;; esac
    taskset -c "$LOAD_CPUS" ${prio[@]+"${prio[@]}"} "$BUILD/pitot-load" "${URLS[@]}" --prompt-tokens "$PROMPT" \
        --json "$TMP/$tag.jsonl" "$@" >"$TMP/$tag.load" 2>"$TMP/$tag.load.err" ||
        die "pitot-load failed against $c ($tag): $(cat "$TMP/$tag.load.err")"
    if [ "${#FRONT_PIDS[@]}" -gt 0 ]; then
        c1=$(cpu_ticks "${FRONT_PIDS[@]}")
        kv+=(cpu_ticks=$((c1 - c0)) clk_tck="$CLK_TCK" rss_idle_kib="$idle")
        if [ -n "$sampler" ]; then
            kill "$sampler" 2>/dev/null || true
            wait "$sampler" 2>/dev/null || true
            peak=$(sort -n "$TMP/$tag.rss" | tail -1)
            kv+=(rss_peak_kib="$peak")
        fi
    fi
    ask record scenario="$sc" contender="$c" round="$r" workers="$w" \
        load_out="$TMP/$tag.load" load_json="$TMP/$tag.jsonl" ${kv[@]+"${kv[@]}"}
    echo "$ANSWER"
    # the big per-request files are not needed once the figures are out
    [ -n "$KEEP" ] || rm -f "$TMP/$tag.jsonl" "$TMP/$tag.access"
}

# ---- scenarios (one round each) ----------------------------------------------

# each_contender SCENARIO ROUND WORKERS SLOTS TPS KEY=VALUE... -- LOAD_ARGS...:
# fresh simulators, then every contender in turn in front of them.
each_contender() {
    local sc=$1 r=$2 w=$3 slots=$4 tps=$5 c tag list=("${CONTENDERS[@]}")
    shift 5
    [ "$w" -gt 1 ] && list=("${PROXIES[@]}")
    SIM_SLOTS=$slots
    sims_start "$sc.$r.w$w" "$slots" "$tps"
    for c in "${list[@]}"; do
        if [ "$c" = pitot ] && [ "$w" -gt 1 ] && [ "$PITOT_WORKERS" = 0 ]; then
            continue
        fi
        tag=$sc.$r.w$w.$c
        front_start "$c" "$w" "$tag"
        local kv=("$@")
        [ "$c" = pitot ] && [ "$sc" = moderate ] && kv=(access="$TMP/$tag.access" "${kv[@]}")
        measure "$sc" "$c" "$r" "$w" "$tag" "${kv[@]}"
        front_stop
    done
    sims_stop
}

scenario_low() {
    each_contender low "$1" 1 64 100 -- --concurrency 1 --duration "$T_LOW" --max-tokens 10
}

scenario_moderate() {
    each_contender moderate "$1" 1 1000 50 -- --rate "$MODERATE_STREAMS" --concurrency 1000 \
        --duration "$T_MODERATE" --max-tokens "$MODERATE_TOKENS"
}

scenario_sse() {
    each_contender sse "$1" "$2" 1000 1000 -- --concurrency "$SSE_STREAMS" --duration "$T_SSE" \
        --max-tokens 200
}

scenario_short() {
    each_contender short "$1" "$2" 1000 1000000 -- --concurrency "$SHORT_CONC" \
        --duration "$T_SHORT" --no-stream --max-tokens 1
}

# Slow streams: 1 token/s, opened at SCALE_RAMP per second, all open at once
# for most of their SCALE_TOKENS seconds.
scenario_scale() {
    local r=$1 sc=$2 n=$3
    each_contender "$sc" "$r" 1 "$n" 1 streams="$n" -- --rate "$SCALE_RAMP" --requests "$n" \
        --concurrency "$n" --max-tokens "$SCALE_TOKENS"
}

# pitot in front of saturated simulators (4 slots each, all held by 8 long
# streams), its default tier never queueing (max_queue: 0): every other
# request gets pitot's own 503 + Retry-After. Open loop, 500 arrivals/s.
scenario_overload() {
    local r=$1 tag=overload.$1.pitot holder busy ra n p
    SIM_SLOTS=4
    sims_start "overload.$r" 4 10
    front_start pitot 1 "$tag" $'tiers:\n  - name: default\n    max_queue: 0'
    start "$tag.holder" taskset -c "$LOAD_CPUS" "$BUILD/pitot-load" "${URLS[@]}" \
        --concurrency 8 --requests 8 --max-tokens 1500
    holder=$LAST_PID
    for _ in $(seq 1 100); do
        busy=0
        for p in "${SIM_PORTS[@]}"; do
            n=$(curl -sf "http://$HOST:$p/sim/stats" | sed -n 's/.*"busy":\([0-9]*\).*/\1/p' || true)
            busy=$((busy + ${n:-0}))
        done
        [ "$busy" -ge 8 ] && break
        sleep 0.05
    done
    [ "$busy" -ge 8 ] || die "the long streams did not fill the simulators' slots"
    sleep 0.6 # a scrape that has seen them
    ra=$(curl -s -o /dev/null -D - "$FRONT_URL/v1/chat/completions" \
        -H 'Content-Type: application/json' \
        -d '{"model":"small","messages":[{"role":"user","content":"hi"}],"stream":true}' |
        tr -d '\r' | awk 'NR == 1 { s = $2 } tolower($1) == "retry-after:" { r = $2 }
            END { print s "/" r }')
    measure overload pitot "$r" 1 "$tag" access="$TMP/$tag.access" retry_after="$ra" -- \
        --rate 500 --concurrency 256 --duration "$T_OVERLOAD" --max-tokens 16
    stop "$holder"
    front_stop
    sims_stop
}

# pitot's TTFT/E2E against pitot-load's: 8 streams closed loop, and a burst of
# 200 opened at once (200 open loop is the moderate scenario's pitot run).
scenario_accuracy() {
    local r=$1 tag
    SIM_SLOTS=1000
    sims_start "accuracy.$r" 1000 50
    tag=acc8.$r.pitot
    front_start pitot 1 "$tag"
    measure acc8 pitot "$r" 1 "$tag" access="$TMP/$tag.access" -- --concurrency 8 \
        --duration "$T_ACC" --max-tokens "$MODERATE_TOKENS"
    front_stop
    tag=burst.$r.pitot
    front_start pitot 1 "$tag"
    measure burst pitot "$r" 1 "$tag" access="$TMP/$tag.access" -- --concurrency 200 \
        --requests 200 --max-tokens "$MODERATE_TOKENS"
    front_stop
    sims_stop
}

# System calls per relayed SSE event: each proxy runs under `perf stat -e
# raw_syscalls:sys_enter` (counting all its threads and processes from start
# to exit, startup and idle checks included) for one SSE run at saturation,
# apart from the SSE runs above so that counting weighs on no other figure.
scenario_syscalls() {
    local r=$1 c tag n
    SIM_SLOTS=1000
    sims_start "syscalls.$r" 1000 1000
    for c in "${PROXIES[@]}"; do
        tag=syscalls.$r.$c
        WRAP=(perf stat -e raw_syscalls:sys_enter "-x," -o "$TMP/$tag.perf" --)
        front_start "$c" 1 "$tag"
        WRAP=()
        measure syscalls "$c" "$r" 1 "$tag" -- --concurrency "$SSE_STREAMS" --duration "$T_SSE" \
            --max-tokens 200
        front_stop # perf writes its count when the proxy has exited
        n=$(awk -F, '/raw_syscalls:sys_enter/ { print $1 }' "$TMP/$tag.perf")
        ask syscalls "$c" "$r" "${n:-}"
        echo "$ANSWER"
    done
    sims_stop
}

main() {
    local b r t0
    for b in pitot pitot-sim pitot-load; do
        [ -x "$BUILD/$b" ] || die "$BUILD/$b is missing; run make first"
    done
    for b in python3 curl nginx haproxy taskset; do
        command -v "$b" >/dev/null || die "needs $b"
    done
    for b in "${CONTENDERS[@]}"; do
        [[ "$b" =~ ^(direct|pitot|nginx|haproxy)$ ]] || die "BENCH_CONTENDERS: unknown '$b'"
    done
    setup_machine
    t0=$(date +%s)
    echo "== pitot, nginx and HAProxy side by side ($(git describe --always --dirty 2>/dev/null || echo '?'))"
    echo "   $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v | head -1 | awk '{ print "HAProxy " $3 }'),"\
        "pitot $("$BUILD/pitot" -V 2>&1 | head -1 | awk '{ print $NF }'); $NCPU CPUs"\
        "($(nproc --all) in the machine), $ROUNDS rounds$([ "$QUICK" = 1 ] && echo ', BENCH_QUICK')"
    echo "   CPUs: the proxy on $PROXY_CPUS (N workers on $PROXY_CPUS_N), pitot-load and the"\
        "simulators on $LOAD_CPUS"
    echo "   every process: RLIMIT_NOFILE $NOFILE; every proxy sized for $CAP connections"\
        "(nginx worker_connections $((2 * CAP * 16 / 15 + 64)), HAProxy maxconn $CAP, pitot max_clients $CAP)"
    echo "   backends: 2 pitot-sim, vLLM dialect (keep-alive after streams), prompt $PROMPT tokens"\
        "prefilled at once"
    if [ "$SCALE_BIG" -lt 10000 ]; then
        if [ "$QUICK" = 1 ]; then
            echo "   scale: $SCALE_SMALL and $SCALE_BIG streams (BENCH_QUICK; the full run goes to"\
                "10,000 where RLIMIT_NOFILE allows)"
        else
            echo "   scale: $SCALE_BIG streams, not 10,000: RLIMIT_NOFILE's hard limit ($NOFILE)"\
                "holds 2 descriptors a stream and some for the proxy itself"
        fi
    fi
    PERF=0
    if has syscalls; then
        if command -v perf >/dev/null &&
            perf stat -e raw_syscalls:sys_enter -x, -o /dev/null true >/dev/null 2>&1; then
            PERF=1
        else
            echo "   system calls: not counted (perf or its syscall tracepoint is missing;"\
                "apt-get install linux-perf)"
        fi
    fi
    if [ "${#LOAD_RT[@]}" -gt 0 ]; then
        echo "   pitot-load: real-time priority 1 in the latency and accuracy runs"
    else
        echo "   pitot-load: normal priority (chrt refused here): latency and accuracy figures" \
            "include its own delays"
    fi
    if [ "$PITOT_WORKERS" = 0 ]; then
        echo "   workers: $WORKERS_N for nginx and HAProxy; pitot has no --workers yet (1 only)"
    else
        echo "   workers: $WORKERS_N for each proxy"
    fi
    python3 "$REPORT" meta quick="$QUICK" rounds="$ROUNDS" ncpu="$NCPU" proxy_cpus="$PROXY_CPUS" \
        proxy_cpus_n="$PROXY_CPUS_N" load_cpus="$LOAD_CPUS" workers_n="$WORKERS_N" \
        pitot_workers="$PITOT_WORKERS" load_rt="${#LOAD_RT[@]}" nofile="$NOFILE" scale_small="$SCALE_SMALL" \
        scale_big="$SCALE_BIG" capacity="$CAP" prompt_tokens="$PROMPT" \
        t_low="$T_LOW" t_moderate="$T_MODERATE" t_sse="$T_SSE" t_short="$T_SHORT" \
        t_overload="$T_OVERLOAD" t_accuracy="$T_ACC" scale_tokens="$SCALE_TOKENS" \
        scale_ramp="$SCALE_RAMP" nginx="$(nginx -v 2>&1)" haproxy="$(haproxy -v | head -1)" \
        pitot="$(git describe --always --dirty 2>/dev/null || echo '?')" \
        kernel="$(uname -r)" >"$TMP/meta.json"
    : >"$TMP/runs.jsonl"
    helper_start
    for r in $(seq 1 "$ROUNDS"); do
        printf '\n== round %s of %s (%s s so far)\n' "$r" "$ROUNDS" "$(($(date +%s) - t0))"
        has low && scenario_low "$r"
        has moderate && scenario_moderate "$r"
        has sse && scenario_sse "$r" 1
        has short && scenario_short "$r" 1
        if has scale; then
            scenario_scale "$r" scale_small "$SCALE_SMALL"
            scenario_scale "$r" scale_big "$SCALE_BIG"
        fi
        if has workers && [ "$WORKERS_N" -gt 1 ]; then
            scenario_sse "$r" "$WORKERS_N"
            scenario_short "$r" "$WORKERS_N"
        fi
        has overload && scenario_overload "$r"
        has accuracy && scenario_accuracy "$r"
        [ "$PERF" = 1 ] && scenario_syscalls "$r"
    done
    mkdir -p "$(dirname "$OUT")"
    printf '\n== Results (%s s)\n' "$(($(date +%s) - t0))"
    python3 "$REPORT" report "$TMP/runs.jsonl" "$TMP/meta.json" "$OUT"
    echo
    echo "   every median and every round's value: $OUT"
}

main "$@"
