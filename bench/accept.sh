#!/bin/bash
# Accept throughput (issue 9): see bench/accept.py. ACCEPT_MESSAGES sets
# the messages per run (default 300).
set -eu
cd "$(dirname "$0")/.."
exec /usr/bin/python3 bench/accept.py "${1:-build}"
