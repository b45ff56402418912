#!/usr/bin/perl
# Verify the DKIM signatures of the message on standard input with Perl's Mail::DKIM (Debian
# libmail-dkim-perl), looking the keys up at the DNS server given as ADDRESS PORT (a test dnsmasq).
# Prints one line per signature: RESULT DOMAIN SELECTOR ALGORITHM DETAIL (tab-separated).
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Mail::DKIM::DNS;
use Net::DNS::Resolver;

my ($address, $port) = @ARGV;
die "usage: verify.pl ADDRESS PORT < message\n" unless defined $port;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(nameservers => [$address], port => $port,
                                                  udp_timeout => 5, tcp_timeout => 5, retry => 2));
binmode STDIN;
my $dkim = Mail::DKIM::Verifier->new();
while (my $line = <STDIN>) {
    $line =~ s/\r?\n\z/\r\n/;
    $dkim->PRINT($line);
}
$dkim->CLOSE;
foreach my $signature ($dkim->signatures) {
    printf "%s\t%s\t%s\t%s\t%s\n", $signature->result, $signature->domain // '', $signature->selector // '',
        $signature->algorithm // '', $signature->result_detail // '';
}
printf "overall\t%s\n", $dkim->result;
