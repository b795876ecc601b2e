#!/usr/bin/env bash
# Runs the whole suite: unit tests (cmocka), fuzz corpus replay, integration
# scenarios (real processes on loopback). Ends with one line "N passed, M failed"
# and exits non-zero if anything failed. BUILD selects the build directory.
# SUITE=faults runs the fault suite instead (tests/faults/test_*.py: chaos,
# reload under load, misbehaving peers), whose checks also print what they
# counted and "SKIP name: why" lines (listed, not counted).
set -u
BUILD=${BUILD:-build}
SUITE=${SUITE:-main}
export PITOT_BUILD="$BUILD"
export PITOT_FIXTURES=${PITOT_FIXTURES:-tests/fixtures}
ONLY=${ONLY:-}            # substring filter on test names
pass=0
fail=0
failed_names=()

note_fail() {
    fail=$((fail + 1))
    failed_names+=("$1")
}

if [ "$SUITE" = main ]; then
# cmocka binaries: count their own PASSED/FAILED lines; a crash counts as a failure.
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    [ -n "$ONLY" ] && [[ "$name" != *"$ONLY"* ]] && continue
    out=$("$t" 2>&1)
    rc=$?
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' <<<"$out" | tail -1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' <<<"$out" | tail -1)
    p=${p:-0}
    f=${f:-0}
    pass=$((pass + p))
    fail=$((fail + f))
    if [ "$f" -gt 0 ] || [ "$rc" -ne 0 ]; then
        printf '%s\n' "$out" | grep -v '^\[       OK \]\|^\[ RUN      \]'
        [ "$f" -eq 0 ] && note_fail "$name (exit $rc)"
        [ "$f" -gt 0 ] && failed_names+=("$name")
    fi
    printf '%-28s %3d passed, %d failed\n' "$name" "$p" "$f"
done

# The layer rule of the README, on the #include lines (and a proof that the
# check can fail).
for mode in "" --self-test; do
    name="check_layers${mode:+ $mode}"
    [ -n "$ONLY" ] && [[ "$name" != *"$ONLY"* ]] && continue
    if out=$(python3 tests/layers/check_layers.py $mode 2>&1); then
        pass=$((pass + 1))
        printf '%-28s %s\n' "check_layers" "$(tail -1 <<<"$out")"
    else
        printf '%s\n' "$out" | tail -40
        note_fail "$name"
    fi
done

# Fuzz targets replay their seed corpus (and every crash ever found).
for t in "$BUILD"/fuzz/replay_fuzz_*; do
    [ -x "$t" ] || continue
    name=${t##*/replay_}
    [ -n "$ONLY" ] && [[ "$name" != *"$ONLY"* ]] && continue
    if out=$("$t" "tests/fuzz/corpus/$name" 2>&1); then
        pass=$((pass + 1))
        printf '%-28s %s\n' "$name" "$(tail -1 <<<"$out")"
    else
        printf '%s\n' "$out" | tail -30
        note_fail "$name corpus replay"
    fi
done

fi

# Integration scenarios print "PASS name" / "FAIL name: why" per check.
pydir=tests/integration
[ "$SUITE" = faults ] && pydir=tests/faults
for t in "$pydir"/test_*.py; do
    [ -f "$t" ] || continue
    name=$(basename "$t" .py)
    [ -n "$ONLY" ] && [[ "$name" != *"$ONLY"* ]] && continue
    out=$(timeout 600 python3 "$t" 2>&1)
    rc=$?
    p=$(grep -c '^PASS ' <<<"$out")
    f=$(grep -c '^FAIL ' <<<"$out")
    pass=$((pass + p))
    fail=$((fail + f))
    # the fault checks' counts and SKIP lines are the report
    [ "$SUITE" = faults ] && printf '%s\n' "$out" | grep -v '^PASS \|^FAIL \|^  ' | sed 's/^/  /'
    if [ "$f" -gt 0 ] || [ "$rc" -ne 0 ]; then
        printf '%s\n' "$out" | grep -v '^PASS ' | tail -60
        [ "$f" -eq 0 ] && note_fail "$name (exit $rc)"
        [ "$f" -gt 0 ] && failed_names+=("$name")
    fi
    printf '%-28s %3d passed, %d failed\n' "$name" "$p" "$f"
done

if [ "${#failed_names[@]}" -gt 0 ]; then
    echo "failed: ${failed_names[*]}"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
