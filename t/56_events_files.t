# GET /events from the files alone (SPEC §12.2): httpd stopped and started
# with `-c "PanoptesTelemetryRecent 0"` (the ring off), then as the suite
# runs it (the ring on, empty):
#   * the runs index: <site_dir>/.runs.ndjson has a start line and a stop
#     line for a run, written by run start and stop;
#   * with the ring off: server-status says so (size 0, no events, no
#     oldest), recent_since is null, every stored event of the window is
#     found from the day files and run files (a run under a
#     PanoptesTelemetryRunRoot, a run still active), NDJSON byte for byte;
#     ephemeral events are not found, not even one just posted; site events
#     whose client ts is a day off are found by ts;
#   * a set of stored events only (site and run, client ts in an hour slot
#     of this file's, equal ts included): ten queries (order, stream,
#     run_id, every, pages of a limit, NDJSON) answer the same events with
#     the ring on, off, and on again but empty;
#   * with the ring off, following next while two forked clients post:
#     every event of the first set once, in order (the events come from
#     the files alone, a site day file and an active run's file);
#   * a day file with a hand-edited garbage line, a line cut short, and a
#     torn last line (no newline): the good lines are found, the damaged
#     ones skipped and counted in Panoptes-Skipped (JSON, and NDJSON with a
#     limit), never a 500 -- with the ring off and on;
#   * the ring back on but empty: recent_since null until an event comes,
#     then that event's acceptance; the stored events are still found.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use Time::HiRes ();
use POSIX ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest qw(:DEFAULT :events httpd_pid server_snapshot start_server stop_server server_answers
    start_clients wait_clients raise_flag progress wait_progress);

my $orig = server_snapshot();
$orig->{test_pid} = $$;
my $off_snap = { %$orig, argv => [ @{ $orig->{argv} }, '-c', 'PanoptesTelemetryRecent 0' ] };
my ($unusual, $plant);
END {
    local $?;
    return unless $orig && $$ == $orig->{test_pid};
    unlink $plant if $plant;
    if ($unusual || !(httpd_pid() && server_answers())) {
        stop_server(30);
        start_server($orig, 60) or print STDERR "# 56_events_files.t: could not start httpd again\n";
    }
    eval { ensure_no_run() } if httpd_pid();
}

ensure_no_run();
my $T = "clientts-ev56-$$";
my $site = site_dir();
my $NDJ = ['Accept' => 'application/x-ndjson'];
my $now = now_ms();
my $H9 = (POSIX::floor(time / 3600) - 9) * 3600 * 1000;    # this file's slot: 9 hours back
my $ST = "$T-st";    # stored events only
my $PG = "$T-pg";    # the first set of the paging check
my (@st, %pg);

# --- events, and the runs index -------------------------------------------------------
my @ev;
push @ev, hist_post(type => $T, id => 's1');
push @ev, hist_post(type => $T, id => 'e1', sp => 0);
my $RA = "EV56a-$$";
my $rr = runroot_dir() . "/ev56-$$";
mkdir_p(runroot_dir());             # the admin's, handed to the server's User
chown_to_server(runroot_dir());
is(start_run('{"run_id":"' . $RA . '","run_dir":' . js($rr) . '}')->{code}, 200, "run $RA started under the run root");
push @ev, hist_post(type => $T, id => 'a1', run => $RA);
push @ev, hist_post(type => $T, id => 'a2', run => $RA, sp => 0);
push @ev, hist_post(type => $T, id => 'a3', run => $RA, mc => 0);
for my $k (0 .. 5) {
    push @st, hist_post(type => $ST, id => "sa$k", run => $RA, ts => iso_ms($H9 + int($k / 2) * 1_260_000 + 60_000));
}
is(stop_run()->{code}, 200, "run $RA stopped");
push @ev, hist_post(type => $T, id => 's2');
for my $k (0 .. 9) {
    push @st, hist_post(type => $ST, id => "ss$k", ts => iso_ms($H9 + int($k / 2) * 1_260_000 + 60_000 * ($k % 3)));
}
push @st, hist_post(type => $ST, id => "ss-now$_") for 1 .. 2;
for my $k (0 .. 39) {
    my $e = hist_post(type => $PG, id => "p$k", $k % 3 ? () : (ts => iso_ms($now - 1_800_000 + $k * 30_000)));
    $pg{"p$k"} = 1 if $e->{code} == 200;
}
my $x1 = hist_post(type => "$T-dayoff", id => 'x1', ts => iso_ms($now - 23 * 3_600_000 - 1_800_000));
my $x2 = hist_post(type => "$T-dayoff", id => 'x2', ts => iso_ms($now + 22 * 3_600_000));
my $RB = "EV56b-$$";
is(start_run('{"run_id":"' . $RB . '","run_dir":"ev56b-' . $$ . '"}')->{code}, 200, "run $RB started (active through the restarts)");
push @ev, hist_post(type => $T, id => 'b1', run => $RB);
push @ev, hist_post(type => $T, id => 'b2', run => $RB, sp => 0);
is(scalar(grep { $_->{code} == 200 } @ev, $x1, $x2, @st), @ev + 2 + @st, 'events posted');
is(scalar(keys %pg), 40, 'the first set of the paging check posted');

