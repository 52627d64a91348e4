#!/bin/sh
# SPDX-License-Identifier: ISC
# Runs every unit test binary of a build folder; prints
# "unit(BUILD): N passed, N failed" and exits non-zero on any failure.
build=${1:-build}
passed=0 failed=0
for t in "$build"/tests/unit/test_*; do
	case "$t" in *.o|*.d) continue ;; esac
	[ -x "$t" ] || continue
	out=$("$t" 2>&1); rc=$?
	printf '%s\n' "$out" | grep -v '^ok ' 
	line=$(printf '%s\n' "$out" | tail -n 1)
	p=$(printf '%s' "$line" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
	f=$(printf '%s' "$line" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
	if [ -z "$p" ]; then
		echo "$t: crashed or printed no summary (exit $rc)"
		p=0 f=1
	elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "$t: exit $rc"
		f=1
	fi
	passed=$((passed + p)) failed=$((failed + f))
done
echo "unit($build): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
