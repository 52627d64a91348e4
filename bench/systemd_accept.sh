#!/bin/bash
# SPDX-License-Identifier: ISC
# make bench's part for bench/systemd_accept.py: accept throughput through
# the installed units under a real systemd (in a systemd-nspawn container),
# with the units' sandbox and without. Says "Not run" without root or
# systemd-nspawn.
set -eu
cd "$(dirname "$0")/.."
exec /usr/bin/python3 bench/systemd_accept.py "${1:-build}"
