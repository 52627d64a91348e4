#!/bin/bash
# SPDX-License-Identifier: ISC
# make check: every suite, then one closing line "N passed, N failed".
# Each suite prints its own summary; this adds them up. A suite that cannot
# run (no privileges for a container, say) says so and counts as skipped,
# never as passed.
set -u
cd "$(dirname "$0")/.."

total_passed=0 total_failed=0 total_skipped=0
summary=()

# add NAME PASSED FAILED [SKIPPED]
add() {
	total_passed=$((total_passed + $2))
	total_failed=$((total_failed + $3))
	total_skipped=$((total_skipped + ${4:-0}))
	summary+=("$1: $2 passed, $3 failed, ${4:-0} skipped")
}

# Runs a command whose last summary line is "...: N passed, N failed".
plain_suite() {
	local name=$1; shift
	local log
	log=$(mktemp)
	"$@" 2>&1 | tee "$log"
	local rc=${PIPESTATUS[0]}
	local line p f
	line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
	p=$(sed -nE 's/.* ([0-9]+) passed, ([0-9]+) failed.*/\1/p' <<<"$line")
	f=$(sed -nE 's/.* ([0-9]+) passed, ([0-9]+) failed.*/\2/p' <<<"$line")
	if [ -z "$p" ]; then p=0; f=1; fi
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	add "$name" "$p" "$f"
	rm -f "$log"
}

# Runs pytest and reads its closing line.
pytest_suite() {
	local name=$1; shift
	local log
	log=$(mktemp)
	/usr/bin/python3 -m pytest -p no:cacheprovider -q -rfEs "$@" 2>&1 | tee "$log"
	local rc=${PIPESTATUS[0]}
	local line p f e s
	line=$(grep -E '(passed|failed|error|skipped|no tests ran)' "$log" | tail -n 1)
	p=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+' || echo 0)
	f=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+' || echo 0)
	e=$(grep -oE '[0-9]+ errors?' <<<"$line" | grep -oE '[0-9]+' || echo 0)
	s=$(grep -oE '[0-9]+ skipped' <<<"$line" | grep -oE '[0-9]+' || echo 0)
	f=$((f + e))
	# 5: no tests collected; anything else non-zero is a failure.
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && [ "$f" -eq 0 ]; then f=1; fi
	add "$name" "$p" "$f" "$s"
	rm -f "$log"
}

echo "== build"
if ! make -j2 --no-print-directory programs >/dev/null; then
	make -j2 --no-print-directory programs
	add build 0 1
else
	add build 1 0
fi
echo "== sanitizer build (ASan+UBSan)"
if ! make -j2 --no-print-directory programs BUILD=build-sanitize SANITIZE=1 >/dev/null; then
	make -j2 --no-print-directory programs BUILD=build-sanitize SANITIZE=1
	add sanitize-build 0 1
else
	add sanitize-build 1 0
fi

export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

echo "== unit tests"
plain_suite unit sh tests/run-unit.sh build
echo "== unit tests under ASan+UBSan"
plain_suite unit-sanitize sh tests/run-unit.sh build-sanitize

echo "== integration tests"
SMTPGATE_BUILD=build pytest_suite integration tests/integration

# Further suites (sanitizer integration, fuzz, man pages, systemd) are
# listed in tests/suites.d/*.sh: each defines one function call per suite.
for f in tests/suites.d/*.sh; do
	[ -e "$f" ] || continue
	# shellcheck source=/dev/null
	. "$f"
done

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
echo "$total_passed passed, $total_failed failed, $total_skipped skipped"
[ "$total_failed" -eq 0 ]
