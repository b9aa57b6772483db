# GET /stream: a subscriber that stops reading (issue 11: it must not
# block other subscribers, nor POSTs):
#   * with one stream whose client reads nothing (a 4 KiB receive buffer)
#     and one that reads, 60 events of 100 kB are posted: every POST is
#     answered (each within 2 s), the reading subscriber gets every event
#     in order, and the stalled stream is really stalled (data waits in
#     the server's send queue);
#   * a small event after them reaches the reading subscriber at once;
#   * when the slow client reads again, it gets what it can in id order,
#     none twice: every event, or (it fell behind the 1 MiB ring) an
#     `event: reset` ("fell behind") then the snapshot, then the events
#     after it; and its stream goes on: a new event arrives live.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use Time::HiRes ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest qw(:DEFAULT :events);
use PTMStream qw(id_parts wait_subscribers check_feed telemetry_of send_queue_of_connection);

ensure_no_run();
my $T = "st65-$$";
is(wait_subscribers(0, 20), 0, 'no stream open at the start') or BAIL_OUT('streams still counted');

my $slow = PTMStream->open(rcvbuf => 4096);
my $sb = $slow->next_block(10);
is($sb && $sb->{event}, 'current', 'slow subscriber: event: current first');
my ($epoch, $n0) = id_parts($sb && $sb->{id});
my $fast = PTMStream->open(mount => 'root');
my $fb = $fast->next_block(10);
is($fb && $fb->{id}, $sb && $sb->{id}, 'fast subscriber: the same snapshot');

my $pad = 'y' x 100_000;
my (@ev, @dt, @fast);
for my $i (1 .. 60) {
    my $t0 = Time::HiRes::time();
    my $e = hist_post(type => "$T-big", id => "b$i", data => '{"id":"b' . $i . '","pad":"' . $pad . '"}',
                      sp => 0, mc => 0, mount => 'big');
    push @dt, Time::HiRes::time() - $t0;
    push @ev, $e;
    my $b = $fast->next_event(10);
    push @fast, $b if $b;
}
is(scalar(grep { $_->{code} == 200 } @ev), 60, '60 events of 100 kB posted, all 200');
my @sdt = sort { $a <=> $b } @dt;
diag sprintf 'POST times: median %.1f ms, max %.1f ms', 1000 * $sdt[30], 1000 * $sdt[-1];
cmp_ok($sdt[-1], '<', 2, 'no POST waited on the stalled subscriber (each under 2 s)');
check_feed(name => 'the reading subscriber', blocks => \@fast, want => \@ev, epoch => $epoch,
           from => $n0 + 1, contiguous => 1);
SKIP: {
    skip 'needs root for /proc', 1 unless $> == 0;
    my $q = send_queue_of_connection($slow->sock_port);
    ok(($q // 0) > 0, 'the slow stream is stalled: ' . ($q // '?') . ' bytes wait in the server\'s send queue');
}
is(status_auto()->{PanoptesStreamSubscribers}, 2, 'PanoptesStreamSubscribers: 2');
my $last = hist_post(type => "$T-small", id => 'last');
my $t1 = Time::HiRes::time();
my $lb = $fast->next_event(10);
is($lb && $lb->{data}, $last->{line}, 'a small event after them reaches the reading subscriber');
cmp_ok(($lb ? $lb->{t} : 99) - $t1, '<', 1, '... at once (under 1 s)');

# The slow client reads again, until nothing more comes for 2 s; then
# one more event must arrive, live.
my @b;
my $end = Time::HiRes::time() + 90;
while (Time::HiRes::time() < $end) {
    my $b = $slow->next_block(2) or last;
    push @b, $b;
}
ok(!$slow->ended, 'the slow subscriber\'s stream is still open after it read ' . scalar(@b) . ' blocks');
my $final = hist_post(type => "$T-small", id => 'final');
my $fin = $slow->next_event(10);
is($fin && $fin->{data}, $final->{line}, 'then a new event reaches the slow subscriber');
push @b, $fin if $fin;
my @resets = grep { ($b[$_]{event} // '') eq 'reset' } 0 .. $#b;
if (@resets) {
    my $k = $resets[-1];
    diag scalar(@resets) . ' reset(s): ' . ($b[$k]{data} // '');
    like($b[$k]{data} // '', qr/"detail":"[^"]*fell behind/, 'the reset says the stream fell behind');
    is(join(',', map { $b[$_ + 1] ? $b[$_ + 1]{event} // '?' : 'none' } @resets), join(',', ('current') x @resets),
        'each reset is followed by the snapshot');
    my (undef, $ns) = id_parts($b[$k + 1] && $b[$k + 1]{id});
    check_feed(name => 'slow subscriber after the reset', blocks => [ telemetry_of(@b[$k + 2 .. $#b]) ],
               want => [$final], maybe => [ @ev, $last ], epoch => $epoch,
               from => ($ns // -2) + 1, contiguous => 1);
    my @before = telemetry_of(@b[0 .. $resets[0] - 1]);
    check_feed(name => 'slow subscriber before the reset', blocks => \@before, want => [],
               maybe => [ @ev, $last ], epoch => $epoch, contiguous => 1, (@before ? (from => $n0 + 1) : ()));
}
else {
    check_feed(name => 'the slow subscriber (it never fell behind)', blocks => [ telemetry_of(@b) ],
               want => [ @ev, $last, $final ], epoch => $epoch, from => $n0 + 1, contiguous => 1);
}
$slow->close;
$fast->close;
is(wait_subscribers(0, 15), 0, 'PanoptesStreamSubscribers: 0 at the end');

done_testing();
