#!/bin/bash
# SPDX-License-Identifier: ISC
# Where the time goes for one connection (issue 9, part 2): one handler
# process serving one SMTP session (EHLO, MAIL, RCPT, DATA with a 10 KB
# message, QUIT) from stdin with REMOTE_ADDR=127.0.0.1 (networks auth, no
# TLS, RSA-2048 + Ed25519 signing, fsync on). Instruction counts from
# callgrind are the stable figures on a shared machine; perf stat times
# and strace syscall times move with the load.
#   bash bench/breakdown.sh [BUILD]   (BREAKDOWN_RUNS sets perf stat -r)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
runs=${BREAKDOWN_RUNS:-20}
handler=$PWD/$build/smtpgate-handler
dir=$(mktemp -d /tmp/smtpgate-breakdown.XXXXXX)
trap 'rm -rf "$dir"' EXIT

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/rsa.pem" 2>/dev/null
openssl genpkey -algorithm ED25519 -out "$dir/ed.pem" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/key.pem" -out "$dir/cert.pem" \
	-days 30 -subj /CN=gate.example.com 2>/dev/null
cat > "$dir/c.conf" <<EOF
[gate]
hostname = gate.example.com
queue = $dir/queue
tls_certificate = $dir/cert.pem
tls_private_key = $dir/key.pem
implicit_tls_ports =
[relay]
url = discard:
[account bench]
networks = 127.0.0.1/32
dkim_key = example.com rsa $dir/rsa.pem
dkim_key = example.com ed $dir/ed.pem
EOF
/usr/bin/python3 - "$dir" <<'EOF'
import sys
d = sys.argv[1]
line = "The quick brown fox jumps over the lazy dog, again and again.\r\n"
head = ("From: Bench <bench@example.com>\r\nTo: <rcpt@example.net>\r\n"
        "Subject: bench\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
        "Message-Id: <bench.1@example.com>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n")
body = line * ((10240 - len(head)) // len(line))
cmds = ("EHLO client.example.com\r\nMAIL FROM:<bench@example.com>\r\n"
        "RCPT TO:<rcpt@example.net>\r\nDATA\r\n")
with open(f"{d}/session.txt", "w", newline="") as f:
    f.write(cmds + head + body + ".\r\nQUIT\r\n")
# The same session with larger messages, for the cost per size.
for kb in (100, 1024, 10240):
    big = line * ((kb * 1024 - len(head)) // len(line))
    with open(f"{d}/session-{kb}k.txt", "w", newline="") as f:
        f.write(cmds + head + big + ".\r\nQUIT\r\n")
with open(f"{d}/starttls.txt", "w", newline="") as f:
    f.write("EHLO client.example.com\r\nQUIT\r\n")
EOF
session() { REMOTE_ADDR=127.0.0.1 "$handler" -c "$dir/c.conf" < "$dir/session.txt"; }
if ! session 2>/dev/null | grep -q '^250 2.0.0'; then
	echo "breakdown: the session did not queue its message" >&2
	exit 1
fi

# perf stat's task-clock and elapsed lines, mean of $runs runs.
perf_line() {
	perf stat -r "$runs" "$@" 2>&1 >/dev/null |
		awk '/task-clock/ { printf "%s ms task-clock, ", $1 }
		     /elapsed/ { printf "%.1f ms elapsed (± %s)\n", $1 * 1000, $(NF - 1) }'
}

echo "## Where the time goes: one connection, one 10 KB message"
echo
echo "No TLS, networks auth, RSA-2048 + Ed25519 signing, fsync on."
echo "Handler: \`REMOTE_ADDR=127.0.0.1 $build/smtpgate-handler -c CONF < session\`."
echo
echo "### Wall and CPU time (perf stat -r $runs; moves with the machine's load)"
echo
echo "- exec + dynamic loading (\`--version\`): $(perf_line "$handler" --version)"
echo "- one whole session: $(perf_line sh -c "REMOTE_ADDR=127.0.0.1 '$handler' -c '$dir/c.conf' < '$dir/session.txt'")"
size_line() {
	perf stat -r "$runs" sh -c "REMOTE_ADDR=127.0.0.1 '$handler' -c '$dir/c.conf' < '$1'" 2>&1 >/dev/null |
		awk '/task-clock/ { print $1 }'
}
# Peak RSS of one handler serving session file $1, in KB.
peak_rss() {
	REMOTE_ADDR=127.0.0.1 "$build/bench/peak_rss" "$handler" -c "$dir/c.conf" < "$1" 2>/dev/null | tail -n 1
}
# The instructions of callgrind profile $1, all functions.
callgrind_total() {
	callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(/,/, "", $1); print $1; exit }'
}
# Instructions of one handler serving session file $1.
instructions() {
	REMOTE_ADDR=127.0.0.1 valgrind --tool=callgrind --callgrind-out-file="$dir/cg-one.out" \
		"$handler" -c "$dir/c.conf" < "$1" > /dev/null 2>&1
	callgrind_total "$dir/cg-one.out"
}
small=$(size_line "$dir/session.txt")
small_ir=$(instructions "$dir/session.txt")
echo "- one session by message size (task-clock and callgrind instructions, each"
echo "  with its increment over 10 KB per MB added; peak RSS):"
awk -v t="$small" -v ir="$small_ir" -v rss="$(peak_rss "$dir/session.txt")" 'BEGIN {
	printf "  10 KB: %.2f ms, %.2f M instructions, peak RSS %d KB\n", t, ir / 1e6, rss }'
