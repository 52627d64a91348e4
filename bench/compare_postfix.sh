#!/bin/bash
# SPDX-License-Identifier: ISC
# make bench's part for bench/compare_postfix.py: smtpgate against Postfix
# + OpenDKIM with the same client. Says "Not run" where Postfix and
# OpenDKIM are not installed (see the .py file's header).
set -eu
cd "$(dirname "$0")/.."
exec /usr/bin/python3 bench/compare_postfix.py "${1:-build}"
