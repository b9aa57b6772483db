# The recent-events ring and event ids (SPEC §12.1, §12.2):
#   * server-status ?auto shows PanoptesRecentEvents, PanoptesRecentBytes,
#     PanoptesRecentSize (1 MiB, as t/conf/extra.conf.in sets it),
#     PanoptesRecentOldest and
#     PanoptesEventIdNext (<epoch>-<n>); every accepted event, stored or
#     not, site or run, takes the next n (a refused one none), and its
#     debug log line ends with id=<epoch>-<n>;
#   * ephemeral events (store_permanently=false, current or not, site or
#     run) are found by GET /events while the ring holds them, with
#     recent_since (= PanoptesRecentOldest) no later than their acceptance;
#   * once the ring has dropped them (pushed out by big ephemeral events,
#     each a fifth of the ring), they are gone from /events (still current in
#     /current), recent_since is later than their acceptance, and the
#     stored events around them are still found, byte for byte, from the
#     files, and a window across the ring's oldest has each event once.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use Time::HiRes ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest qw(:DEFAULT :events error_log_size error_log_since wait_for_log);

ensure_no_run();
my $T = "ev54-$$";
my $STAMP = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

# --- server-status ---------------------------------------------------------------
# An ephemeral event of its own first: the ring is not empty even when this
# file runs alone.
is(hist_post(type => "$T-first", id => 'e0', sp => 0, mc => 0)->{code}, 200, 'an ephemeral event, so the ring holds one');
my $s0 = status_auto();
like($s0->{$_} // '', qr/^\d+$/, "?auto has $_") for qw(PanoptesRecentEvents PanoptesRecentBytes PanoptesRecentSize);
ok(exists $s0->{PanoptesRecentOldest}, '?auto has PanoptesRecentOldest');
like($s0->{PanoptesEventIdNext} // '', qr/^\d+-\d+$/, '?auto has PanoptesEventIdNext <epoch>-<n>');
is($s0->{PanoptesRecentSize}, 1048576, 'PanoptesRecentSize: 1 MiB, the PanoptesTelemetryRecent of the suite');
cmp_ok($s0->{PanoptesRecentBytes} // 0, '<=', $s0->{PanoptesRecentSize} // 0, 'bytes held within the size');
cmp_ok($s0->{PanoptesRecentEvents} // 0, '>', 0, 'the ring holds events');
like($s0->{PanoptesRecentOldest} // '', $STAMP, 'PanoptesRecentOldest is a UTC stamp');
my ($epoch, $n0) = ($s0->{PanoptesEventIdNext} // '0-0') =~ /^(\d+)-(\d+)$/;

# --- ids: one per accepted event, in the debug line ------------------------------
my $off = error_log_size();
my @ev;
push @ev, hist_post(type => "$T-eph", id => 'e1', sp => 0);
push @ev, hist_post(type => "$T-st", id => 's1');
push @ev, hist_post(type => "$T-ephnc", id => 'e2', sp => 0, mc => 0);
is(post_event('{"type":"' . $T . '-bad","data":1,"meta":[]}')->{code}, 422, 'a refused event');
my $R = "EV54-$$";
is(start_run('{"run_id":"' . $R . '","run_dir":"ev54-' . $$ . '"}')->{code}, 200, "run $R started");
push @ev, hist_post(type => "$T-eph", id => 'e3', sp => 0, run => $R);
push @ev, hist_post(type => "$T-st", id => 's2', run => $R, mc => 0);
is(stop_run()->{code}, 200, 'run stopped');
Time::HiRes::sleep(0.02);
push @ev, hist_post(type => "$T-st", id => 's3');
is(scalar(grep { $_->{code} == 200 } @ev), 6, 'six events accepted');
my $s1 = status_auto();
is($s1->{PanoptesEventIdNext}, "$epoch-" . ($n0 + 6), 'PanoptesEventIdNext: six more, the refused one took none');
# Six more held, unless the ring had to drop its oldest to make room (it
# had no room for six small records: under 512 bytes each).
if ($s0->{PanoptesRecentSize} - $s0->{PanoptesRecentBytes} >= 6 * 512) {
    is($s1->{PanoptesRecentEvents} - $s0->{PanoptesRecentEvents}, 6, 'PanoptesRecentEvents: six more');
}
else {
    cmp_ok($s1->{PanoptesRecentEvents} - $s0->{PanoptesRecentEvents}, '<=', 6,
        'PanoptesRecentEvents: at most six more (the ring was full)');
}
for my $i (0 .. $#ev) {
    my $e = $ev[$i];
    my $want = "$epoch-" . ($n0 + $i);
    my $l = wait_for_log($off, qr/panoptes_telemetry:debug.*event type="\Q$e->{type}\E" stream=$e->{stream} seq=$e->{seq}\b/, 10);
    like($l // '', qr/ id=\Q$want\E$/, "$e->{id}: the debug line ends with id=$want") or diag $l // 'no debug line';
}

# --- in the ring: found ------------------------------------------------------------
my @q = (type => "$T-eph", type => "$T-st", type => "$T-ephnc", since => '10m', order => 'asc');
my $before = events_get(\@q);
is($before->{code}, 200, 'GET /events: 200') or diag events_desc($before);
lines_are($before->{lines}, [ map { $_->{line} } hist_sort(@ev) ],
    'ephemeral events (current or not, site and run) are found while in the ring, with the stored ones');
like($before->{recent_since} // '', $STAMP, 'recent_since is a UTC stamp');
ok(($before->{recent_since} // 'z') le $ev[0]{ts}, 'recent_since is no later than the first event\'s acceptance')
    or diag "recent_since $before->{recent_since}, first event $ev[0]{ts}";
is($before->{recent_since}, status_auto()->{PanoptesRecentOldest}, 'recent_since = PanoptesRecentOldest');

# --- pushed out of the ring ----------------------------------------------------------
# Each a fifth of the ring (one bigger than the ring would just empty it),
# eight of them: the ring ends up holding only some of them.
my $size = $s1->{PanoptesRecentSize} || 1048576;
my $k = 8;
my @big;
my $pad = 'x' x int($size / 5);
for my $i (1 .. $k) {
    my $r = post_event('{"type":"' . $T . '-big","data":{"n":' . $i . ',"pad":"' . $pad . '"},'
        . '"store_permanently":false,"make_current":false}', mount => 'big');
    push @big, $r;
}
is(scalar(grep { $_->{code} == 200 } @big), $k, "$k ephemeral events of " . length($pad) . " bytes (the ring is $size)")
    or diag join ' ', map { $_->{code} } @big;
my $s2 = status_auto();
cmp_ok($s2->{PanoptesRecentBytes}, '<=', $size, 'PanoptesRecentBytes still within the size');
cmp_ok($s2->{PanoptesRecentEvents}, '<', $k, 'the ring holds fewer than all the big events');

my $after = events_get(\@q);
is($after->{code}, 200, 'GET /events after the ring moved on: 200') or diag events_desc($after);
lines_are($after->{lines}, [ map { $_->{line} } hist_sort(grep { $_->{sp} } @ev) ],
    'the ephemeral events are gone; the stored ones are found from the files');
like($after->{recent_since} // '', $STAMP, 'recent_since is a UTC stamp');
ok(defined $after->{recent_since} && $after->{recent_since} gt $ev[-1]{ts},
    'recent_since is later than the acceptance of every dropped event')
    or diag 'recent_since ' . ($after->{recent_since} // 'null') . ", last event $ev[-1]{ts}";
my @bts = map { $_->{j}{ts} // '' } @big;
ok(defined $after->{recent_since} && $after->{recent_since} ge $bts[0] && $after->{recent_since} le $bts[-1],
    'recent_since is the acceptance of one of the big events') or diag "big events from $bts[0] to $bts[-1]";
is($after->{recent_since}, $s2->{PanoptesRecentOldest}, 'recent_since = PanoptesRecentOldest');
{
    my $nd = events_get(\@q, headers => ['Accept' => 'application/x-ndjson']);
    my @files;
    for my $e (hist_sort(grep { $_->{sp} } @ev)) {
        my $f = $e->{stream} eq 'run' ? site_dir() . "/ev54-$$/telemetry.ndjson" : site_file_for($e->{ts});
        push @files, lines_by_seq($f)->{ $e->{seq} } // "missing $e->{id}";
    }
    is($nd->{body}, join('', map { "$_\n" } @files), 'NDJSON: the stored events\' file lines, byte for byte');
}
is(get("/current/$T-eph")->{code}, 200, 'the dropped ephemeral value is still current (the ring is not /current)');
is(events_get([type => "$T-eph", since => '10m'])->{body} =~ /"e1"|"e3"/ ? 1 : 0, 0,
    'type=eph: neither dropped ephemeral event');
{
    my $e4 = hist_post(type => "$T-eph", id => 'e4', sp => 0);
    my $r = events_get([type => "$T-eph", since => '10m']);
    lines_are($r->{lines}, [ $e4->{line} ], 'a new ephemeral event is found again');
    is(status_auto()->{PanoptesEventIdNext}, "$epoch-" . ($n0 + 6 + $k + 1), 'the ids went on: one per event');
    # A window across the ring's oldest: stored events before it (from
    # the files only) and after it (in the ring and in the file): each once.
    my $s4 = hist_post(type => "$T-st", id => 's4');
    my $s5 = hist_post(type => "$T-st", id => 's5', mc => 0);
    my $x = events_get(\@q);
    lines_are($x->{lines}, [ map { $_->{line} } hist_sort((grep { $_->{sp} } @ev), $e4, $s4, $s5) ],
        'a window across the ring\'s oldest: the stored events from the files, the newer ones once, and the new ephemeral one');
    my $f = events_follow([ @q, limit => 2 ]);
    lines_are($f->{lines}, $x->{lines}, '... and the same in pages of 2');
}

done_testing();