for kb in 100 1024 10240; do
	t=$(size_line "$dir/session-${kb}k.txt")
	awk -v kb="$kb" -v t="$t" -v s="$small" -v ir="$(instructions "$dir/session-${kb}k.txt")" \
		-v sir="$small_ir" -v rss="$(peak_rss "$dir/session-${kb}k.txt")" 'BEGIN {
		mb = (kb - 10) / 1024
		printf "  %s KB: %.2f ms (%.2f ms per MB), %.2f M instructions (%.2f M per MB), peak RSS %d KB\n",
			kb, t, (t - s) / mb, ir / 1e6, (ir - sir) / 1e6 / mb, rss }'
done
echo "- libraries linked: $(ldd "$handler" | awk '$1 !~ /vdso|ld-linux/ { printf "%s ", $1 }')"
echo
echo "Dynamic loader (LD_DEBUG=statistics, \`--version\`):"
echo
echo '```'
LD_DEBUG=statistics "$handler" --version 2>&1 >/dev/null |
	sed -n 's/^ *[0-9]*:[[:space:]]*//p' | grep -E 'startup|relocation|objects' | sort -u
echo '```'
echo
echo "### System calls (strace)"
echo
echo '```'
REMOTE_ADDR=127.0.0.1 strace -f -c -o "$dir/strace-c" "$handler" -c "$dir/c.conf" \
	< "$dir/session.txt" > /dev/null 2>&1
head -n 20 "$dir/strace-c"
echo '```'
echo
echo "Syncs (strace -T: time spent waiting in each):"
echo
echo '```'
REMOTE_ADDR=127.0.0.1 strace -T -e trace=fdatasync,fsync,msync,sync_file_range \
	"$handler" -c "$dir/c.conf" < "$dir/session.txt" 2>&1 >/dev/null |
	grep -E '^(fdatasync|fsync|msync|sync_file_range)' || echo "(none)"
echo '```'
echo
echo "### Instructions (valgrind --tool=callgrind, inclusive, stable under load)"
echo
REMOTE_ADDR=127.0.0.1 valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
	"$handler" -c "$dir/c.conf" < "$dir/session.txt" > /dev/null 2> "$dir/vg.err"
