# Body size cap (SPEC §11.3 F10, §11.5 PanoptesTelemetryMaxBody): 413
# {"detail": ...} above the cap, with Content-Length or chunked; exactly
# the cap is fine; a 413 changes nothing and uses no seq.  /small has a
# 1024-byte cap (location context), the other mounts the 1 MiB default.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;

ensure_no_run();

my $TOO_LARGE = qr/^Request body too large/;

# An event body of exactly $len bytes.
sub body_of {
    my ($len, $type) = @_;
    $type //= 'lim-08';
    my $head = '{"type":"' . $type . '","make_current":false,"data":"';
    my $tail = '"}';
    my $pad = $len - length($head) - length($tail);
    die "too short" if $pad < 0;
    return $head . ('x' x $pad) . $tail;
}

sub chunked {
    my ($body, $size) = @_;
    my @parts = unpack "(a$size)*", $body;
    return sub { return shift @parts // '' };
}

my $p1 = post_event('{"type":"probe-08","data":1}');
my $cur = get('/current')->{body};
my $accepted = 0;

# --- /small: 1024 bytes ---------------------------------------------------------------
{
    my $r = post_event(body_of(1024), mount => 'small');
    is($r->{code}, 200, '/small: a body of exactly 1024 bytes is accepted') or diag $r->{body};
    $accepted++ if $r->{code} == 200;

    $r = post_event(body_of(1025), mount => 'small');
    ok_json_error($r, 413, $TOO_LARGE, '/small: 1025 bytes is 413');
    diag "413 detail: " . ($r->{j}{detail} // '') if ref $r->{j} eq 'HASH';
    like($r->{j}{detail} // '', qr/1024/, '413 detail names the limit') if ref $r->{j} eq 'HASH';

    $r = post_event(body_of(50_000), mount => 'small');
    ok_json_error($r, 413, $TOO_LARGE, '/small: 50 kB is 413');

    $r = post_event(chunked(body_of(2000), 100), mount => 'small');
    ok_json_error($r, 413, $TOO_LARGE, '/small: 2000 bytes chunked (no Content-Length) is 413');
    $r = post_event(chunked(body_of(1025), 1025), mount => 'small');
    ok_json_error($r, 413, $TOO_LARGE, '/small: 1025 bytes in one chunk is 413');

    $r = post_event(chunked(body_of(1024), 10), mount => 'small');
    is($r->{code}, 200, '/small: 1024 bytes chunked is accepted') or diag $r->{body};
    $accepted++ if $r->{code} == 200;
    $r = post_event(chunked('{"type":"chunk-08","data":[1,2,3],"make_current":false}', 7));
    is($r->{code}, 200, 'a small chunked body is read to the end') or diag $r->{body};
    like(lines_by_seq(site_file_for($r->{j}{ts} // ''))->{ $r->{j}{seq} // 0 } // '',
        qr/"type":"chunk-08","data":\[1,2,3\]/, 'chunked event stored');
    $accepted++ if $r->{code} == 200;

    # A Content-Length far above what is sent: the cap is hit without waiting.
    my $h = 'POST /small/event HTTP/1.1' . "\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        . "Content-Length: 5000000\r\nConnection: close\r\n\r\n";
    my $raw = eval { raw_http('prefix', $h . body_of(1100), timeout => 30) }
        || { code => 0, raw => $@ };
    is($raw->{code}, 413, 'declared Content-Length 5000000 on /small: 413');

    $r = start_run('{"run_id":"big-08","meta":{"pad":"' . ('y' x 1100) . '"}}', mount => 'small');
    ok_json_error($r, 413, $TOO_LARGE, '/small: an oversized /run/start is 413');
    is_err(get('/run'), 404, 'No run is active', 'no run started by a 413');
}

# --- the default cap, 1 MiB -----------------------------------------------------------------
for my $m (mounts()) {
    my $r = post_event(body_of(1048577), mount => $m);
    ok_json_error($r, 413, $TOO_LARGE, "[$m] default cap: 1048577 bytes is 413");
    like($r->{j}{detail} // '', qr/1048576/, "[$m] 413 detail names 1048576") if ref $r->{j} eq 'HASH';
    $r = post_event(chunked(body_of(1100000), 65536), mount => $m);
    ok_json_error($r, 413, $TOO_LARGE, "[$m] default cap: 1.1 MB chunked is 413");
}
{
    my $r = post_event(body_of(1048576, 'lim-max-08'));
    is($r->{code}, 200, 'default cap: exactly 1048576 bytes is accepted') or diag substr($r->{body}, 0, 300);
    $accepted++ if $r->{code} == 200;
}

# --- nothing changed -----------------------------------------------------------------------
is(get('/current')->{body}, $cur, '413s changed nothing in /current');
my $p2 = post_event('{"type":"probe-08","data":2}');
is($p2->{j}{seq}, $p1->{j}{seq} + $accepted + 1, "413s used no seq ($accepted accepted events)");

all_answers_json();

done_testing();
