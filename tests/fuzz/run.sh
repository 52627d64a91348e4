#!/bin/bash
# SPDX-License-Identifier: ISC
# make fuzz: runs every libFuzzer target of a build folder.
#
#   tests/fuzz/run.sh BUILD SECONDS [RUNS] [ONLY]
#
# Target NAME is BUILD/fuzz_NAME, built from tests/fuzz/fuzz_NAME.c. Each
# first replays its saved findings (tests/fuzz/regressions/NAME/*, every one
# a crash that was fixed), then fuzzes for SECONDS (0: no time limit) or RUNS
# executions, starting from the seeds in tests/fuzz/corpus/NAME/ and the
# corpus earlier runs grew in BUILD/corpus/NAME/ (the seeds in git are never
# written to). Optional tests/fuzz/NAME.dict is its dictionary,
# tests/fuzz/NAME.options extra libFuzzer flags; $FUZZ_TIMEOUT (default 10)
# the seconds one input may take (libFuzzer measures wall-clock time, so
# long runs on a busy machine need more). ONLY: a space-separated list
# of names to run. The full log of each run is BUILD/logs/NAME.log; a crash
# leaves its input in BUILD/artifacts/NAME/. The last line is
# "fuzz: N passed, N failed", a target passing when it ran without any crash,
# leak, time-out, out-of-memory or sanitizer report.
set -u
cd "$(dirname "$0")/../.."

build=${1:-build-fuzz}
seconds=${2:-60}
runs=${3:-}
only=${4:-}

# Leaks are findings; a sanitizer report ends the run (it is the finding).
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=0:symbolize=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

passed=0 failed=0
shopt -s nullglob
for bin in "$build"/fuzz_*; do
	[ -x "$bin" ] && [ -f "$bin" ] || continue
	name=${bin##*/fuzz_}
	if [ -n "$only" ] && [[ " $only " != *" $name "* ]]; then
		continue
	fi
	corpus=$build/corpus/$name
	artifacts=$build/artifacts/$name
	log=$build/logs/$name.log
	mkdir -p "$corpus" "$artifacts" "$build/logs"
	: >"$log"
	ok=1 why=""

	# Every fixed finding must stay fixed; libFuzzer runs files given by
	# name once each, whole (no -max_len cut).
	regressions=(tests/fuzz/regressions/"$name"/*)
	if [ ${#regressions[@]} -gt 0 ]; then
		if ! "$bin" "${regressions[@]}" >>"$log" 2>&1; then
			ok=0 why="a saved regression input fails again"
		fi
	fi

	flags=(-timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -print_final_stats=1 -print_funcs=0
	       -artifact_prefix="$artifacts/")
	[ "$seconds" != 0 ] && flags+=(-max_total_time="$seconds")
	[ -n "$runs" ] && flags+=(-runs="$runs")
	[ -f "tests/fuzz/$name.dict" ] && flags+=(-dict="tests/fuzz/$name.dict")
	if [ -f "tests/fuzz/$name.options" ]; then
		read -r -a extra <<<"$(grep -v '^#' "tests/fuzz/$name.options" | tr '\n' ' ')"
		flags+=("${extra[@]}")
	fi
	seeds=()
	[ -d "tests/fuzz/corpus/$name" ] && seeds=("tests/fuzz/corpus/$name")

	# Findings only: slow-unit-* files report inputs that took long on a
	# busy machine, not failures.
	count_findings() {
		ls "$artifacts" | grep -cE '^(crash|leak|timeout|oom)-'
	}
	before=$(count_findings)
	start=$(date +%s.%N)
	if [ "$ok" = 1 ]; then
		"$bin" "${flags[@]}" "$corpus" "${seeds[@]}" >>"$log" 2>&1
		rc=$?
	else
		rc=1
	fi
	end=$(date +%s.%N)
	found=$(( $(count_findings) - before ))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
	units=$(ls "$corpus" | wc -l)
	if [ "$ok" = 1 ] && [ "$rc" -ne 0 ]; then
		ok=0 why="libFuzzer exit $rc"
	fi
	if [ "$ok" = 1 ] && grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$log"; then
		ok=0 why="a sanitizer report"
	fi
	secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
	printf 'fuzz_%s: %s execs in %s s (%s/s), %d crashes, corpus %d, peak RSS %s MB' \
		"$name" "${execs:-?}" "$secs" "${rate:-?}" "$found" "$units" "${rss:-?}"
	if [ "$ok" = 1 ]; then
		echo " - ok"
		passed=$((passed + 1))
	else
		echo " - FAILED: $why"
		# The finding: the sanitizer or property report and the stack.
		grep -nE 'ERROR:|runtime error:|property failed|SUMMARY|^    #[0-9]+ |Test unit written|deadly signal' \
			"$log" | grep -v 'in fuzzer::' | head -n 30 |
			sed -E 's/ \(BuildId: [0-9a-f]+\)//; s/^/  /'
		echo "  full log: $log"
		failed=$((failed + 1))
	fi
done

if [ $((passed + failed)) -eq 0 ]; then
	echo "fuzz: no targets in $build"
	failed=1
fi
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