callgrind_annotate --inclusive=yes --threshold=100 "$dir/cg.out" > "$dir/cg.txt" 2>/dev/null
# inclusive Ir of the first line naming FUNCTION (callgrind_annotate's
# "file:function [object]" form), or 0 if it never ran.
ir() {
	awk -v f="$1" '{ n = $0; sub(/ \[.*$/, "", n); sub(/^.*:/, "", n) }
		n == f { gsub(/,/, "", $1); print $1; found = 1; exit }
		END { if (!found) print 0 }' "$dir/cg.txt"
}
total=$(ir "PROGRAM TOTALS")
[ "$total" = 0 ] && total=$(awk '/PROGRAM TOTALS/ { gsub(/,/, "", $1); print $1; exit }' "$dir/cg.txt")
row() {
	local v
	v=$(ir "$2")
	awk -v l="$1" -v f="$2" -v v="$v" -v t="$total" \
		'BEGIN { printf "| %s | `%s` | %.2f M | %.1f %% |\n", l, f, v / 1e6, 100 * v / t }'
}
echo "| part | function | instructions | share |"
echo "|---|---|---:|---:|"
awk -v t="$total" 'BEGIN { printf "| whole process | | %.2f M | 100 %% |\n", t / 1e6 }'
row "dynamic loading + relocation" _dl_start
row "main (config load + session + exit paths)" main
row "config load" config_load_indexed
row "session (all SMTP)" session_run
row "queue open (LMDB env)" queue_open
row "DKIM key load (PEM decode)" dkim_key_load
row "OpenSSL provider/algorithm fetch" EVP_PKEY_CTX_new_from_name
row "DKIM sign finish" dkim_sign_finish
row "RSA sign" RSA_sign
row "RSA blinding set-up (first use)" RSA_setup_blinding
row "Ed25519 sign (+ RSA digest-sign wrapper)" EVP_DigestSign
row "queue append (LMDB txn + commit)" queue_append_release
row "LMDB commit" mdb_txn_commit
row "process exit (atexit handlers: OpenSSL clean-up)" exit
echo
# TLS set-up: the context (certificate, key) is built when the client asks
# for STARTTLS; an EHLO + QUIT session never builds it, a STARTTLS
# session pays for it plus the handshake, which needs a TLS client.
notls=$(instructions "$dir/starttls.txt")
# One STARTTLS handshake against a callgrind'ed handler with config $1:
# the client is Python's ssl module over a socketpair (no verification, a
# bench). Prints the TLS version; the profile goes to $2.
tls_session() {
	/usr/bin/python3 - "$handler" "$1" "$2" <<'EOF'
import os, socket, ssl, subprocess, sys
handler, conf, out = sys.argv[1], sys.argv[2], sys.argv[3]
a, b = socket.socketpair()
env = dict(os.environ, REMOTE_ADDR="127.0.0.1")
p = subprocess.Popen(["valgrind", "--tool=callgrind",
                      f"--callgrind-out-file={out}", handler,
                      "-c", conf], stdin=b, stdout=b,
                     stderr=subprocess.DEVNULL, env=env)
b.close()
f = a.makefile("rb")
def reply():
    while True:
        line = f.readline()
        if not line or line[3:4] != b"-":
            return line
reply()
a.sendall(b"EHLO c.example.com\r\n"); reply()
a.sendall(b"STARTTLS\r\n"); reply()
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(a, server_hostname="gate.example.com")
tf = t.makefile("rb")
t.sendall(b"EHLO c.example.com\r\n")
while True:
    line = tf.readline()
    if not line or line[3:4] != b"-":
        break
t.sendall(b"QUIT\r\n"); tf.readline()
p.wait(timeout=120)
print(t.version())
EOF
}
# Inclusive instructions of a function in a profile.
profile_ir() {
	callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null |
		awk -v f="$2" '{ n = $0; sub(/ \[.*$/, "", n); sub(/^.*:/, "", n) }
			n == f { gsub(/,/, "", $1); print $1; found = 1; exit }
			END { if (!found) print 0 }'
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$dir/ec-key.pem" -out "$dir/ec-cert.pem" -days 30 \
	-subj /CN=gate.example.com 2>/dev/null
sed "s|^tls_certificate = .*|tls_certificate = $dir/ec-cert.pem|; s|^tls_private_key = .*|tls_private_key = $dir/ec-key.pem|" \
	"$dir/c.conf" > "$dir/ec.conf"
echo "TLS set-up: EHLO + STARTTLS + handshake + EHLO + QUIT against EHLO + QUIT"
echo "($(awk -v a="$notls" 'BEGIN { printf "%.2f M", a / 1e6 }') instructions); callgrind instructions:"
echo
echo "| certificate | TLS | whole session | TLS costs | context: SSL_CTX_new, certificate, key | of which the key | handshake |"
echo "|---|---|---:|---:|---:|---:|---:|"
for cert in "RSA-2048:c.conf" "ECDSA P-256:ec.conf"; do
	version=$(tls_session "$dir/${cert#*:}" "$dir/cg-tls2.out")
	tls=$(callgrind_total "$dir/cg-tls2.out")
	awk -v l="${cert%%:*}" -v v="$version" -v a="$notls" -v b="$tls" \
		-v c="$(profile_ir "$dir/cg-tls2.out" tls_context_new)" \
		-v k="$(profile_ir "$dir/cg-tls2.out" keyfile_read)" \
		-v h="$(profile_ir "$dir/cg-tls2.out" tls_accept)" 'BEGIN {
		printf "| %s | %s | %.2f M | %.2f M | %.2f M | %.2f M | %.2f M |\n",
			l, v, b / 1e6, (b - a) / 1e6, c / 1e6, k / 1e6, h / 1e6 }'
