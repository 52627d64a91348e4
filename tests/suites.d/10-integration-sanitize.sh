# SPDX-License-Identifier: ISC
# The integration tests again, against the ASan+UBSan build (halt_on_error).
echo "== integration tests under ASan+UBSan"
SMTPGATE_BUILD=build-sanitize pytest_suite integration-sanitize tests/integration
