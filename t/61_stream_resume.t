# GET /stream: resuming (SPEC §12.3, §12.1):
#   * a reconnect with Last-Event-ID after 100 events were posted while
#     disconnected (through several children, both mounts, stored or not)
#     gets exactly those 100, in id order, without a snapshot, then live
#     ones; the same with `last_event_id=` in the query; the header wins
#     over the query; with `type` only the matching ones; from the id of
#     a snapshot exactly what came after it; from the newest id nothing
#     until the next event;
#   * an id of another epoch, a malformed one, one not yet given, and one
#     older than the ring (the suite's ring is 1 MiB: filled with big
#     ephemeral events) get `event: reset` (JSON {"detail"} naming the id)
#     and then the snapshot (`event: current` with its id), then live
#     events;
#   * at the ring's edge: the id just before the oldest event the ring
#     holds resumes (every event of the ring), the one before that resets.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use Time::HiRes ();
use Math::BigInt ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest qw(:DEFAULT :events);
use PTMStream qw(id_parts wait_subscribers post_burst check_feed telemetry_of);

ensure_no_run();
my $T = "st61-$$";

is(wait_subscribers(0, 20), 0, 'no stream open at the start') or BAIL_OUT('streams still counted');

# --- a subscriber, then 100 events while it is away -------------------------------------------
my $s = PTMStream->open;
my $snap = $s->next_block(10);
my ($epoch, $n0) = id_parts($snap && $snap->{id});
ok(defined $n0, 'first event: an id') or BAIL_OUT('no snapshot id: ' . PTMStream::describe($snap));
my @pre = map { hist_post(type => "$T-a", id => "pre$_") } 1 .. 5;
my @got = map { $s->next_event(10) // () } 1 .. 5;
check_feed(name => 'before the disconnect', blocks => \@got, want => \@pre, epoch => $epoch,
           from => $n0 + 1, contiguous => 1);
my $L = $got[-1] ? $got[-1]{id} : "$epoch-0";
my (undef, $nL) = id_parts($L);
$s->close;

my @away = post_burst(4, 25, sub {
    my ($i, $k) = @_;
    return { type => "$T-" . ($k % 2 ? 'a' : 'b'), id => "away$i-$k",
             mount => $i % 2 ? 'root' : 'prefix', ($k % 3 == 2 ? (sp => 0) : ()),
             ($k % 5 == 4 ? (mc => 0) : ()) };
});
is(scalar(grep { $_->{code} == 200 } @away), 100, '100 events posted while disconnected (4 clients)');

sub resume_check {
    my ($name, $open, $want, %o) = @_;
    my $st = PTMStream->open(%$open);
    is($st->{code}, 200, "$name: 200");
    my @b;
    while (@b < @$want) {
        my $b = $st->next_block(10) or last;
        push @b, $b;
    }
    is(scalar(grep { ($_->{event} // '') ne 'telemetry' } @b), 0,
        "$name: only event: telemetry (no snapshot, no reset)")
        or diag join "\n", map { PTMStream::describe($_) } grep { ($_->{event} // '') ne 'telemetry' } @b[0 .. 3];
    check_feed(name => $name, blocks => [ telemetry_of(@b) ], want => $want, epoch => $epoch,
               %o);
    my $more = $st->next_block(0.3);
    ok(!$more, "$name: then nothing while nothing is posted") or diag PTMStream::describe($more);
    return ($st, @b);
}

my @live;
{
    my ($st, @b) = resume_check('Last-Event-ID header', { last_event_id => $L }, \@away,
                                from => $nL + 1, contiguous => 1);
    my @l3 = map { hist_post(type => "$T-a", id => "live$_", mount => 'root') } 1 .. 3;
    my @lb = map { $st->next_event(10) // () } 1 .. 3;
    check_feed(name => 'Last-Event-ID header: then live', blocks => \@lb, want => \@l3, epoch => $epoch,
               from => $nL + 101, contiguous => 1);
    push @live, @l3;
    $st->close;
}
{
    my ($st) = resume_check('last_event_id= query', { query => qenc(last_event_id => $L), mount => 'root' },
                            [ @away, @live ], from => $nL + 1, contiguous => 1);
    my @l2 = map { hist_post(type => "$T-b", id => "live2-$_") } 1 .. 2;
    my @lb = map { $st->next_event(10) // () } 1 .. 2;
    check_feed(name => 'last_event_id= query: then live', blocks => \@lb, want => \@l2, epoch => $epoch,
               from => $nL + 104, contiguous => 1);
    push @live, @l2;
    $st->close;
}
resume_check('the header wins over last_event_id=',
             { last_event_id => $L, query => qenc(last_event_id => 'not-an-id') },
             [ @away, @live ], from => $nL + 1, contiguous => 1);
resume_check('the header wins over last_event_id= (both ids)',
             { last_event_id => $L, query => qenc(last_event_id => "$epoch-" . ($nL + 50)) },
             [ @away, @live ], from => $nL + 1, contiguous => 1);
resume_check('Last-Event-ID with type=a',
             { last_event_id => $L, query => qenc(type => "$T-a") },
             [ grep { $_->{type} eq "$T-a" } @away, @live ]);
resume_check('Last-Event-ID with type=a&type=b',
             { last_event_id => $L, query => qenc(type => "$T-a", type => "$T-b"), mount => 'root' },
             [ @away, @live ], contiguous => 1);

# --- from a snapshot's id, and from the newest id ---------------------------------------------------
{
    my $s2 = PTMStream->open;
    my $b = $s2->next_block(10);
    my $S = $b ? $b->{id} : '?';
    my (undef, $nS) = id_parts($S);
    $s2->close;
    my @ten = map { hist_post(type => "$T-c", id => "ten$_", sp => $_ % 2) } 1 .. 10;
    my ($st) = resume_check("from the snapshot's id $S", { last_event_id => $S }, \@ten,
                            from => ($nS // -2) + 1, contiguous => 1);
    $st->close;
    my $newest = status_auto()->{PanoptesEventIdNext};
    my (undef, $nx) = id_parts($newest);
    my $s3 = PTMStream->open(last_event_id => "$epoch-" . ($nx - 1), timeout => 5);
    # An EventSource is "open" (and curl shows the head) only once the
    # answer's head arrives: it must not wait for the first event or ping.
    ok($s3->{code} == 200 && $s3->{t_head} - $s3->{t_open} < 2,
        sprintf 'from the newest id: 200 and its head at once (%s)',
            $s3->{code} ? sprintf('%.2f s', $s3->{t_head} - $s3->{t_open}) : 'nothing within 5 s');
    $s3->{code} or $s3 = PTMStream->open(last_event_id => "$epoch-" . ($nx - 1), timeout => 20);
    my $none = $s3->next_event(0.5);
    ok(!$none, 'from the newest id: nothing (no snapshot, no reset) until an event')
        or diag PTMStream::describe($none);
    my $one = hist_post(type => "$T-c", id => 'newest');
    my $nb = $s3->next_event(10);
    check_feed(name => 'from the newest id: the next event', blocks => [ $nb // () ], want => [$one],
               epoch => $epoch, from => $nx);
    $s3->close;
}

# --- ids that cannot resume: reset, then the snapshot --------------------------------------------------
sub reset_check {
    my ($name, $open, $given) = @_;
    my $cur = get('/current');
    my (undef, $next) = id_parts(status_auto()->{PanoptesEventIdNext});
    my $st = PTMStream->open(%$open);
    is($st->{code}, 200, "$name: 200");
    my $r = $st->next_block(10);
    is($r && $r->{event}, 'reset', "$name: event: reset first") or diag PTMStream::describe($r);
    my $j = eval { PTMTest::jd($r->{data}) };
    ok(ref $j eq 'HASH' && defined $j->{detail} && !ref $j->{detail} && keys(%$j) == 1,
        "$name: reset data is JSON {\"detail\": <string>}") or diag $r && $r->{data};
    if (defined $given && $given =~ /^[\x21-\x7e]+$/ && $given !~ /["\\]/) {
        like($j && $j->{detail} // '', qr/\Q$given\E/, "$name: the detail names the id given");
    }
    my $c = $st->next_block(10);
    is($c && $c->{event}, 'current', "$name: then event: current") or diag PTMStream::describe($c);
    is($c && $c->{id}, "$epoch-" . ($next - 1), "$name: ... with the id of the last accepted event");
    is($c && $c->{data}, $cur->{body}, "$name: ... and the GET /current answer");
    my $e = hist_post(type => "$T-r", id => "after-reset-" . $name);
    my $b = $st->next_event(10);
    check_feed(name => "$name: then live", blocks => [ $b // () ], want => [$e], epoch => $epoch, from => $next);
    $st->close;
}

my $other = Math::BigInt->new($epoch)->binc->bstr;
reset_check('another epoch', { last_event_id => "$other-$nL" }, "$other-$nL");
reset_check('epoch 0', { last_event_id => "0-$nL" }, "0-$nL") unless $epoch eq '0';
{
    my (undef, $next) = id_parts(status_auto()->{PanoptesEventIdNext});
    my $future = "$epoch-" . ($next + 1000);
    reset_check('an id not yet given', { last_event_id => $future }, $future);
}
for my $bad ('garbage', "$epoch-", "-$nL", "$epoch-$nL-1", "$epoch-x$nL", "${epoch}_$nL", "$epoch-+$nL",
             "$epoch-99999999999999999999999", "$epoch - $nL") {
    reset_check("malformed id '$bad'", { last_event_id => $bad }, $bad);
}
reset_check('malformed id in last_event_id=', { query => qenc(last_event_id => 'nope') }, 'nope');

# --- older than the ring ---------------------------------------------------------------------------
{
    my $s0 = status_auto();
    my $size = $s0->{PanoptesRecentSize} || 1048576;
    my $pad = 'x' x int($size / 5);
    my @big;
    for my $i (1 .. 8) {
        push @big, post_event('{"type":"' . $T . '-big","data":{"n":' . $i . ',"pad":"' . $pad . '"},'
            . '"store_permanently":false,"make_current":false}', mount => 'big');
    }
    is(scalar(grep { $_->{code} == 200 } @big), 8, '8 big ephemeral events (a fifth of the ring each)');
    my $s1 = status_auto();
    my ($e, $next) = id_parts($s1->{PanoptesEventIdNext});
    my $held = $s1->{PanoptesRecentEvents};
    cmp_ok($held, '<', 8, "the ring holds $held events: the older ones are gone");
    my $oldest = $next - $held;    # the n of the oldest event in the ring
    # Just before the oldest held event: every event the ring holds.
    my $st = PTMStream->open(last_event_id => "$epoch-" . ($oldest - 1));
    my @b;
    for (1 .. $held) {
        my $b = $st->next_block(20) or last;
        push @b, $b;
    }
    is(join(' ', map { $_->{event} // '?' } @b), join(' ', ('telemetry') x $held),
        "the id just before the ring's oldest: the $held events the ring holds, no reset");
    is(join(' ', map { $_->{id} // '?' } @b), join(' ', map { "$epoch-$_" } $oldest .. $next - 1),
        '... with their ids');
    my ($pn) = map { $_->{data} =~ /"n":(\d+)/ ? $1 : '?' } $b[0] // {};
    is($pn, 8 - $held + 1, '... from the first big event still held');
    ok(!$st->next_block(0.3), '... then nothing');
    $st->close;
    # (Each reset_check posts an event: the ring only moves on.)
    my $edge = "$epoch-" . ($oldest - 2);
    reset_check("the id before the ring's oldest but one ($edge)", { last_event_id => $edge }, $edge);
    reset_check("an id older than the ring ($L)", { last_event_id => $L }, $L);
}

is(wait_subscribers(0, 15), 0, 'PanoptesStreamSubscribers: 0 at the end');

done_testing();
