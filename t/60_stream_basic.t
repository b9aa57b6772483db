# GET /stream, the live feed (SPEC §12.3), the basics:
#   * HEAD /stream is 200 text/event-stream without a body; POST /stream is
#     405 JSON with Allow: GET (as every GET route);
#   * a stream is 200, Content-Type text/event-stream, Cache-Control
#     no-cache; its first event is `event: current` with an id
#     (<epoch>-<the last accepted n>) and the GET /current answer of that
#     moment as data, on both mounts;
#   * then one `event: telemetry` per accepted event (stored or not,
#     current or not, site or run; a refused one takes no id), id
#     <epoch>-<n> contiguous, data the envelope's file-form line;
#   * `type` filters, one type or several (ids increase, with gaps);
#   * two subscribers (both mounts) see every one of 8 x 40 events posted
#     over parallel connections through several children exactly once, in
#     id order;
#   * an event reaches a subscriber soon after its POST is answered
#     (median under 50 ms over 50 events; each under 2 s);
#   * server-status ?auto: PanoptesStreamSubscribers, ...High, ...Busy,
#     ...EventsSent, ...Wake;
#   * an idle stream gets `: ping` 15 s after it went quiet (a stream
#     opened first and read last, so the wait overlaps the rest).
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use Time::HiRes ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest qw(:DEFAULT :events httpd_children);
use PTMStream qw(id_parts wait_subscribers start_posters stop_posters pump median
    check_feed telemetry_of child_of_connection);

ensure_no_run();
my $T = "st60-$$";
my $MPM = $ENV{PTM_MPM} // 'event';

is(wait_subscribers(0, 20), 0, 'no stream open at the start (the files before closed theirs)')
    or BAIL_OUT('streams of earlier files still counted');
my $st0 = status_auto();

# --- the idle stream for the ping (read at the end) ----------------------------------
my $idle = PTMStream->open(query => qenc(type => "$T-never"));
is($idle->{code}, 200, 'idle stream (a type nobody posts): 200');
my $idle_first = $idle->next_block(10);
is($idle_first && $idle_first->{event}, 'current', 'idle stream: event: current first');
my $idle_t0 = $idle_first ? $idle_first->{t} : Time::HiRes::time();

