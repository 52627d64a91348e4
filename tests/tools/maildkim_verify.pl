#!/usr/bin/perl
# SPDX-License-Identifier: ISC
# maildkim_verify.pl: checks every DKIM-Signature of a message with
# Mail::DKIM, an independent verifier, offline: the public keys come from
# a file (one "SELECTOR._domainkey.DOMAIN RECORD" a line), never from DNS.
#
#   maildkim_verify.pl KEYFILE MESSAGE
#
# Prints one line per signature: "RESULT a=ALGORITHM d=DOMAIN s=SELECTOR
# DETAIL" (RESULT pass, fail, invalid, ...). Exit 0 when every signature
# passes, 1 otherwise. Debian's Mail::DKIM does not know ed25519-sha256.
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Mail::DKIM::DNS;
use Net::DNS;

@ARGV == 2 or die "usage: maildkim_verify.pl KEYFILE MESSAGE\n";
my ($keyfile, $message) = @ARGV;

my %records;
open my $k, '<', $keyfile or die "$keyfile: $!\n";
while (<$k>) {
    chomp;
    next if /^\s*(#|$)/;
    my ($name, $record) = split /\s+/, $_, 2;
    $records{lc $name} = $record;
}
close $k;

# Mail::DKIM asks Mail::DKIM::DNS::query for TXT records: answer from the
# file, each record split into 255-byte strings as DNS would carry it.
no warnings 'redefine';
*Mail::DKIM::DNS::query = sub {
    my ($name, $type) = @_;
    my $record = $records{lc $name};
    return () unless defined $record && $type eq 'TXT';
    my @strings = unpack '(A255)*', $record;
    return Net::DNS::RR->new(name => $name, type => 'TXT', txtdata => \@strings);
};
use warnings 'redefine';

open my $m, '<:raw', $message or die "$message: $!\n";
my $dkim = Mail::DKIM::Verifier->new;
{
    local $/ = \65536;
    while (my $chunk = <$m>) {
        $dkim->PRINT($chunk);
    }
}
close $m;
$dkim->CLOSE;

my $all = 1;
my @sigs = $dkim->signatures;
print "none\n" and $all = 0 unless @sigs;
for my $sig (@sigs) {
    my $r = $sig->result // 'none';
    printf "%s a=%s d=%s s=%s %s\n", $r, $sig->algorithm // '', $sig->domain // '',
        $sig->selector // '', $sig->result_detail // '';
    $all = 0 unless $r eq 'pass';
}
exit($all ? 0 : 1);
