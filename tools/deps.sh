#!/bin/sh
# SPDX-License-Identifier: ISC
# Installs the Debian packages smtpgate needs to build, run and test;
# "deps.sh bench" also those make bench measures with, "deps.sh coverage"
# what make coverage reports with.
# Root: installs what is missing (one apt-get update, one apt-get install).
# Not root: prints the one command that would do it, and fails.
set -eu

# package            why
PACKAGES="
build-essential      compiler, make, libc headers
pkg-config           finds the libraries' flags
clang                make CC=clang, libFuzzer targets (make fuzz)
libclang-rt-14-dev   libFuzzer and sanitizer runtimes for clang
libssl-dev           OpenSSL: TLS, SHA-256, RSA and Ed25519 signatures
liblmdb-dev          the queue
lmdb-utils           mdb_stat and mdb_dump, to inspect the queue
libinih-dev          the INI config parser
libcrypt-dev         libxcrypt crypt_r for account password hashes
libcurl4-openssl-dev delivery callbacks over HTTP(S)
libsystemd-dev       sd_listen_fds(3), sd_notify(3) that the man pages cite (not linked: common/systemd.h)
openssl              generates demo and test certificates and keys
systemd              systemd-socket-activate, systemd-analyze
systemd-container    systemd-nspawn for the real-systemd unit test
mandoc               man page lint (mandoc -Tlint)
man-db               man -l renders man pages in tests
python3-pytest       integration test runner
python3-dkim         dkimpy, an independent DKIM verifier
python3-nacl         Ed25519 verification for dkimpy
python3-aiosmtpd     a scripted SMTP relay sink for flush tests
python3-lmdb         tests read the queue directly
python3-dnspython    a zone-file parser and a DNS server for the dkim-keygen and dkim-check tests
libmail-dkim-perl    Mail::DKIM, a second independent DKIM verifier
libopendkim-dev      libopendkim, a third independent DKIM verifier
swaks                a second, independent SMTP client
haproxy              a real load balancer sending PROXY v2 in front of the gateway (test_proxy.py)
postfix              the relay tier two gateways flush to (test_scale_out.py); a private instance, its service unused
libauthen-sasl-perl  AUTH support for swaks
libio-socket-ssl-perl STARTTLS support for swaks
libnet-ssleay-perl   TLS for swaks
iproute2             ss, to look at sockets in tests
procps               pgrep, ps in tests
debhelper            builds the Debian package (make deb, debian/rules: dh, compat 13)
dpkg-dev             dpkg-buildpackage, dpkg-parsechangelog (make deb)
lintian              checks the built package against Debian policy (make deb)
prometheus           promtool checks smtpgate-queue metrics (the only package with it)
prometheus-node-exporter its textfile collector reads smtpgate-queue metrics in a test
"

# Only make bench needs these (bench/breakdown.sh, bench/compare_postfix.py).
BENCH_PACKAGES="
linux-perf           perf stat: CPU time and page faults of one session
valgrind             callgrind: instruction counts, stable on a busy machine
strace               system calls and the time spent in each fsync
opendkim             the DKIM milter signing for the Postfix bench/compare_postfix.py measures smtpgate against (its own instances)
"
# Only make coverage needs this (tools/coverage.sh).
COVERAGE_PACKAGES="
gcovr                line and function coverage per file from gcov's data
"
case "${1:-}" in
bench) PACKAGES="$PACKAGES$BENCH_PACKAGES" ;;
coverage) PACKAGES="$PACKAGES$COVERAGE_PACKAGES" ;;
esac

names=$(printf '%s\n' "$PACKAGES" | awk 'NF { print $1 }')
missing=""
for p in $names; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$status" in
	*"install ok installed"*) ;;
	*) missing="$missing $p" ;;
	esac
done

# Postfix would replace another MTA (both are a mail-transport-agent):
# where one is installed, postfix is left out, and the test that needs
# it is skipped and says why.
case " $missing " in
*" postfix "*)
	if dpkg-query -W -f='${Status} ${Provides}\n' 2>/dev/null |
		grep -q '^install ok installed.*mail-transport-agent'; then
		echo "smtpgate: another MTA is installed; not replacing it with postfix" >&2
		missing=$(printf ' %s' $missing | sed 's/ postfix\( \|$\)/\1/')
	fi ;;
esac

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "smtpgate: missing Debian packages; run as root:" >&2
	echo "  apt-get install -y$missing" >&2
	exit 1
fi

echo "smtpgate: installing Debian packages:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# Postfix's debconf question, answered "No configuration": its postinst
# then writes no /etc/postfix/main.cf, and without one its service does
# not start (postfix.service: ConditionPathExists=/etc/postfix/main.cf;
# postfix@-.service: "postconf: fatal: open /etc/postfix/main.cf"), so
# it never takes port 25. The tests run their own instance
# (postfix -c FOLDER start-fg), reading and changing nothing in
# /etc/postfix.
case " $missing " in
*" postfix "*)
	echo "postfix postfix/main_mailer_type select No configuration" |
		debconf-set-selections ;;
esac
# No package's service starts while installing (postfix, opendkim: the
# bench starts its own instances): a policy-rc.d saying "forbidden", ours
# only if there is none, removed afterwards.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# smtpgate tools/deps.sh: no service starts while installing\nexit 101\n' > "$policy"
	chmod 755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq >&2
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >&2
# Postfix's postinst enables postfix.service; disabled, a boot does not
# even try it (which would leave postfix@-.service failed, the system
# "degraded"). An administrator who configures Postfix enables it again.
case " $missing " in
*" postfix "*) systemctl disable --quiet postfix.service >&2 ;;
esac