# --- HEAD and other methods -------------------------------------------------------------
for my $m (mounts()) {
    my $h = PTMStream->open(mount => $m, method => 'HEAD');
    is($h->{code}, 200, "$m: HEAD /stream is 200");
    like($h->header('Content-Type') // '', qr{^text/event-stream\s*(;|$)}i, "$m: HEAD: Content-Type text/event-stream");
    like($h->header('Cache-Control') // '', qr{\bno-cache\b}i, "$m: HEAD: Cache-Control no-cache");
    is($h->body(10), '', "$m: HEAD: no body");
    ok($h->ended, "$m: HEAD: the answer ends");
    $h->close;
    for my $meth ('POST', 'PUT', 'DELETE') {
        my $r = req(method => $meth, path => '/stream', mount => $m,
                    ($meth ne 'DELETE' ? (body => '{}', ct => 'application/json') : ()));
        is_err($r, 405, 'Method Not Allowed', "$m: $meth /stream is 405 JSON");
        # As every GET route (SPEC §2.1, t/01_routing.t): HEAD is implied.
        is($r->{h}->header('Allow'), 'GET', "$m: $meth /stream: Allow: GET");
    }
}

# --- the snapshot first, on both mounts ----------------------------------------------------
is(hist_post(type => "$T-a", id => 'snap')->{code}, 200, 'an event, so that /current is not empty');
my ($epoch);
for my $m (mounts()) {
    my $cur = get('/current', mount => $m);
    my $st = status_auto();
    my ($e, $next) = id_parts($st->{PanoptesEventIdNext});
    $epoch //= $e;
    my $s = PTMStream->open(mount => $m);
    is($s->{code}, 200, "$m: GET /stream is 200");
    like($s->header('Content-Type') // '', qr{^text/event-stream\s*(;|$)}i, "$m: Content-Type text/event-stream");
    like($s->header('Cache-Control') // '', qr{\bno-cache\b}i, "$m: Cache-Control no-cache");
    my $b = $s->next_block(10);
    is($b && $b->{event}, 'current', "$m: the first event is event: current")
        or diag PTMStream::describe($b);
    is($b && $b->{id}, "$e-" . ($next - 1), "$m: ... with the id of the last accepted event ($e-" . ($next - 1) . ')');
    is($b && $b->{data}, $cur->{body}, "$m: ... and the GET /current answer of that moment as data");
    is($b && $b->{data_lines}, 1, "$m: ... on one data: line");
    ok(!$s->next_block(0.3), "$m: nothing more while nothing is posted");
    $s->close;
}

# --- live events: every kind of accepted event, in order ------------------------------------
my $s = PTMStream->open;
my $first = $s->next_block(10);
my (undef, $n_snap) = id_parts($first && $first->{id});
my @ev;
push @ev, hist_post(type => "$T-a", id => 'l1');
push @ev, hist_post(type => "$T-a", id => 'l2', sp => 0);
push @ev, hist_post(type => "$T-b", id => 'l3', mc => 0);
push @ev, hist_post(type => "$T-b", id => 'l4', sp => 0, mc => 0, mount => 'root');
is(post_event('{"type":"' . $T . '-bad","data":1,"meta":[]}')->{code}, 422, 'a refused event (422)');
my $R = "ST60-$$";
is(start_run('{"run_id":"' . $R . '","run_dir":"st60-' . $$ . '"}')->{code}, 200, "run $R started");
push @ev, hist_post(type => "$T-a", id => 'r1', run => $R);
push @ev, hist_post(type => "$T-a", id => 'r2', run => $R, sp => 0, mount => 'root');
is(stop_run()->{code}, 200, 'run stopped');
push @ev, hist_post(type => "$T-a", id => 'l5');
is(scalar(grep { $_->{code} == 200 } @ev), 7, 'seven events accepted');
my @got;
for (1 .. 7) {
    my $b = $s->next_event(10) or last;
    push @got, $b;
}
is(scalar(grep { ($_->{event} // '') ne 'telemetry' } @got), 0, 'every block after the snapshot is event: telemetry')
    or diag join "\n", map { PTMStream::describe($_) } @got;
check_feed(name => 'live', blocks => \@got, want => \@ev, epoch => $epoch, from => $n_snap + 1,
           contiguous => 1);
is(scalar(grep { ($_->{data_lines} // 0) != 1 } @got), 0, 'each on one data: line');
is(scalar(grep { !defined $_->{retry} && !@{ $_->{comments} } && !$_->{unknown} } @got), scalar(@got),
    'no other field or comment in them');
ok(!$s->next_block(0.3), 'nothing more');
{
    my $st = status_auto();
    my (undef, $next) = id_parts($st->{PanoptesEventIdNext});
    is($next, $n_snap + 8, 'PanoptesEventIdNext: right after the last id received');
}

# --- type filters --------------------------------------------------------------------------
my $f1 = PTMStream->open(query => qenc(type => "$T-x"));
my $f2 = PTMStream->open(query => qenc(type => "$T-x", type => "$T-z", type => "$T w"), mount => 'root');
for my $f ($f1, $f2) {
    my $b = $f->next_block(10);
    is($b && $b->{event}, 'current', 'filtered stream: event: current first') or diag PTMStream::describe($b);
}
my @fe;
my $k = 0;
for my $t (qw(x y z x y y z x w y), 'x') {
    push @fe, hist_post(type => $t eq 'w' ? "$T w" : "$T-$t", id => 'f' . $k++,
                        ($k % 3 ? () : (mount => 'root')), ($k % 4 ? () : (sp => 0)));
}
my @all = map { $s->next_event(10) // () } 1 .. scalar(@fe);
check_feed(name => 'unfiltered', blocks => \@all, want => \@fe, epoch => $epoch, contiguous => 1);
my @x = map { $f1->next_event(10) // () } 1 .. 4;
check_feed(name => 'type=x', blocks => \@x, want => [ grep { $_->{type} eq "$T-x" } @fe ], epoch => $epoch);
my @xzw = map { $f2->next_event(10) // () } 1 .. 7;
check_feed(name => 'type=x&type=z&type=w', blocks => \@xzw,
           want => [ grep { $_->{type} =~ /^\Q$T\E(-[xz]| w)$/ } @fe ], epoch => $epoch);
my %idof = map { ($_->{data} => $_->{id}) } @all;
is_deeply([ map { $_->{id} } @x, @xzw ], [ map { $idof{ $_->{data} } // '?' } @x, @xzw ],
    'a filtered stream gives each event the id the unfiltered one gave it');
ok(!$f1->next_block(0.3) && !$f2->next_block(0.01), 'the filtered streams got nothing more');
is(wait_subscribers(4, 10), 4, 'PanoptesStreamSubscribers: 4 (idle, unfiltered, two filtered)');
$f1->close;
$f2->close;
is(wait_subscribers(2, 15), 2, 'PanoptesStreamSubscribers: 2 once the filtered ones are closed');

# --- every event through every child, to two subscribers ----------------------------------
my $r = PTMStream->open(mount => 'root');
my $rb = $r->next_block(10);
is($rb && $rb->{event}, 'current', 'second subscriber (root mount): event: current first');
my (undef, $n_r) = id_parts($rb && $rb->{id});
my $sent0 = status_auto();
my ($W, $N) = (8, 40);
my $pid_log = Apache::Test::vars('t_logs') . '/pid_log';
my $off = -s $pid_log || 0;
my @bs = ([], []);
my $h = start_posters($W, $N, sub {
    my ($i, $n) = @_;
    return { type => "$T-m" . ($i % 3), id => "m$i-$n", mount => ($n + $i) % 2 ? 'root' : 'prefix',
             ($n % 5 == 4 ? (sp => 0) : ()), ($n % 7 == 6 ? (mc => 0) : ()) };
});
my $want_n = $W * $N;
pump(120, [ $s, $r ], sub {
    for my $j (0, 1) {
        my $st = ($s, $r)[$j];
        while (my $b = shift @{ $st->{queue} }) { push @{ $bs[$j] }, $b }
    }
    return @{ $bs[0] } >= $want_n && @{ $bs[1] } >= $want_n;
});
my @mres = stop_posters($h);
is(scalar(grep { $_->{code} == 200 } @mres), $want_n, "$want_n events posted by $W clients, all 200")
    or diag join "\n", map { "$_->{code} " . ($_->{error} // $_->{body} // '') } grep { $_->{code} != 200 } @mres;
{
    my %pids;
    if (open my $fh, '<', $pid_log) {
        seek $fh, $off, 0;
        while (<$fh>) {
            my ($pid, $m, $uri) = split ' ';
            $pids{$pid}++ if defined $uri && $uri =~ m{/event$};
        }
    }
    diag "$MPM: the posts were served by " . scalar(keys %pids) . ' children: '
        . join(', ', map { "$_ x$pids{$_}" } sort keys %pids);
    cmp_ok(scalar(keys %pids), '>=', 2, 'more than one child served the posts');
    my @subs = map { child_of_connection($_->sock_port) // '?' } $s, $r;
    diag "the subscribers are served by @subs";
}
pump(2, [ $s, $r ]);    # anything beyond what was expected
push @{ $bs[0] }, splice @{ $s->{queue} };
push @{ $bs[1] }, splice @{ $r->{queue} };
my $tele_multi = 0;
for my $j (0, 1) {
    my @b = @{ $bs[$j] };
    my $name = ('subscriber 1 (prefix)', 'subscriber 2 (root)')[$j];
    is(scalar(grep { ($_->{event} // '') ne 'telemetry' } @b), 0, "$name: only event: telemetry blocks");
    check_feed(name => $name, blocks => [ telemetry_of(@b) ], want => \@mres, epoch => $epoch,
               contiguous => 1, from => ($j ? $n_r : id_parts_n($all[-1])) + 1);
    $tele_multi += telemetry_of(@b);
}

sub id_parts_n { my ($b) = @_; my (undef, $n) = id_parts($b && $b->{id}); return $n // -1 }

# --- wake-up latency: POST answered -> event read --------------------------------------------
my @lat;
my @le;
for my $i (1 .. 50) {
    my $p = hist_post(type => "$T-lat", id => "lat$i", mount => $i % 2 ? 'root' : 'prefix');
    my $t1 = Time::HiRes::time();
    push @le, $p;
    my $b = $s->next_event(10);
    if (!$b || ($b->{data} // '') ne ($p->{line} // '-')) {
        fail("latency: event $i arrived as the next event") or diag PTMStream::describe($b);
        last;
    }
    my $d = $b->{t} - $t1;
    push @lat, $d < 0 ? 0 : $d;
}
my $med = median(@lat) // 99;
my @sl = sort { $a <=> $b } @lat;
diag sprintf "latency POST answered -> event read, over %d events: median %.1f ms, p90 %.1f ms, max %.1f ms",
    scalar(@lat), 1000 * $med, 1000 * ($sl[int(0.9 * $#sl)] // 0), 1000 * ($sl[-1] // 0);
is(scalar(@lat), 50, 'latency: 50 events received in turn');
cmp_ok($med, '<', 0.050, 'latency: median under 50 ms');
cmp_ok($sl[-1] // 99, '<', 2, 'latency: every event under 2 s');

# --- server-status ---------------------------------------------------------------------------
{
    my @r = map { $r->next_event(10) // () } 1 .. 50;    # root subscriber: the 50 too
    is(scalar(@r), 50, 'the second subscriber got the 50 too');
    my $st = status_auto();
    like($st->{$_} // '', qr/^\d+$/, "?auto has $_")
        for qw(PanoptesStreamSubscribers PanoptesStreamSubscribersHigh PanoptesStreamBusy PanoptesStreamEventsSent);
    like($st->{PanoptesStreamWake} // '', qr/^(futex|polling)$/, "?auto has PanoptesStreamWake (futex|polling)");
    is($st->{PanoptesStreamWake}, $^O eq 'linux' ? 'futex' : 'polling',
        "PanoptesStreamWake: " . ($^O eq 'linux' ? 'futex on Linux' : 'polling'));
    is($st->{PanoptesStreamSubscribers}, 3, 'PanoptesStreamSubscribers: 3 (idle and two subscribers)');
    cmp_ok($st->{PanoptesStreamSubscribersHigh} // 0, '>=', 4, 'PanoptesStreamSubscribersHigh: at least the 4 of before');
    cmp_ok($st->{PanoptesStreamSubscribersHigh} // 99, '<=', 4, '... and never above PanoptesTelemetryStreamMax (4)');
    is($st->{PanoptesStreamBusy}, $st0->{PanoptesStreamBusy}, 'PanoptesStreamBusy: no refusal in this file');
    my $delivered = $tele_multi + 100;
    my $sent = ($st->{PanoptesStreamEventsSent} // 0) - ($sent0->{PanoptesStreamEventsSent} // 0);
    ok($sent >= $delivered && $sent <= $delivered + 4,
        "PanoptesStreamEventsSent: +$sent for the $delivered events this test received since");
    my $html = PTMTest::ua()->get('http://' . hostport() . '/server-status')->decoded_content // '';
    my ($ours) = $html =~ m{<h2>PANOPTES telemetry</h2>(.*)}s;
    like($ours // '', qr/subscriber/i, 'server-status HTML: the live feed rows');
}
$s->close;
$r->close;
is(wait_subscribers(1, 15), 1, 'PanoptesStreamSubscribers: 1 (the idle one) once the others are closed');

# --- the ping --------------------------------------------------------------------------------
{
    my $b = $idle->next_block(25 - (Time::HiRes::time() - $idle_t0));
    my $after = $b ? $b->{t} - $idle_t0 : -1;
    ok($b && !@{ $b->{fields} } && "@{ $b->{comments} }" eq 'ping', 'idle stream: a `: ping` comment')
        or diag PTMStream::describe($b);
    is($b && $b->{raw}, ": ping\n\n", 'idle stream: exactly ": ping" and a blank line');
    diag sprintf 'the ping came %.2f s after the snapshot', $after;
    ok($after >= 13 && $after <= 17, 'the ping came 15 s (13-17 s) after the stream went quiet');
    ok(!$idle->ended, 'the idle stream is still open');
}
$idle->close;
is(wait_subscribers(0, 15), 0, 'PanoptesStreamSubscribers: 0 at the end');

done_testing();
