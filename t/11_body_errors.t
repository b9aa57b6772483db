# Bodies httpd itself refuses while the module reads them (issue 9, item
# 7): a malformed chunked body, a chunk size that overflows, and
# LimitRequestBody below PanoptesTelemetryMaxBody (/lrb: LimitRequestBody
# 100, MaxBody 4096).  httpd answers those from its input filter; the
# module must not write a second answer after it.  Each request gets
# exactly one well-formed answer on the wire: one status line, a JSON
# {"detail": ...} body of exactly Content-Length bytes, nothing after it
# up to the close.  Each is counted once in server-status, logged once,
# and changes nothing.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use IO::Socket::INET ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest qw(:DEFAULT error_log_size error_log_since wait_for_log status_auto);

ensure_no_run();


# Send $bytes on a fresh connection and read until the server closes it.
sub exchange {
    my ($bytes) = @_;
    my ($host, $port) = split /:/, hostport('prefix');
    my $sock = IO::Socket::INET->new(
        PeerAddr => $host, PeerPort => $port, Proto => 'tcp', Timeout => 30,
    ) or die "connect $host:$port: $!\n";
    binmode $sock;
    print {$sock} $bytes;
    my $raw = '';
    local $SIG{ALRM} = sub { die "no close within 30 s\n" };
    alarm 30;
    while (1) {
        my $n = sysread($sock, my $buf, 65536);
        last unless $n;
        $raw .= $buf;
    }
    alarm 0;
    close $sock;
    return $raw;
}

# One answer, exactly: the status, the header fields, the body of exactly
# Content-Length bytes, and whatever came after it (must be nothing).
sub one_answer {
    my ($raw, $code, $name) = @_;
    my @status = $raw =~ m{(?:^|\r\n)(HTTP/1\.[01] \d{3})}g;
    is(scalar @status, 1, "$name: one status line")
        or diag "status lines: @status\n" . substr($raw, 0, 2000);
    my ($head, $rest) = split /\r\n\r\n/, $raw, 2;
    $rest //= '';
    my ($got) = ($head // '') =~ m{^HTTP/1\.[01] (\d{3})};
    is($got, $code, "$name: status $code");
    my %h;
    for (split /\r\n/, $head // '') {
        $h{ lc $1 } = $2 if /^([^:]+):\s*(.*)$/;
    }
    like($h{'content-type'} // '', qr{^application/json\s*(;|$)}i,
        "$name: Content-Type application/json") or diag $head;
    ok(!exists $h{'transfer-encoding'} && ($h{'content-length'} // '') =~ /^\d+$/,
        "$name: a Content-Length, not chunked") or diag $head;
    my $len = $h{'content-length'} // 0;
    my $body = substr($rest, 0, $len);
    is(length($rest) - length($body), 0, "$name: nothing after the body")
        or diag "after the body: " . substr($rest, length $body, 500);
    my $j = eval { jd($body) };
    ok(ref $j eq 'HASH' && keys %$j == 1 && defined $j->{detail} && !ref $j->{detail},
        "$name: the body is {\"detail\": <string>}") or diag $body;
    like(lc($h{connection} // ''), qr/close/, "$name: Connection: close");
    return $j;
}

my $probe = post_event('{"type":"probe-11","data":1}');
is($probe->{code}, 200, 'probe event stored');
my $cur = get('/current')->{body};
my $host = hostport('prefix');

sub chunked_post {
    my ($path, $chunks) = @_;
    return "POST $path HTTP/1.1\r\nHost: $host\r\n"
        . "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        . $chunks;
}

my $event = '{"type":"bad-body-11","data":1}';
my @cases = (
    [ 'a chunk size that is not hex', 400,
      chunked_post('/telemetry/event', "zz\r\n$event\r\n0\r\n\r\n"),
      qr/^Malformed request body/ ],
    [ 'a chunk longer than announced', 400,
      chunked_post('/telemetry/event', "5\r\n$event\r\n0\r\n\r\n"),
      qr/^Malformed request body/ ],
    [ 'a chunk size that overflows', 413,
      chunked_post('/telemetry/event', "ffffffffffffffffffff\r\n$event\r\n0\r\n\r\n"),
      qr/^Request body too large/ ],
    [ 'a malformed chunk on a route without a body (/run/stop)', 400,
      chunked_post('/telemetry/run/stop', "zz\r\n{}\r\n0\r\n\r\n"),
      qr/^Malformed request body/ ],
    [ 'LimitRequestBody 100, 150 bytes chunked', 413,
      chunked_post('/lrb/event', sprintf("%x\r\n%s\r\n0\r\n\r\n", 150,
          '{"type":"lrb-11","data":"' . ('x' x 122) . '"}')),
      qr/^Request body too large \(limit 100 bytes\)$/ ],
    [ 'LimitRequestBody 100, Content-Length 150', 413,
      "POST /lrb/event HTTP/1.1\r\nHost: $host\r\nContent-Type: application/json\r\n"
      . "Content-Length: 150\r\n\r\n" . '{"type":"lrb-11","data":"' . ('x' x 122) . '"}',
      qr/^Request body too large \(limit 100 bytes\)$/ ],
);

for my $c (@cases) {
    my ($name, $code, $bytes, $detail) = @$c;
    my $a0 = status_auto();
    my $off = error_log_size();
    my $raw = exchange($bytes);
    my $j = one_answer($raw, $code, $name);
    like($j->{detail} // '', $detail, "$name: the detail says why")
        if ref $j eq 'HASH';
    my $a1 = status_auto();
    is($a1->{"PanoptesAnswers$code"} - $a0->{"PanoptesAnswers$code"}, 1,
        "$name: counted once as a $code");
    my $other = join ' ', map { "$_" } grep {
        $_ ne "PanoptesAnswers$code" && $a1->{$_} != $a0->{$_}
    } grep { /^PanoptesAnswers/ } keys %$a1;
    is($other, '', "$name: no other answer counted");
    ok(wait_for_log($off, qr/panoptes_telemetry:\w+.* -> $code /, 10),
        "$name: logged") or diag join "\n", error_log_since($off);
    my @ours = grep { /panoptes_telemetry:/ && / -> -?\d+ / } error_log_since($off);
    is(scalar @ours, 1, "$name: logged once") or diag join "\n", @ours;
}

# The same LimitRequestBody location accepts a body within both limits.
{
    my $r = post_event('{"type":"lrb-ok-11","data":1,"make_current":false}');
    is($r->{code}, 200, 'an event under /telemetry is still fine');
    my $body = '{"type":"lrb-ok-11","data":2,"make_current":0}';
    my $raw = exchange("POST /lrb/event HTTP/1.1\r\nHost: $host\r\n"
        . "Content-Type: application/json\r\nConnection: close\r\n"
        . 'Content-Length: ' . length($body) . "\r\n\r\n" . $body);
    like($raw, qr{^HTTP/1\.1 200 }, '/lrb: a body within both limits is accepted')
        or diag $raw;
}

is(get('/current')->{body}, $cur, 'the refused bodies changed nothing in /current');
my $p2 = post_event('{"type":"probe-11","data":2}');
is($p2->{j}{seq}, $probe->{j}{seq} + 3, 'and used no seq (two accepted events between)');

done_testing();
