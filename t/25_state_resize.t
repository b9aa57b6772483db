# A larger PanoptesTelemetryStateSize on a full disk (SPEC §11.4: a full
# disk is never a parent that cannot start).  A resize writes the state
# anew at its new size next to the old file; an earlier version refused to
# start when that file could not be allocated, though the old state was
# intact.  With httpd stopped, the state directory gets a tmpfs of its own
# that holds the suite's 4 MiB state (copied there as it was) but not
# 8 MiB more, and httpd is started with `-c "PanoptesTelemetryStateSize
# 8388608"` (the suite's own configuration says 4194304):
#   (a) httpd starts, with exactly one warning of the module, "cannot
#       resize the telemetry state <file> to 8388608 bytes (No space left
#       on device): it keeps its 4194304 bytes ...", and no CRIT line; the
#       state file is still 4 MiB, fully allocated, no partial file is
#       left; the current values, the run active before the stop and the
#       counters are all there, server-status ?auto says
#       PanoptesStateBytesTotal: 4194304, and the next events take the
#       next seqs;
#   (b) the tmpfs given room (remount), the next start with 8 MiB resizes
#       it: the file is 8 MiB, fully allocated, every value kept,
#       PanoptesStateBytesTotal: 8388608, no warning;
#   (c) the tmpfs unmounted, httpd starts again as the suite runs it (its
#       usual state directory and size) and the run is stopped.
# All of this is undone, even when this file dies half-way (END).
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use LWP::UserAgent ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;
use PTMTest qw(restore_server status_auto httpd_pid server_snapshot start_server stop_server server_answers
    error_log_size error_log_since wait_for_log state_dir state_file
    crit_lines crash_lines mount_tmpfs blocks_of);

my $STATE_SIZE = 4194304;       # PanoptesTelemetryStateSize of the suite
my $RING = 1048576;             # PanoptesTelemetryRecent of the suite
my $FILE_SIZE = $STATE_SIZE + $RING;    # the state file holds both
my $BIG        = 8388608;       # what this file asks for
my $sdir  = state_dir();
my $sfile = state_file();
my $run_id = "resize-25-$$";


# What the state holds that this file checks after each start.
my @KEYS = qw(PanoptesEventsSite PanoptesEventsRun PanoptesSeqSite PanoptesSeqRun
    PanoptesRunActive PanoptesRunId PanoptesRunStartedAt
    PanoptesCurrentTypesSite PanoptesCurrentTypesRun);
my @CURRENT = qw(keep-25 stored-25 run-25);

sub state_now {
    my $st = status_auto();
    return {
        auto    => $st,
        run     => get('/run')->{body},
        current => { map { $_ => get("/current/$_")->{body} } @CURRENT },
    };
}

sub state_kept {
    my ($before, $now, $name) = @_;
    for my $k (@KEYS) {
        is($now->{auto}{$k}, $before->{auto}{$k}, "$name: ?auto $k as before the stop");
    }
    is($now->{auto}{PanoptesRunId}, $run_id, "$name: the run started before the stop is active");
    json_is($now->{run}, $before->{run}, "$name: GET /run as before the stop");
    for my $t (@CURRENT) {
        json_is($now->{current}{$t}, $before->{current}{$t}, "$name: /current/$t as before the stop");
    }
}

sub state_dir_entries {
    opendir my $dh, $sdir or return "cannot read $sdir: $!";
    my @e = sort grep { !/^\.\.?$/ } readdir $dh;
    closedir $dh;
    return "@e";
}

sub module_warnings {
    my ($off) = @_;
    return grep { /\[panoptes_telemetry:warn\]/ } error_log_since($off);
}

ensure_no_run();
my $off0 = error_log_size();
my $keep = post_event('{"type":"keep-25","data":{"kept":true},"store_permanently":false}');
is($keep->{code}, 200, 'a current value that only the state holds');
my $stored = post_event('{"type":"stored-25","data":{"n":1}}');
is($stored->{code}, 200, 'a stored site event');
is(start_run('{"run_id":"' . $run_id . '","run_dir":"' . $run_id . '"}')->{code}, 200, 'a run started');
my $r0 = post_event('{"type":"run-25","data":{"n":1}}');
is($r0->{code}, 200, 'a run event') or diag $r0->{body};

my $orig = server_snapshot();
$orig->{test_pid} = $$;
my $big = { %$orig, argv => [ @{ $orig->{argv} }, '-c', "PanoptesTelemetryStateSize $BIG" ] };
my ($mounted, $unusual);

END {
    # Never leave the tmpfs mounted, the server with 8 MiB, a run active
    # or the server down for later files.
    local $?;
    restore_server($orig, ($mounted || $unusual) ? sub {
        system('umount', $sdir) == 0 or system('umount', '-l', $sdir) if $mounted;
    } : undef);
    eval { ensure_no_run() } if $orig && $$ == $orig->{test_pid} && httpd_pid();
}

my $before = state_now();
is($before->{auto}{PanoptesStateBytesTotal}, $STATE_SIZE, "the usual state: PanoptesStateBytesTotal $STATE_SIZE");

