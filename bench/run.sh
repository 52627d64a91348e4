#!/bin/bash
# SPDX-License-Identifier: ISC
# make bench: runs every part bench/*.sh in name order (helpers named
# make_*.sh are not parts) and writes what they print to bench/results.md
# as well as to the terminal. Parts take the build folder as $1.
# bench/summary.md, the figures against their targets, is written by hand
# from a run's output and goes between the header and the parts.
set -u
cd "$(dirname "$0")/.."
build=${BUILD:-build}
out=bench/results.md
# Parts that compare with another's figures (bench/systemd_accept.py with
# bench/compare_postfix.py's) use them only from the same run.
export SMTPGATE_BENCH_RUN="$(date -u '+%Y-%m-%d %H:%M:%S') $$"
{
	echo "# smtpgate benchmarks"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null)"
	echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) cores"
	echo "- load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)" \
		"(the machine may be shared: wall-clock figures move with the load;" \
		"callgrind instruction counts do not)"
	echo "- kernel: $(uname -r); queue file system: $(df -T /tmp | awk 'NR == 2 { print $2 }')"
	echo
	if [ -f bench/summary.md ]; then
		cat bench/summary.md
		echo
	fi
} > "$out"
status=0
for part in bench/*.sh; do
	case "$(basename "$part")" in
	run.sh | make_*.sh) continue ;;
	esac
	echo "== $part" >&2
	if ! bash "$part" "$build" | tee -a "$out"; then
		echo "$part: failed" | tee -a "$out" >&2
		status=1
	fi
done
echo "results: $out" >&2
exit $status
