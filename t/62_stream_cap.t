# GET /stream: the cap (SPEC §12.3; PanoptesTelemetryStreamMax is 4 in
# t/conf/extra.conf.in, across children and virtual hosts):
#   * 4 streams open; the next one, from a client that accepts
#     text/event-stream, gets 200 with `retry: 30000` and `event: busy`
#     (JSON {"detail"}) and the stream ends; from any other client
#     (application/json, no Accept, text/event-stream;q=0) 503 JSON
#     {"detail"} with Retry-After; each refusal counts in
#     PanoptesStreamBusy; HEAD is still 200; the 4 streams go on;
#   * closing one stream frees its slot for the next client;
#   * a child killed (SIGKILL) while serving a stream does not keep its
#     slots: once our other streams are closed, 4 new streams open, and
#     the cap still holds;
#   * PanoptesStreamSubscribersHigh never exceeds the cap.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use Time::HiRes ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest qw(:DEFAULT :events httpd_children proc_alive);
use PTMStream qw(id_parts wait_subscribers check_feed child_of_connection);

ensure_no_run();
my $T = "st62-$$";
my $MAX = 4;
my $MPM = $ENV{PTM_MPM} // 'event';

is(wait_subscribers(0, 20), 0, 'no stream open at the start') or BAIL_OUT('streams still counted');

