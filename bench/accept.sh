#!/bin/bash
# SPDX-License-Identifier: ISC
# Accept throughput (issue 9): see bench/accept.py. ACCEPT_SECONDS sets
# the length of each run (default 5).
set -eu
cd "$(dirname "$0")/.."
exec /usr/bin/python3 bench/accept.py "${1:-build}"