# The stored-only set: the same answers whatever the ring holds.
my @SW = (type => $ST, since => iso_ms($H9 - 60_000));
my @SQ = (
    [ 'asc', [ @SW, order => 'asc' ] ],
    [ 'desc', [ @SW ] ],
    [ 'stream=site', [ @SW, stream => 'site', order => 'asc' ] ],
    [ 'stream=run', [ @SW, stream => 'run' ] ],
    [ "run_id=$RA", [ @SW, run_id => $RA, order => 'asc' ] ],
    [ 'every=1h', [ @SW, every => '1h', order => 'asc' ] ],
    [ 'every=10m', [ @SW, every => '10m' ] ],
    [ 'pages of 3, asc', [ @SW, order => 'asc', limit => 3 ] ],
    [ 'pages of 4, desc', [ @SW, limit => 4 ] ],
    [ 'NDJSON, pages of 5', [ @SW, limit => 5 ], headers => $NDJ ],
    [ 'NDJSON', [ @SW ], headers => $NDJ ],
);
sub stored_answers {
    my %a;
    for my $q (@SQ) {
        my ($name, $pairs, %o) = @$q;
        my $f = events_follow($pairs, %o);
        $a{$name} = $f->{error} ? [ "error: $f->{error}" ] : $f->{lines};
    }
    return \%a;
}
sub same_stored {
    my ($base, $name) = @_;
    my $cur = stored_answers();
    lines_are($cur->{ $_->[0] }, $base->{ $_->[0] }, "$name: stored-only set, $_->[0]: the same events") for @SQ;
}
my $st_base = stored_answers();
lines_are($st_base->{asc}, [ map { $_->{line} } hist_sort(@st) ], 'stored-only set: every event, in order');
lines_are($st_base->{'pages of 3, asc'}, $st_base->{asc}, 'stored-only set: pages of 3 give the same list');