# A stream that got its snapshot, or undef.
sub open_ok {
    my (%a) = @_;
    my $s = PTMStream->open(%a);
    return undef unless $s->{code} == 200;
    my $b = $s->next_block(10);
    return undef unless $b && ($b->{event} // '') eq 'current';
    $s->{snap} = $b;
    return $s;
}

my @s = map { open_ok(mount => $_ % 2 ? 'root' : 'prefix') } 1 .. $MAX;
is(scalar(grep { defined } @s), $MAX, "$MAX streams open (both mounts), each with its snapshot");
is(wait_subscribers($MAX, 10), $MAX, "PanoptesStreamSubscribers: $MAX");
my $busy0 = status_auto()->{PanoptesStreamBusy} // 0;

# --- over the cap: an EventSource client ---------------------------------------------------------
my $refusals = 0;
for my $acc ('text/event-stream', 'application/json, Text/Event-Stream; charset=utf-8') {
    my $m = $refusals % 2 ? 'root' : 'prefix';
    my $b = PTMStream->open(accept => $acc, mount => $m);
    $refusals++;
    is($b->{code}, 200, "over the cap, Accept: $acc: 200");
    like($b->header('Content-Type') // '', qr{^text/event-stream\s*(;|$)}i, '... text/event-stream');
    my @bl = $b->drain(10);
    ok($b->ended, '... and the stream ends') or diag 'still open after 10 s';
    is(scalar(@bl), 2, '... two blocks') or diag join "\n", map { PTMStream::describe($_) } @bl;
    my ($r, $e) = @bl;
    ok($r && ($r->{retry} // '') eq '30000' && @{ $r->{fields} } == 1, '... retry: 30000 first')
        or diag PTMStream::describe($r);
    is($e && $e->{event}, 'busy', '... then event: busy') or diag PTMStream::describe($e);
    my $j = eval { PTMTest::jd($e->{data}) };
    ok(ref $j eq 'HASH' && defined $j->{detail} && !ref $j->{detail} && keys(%$j) == 1,
        '... whose data is JSON {"detail": <string>}') or diag $e && $e->{data};
    ok(!defined $e->{id}, '... without an id (a resume must not start from it)') if $e;
    $b->close;
}

# --- over the cap: any other client ------------------------------------------------------------------
for my $acc ('application/json', undef, 'text/event-stream;q=0', 'text/html') {
    my $r = req(path => '/stream', mount => $refusals % 2 ? 'root' : 'prefix',
                headers => [ defined $acc ? (Accept => $acc) : () ]);
    $refusals++;
    my $what = defined $acc ? "Accept: $acc" : 'no Accept';
    ok_json_error($r, 503, qr/PanoptesTelemetryStreamMax $MAX\b/, "over the cap, $what: 503 JSON naming the cap");
    like($r->{h}->header('Retry-After') // '', qr/^[1-9][0-9]*$/, "... with Retry-After (seconds)");
}
is(status_auto()->{PanoptesStreamBusy} - $busy0, $refusals, "PanoptesStreamBusy counted the $refusals refusals");
{
    my $h = PTMStream->open(method => 'HEAD');
    is($h->{code}, 200, 'HEAD /stream at the cap: 200 (it takes no slot)');
    is($h->body(5), '', '... without a body');
}
is(status_auto()->{PanoptesStreamSubscribers}, $MAX, "still $MAX subscribers");
{
    my $e = hist_post(type => "$T-go", id => 'still');
    my $n = grep { my $b = $_->next_event(10); $b && ($b->{data} // '') eq $e->{line} } @s;
    is($n, $MAX, "the $MAX streams go on (each got the next event)");
}

# Open a stream, retrying while the cap refuses (503) for up to $secs s.
sub open_within {
    my ($secs, %a) = @_;
    my $end = Time::HiRes::time() + $secs;
    my $tries = 0;
    while (1) {
        $tries++;
        my $s = PTMStream->open(%a, accept => undef);
        if ($s->{code} == 200) {
            my $b = $s->next_block(10);
            return ($s, $tries) if $b && ($b->{event} // '') eq 'current';
            return (undef, $tries);
        }
        $s->close;
        return (undef, $tries) if Time::HiRes::time() > $end;
        Time::HiRes::sleep(0.2);
    }
}

# --- closing one frees a slot ------------------------------------------------------------------------
{
    my $t0 = Time::HiRes::time();
    (shift @s)->close;
    my ($n, $tries) = open_within(10);
    my $dt = Time::HiRes::time() - $t0;
    ok($n, sprintf 'a stream closed by its client frees its slot: a new one opens (%.2f s, %d tries)', $dt, $tries);
    push @s, $n if $n;
    my $r = req(path => '/stream');
    is($r->{code}, 503, 'and the cap is full again');
}

# --- a killed child's slots are reaped ------------------------------------------------------------------
SKIP: {
    skip 'needs root to find the child serving a connection', 8 unless $> == 0;
    my $victim = $s[0];
    my $pid = child_of_connection($victim->sock_port);
    ok($pid, 'found the child serving a stream: ' . ($pid // 'none'));
    skip 'no child found', 7 unless $pid;
    my @peers = grep { (child_of_connection($_->sock_port) // 0) == $pid } @s;
    diag "$MPM: child $pid serves " . scalar(@peers) . " of our $MAX streams; children: "
        . join(' ', httpd_children());
    # (httpd logs nothing for a child killed by SIGKILL: no AH00052.)
    kill KILL => $pid;
    my $end = Time::HiRes::time() + 10;
    Time::HiRes::sleep(0.05) while proc_alive($pid) && Time::HiRes::time() < $end;
    ok(!proc_alive($pid), "child $pid killed (SIGKILL)");
    $victim->drain(10);
    ok($victim->ended, 'its stream ended');
    # httpd's parent reaps the child and the module frees its slots then
    # (child_status hook), before anyone asks for one.
    my $left = $MAX - @peers;
    is(wait_subscribers($left, 5), $left, "PanoptesStreamSubscribers: $left once the parent reaped the child"
        . ' (its ' . scalar(@peers) . ' slots freed)');
    # Our other streams, closed by us: their slots come back the usual way;
    # the killed child's can only come back by reaping.
    $_->close for @s;
    @s = ();
    my ($ok, $tries) = (0, 0);
    for my $i (1 .. $MAX) {
        my ($n, $t) = open_within(15, mount => $i % 2 ? 'root' : 'prefix');
        $tries += $t;
        push @s, $n if $n;
    }
    is(scalar(@s), $MAX, "then $MAX new streams open ($tries tries): the killed child's slot was reaped");
    is(status_auto()->{PanoptesStreamSubscribers}, $MAX, "PanoptesStreamSubscribers: $MAX");
    my $r = req(path => '/stream');
    is($r->{code}, 503, 'and the cap still holds (nothing was freed twice)');
    my $e = hist_post(type => "$T-go", id => 'after-kill');
    my $n = grep { my $b = $_->next_event(10); $b && ($b->{data} // '') eq $e->{line} } @s;
    is($n, $MAX, "the $MAX new streams get events");
}

cmp_ok(status_auto()->{PanoptesStreamSubscribersHigh}, '<=', $MAX, "PanoptesStreamSubscribersHigh never above $MAX");
$_->close for @s;
is(wait_subscribers(0, 15), 0, 'PanoptesStreamSubscribers: 0 at the end');
{
    my ($n) = open_within(5);
    ok($n, 'a stream opens at the end');
    $n->close if $n;
}
is(wait_subscribers(0, 15), 0, 'PanoptesStreamSubscribers: 0');

done_testing();
