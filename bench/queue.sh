#!/bin/bash
# SPDX-License-Identifier: ISC
# The queue's part of `make bench`: durable append throughput next to its
# floor, and lookup cost against list size. Prints a Markdown section.
#
#   bash bench/queue.sh [BUILD]
#   (COUNT=500 syncs; ROUNDS=10 x PER=50 commits for each comparison)
#
# The floor is what the disk allows: the fdatasync rate of one 4 KiB write,
# and the rate of LMDB durable commits of one 8-byte record and of one new
# record of the message's size (each LMDB commit syncs the data pages, then
# the meta page). queue_append should stay within 1.5x of that floor: it
# writes msg (via MDB_RESERVE), env, due and the issue counter in the same
# single commit. LMDB lets one writer in at a time, so more writer
# processes queue up behind the lock rather than add throughput.
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
bench=$build/bench/queue_bench
count=${COUNT:-500}
rounds=${ROUNDS:-10}
per=${PER:-50}
lookups=${LOOKUPS:-200000}
[ -x "$bench" ] || { echo "bench/queue.sh: $bench missing: run make" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/var/tmp}/smtpgate-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

run() { "$bench" "$@" | sed 's/^/    /'; }

echo "## queue: durable appends and lookups"
echo
echo "$(date -u +%FT%TZ), $(nproc) CPUs, $(uname -r), filesystem of $work:" \
	"$(df -T "$work" | awk 'NR==2 { print $2 }'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "The disk (fdatasync of one 4 KiB block):"
echo
run fdatasync "$work/sync" "$count"
echo
echo "queue_append of 10 KiB messages (msg, env, due and issue counter, one"
echo "durable commit each) and two floors: durable LMDB commits of one 8-byte"
echo "record (rewriting one key: LMDB reuses the pages, the file keeps its"
echo "size) and of one new record of the message's size (the file grows, as"
echo "the queue's does while messages arrive faster than they leave, and"
echo "fdatasync then also commits the file's new size and blocks to the ext4"
echo "journal). Measured in turns, $rounds rounds of $per each, so that all"
echo "see the same disk (on shared machines its sync rate swings by half from"
echo "one minute to the next). Target: floor/append at most 1.5."
echo
for procs in 1 4 16; do
	run compare "$work/w$procs" "$procs" "$rounds" "$per" 10240
	rm -rf "$work/w$procs"
done
echo
echo "The same with 10 and with 100,000 messages already queued:"
echo
run compare "$work/pre10" 1 "$rounds" "$per" 10240 10
rm -rf "$work/pre10"
run compare "$work/pre100k" 1 "$rounds" "$per" 10240 100000
rm -rf "$work/pre100k"
echo
echo "queue_is_stoplisted (two B-tree lookups: address, then @domain):"
echo
run lookup "$work/stop10" 10 "$lookups"
run lookup "$work/stop1m" 1000000 "$lookups"
echo
