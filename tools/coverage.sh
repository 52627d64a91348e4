#!/bin/bash
# SPDX-License-Identifier: ISC
# make coverage: the unit tests and the integration tests against BUILD
# (made with --coverage by make coverage), then line and function coverage
# for each file of handler/ dkim/ queue/ common/, by gcovr.
#
#   tools/coverage.sh BUILD [PYTEST ARGUMENTS...]   (default tests/integration)
#
# The counters start from zero on each run. Every process of the tests
# adds to them when it exits, handlers started by systemd-socket-activate
# included (gcov merges concurrent writers under a file lock). A process
# that a test runs as another user (smtpgate-sendmail as nobody) must be
# able to write them too: each counter file starts empty (gcov takes an
# empty file for a new one) and writable by all, and the empty ones left
# at the end are removed. gcov's own messages go to $build/gcov-errors.log,
# not to the programs' standard error, which tests compare to the byte;
# any there (counts lost) are shown after the table. Exit status: 0 when
# every test passed, 1 otherwise; the table is printed either way.
set -u
cd "$(dirname "$0")/.."
build=${1:?usage: tools/coverage.sh BUILD [PYTEST ARGUMENTS...]}
shift
[ $# -gt 0 ] || set -- tests/integration

find "$build" -name '*.gcda' -delete
find "$build" -name '*.gcno' | while read -r notes; do
	: > "${notes%.gcno}.gcda" && chmod 666 "${notes%.gcno}.gcda"
done
GCOV_ERROR_FILE=$(cd "$build" && pwd)/gcov-errors.log
export GCOV_ERROR_FILE
: > "$GCOV_ERROR_FILE" && chmod 666 "$GCOV_ERROR_FILE"
status=0
echo "== unit tests ($build)"
sh tests/run-unit.sh "$build" || status=1
echo "== integration tests ($build): $*"
SMTPGATE_BUILD=$build /usr/bin/python3 -m pytest -p no:cacheprovider -q "$@" || status=1

find "$build" -name '*.gcda' -size 0 -delete	# never run: no data
summary=$build/coverage.json
gcovr --root . --object-directory "$build" \
	--filter '(handler|dkim|queue|common)/' \
	--json-summary "$summary" || exit 1
echo
echo "== coverage of handler/ dkim/ queue/ common/ (gcovr; * below 90 % of lines)"
/usr/bin/python3 - "$summary" <<'PY'
import json, sys

files = sorted(json.load(open(sys.argv[1]))["files"], key=lambda f: f["filename"])
width = max([len(f["filename"]) for f in files] + [5])

def row(name, lc, lt, fc, ft, mark=""):
    lp = 100.0 * lc / lt if lt else 100.0
    fp = 100.0 * fc / ft if ft else 100.0
    print(f"{name:<{width}}  {lc:>5}/{lt:<5} {lp:5.1f} %   {fc:>3}/{ft:<3} {fp:5.1f} % {mark}")

print(f"{'FILE':<{width}}  {'LINES':^18}   {'FUNCTIONS':^16}")
for f in files:
    lt, lc = f["line_total"], f["line_covered"]
    row(f["filename"], lc, lt, f["function_covered"], f["function_total"],
        "*" if lt and lc < 0.9 * lt else "")
row("TOTAL", sum(f["line_covered"] for f in files), sum(f["line_total"] for f in files),
    sum(f["function_covered"] for f in files), sum(f["function_total"] for f in files))
PY
if [ -s "$GCOV_ERROR_FILE" ]; then
	echo
	echo "== gcov could not write some counts (these lines are low): $GCOV_ERROR_FILE"
	sort "$GCOV_ERROR_FILE" | uniq -c | head -n 20
fi
exit $status
