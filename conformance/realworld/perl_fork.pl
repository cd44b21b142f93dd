#!/usr/bin/perl
# TCP echo server in the perlipc style: IO::Socket::INET, one forked child per connection,
# children reaped automatically ($SIG{CHLD} = 'IGNORE').
#
#     perl_fork.pl PORT
use strict;
use warnings;
use IO::Socket::INET;

my $port = shift or die "usage: $0 PORT\n";

my $server = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1',
    LocalPort => $port,
    Proto     => 'tcp',
    Listen    => SOMAXCONN,
    ReuseAddr => 1,
) or die "can't listen on port $port: $@\n";

$SIG{CHLD} = 'IGNORE';

while (1) {
    my $client = $server->accept or do {
        next if $!{EINTR};
        die "accept: $!\n";
    };
    my $pid = fork;
    if (!defined $pid) {
        warn "fork: $!\n";
        close $client;
        next;
    }
    if ($pid) {            # parent
        close $client;
        next;
    }
    # child
    close $server;
    my $buf;
    while (my $n = sysread($client, $buf, 65536)) {
        my $off = 0;
        while ($off < $n) {
            my $w = syswrite($client, $buf, $n - $off, $off);
            exit 0 unless defined $w;
            $off += $w;
        }
    }
    exit 0;
}