SKIP: {
    ok(stop_server(60), 'httpd stopped');
    ok(-f $sfile && -s $sfile == $FILE_SIZE, "the state file is $FILE_SIZE bytes");
    my $copy = read_bytes($sfile);
    # Room for the 4 MiB state and 2 MiB more: not for a new 8 MiB file.
    skip 'cannot mount a tmpfs here: no full-disk test', 1
        unless mount_tmpfs($sdir, '6m', mode => 0700);
    $mounted = 1;
    pass("a 6 MiB tmpfs on $sdir");
    {
        open my $fh, '>:raw', $sfile or die "$sfile: $!";
        print {$fh} $copy or die "$sfile: $!";
        close $fh or die "$sfile: $!";
        chmod 0600, $sfile;
    }
    undef $copy;
    ok(-s $sfile == $FILE_SIZE && (blocks_of($sfile) // 0) >= $FILE_SIZE,
        '... holding the state as it was, fully allocated');

    # --- (a) 8 MiB asked for, no room for it ----------------------------------------------
    my $off = error_log_size();
    $unusual = 1;
    my $pid = start_server($big, 30);
    ok($pid, "(a) httpd starts with PanoptesTelemetryStateSize $BIG and no room for it");
    my @crit = crit_lines($off);
    ok(!@crit, '(a) no CRIT line') or diag join "\n", @crit;
    my @warn = module_warnings($off);
    ok(@warn == 1 && $warn[0] =~ /cannot resize the telemetry state \Q$sfile\E to @{[$BIG + $RING]} bytes \(No space left on device\): it keeps its $FILE_SIZE bytes/,
        "(a) exactly one warning: cannot resize the telemetry state <file> to @{[$BIG + $RING]} bytes (No space left on device): it keeps its $FILE_SIZE bytes ...")
        or diag "module warnings:\n" . join("\n", @warn) . "\nall lines:\n" . join("\n", error_log_since($off));
    diag "(a) $warn[0]" if @warn;
    my ($info) = grep { /telemetry state \Q$sfile\E: / } error_log_since($off);
    diag '(a) ' . ($info // 'no line about the state file');
    is(-s $sfile, $FILE_SIZE, "(a) the state file is still $FILE_SIZE bytes");
    cmp_ok(blocks_of($sfile) // 0, '>=', $FILE_SIZE, '(a) ... fully allocated');
    is(state_dir_entries(), 'state', '(a) no partial file left in the state directory');
    SKIP: {
        skip 'httpd did not start', 1 unless $pid;
        my $now = state_now();
        is($now->{auto}{PanoptesStateBytesTotal}, $STATE_SIZE, "(a) ?auto PanoptesStateBytesTotal: $STATE_SIZE");
        state_kept($before, $now, '(a)');
        my $r = post_event('{"type":"run-25","data":{"n":2}}');
        is($r->{code}, 200, '(a) a run event is accepted') or diag $r->{body};
        is($r->{j}{seq}, $before->{auto}{PanoptesSeqRun} + 1, '(a) ... with the next run seq');
        $r = post_event('{"type":"keep-25","data":{"kept":2},"store_permanently":false}');
        is($r->{code}, 200, '(a) a current value can be changed');
        ok(!crash_lines($off), '(a) no crash logged');
        $before = state_now();      # as (a) left it
    }

    # --- (b) room again: the next start resizes -------------------------------------------
    SKIP: {
        ok(stop_server(60), '(b) httpd stopped');
        is(system('mount', '-o', 'remount,size=16m', $sdir), 0, '(b) the tmpfs has 16 MiB now');
        my $off = error_log_size();
        my $pid = start_server($big, 60);
        ok($pid, "(b) httpd starts with PanoptesTelemetryStateSize $BIG")
            or skip 'httpd did not start', 1;
        like(wait_for_log($off, qr/telemetry state \Q$sfile\E: /, 5) // '', qr/: recovered and resized /,
            '(b) the state was recovered and resized');
        ok(!grep({ /cannot resize/ } error_log_since($off)), '(b) no warning about the size');
        ok(!crit_lines($off), '(b) no CRIT line');
        is(-s $sfile, $BIG + $RING, "(b) the state file is $BIG + $RING bytes");
        cmp_ok(blocks_of($sfile) // 0, '>=', $BIG + $RING, '(b) ... fully allocated');
        is(state_dir_entries(), 'state', '(b) nothing else in the state directory');
        my $now = state_now();
        is($now->{auto}{PanoptesStateBytesTotal}, $BIG, "(b) ?auto PanoptesStateBytesTotal: $BIG");
        state_kept($before, $now, '(b)');
        my $r = post_event('{"type":"run-25","data":{"n":3}}');
        is($r->{j}{seq}, $before->{auto}{PanoptesSeqRun} + 1, '(b) the next run event takes the next run seq');
        ok(!crash_lines($off), '(b) no crash logged');
    }

    # --- (c) the usual server again -------------------------------------------------------
    ok(stop_server(60), '(c) httpd stopped');
    is(system('umount', $sdir), 0, '(c) tmpfs unmounted');
    $mounted = 0;
    $off = error_log_size();
    ok(start_server($orig, 60), '(c) httpd starts as the suite runs it');
    $unusual = 0;
    like(wait_for_log($off, qr/telemetry state \Q$sfile\E: /, 5) // '', qr/: recovered \(\Q$FILE_SIZE\E bytes\)/,
        "(c) with its usual state ($FILE_SIZE bytes)");
    is(status_auto()->{PanoptesStateBytesTotal}, $STATE_SIZE, "(c) ?auto PanoptesStateBytesTotal: $STATE_SIZE");
    json_is(get('/current/keep-25')->{body}, $keep->{body},
        '(c) /current/keep-25 as the usual state holds it (not as the tmpfs had it)');
    is(stop_run()->{code}, 200, '(c) the run stopped');
    is(post_event('{"type":"stored-25","data":{"n":2}}')->{code}, 200, '(c) events are accepted');
}

my @crash = crash_lines($off0);
ok(!@crash, 'no crash in the error log') or diag join "\n", @crash[0 .. ($#crash < 9 ? $#crash : 9)];

all_answers_json();

done_testing();
