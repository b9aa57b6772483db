# GET /stream: a subscriber that stops reading (issue 11: it must not
# block other subscribers, nor POSTs, nor hold its worker or a graceful
# stop for httpd's Timeout):
#   * with one stream whose client reads nothing (a 4 KiB receive buffer)
#     and one that reads, 60 events of 100 kB are posted: every POST is
#     answered (each within 2 s), the reading subscriber gets every event
#     in order;
#   * the stalled stream is ended by the server once a write has waited
#     about a second for the client (its slot is free again);
#   * a small event after them reaches the reading subscriber at once;
#   * the slow client reads what it was sent, in id order, none twice,
#     then the end of its stream; it resumes with its last id and gets
#     every event after it, or (it fell behind the 1 MiB ring) an
#     `event: reset` ("cannot resume") then the snapshot; a new event
#     then arrives live.
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
# The server gave the stalled stream up: the subscribers are the reading
# one only (the cut waits for a write that found no room for a second).
is(wait_subscribers(1, 3), 1, 'the stalled stream was ended by the server within 3 s of the last POST: PanoptesStreamSubscribers 1');
my $last = hist_post(type => "$T-small", id => 'last');
my $t1 = Time::HiRes::time();
my $lb = $fast->next_event(10);
is($lb && $lb->{data}, $last->{line}, 'a small event after them reaches the reading subscriber');
cmp_ok(($lb ? $lb->{t} : 99) - $t1, '<', 1, '... at once (under 1 s)');
# The slow client reads again: what was sent, then the end.
my @b;
my $end = Time::HiRes::time() + 90;
while (Time::HiRes::time() < $end) {
    my $b = $slow->next_block(5) or last;
    push @b, $b;
}
ok($slow->ended, 'the slow subscriber then finds its stream ended, after ' . scalar(@b) . ' blocks');
my @got = telemetry_of(@b);
check_feed(name => 'the slow subscriber before the cut', blocks => \@got, want => [],
           maybe => [ @ev, $last ], epoch => $epoch, contiguous => 1, (@got ? (from => $n0 + 1) : ()));
# It resumes with the last id it got (or the snapshot's).
my $resume_id = @got ? $got[-1]{id} : $sb->{id};
my $again = PTMStream->open(last_event_id => $resume_id);
my @r;
while (my $x = $again->next_block(3)) {
    push @r, $x;
}
my $final = hist_post(type => "$T-small", id => 'final');
my $fin = $again->next_event(10);
is($fin && $fin->{data}, $final->{line}, 'resumed: a new event arrives live');
push @r, $fin if $fin;
if (@r && ($r[0]{event} // '') eq 'reset') {
    like($r[0]{data} // '', qr/"detail":"cannot resume after \Q$resume_id\E/, 'a reset says from which id it cannot resume');
    is($r[1] && $r[1]{event}, 'current', '... then the snapshot');
    my (undef, $ns) = id_parts($r[1] && $r[1]{id});
    check_feed(name => 'resumed after the reset', blocks => [ telemetry_of(@r[2 .. $#r]) ],
               want => [$final], maybe => [ @ev, $last ], epoch => $epoch,
               from => ($ns // -2) + 1, contiguous => 1);
}
else {
    # Contiguous ids from the one after the last it got, up to the new
    # event: nothing missed, nothing twice.
    my (undef, $nr) = id_parts($resume_id);
    check_feed(name => 'resumed: every event after the last id', blocks => [ telemetry_of(@r) ],
               want => [$final], maybe => [ @ev, $last ], epoch => $epoch, from => $nr + 1,
               contiguous => 1);
}
$again->close;
$slow->close;
$fast->close;
is(wait_subscribers(0, 15), 0, 'PanoptesStreamSubscribers: 0 at the end');

done_testing();
