# Process handling shared by the benchmark scripts (sourced, not run). The
# script sets BENCH_NAME (for messages), TMP (a fresh directory, removed on
# exit), KEEP (a directory to copy TMP to, or empty) and PIDS=() first; every
# process started with start() is stopped by PID on exit, also on failure.

die() {
    echo "$BENCH_NAME: $*" >&2
    exit 1
}

# stop PID...: SIGTERM, up to ~2 s for a clean exit, then SIGKILL; forgets them.
stop() {
    local p q keep=()
    for p in "$@"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "$@"; do
        for _ in $(seq 1 20); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    for q in ${PIDS[@]+"${PIDS[@]}"}; do
        for p in "$@"; do
            [ "$q" = "$p" ] && continue 2
        done
        keep+=("$q")
    done
    PIDS=(${keep[@]+"${keep[@]}"})
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop ${PIDS[@]+"${PIDS[@]}"}
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 130 ] && [ "$rc" -ne 143 ]; then
        echo "$BENCH_NAME: failed (exit $rc); the last lines each process logged:" >&2
        for f in "$TMP"/*.err; do
            [ -s "$f" ] && { echo "--- $(basename "$f")"; tail -5 "$f"; }
        done >&2
    fi
    if [ -n "$KEEP" ]; then
        mkdir -p "$KEEP" && cp -r "$TMP"/. "$KEEP"/ && echo "$BENCH_NAME: files kept in $KEEP" >&2
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME ARGV...: ARGV in the background, output to $TMP/NAME.{out,err};
# its PID in LAST_PID (and PIDS, for the EXIT trap).
start() {
    local name=$1
    shift
    "$@" </dev/null >"$TMP/$name.out" 2>"$TMP/$name.err" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# wait_listening NAME PID: prints the port from "... listening on HOST:PORT".
wait_listening() {
    local name=$1 pid=$2 port
    for _ in $(seq 1 100); do
        port=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$TMP/$name.err" | head -1)
        if [ -n "$port" ]; then
            echo "$port"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || die "$name exited early: $(cat "$TMP/$name.err")"
        sleep 0.05
    done
    die "$name did not report its port within 5 s"
}

# wait_http URL WANT: until URL answers status WANT (5 s at most).
wait_http() {
    local code=
    for _ in $(seq 1 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)
        [ "$code" = "$2" ] && return 0
        sleep 0.05
    done
    die "$1 did not answer $2 within 5 s (last: ${code:-none})"
}

