# GET /stream: PanoptesTelemetryStreamTimeout (SPEC §12.3), per server:
# the panoptes_stream_short virtual host sets 3 s (t/conf/extra.conf.in),
# the main server keeps the default (600 s).  While a client posts ten
# events a second:
#   * a stream on the short host ends 3 s after it began (3-4.5 s after
#     the request was sent: the engine looks at the clock at least every
#     500 ms), its last block
#     `retry: 1000`; resumed with its last id it goes on, and ends again
#     3 s later; the pieces together have every event exactly once, in id
#     order;
#   * a stream on the main server opened at the same time is still open
#     after the two timeouts, and has every event too.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use Time::HiRes ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest qw(:DEFAULT :events);
use PTMStream qw(id_parts wait_subscribers start_posters stop_posters pump check_feed telemetry_of);

ensure_no_run();
my $T = "st64-$$";
is(wait_subscribers(0, 20), 0, 'no stream open at the start') or BAIL_OUT('streams still counted');

my $long = PTMStream->open(mount => 'prefix');
my $lb = $long->next_block(10);
is($lb && $lb->{event}, 'current', 'main server stream: event: current first');
my ($epoch, $n0) = id_parts($lb && $lb->{id});

# The first short-host stream is open (its snapshot read) before the
# first event is posted: it must get every one.
my $s1 = PTMStream->open(mount => 'short');
my $s1b = $s1->next_block(10);
is($s1b && $s1b->{event}, 'current', 'short host, stream 1: event: current first');
is($s1b && $s1b->{id}, "$epoch-$n0", '... with the id of the main stream\'s snapshot (nothing posted between)');

my $h = start_posters(1, undef, sub {
    my ($i, $k) = @_;
    return { type => "$T-t" . ($k % 3), id => "to$k", mount => $k % 2 ? 'root' : 'prefix' };
}, pause => 0.1);

my (@short, @long);
my $from;
for my $round (1, 2) {
    my $s = $round == 1 ? $s1 : PTMStream->open(mount => 'short', last_event_id => $from);
    is($s->{code}, 200, "short host, stream $round: 200");
    my @b;
    pump(10, [ $s, $long ], sub {
        push @b, splice @{ $s->{queue} };
        push @long, splice @{ $long->{queue} };
        return $s->ended && !@{ $s->{queue} };
    });
    # From the request sent (before httpd starts the clock) to the end
    # read: at least 3 s; at most 3 s + the 500 ms tick + slack.
    my $dt = ($s->ended_at // 1e9) - $s->{t_open};
    ok($s->ended && $dt >= 2.95 && $dt <= 4.5, sprintf 'short host, stream %d: ended %.2f s after it was asked for (3 s)', $round, $dt);
    my $last = $b[-1];
    ok($last && ($last->{retry} // '') eq '1000' && @{ $last->{fields} } == 1,
        "short host, stream $round: its last block is retry: 1000") or diag PTMStream::describe($last);
    my @odd = grep { ($_->{event} // '') ne 'telemetry' && !defined $_->{retry} } @b;
    ok(!@odd, "short host, stream $round: then only events (no reset, no snapshot)")
        or diag PTMStream::describe($odd[0]);
    cmp_ok(scalar(telemetry_of(@b)), '>', 5, "short host, stream $round: events flowed");
    push @short, telemetry_of(@b);
    $from = $short[-1] ? $short[-1]{id} : "$epoch-$n0";
    $s->close;
}
ok(!$long->ended, 'the main server stream is still open (' . sprintf('%.1f', Time::HiRes::time() - $long->{t_head}) . ' s)');
my @res = stop_posters($h);
my @acked = grep { $_->{code} == 200 } @res;
is(scalar(@acked), scalar(@res), scalar(@res) . ' events posted, all 200');

# What came after the second timeout: a third stream, until all arrived.
my $s3 = PTMStream->open(mount => 'short', last_event_id => $from);
my @b3;
pump(20, [ $s3, $long ], sub {
    push @b3, splice @{ $s3->{queue} };
    push @long, splice @{ $long->{queue} };
    return @short + telemetry_of(@b3) >= @acked && telemetry_of(@long) >= @acked;
});
pump(0.3, [ $s3, $long ]);
push @b3, splice @{ $s3->{queue} };
push @long, splice @{ $long->{queue} };
ok(!grep({ ($_->{event} // '') ne 'telemetry' && !defined $_->{retry} } @b3),
    'short host, stream 3: only events (and retry, if it timed out too)');
check_feed(name => 'short host, three streams', blocks => [ @short, telemetry_of(@b3) ], want => \@acked,
           epoch => $epoch, from => $n0 + 1, contiguous => 1);
check_feed(name => 'main server stream', blocks => [ telemetry_of(@long) ], want => \@acked,
           epoch => $epoch, from => $n0 + 1, contiguous => 1);
ok(!grep({ ($_->{event} // '') ne 'telemetry' && @{ $_->{fields} } } @long),
    'main server stream: only events (no retry: it did not end)');
ok(!$long->ended, 'the main server stream is still open');
$s3->close;
$long->close;
is(wait_subscribers(0, 15), 0, 'PanoptesStreamSubscribers: 0 at the end');

done_testing();