{
    my @j = map { my $l = $_; my $j = eval { jd($l) }; ref $j eq 'HASH' ? $j : () }
        @{ file_lines("$site/.runs.ndjson") };
    my ($sa) = grep { exists $_->{start} && ($_->{run_dir} // '') eq $rr } @j;
    ok($sa, ".runs.ndjson: a start line for $rr") or diag "lines: " . scalar(@j);
    is($sa->{run_id}, $RA, '... with its run_id') if $sa;
    ok(defined ms_of($sa->{start} // '') && abs(ms_of($sa->{start}) - $now) < 60_000, '... and its start time')
        or diag 'start: ' . ($sa->{start} // 'none');
    my ($so) = grep { exists $_->{stop} && ($_->{run_dir} // '') eq $rr } @j;
    ok($so && defined ms_of($so->{stop}), ".runs.ndjson: a stop line for $rr");
    my $b_dir = qr{/ev56b-\Q$$\E$};
    my ($sb) = grep { exists $_->{start} && ($_->{run_dir} // '') =~ $b_dir } @j;
    ok($sb && ($sb->{run_id} // '') eq $RB, ".runs.ndjson: a start line for $RB");
    ok(!grep({ exists $_->{stop} && ($_->{run_dir} // '') =~ $b_dir } @j), "... and no stop line for it");
}

# The file line of a stored event.
sub file_line {
    my ($e) = @_;
    my $f = $e->{stream} ne 'run' ? site_file_for($e->{ts})
          : $e->{id} =~ /^a/ ? "$rr/telemetry.ndjson" : "$site/ev56b-$$/telemetry.ndjson";
    return lines_by_seq($f)->{ $e->{seq} } // "missing $e->{id}";
}

my @Q = (type => $T, since => '10m', order => 'asc');
my $on = events_get(\@Q);
lines_are($on->{lines}, [ map { $_->{line} } hist_sort(@ev) ], 'the ring on: every event of the window');

# --- a damaged day file ---------------------------------------------------------------------
my $D = "$T-dmg";
my $t3 = (POSIX::floor($now / 1000) - 3 * 86400) * 1000;
sub damaged {
    my ($name) = @_;
    my $key = day_key(iso_ms($t3));
    $plant = "$site/site_$key.ndjson";
    if (-e $plant) {
        fail("$name: $plant exists already");
        undef $plant;
        return;
    }
    my @good = map {
        '{"seq":' . (9000000000 + $_) . ',"ts":"' . iso_ms($t3 + $_ * 1000) . '","stream":"site","type":"' . $D
            . '","data":{"id":"d' . $_ . '"},"meta":{}}'
    } 1 .. 5;
    open my $fh, '>:raw', $plant or die "$plant: $!";
    print {$fh} $good[0], "\n", "this line was edited by hand {\n", $good[1], "\n",
        substr($good[2], 0, 60), "\n", $good[3], "\n", substr($good[4], 0, 70);
    close $fh;
    chown_to_server($plant);
    my @q = (type => $D, since => iso_ms($t3 - 60_000), until => iso_ms($t3 + 60_000), order => 'asc');
    my $r = events_get(\@q);
    is($r->{code}, 200, "$name: a day file with damaged lines: 200, not a 500") or diag events_desc($r);
    lines_are($r->{lines}, [ @good[0, 1, 3] ], "$name: the good lines are found");
    is($r->{skipped}, 3, "$name: Panoptes-Skipped: 3 (garbage, a line cut short, a torn last line)");
    my $n = events_get(\@q, headers => $NDJ);
    is($n->{body}, join('', map { "$_\n" } @good[0, 1, 3]), "$name: NDJSON: the good lines, byte for byte");
    my $nl = events_get([ @q, limit => 10 ], headers => $NDJ);
    is($nl->{body}, $n->{body}, "$name: NDJSON with a limit: the same");
    is($nl->{skipped}, 3, "$name: NDJSON with a limit: Panoptes-Skipped: 3");
    my $d = events_get([ type => $D, since => iso_ms($t3 - 60_000), until => iso_ms($t3 + 60_000) ]);
    lines_are($d->{lines}, [ @good[3, 1, 0] ], "$name: desc: the same, newest first");
    unlink $plant;
    undef $plant;
}
damaged('the ring on');

# --- the ring off ------------------------------------------------------------------------------
my $ring_size = status_auto()->{PanoptesRecentSize};
ok(stop_server(60), 'httpd stopped');
$unusual = 1;
ok(start_server($off_snap, 60), 'httpd started with PanoptesTelemetryRecent 0');
{
    my $s = status_auto();
    is($s->{PanoptesRecentSize}, 0, 'ring off: PanoptesRecentSize 0');
    is($s->{PanoptesRecentEvents}, 0, 'ring off: PanoptesRecentEvents 0');
    is($s->{PanoptesRecentBytes}, 0, 'ring off: PanoptesRecentBytes 0');
    is($s->{PanoptesRecentOldest}, '', 'ring off: PanoptesRecentOldest empty');
    like($s->{PanoptesEventIdNext} // '', qr/^\d+-\d+$/, 'ring off: ids still given');
}
my @stored = hist_sort(grep { $_->{sp} } @ev);
{
    my $r = events_get(\@Q);
    is($r->{code}, 200, 'ring off: 200') or diag events_desc($r);
    ok($r->{has_recent} && !defined $r->{recent_since}, 'ring off: recent_since null');
    ok(!defined $r->{skipped}, 'ring off: no Panoptes-Skipped when nothing was skipped')
        or diag "Panoptes-Skipped: $r->{skipped}";
    lines_are($r->{lines}, [ map { $_->{line} } @stored ], 'ring off: the stored events, from the files; no ephemeral one');
    my $n = events_get(\@Q, headers => $NDJ);
    is($n->{body}, join('', map { file_line($_) . "\n" } @stored), 'ring off: NDJSON: each stored event\'s file line');
    my $ra = events_get([ @Q, run_id => $RA ], headers => $NDJ);
    is($ra->{body}, join('', map { "$_\n" } grep { /"type":"\Q$T\E"/ } @{ file_lines("$rr/telemetry.ndjson") }),
        "ring off: run $RA (under the run root, stopped): the lines of its run file, found through the runs index");
    my $rb = events_get([ @Q, stream => 'run', run_id => $RB ]);
    lines_are($rb->{lines}, [ map { $_->{line} } grep { $_->{id} eq 'b1' } @ev ], "ring off: run $RB (still active)");
    is(get('/run')->{j}{run_id}, $RB, "run $RB still active");
    my $b3 = hist_post(type => $T, id => 'b3', run => $RB);
    my $b4 = hist_post(type => $T, id => 'b4', run => $RB, sp => 0);
    my $rb2 = events_get([ @Q, run_id => $RB ]);
    lines_are($rb2->{lines}, [ map { $_->{line} } (grep { $_->{id} eq 'b1' } @ev), $b3 ],
        'ring off: a new stored event is found at once, a new ephemeral one never');
    push @ev, $b3, $b4;
    for my $x ($x1, $x2) {
        my $t = ms_of($x->{ts});
        my $w = events_get([ type => "$T-dayoff", since => iso_ms($t - 60_000), until => iso_ms($t + 60_000) ]);
        lines_are($w->{lines}, [ $x->{line} ], "ring off: the site event with ts $x->{ts} (a day off) is found by its ts");
    }
}
same_stored($st_base, 'ring off');

# Paging from the files while two clients post (to the active run).
{
    for my $k (40 .. 59) {
        my $e = hist_post(type => $PG, id => "p$k", run => $RB, $k % 3 ? () : (ts => iso_ms($now - 1_700_000 + $k * 20_000)));
        $pg{"p$k"} = 1 if $e->{code} == 200;
    }
    is(scalar(keys %pg), 60, 'ring off: the first set of the paging check: 60 events, site and run');
    my $h = start_clients(2, sub {
        my ($i, $ctl) = @_;
        my $cl = PTMTest::Client->new(timeout => 30);
        my @out;
        for (my $n = 0; $n < 1500 && !$ctl->flag; $n++) {
            Time::HiRes::sleep(0.005);
            my $r = hist_post(client => $cl, type => $PG, id => "c$i-$n", run => $RB,
                              $n % 2 ? (ts => iso_ms($now - 1_750_000 + int(rand(1_700_000)))) : ());
            push @out, { id => "c$i-$n", code => $r->{code} };
            $ctl->tick if $r->{code} == 200;
        }
        return @out;
    });
    ok(wait_progress($h, 20, 30), 'ring off: the clients are posting');
    for my $t ([ 'asc, pages of 5', [ order => 'asc', limit => 5 ] ], [ 'desc, pages of 4', [ limit => 4 ] ],
               [ 'NDJSON, pages of 6', [ limit => 6 ], headers => $NDJ ]) {
        my ($name, $pairs, %o) = @$t;
        my $p0 = progress($h);
        events_follow_check(name => "ring off, $name", pairs => [ type => $PG, since => '1h', @$pairs ],
            opts => \%o, first => \%pg, type => $PG, more => qr/^c\d-\d+$/,
            desc => !%o && !grep({ $_ eq 'asc' } @$pairs));
        cmp_ok(progress($h) - $p0, '>=', 3, "ring off, $name: the clients posted meanwhile");
    }
    raise_flag($h);
    my @bad = grep { ($_->{code} // 0) != 200 } map { @$_ } wait_clients($h);
    ok(!@bad, 'ring off: every event of the clients was accepted') or diag scalar(@bad) . ' not';
}

damaged('ring off');

# --- the ring on again, empty ------------------------------------------------------------------
ok(stop_server(60), 'httpd stopped');
ok(start_server($orig, 60), 'httpd started as the suite runs it');
$unusual = 0;
{
    my $s = status_auto();
    is($s->{PanoptesRecentSize}, $ring_size, "ring on again: PanoptesRecentSize $ring_size as before");
    is($s->{PanoptesRecentEvents}, 0, 'ring on again: it is empty');
    same_stored($st_base, 'ring on again, empty');
    my $r = events_get(\@Q);
    ok($r->{code} == 200 && $r->{has_recent} && !defined $r->{recent_since}, 'empty ring: recent_since null')
        or diag events_desc($r);
    lines_are($r->{lines}, [ map { $_->{line} } hist_sort(grep { $_->{sp} } @ev) ], 'the stored events, from the files');
    my $e = hist_post(type => $T, id => 'e9', sp => 0, run => $RB);
    my $r2 = events_get(\@Q);
    ok(defined $r2->{recent_since} && $r2->{recent_since} le $e->{ts}
        && ms_of($e->{ts}) - ms_of($r2->{recent_since}) < 2000,
        'one event in the ring: recent_since is its acceptance') or diag "recent_since " . ($r2->{recent_since} // 'null') . ", ts $e->{ts}";
    is($r2->{recent_since}, status_auto()->{PanoptesRecentOldest}, 'recent_since = PanoptesRecentOldest');
    lines_are($r2->{lines}, [ map { $_->{line} } hist_sort((grep { $_->{sp} } @ev), $e) ],
        'and the new ephemeral event is found');
}
is(stop_run()->{code}, 200, "run $RB stopped");

done_testing();
