#!/usr/bin/env bash
# The fault suite: tests/faults/test_*.py (chaos, reload under load, misbehaving
# peers with descriptor and memory accounting), each printing "PASS name",
# "FAIL name: why" or "SKIP name: why" per check. Ends with one line
# "N passed, M failed" (skips are listed, not counted) and exits non-zero if
# anything failed. BUILD selects the build directory (build/asan works too).
set -u
BUILD=${BUILD:-build}
export PITOT_BUILD="$BUILD"
export PITOT_FIXTURES=${PITOT_FIXTURES:-tests/fixtures}
ONLY=${ONLY:-}            # substring filter on test names
pass=0
fail=0
failed_names=()

for t in tests/faults/test_*.py; do
    [ -f "$t" ] || continue
    name=$(basename "$t" .py)
    [ -n "$ONLY" ] && [[ "$name" != *"$ONLY"* ]] && continue
    out=$(timeout 600 python3 "$t" 2>&1)
    rc=$?
    p=$(grep -c '^PASS ' <<<"$out")
    f=$(grep -c '^FAIL ' <<<"$out")
    pass=$((pass + p))
    fail=$((fail + f))
    # what the checks print besides PASS (counts, SKIP lines) is the report
    printf '%s\n' "$out" | grep -v '^PASS \|^  ' | grep -v '^FAIL ' | sed 's/^/  /'
    if [ "$f" -gt 0 ] || [ "$rc" -ne 0 ]; then
        printf '%s\n' "$out" | grep -v '^PASS ' | tail -60
        [ "$f" -eq 0 ] && { fail=$((fail + 1)); failed_names+=("$name (exit $rc)"); }
        [ "$f" -gt 0 ] && failed_names+=("$name")
    fi
    printf '%-28s %3d passed, %d failed\n' "$name" "$p" "$f"
done

if [ "${#failed_names[@]}" -gt 0 ]; then
    echo "failed: ${failed_names[*]}"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
