# The module's section in mod_status (server-status and ?auto): counters
# move by exactly what the requests did, and the run shows while active.
# (What it shows while a writer holds the lock: t/41_readers.t.)
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use Apache::TestRequest qw(GET_BODY);
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest qw(:DEFAULT status_auto);

ensure_no_run();


my $a0 = status_auto();
for my $k (qw(PanoptesEventsSite PanoptesEventsRun PanoptesSeqSite PanoptesSeqRun
              PanoptesRunActive PanoptesCurrentTypesSite PanoptesCurrentTypesRun
              PanoptesStateBytesUsed PanoptesStateBytesTotal PanoptesWriteErrors
              PanoptesStateRepairs PanoptesAnswers400 PanoptesAnswers404
              PanoptesAnswers405 PanoptesAnswers409 PanoptesAnswers413
              PanoptesAnswers422 PanoptesAnswers500 PanoptesAnswers503
              PanoptesAnswers507 PanoptesStateBusy PanoptesReadRetries
              PanoptesReadLocked PanoptesLockWaits)) {
    like($a0->{$k} // '', qr/^\d+$/, "?auto has $k");
}
is($a0->{PanoptesRunActive}, 0, 'no run active');
is($a0->{PanoptesStateBusy}, 0, 'not busy: nothing holds the lock');
ok(!exists $a0->{PanoptesRunId}, 'no run id without a run');
cmp_ok($a0->{PanoptesStateBytesUsed}, '<', $a0->{PanoptesStateBytesTotal},
    'bytes used below the total');

# Three site events (one new type), one 422, one 404 for an unknown type.
my $type = 'status-probe-' . $$;
my $last;
for my $i (1 .. 3) {
    my $r = post_event(qq({"type":"$type","data":$i}));
    is($r->{code}, 200, "event $i stored");
    $last = $r->{j}{seq};
}
is(post_event('{"type":1,"data":2}')->{code}, 422, 'a 422');
is(get("/current/no-such-$type")->{code}, 404, 'a 404');

my $a1 = status_auto();
is($a1->{PanoptesEventsSite} - $a0->{PanoptesEventsSite}, 3, 'three site events counted');
is($a1->{PanoptesSeqSite}, $last, 'site seq is the last answered seq');
is($a1->{PanoptesCurrentTypesSite} - $a0->{PanoptesCurrentTypesSite}, 1,
    'one new current type');
is($a1->{PanoptesAnswers422} - $a0->{PanoptesAnswers422}, 1, 'the 422 counted');
is($a1->{PanoptesAnswers404} - $a0->{PanoptesAnswers404}, 1, 'the 404 counted');
is($a1->{PanoptesWriteErrors}, $a0->{PanoptesWriteErrors}, 'no write error');

# A run shows with its id and start time.
my $run = start_run('{"run_id":"status-run-' . $$ . '","run_dir":"status-' . $$ . '"}');
is($run->{code}, 200, 'run started');
my $a2 = status_auto();
is($a2->{PanoptesRunActive}, 1, 'run active');
is($a2->{PanoptesRunId}, "status-run-$$", 'run id shown');
is($a2->{PanoptesRunStartedAt}, $run->{j}{started_at}, 'run start time shown');
my $html = GET_BODY('/server-status');
like($html, qr{<h2>PANOPTES telemetry</h2>}, 'HTML section present');
like($html, qr{status-run-$$, started \Q$run->{j}{started_at}\E}, 'HTML shows the run');
my ($ours) = $html =~ m{<h2>PANOPTES telemetry</h2>(.*?</table>.*?</table>)}s;
ok(defined $ours && $ours !~ /busy/, 'HTML: nothing busy in our section');
is(stop_run()->{code}, 200, 'run stopped');
is(status_auto()->{PanoptesRunActive}, 0, 'run no longer active');

done_testing();
