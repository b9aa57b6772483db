# A request body costs memory as its bytes arrive, not as its
# Content-Length announces (issue 9, item 9a): clients that announce 60 MB
# (under /big, PanoptesTelemetryMaxBody 64 MiB) and send 10 bytes must not
# make the children that serve them map 60 MB each while they wait.  The
# children's VmSize is compared before and during the wait; children
# started meanwhile (the MPM keeping spares) are not counted.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use IO::Socket::INET ();
use Time::HiRes ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest qw(:DEFAULT httpd_children);

my $N = 3;
my $ANNOUNCED = 60_000_000;

sub vmsize_kb {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/status" or return undef;
    while (my $l = <$fh>) {
        return $1 + 0 if $l =~ /^VmSize:\s+(\d+) kB/;
    }
    return undef;
}

# Make sure every child is up and has served something (first-request
# allocations are not what this test is about).
get('/health') for 1 .. 8;
my %before = map { $_ => vmsize_kb($_) } httpd_children();
ok(keys %before > 0, 'children found') or BAIL_OUT('no httpd children');

my ($host, $port) = split /:/, hostport('prefix');
my @socks;
for (1 .. $N) {
    my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port,
                                  Proto => 'tcp', Timeout => 30)
        or die "connect: $!\n";
    binmode $s;
    print {$s} "POST /big/event HTTP/1.1\r\nHost: $host:$port\r\n"
        . "Content-Type: application/json\r\nContent-Length: $ANNOUNCED\r\n\r\n"
        . '{"type":"m';
    $s->flush;
    push @socks, $s;
}

# The handlers are now waiting for the rest of the bodies.
my $grown = 0;
for (1 .. 20) {
    Time::HiRes::sleep(0.1);
    $grown = 0;
    for my $pid (keys %before) {
        my $now = vmsize_kb($pid);
        $grown += $now - $before{$pid} if defined $now && defined $before{$pid};
    }
    last if $grown > 100_000;
}
close $_ for @socks;
cmp_ok($grown, '<', 16 * 1024,
    "$N bodies announced at $ANNOUNCED bytes, 10 sent: the children grew by "
    . "$grown kB, not by the announced size");

# The server is fine afterwards.
is(get('/health')->{code}, 200, 'still serving');

done_testing();
