#!/bin/bash
# SPDX-License-Identifier: ISC
# bench/flush.sh: how many messages per second smtpgate-flush delivers to a
# local sink, with 10 KB messages (issue 4 target: >= 1,000 msgs/s).
#
#   discard:        the flush loop itself: claim, record (one durable
#                   commit per batch), log
#   maildir:        one file per message, fsync'd, renamed, folder fsync'd
#   smtp://         bench/flush_sink (C, PIPELINING) on 127.0.0.1 over
#                   `concurrency` = 4 connections
# each with 10 and with FLUSH_BENCH_N (5,000) messages queued, and discard:
# and smtp:// with FLUSH_BENCH_BIG (100,000) queued (--max-time bounds
# those runs; the rate is what was delivered in that time).
#
# The queues are filled on tmpfs (/dev/shm) with tests/tools/queue_inject,
# whose every append is a durable commit, then copied with mdb_copy to
# bench/out/flush on the disk, where the flush runs: the flush's own
# commits and the maildir's fsyncs hit the real disk.
#
# Usage: bench/flush.sh [BUILD]   (the build folder, default build)
#
# Prints a Markdown table; the rate is messages / the run's own time as
# its summary line reports it (process start and exit excluded), and the
# wall time of the whole process is shown beside it.
set -eu
cd "$(dirname "$0")/.."
build=${1:-${BUILD:-build}}
N=${FLUSH_BENCH_N:-5000}
BIG=${FLUSH_BENCH_BIG:-100000}
SIZE=10240
work=$PWD/bench/out/flush
fill=/dev/shm/smtpgate-bench-flush.$$
[ -d /dev/shm ] && [ -w /dev/shm ] || fill=$work/fill

rm -rf "$work" "$fill"
mkdir -p "$work" "$fill"
sink_pid=
cleanup() {
	[ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null && wait "$sink_pid" 2>/dev/null
	rm -rf "$fill"
}
trap cleanup EXIT

"$build/bench/flush_sink" >"$work/sink.port" &
sink_pid=$!
for _ in $(seq 100); do [ -s "$work/sink.port" ] && break; sleep 0.05; done
port=$(cat "$work/sink.port")

# config NAME QUEUE URL
config() {
	cat >"$work/$1.conf" <<CONF
[gate]
hostname = gate.example.com
queue = $2
queue_map_size = 4G

[relay]
url = $3
concurrency = 4
starttls = no

[account bench]
networks = 127.0.0.1/32
CONF
}

# template COUNT: a queue of COUNT messages in $fill/COUNT (made once).
template() {
	local dir=$fill/$1
	[ -d "$dir" ] && return
	config "fill-$1" "$dir" discard:
	local per=$(( ($1 + 3) / 4 )) left=$1 pids=()
	while [ "$left" -gt 0 ]; do
		local n=$(( left < per ? left : per ))
		"$build/tests/tools/queue_inject" -q -c "$work/fill-$1.conf" -a bench \
			-n "$n" -s "$SIZE" rcpt@example.net &
		pids+=($!)
		left=$((left - n))
	done
	for p in "${pids[@]}"; do wait "$p"; done
}

# run LABEL URL COUNT [flush options]: copies the template to the disk,
# flushes, prints a table row.
run() {
	local label=$1 url=$2 count=$3
	shift 3
	template "$count"
	local q=$work/queue-$label-$count
	rm -rf "$q" "$work/outbox"
	mkdir -p "$q"
	mdb_copy "$fill/$count" "$q"
	config "$label" "$q" "$url"
	sync
	local t0 t1 rc=0
	t0=$(date +%s.%N)
	"$build/smtpgate-flush" -c "$work/$label.conf" "$@" 2>"$work/$label-$count.log" || rc=$?
	t1=$(date +%s.%N)
	local line msgs secs
	line=$(grep -E 'smtpgate-flush: [0-9]+ messages in' "$work/$label-$count.log" | tail -n 1)
	msgs=$(sed -nE 's/.*smtpgate-flush: ([0-9]+) messages in ([0-9.]+) s.*/\1/p' <<<"$line")
	secs=$(sed -nE 's/.*smtpgate-flush: ([0-9]+) messages in ([0-9.]+) s.*/\2/p' <<<"$line")
	if [ "$rc" -ne 0 ] || [ -z "$msgs" ]; then
		echo "| $label | $count | failed (exit $rc, see $work/$label-$count.log) | | | |"
		return
	fi
	awk -v l="$label" -v c="$count" -v m="$msgs" -v s="$secs" -v w="$(echo "$t1 - $t0" | bc)" \
		'BEGIN { printf "| %s | %d | %d | %.3f | %.0f | %.3f |\n", l, c, m, s, (s > 0 ? m / s : 0), w }'
}

echo "### smtpgate-flush: messages/s to a local sink (10 KB messages)"
echo
echo "| relay | queued | delivered | run s | msgs/s | wall s |"
echo "|---|---:|---:|---:|---:|---:|"
run discard discard: 10
run discard discard: "$N"
run maildir "maildir:$work/outbox" 10
run maildir "maildir:$work/outbox" "$N"
run smtp "smtp://127.0.0.1:$port" 10
run smtp "smtp://127.0.0.1:$port" "$N"
run discard discard: "$BIG" --max-time 10
run smtp "smtp://127.0.0.1:$port" "$BIG" --max-time 10
echo
echo "(\`run s\` is the flush's own figure from its summary line; \`wall s\` the"
echo "whole process. Runs over $BIG queued stop claiming after --max-time 10.)"
