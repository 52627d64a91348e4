#!/bin/bash
# SPDX-License-Identifier: ISC
# make run: the demo gateway (SPEC section 8).
#
# On the first run it makes, under run/: a self-signed certificate, RSA and
# Ed25519 DKIM keys for example.com with their DNS records in zone-file
# text (dkim/dns.txt), both by "smtpgate-queue dkim-keygen", and
# smtpgate.conf with the account "demo" (login demo.demo@smtpgate, password
# demo hashed by "smtpgate-queue hash-password", and networks
# 127.0.0.1/32). Later runs keep all of it. Then it serves 127.0.0.1:2525 with systemd-socket-activate
# (one smtpgate-handler per connection, as smtpgate.socket does) and runs
# smtpgate-flush every few seconds into the maildir run/outbox. It stays in
# the foreground; Ctrl-C (SIGINT) or SIGTERM stops everything it started.
#
# Environment: RUN_DIR (default run/ in the source tree), PORT (2525),
# BUILD (build), FLUSH_INTERVAL (seconds, 3).
set -eu

# Started in the background of a non-interactive shell, this script would
# inherit SIGINT ignored, and bash cannot trap a signal ignored on entry:
# Ctrl-C would then stop nothing. Start again with the default action.
if [ -z "${SMTPGATE_DEMO_SIGNALS:-}" ]; then
	export SMTPGATE_DEMO_SIGNALS=default
	exec env --default-signal=INT,TERM bash "$0" "$@"
fi
cd "$(dirname "$0")/.."
top=$PWD

