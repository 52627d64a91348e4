#!/bin/sh
# SPDX-License-Identifier: ISC
# Writes a realistic config with N accounts into FOLDER (for bench/config.sh):
#   bench/make_config.sh FOLDER N
set -eu
dir=$1 n=$2
mkdir -p "$dir"
[ -f "$dir/dkim.pem" ] || openssl genpkey -algorithm ED25519 -out "$dir/dkim.pem" 2>/dev/null
{
	printf '[gate]\nhostname = gate.example.com\nqueue = queue\nmax_message_size = 35M\n'
	printf 'tls_certificate = cert.pem\ntls_private_key = key.pem\n'
	printf '\n[relay]\nurl = smtp://127.0.0.1:10025\nconcurrency = 4\n'
	i=0
	while [ "$i" -lt "$n" ]; do
		printf '\n[account a%d]\nlogin = user%d@smtpgate\n' "$i" "$i"
		printf 'password = $y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7\n'
		printf 'networks = 10.%d.%d.0/24 2001:db8:%x::/48\n' $((i / 256 % 256)) $((i % 256)) "$i"
		printf 'dkim_key = shop%d.example.com sel1 dkim.pem\n' "$i"
		printf 'dkim_key = shop%d.example.com sel2 dkim.pem\n' "$i"
		printf 'dkim_default_domain = shop%d.example.com\n' "$i"
		printf 'sender = *@shop%d.example.com active\n' "$i"
		printf 'sender = news@shop%d.example.com moderation\n' "$i"
		i=$((i + 1))
	done
} > "$dir/smtpgate.conf"
: > "$dir/cert.pem"; : > "$dir/key.pem"