done
echo

echo "### Config load: 10 vs 10,000 accounts (bench/config_load)"
echo
echo "Whole file (config_load), and through the account index written by"
echo "\`smtpgate-queue index-config\` (config_load_indexed + the lookups of one"
echo "connection: the account of the client's network and of a login)."
echo
if [ -x "$build/bench/config_load" ]; then
	for n in 10:2000 10000:30; do
		cfg=$dir/cfg${n%:*}
		bash bench/make_config.sh "$cfg" "${n%:*}"
		"$build/smtpgate-queue" -c "$cfg/smtpgate.conf" index-config > /dev/null
		"$build/bench/config_load" "$cfg/smtpgate.conf" "${n#*:}" 10.0.5.9 user5@smtpgate 2>&1 |
			sed "s|$dir/||; s|^|- ${n%:*} accounts: |"
	done
else
	echo "($build/bench/config_load not built)"
fi
echo
# The same session as above with 10,000 more accounts in the config.
{
	cat "$dir/c.conf"
	awk 'BEGIN { for (i = 0; i < 10000; i++)
		printf "[account a%d]\nlogin = user%d@smtpgate\npassword = $y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7\nnetworks = 10.%d.%d.0/24\n\n", i, i, int(i / 256) % 256, i % 256 }'
} > "$dir/big.conf"
echo "One whole session (as above) with 10,000 more accounts in the config (perf stat -r $runs):"
echo
echo "- without an index: $(perf_line sh -c "REMOTE_ADDR=127.0.0.1 '$handler' -c '$dir/big.conf' < '$dir/session.txt'")"
"$build/smtpgate-queue" -c "$dir/big.conf" index-config > /dev/null
echo "- with big.conf.index: $(perf_line sh -c "REMOTE_ADDR=127.0.0.1 '$handler' -c '$dir/big.conf' < '$dir/session.txt'")"
echo "- with 1 account (above): $(perf_line sh -c "REMOTE_ADDR=127.0.0.1 '$handler' -c '$dir/c.conf' < '$dir/session.txt'")"
echo