run_dir=${RUN_DIR:-run}
case $run_dir in /*) ;; *) run_dir=$top/$run_dir ;; esac
port=${PORT:-2525}
build=${BUILD:-build}
case $build in /*) ;; *) build=$top/$build ;; esac
interval=${FLUSH_INTERVAL:-3}
conf=$run_dir/smtpgate.conf

for p in smtpgate-handler smtpgate-flush smtpgate-queue; do
	if [ ! -x "$build/$p" ]; then
		echo "run-demo: $build/$p is missing; run make first" >&2
		exit 1
	fi
done

say() { printf '%s\n' "$*"; }

# New DKIM keys for example.com in run/dkim/, made as an administrator
# makes them (smtpgate-queue(8) dkim-keygen), with paths relative to run/
# as the configuration resolves them. Prints the config lines and the
# zone records. The note that there is no group smtpgate is left out: the
# demo runs as whoever started it.
keygen() {
	local out
	if ! out=$(cd "$run_dir" && "$build/smtpgate-queue" dkim-keygen example.com \
		--dir dkim "$@" 2>"$run_dir/keygen.err"); then
		cat "$run_dir/keygen.err" >&2
		exit 1
	fi
	rm -f "$run_dir/keygen.err"
	printf '%s\n' "$out"
}

first_run() {
	mkdir -p "$run_dir/tls" "$run_dir/dkim" "$run_dir/outbox"
	umask 077
	say "run-demo: first run: making a certificate, DKIM keys and $conf"
	openssl req -x509 -newkey rsa:2048 -nodes -days 365 \
		-keyout "$run_dir/tls/key.pem" -out "$run_dir/tls/cert.pem" \
		-subj "/CN=localhost" \
		-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
	local rsa ed hash
	rsa=$(keygen --type rsa --selector rsa)
	ed=$(keygen --type ed25519 --selector ed)
	hash=$(printf 'demo\n' | "$build/smtpgate-queue" hash-password)
	cat >"$conf.tmp" <<EOF
; The demo gateway of "make run" (tools/run-demo.sh); see smtpgate.conf(5).
; Relative paths are relative to this folder.

[gate]
hostname = localhost
queue = queue
queue_map_size = 256M
tls_certificate = tls/cert.pem
tls_private_key = tls/key.pem

[relay]
; Nothing leaves the machine: signed messages land in outbox/new/.
url = maildir:outbox

[account demo]
login = demo.demo@smtpgate
password = $hash
networks = 127.0.0.1/32
$(printf '%s\n' "$rsa" "$ed" | grep '^dkim_key = ')
dkim_default_domain = example.com
EOF
	mv "$conf.tmp" "$conf"
	umask 022
	# What example.com would publish, for a verifier: zone-file text.
	{
		printf '; The DKIM records of example.com for the demo keys.\n'
		printf '%s\n' "$rsa" "$ed" | grep -v -e '^;' -e '^dkim_key = ' -e '^$'
	} >"$run_dir/dkim/dns.txt"
}

activator=""

# Lets the handlers finish (bounded), kills what is left, and stops the
# activator only after it has reaped them: PID 1 here may reap no orphans.
#
# It runs from the EXIT trap, in the script's own flow, never from the
# INT or TERM trap: those only set $stopping. A trap runs while the wait
# builtin is interrupted, and bash 5.2 called back into wait from there
# can block in wait4(-1) for a child its outer wait already reaped: the
# demo then hung after "run-demo: stopping" until the activator died
# (issue 16, seen once in a few runs under load). Children are started with
# & and waited for with the wait builtin, which a trapped SIGINT
# interrupts at once (a foreground child would keep the trap waiting
# until it ends). Children started with & in a non-interactive shell
# ignore SIGINT, so Ctrl-C reaches them only through this function. An
# early exit can come between "cmd &" and the "pid=$!" after it; so the
# jobs bash knows, not the variables, say what is running: the first one
# started is the activator.
stop() {
	trap - EXIT
	trap '' INT TERM
	set +e
	# Says how far a stop got, should one ever hang.
	say "run-demo: stopping"
	local pid
	for pid in $(jobs -p); do
		if [ -z "$activator" ]; then
			activator=$pid
		elif [ "$pid" != "$activator" ]; then
			# The sleeper, or smtpgate-flush, which on SIGTERM
			# records the batch in hand and exits.
			kill -TERM "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		fi
	done
	if [ -n "$activator" ]; then
		# Deadlines in wall-clock seconds, not loop counts: on a busy
		# machine each pgrep alone can take a good part of a second.
		local deadline=$((SECONDS + 5))
		while pgrep -P "$activator" >/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
			sleep 0.1
		done
		for pid in $(pgrep -P "$activator"); do
			kill -KILL "$pid" 2>/dev/null || true
		done
		deadline=$((SECONDS + 5))
		while pgrep -P "$activator" >/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
			sleep 0.1
		done
		kill -TERM "$activator" 2>/dev/null || true
		wait "$activator" 2>/dev/null || true
	fi
	say "run-demo: stopped"
}
# The exit status a signal asks for (130 SIGINT, 143 SIGTERM); checked
# after every wait and before each step that could take long.
stopping=""
trap 'stopping=130' INT
trap 'stopping=143' TERM
trap 'stop' EXIT
stop_if_asked() {
	if [ -n "$stopping" ]; then
		exit "$stopping"
	fi
}

# A Ctrl-C during the first run ends the command it hits (a foreground
# child has the default SIGINT; set -e then exits) or is seen at the next
# check. An "if", not "[ -e ] || first_run": on the left of || bash
# suspends set -e for the whole function, which went on after a failed
# step and left a config that the next run would keep.
if [ ! -e "$conf" ]; then
	first_run
fi
stop_if_asked
mkdir -p "$run_dir/outbox"

systemd-socket-activate --accept --fdname=connection -l "127.0.0.1:$port" \
	"$build/smtpgate-handler" -c "$conf" </dev/null &
activator=$!

# Up when the port listens (bounded). ss, not a test connection: that
# would start a session.
for i in $(seq 100); do
	if [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]; then
		break
	fi
	if ! kill -0 "$activator" 2>/dev/null; then
		activator=""
		echo "run-demo: systemd-socket-activate could not listen on 127.0.0.1:$port" >&2
		exit 1
	fi
	stop_if_asked
	sleep 0.05
done
stop_if_asked

rel() { case $1 in "$top"/*) printf '%s' "${1#"$top"/}" ;; *) printf '%s' "$1" ;; esac; }
r=$(rel "$run_dir")
b=$(rel "$build")
cat <<EOF

smtpgate demo gateway on 127.0.0.1:$port (config $r/smtpgate.conf)
login demo.demo@smtpgate / demo; 127.0.0.1 needs no login.

Send a message:
  swaks --server 127.0.0.1:$port --tls --auth-user demo.demo@smtpgate --auth-password demo \\
    --from sender@example.com --to rcpt@example.net \\
    --add-header 'MIME-Version: 1.0' --add-header 'Content-Type: text/plain'

Look at the queue:
  mdb_stat -a $r/queue
  mdb_dump -p -s env $r/queue
  mdb_dump -p -s log $r/queue
  $b/smtpgate-queue -c $r/smtpgate.conf list
  $b/smtpgate-queue -c $r/smtpgate.conf stat

smtpgate-flush runs every ${interval}s; delivered, DKIM-signed messages appear in
  $r/outbox/new/
(the DNS records that would verify them: $r/dkim/dns.txt)

Ctrl-C stops it.

EOF

# In the background and waited for, like the sleep: see stop().
while :; do
	sleep "$interval" &
	wait $! || true
	stop_if_asked
	"$build/smtpgate-flush" -c "$conf" </dev/null &
	wait $! || true
	stop_if_asked
done
