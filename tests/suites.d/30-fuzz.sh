# SPDX-License-Identifier: ISC
# The libFuzzer targets (tests/fuzz/), briefly: about 10 s each, after
# replaying every saved regression input. `make fuzz` runs them longer.
echo "== fuzz targets (10 s each)"
plain_suite fuzz make --no-print-directory fuzz FUZZ_SECONDS=10
