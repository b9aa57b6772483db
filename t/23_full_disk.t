# A full disk (SPEC §11.4, issue 9 item 1).  An earlier version made the
# state file with ftruncate (sparse) and mapped it MAP_SHARED: the first
# store into a page without a block raised SIGBUS on a full file system,
# in every child that took the lock, in the repair, and in a root parent
# that restarted.  Now every block of the state is allocated before it is
# mapped.  With httpd stopped, the state directory and the site directory
# each get a small tmpfs of their own (the state's just large enough for
# PanoptesTelemetryStateSize, 4 MiB in t/conf/extra.conf.in):
#   (a) the new state file is fully allocated at start; with both file
#       systems filled to the last block, 100 kB current values that are
#       not stored (they change the state only) answer 200 until the state
#       is full, then 507; stored events answer 500 {"detail": "Cannot
#       write <file>: No space left on device"}; no child crashes (no
#       AH00052, exit signal or bus error in the error log) and the state
#       needs no repair; once the filler is removed, stored events work
#       again without a restart and take the next seq;
#   (b) a start that cannot allocate the state refuses, with exactly one
#       CRIT line naming the state file and the cause, leaves no partial
#       file behind, and starts normally once there is room;
#   (c) the suite's own state file, made sparse as an earlier version
#       left it, is recovered and fully allocated at the next start.
# The tmpfs are unmounted and the server started again with its usual
# state, even when this file dies half-way (END).
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use LWP::UserAgent ();
use Time::HiRes ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;
use PTMTest qw(restore_server status_auto httpd_pid server_snapshot start_server stop_server server_answers
    error_log_size error_log_since wait_for_log state_dir state_file start_refused
    crit_lines crash_lines mount_tmpfs fill_fs blocks_of);

my $STATE_SIZE = 4194304;       # PanoptesTelemetryStateSize of the suite
my $RING = 1048576;             # PanoptesTelemetryRecent of the suite
my $FILE_SIZE = $STATE_SIZE + $RING;    # the state file holds both
my $site  = site_dir();
my $sdir  = state_dir();
my $sfile = state_file();
my ($uid, $gid) = server_user_ids();
ok(defined $uid && $uid != 0, 'the children run as an unprivileged User');

ensure_no_run();
# A value the usual state holds: it must be there again at the end.
my $keep = post_event('{"type":"keep-23","data":{"kept":true},"store_permanently":false}');
is($keep->{code}, 200, 'a current value in the usual state');

my $orig = server_snapshot();
$orig->{test_pid} = $$;
my @mounted;

sub umount_all {
    my $ok = 1;
    for my $d (reverse @mounted) {
        next if system('umount', $d) == 0;
        $ok = 0;
        system('umount', '-l', $d);
    }
    @mounted = ();
    return $ok;
}

END {
    # Never leave the tmpfs mounted or the server down for later files.
    local $?;
    restore_server($orig, @mounted ? \&umount_all : undef);
}

# PanoptesTelemetryStateDir and the site directory on a tmpfs each, the
# state's just large enough (one tmpfs when a configuration keeps the
# state in the site directory, as earlier versions did).
sub mount_small {
    my %size = ($sdir => ($FILE_SIZE >> 10) + 256, $site => 1024);
    my %opt  = ($sdir => [mode => 0700], $site => [mode => 0755, uid => $uid, gid => $gid]);
    if ($sdir eq $site) {
        %size = ($sdir => $size{$sdir} + $size{$site});
        %opt = ($sdir => $opt{$site});
    }
    for my $d (sort keys %size) {
        mount_tmpfs($d, "$size{$d}k", @{ $opt{$d} }) or return 0;
        push @mounted, $d;
    }
    return 1;
}

my $n = 0;
sub ev {
    my ($type, %o) = @_;
    $n++;
    return '{"type":"' . $type . '","data":{"n":' . $n . (defined $o{pad} ? ',"pad":"' . $o{pad} . '"' : '') . '}'
        . ($o{ephemeral} ? ',"store_permanently":false' : '')
        . ($o{not_current} ? ',"make_current":false' : '') . '}';
}


# --- (a) a full disk while httpd runs ------------------------------------------------------
SKIP: {
    ok(stop_server(60), '(a) httpd stopped');
    skip 'cannot mount a tmpfs here: no full-disk test', 1 unless mount_small();
    pass("(a) tmpfs mounted on @mounted");
    my $off = error_log_size();
    my $pid = start_server($orig, 60);
    ok($pid, '(a) httpd starts with the state and site directories on small tmpfs')
        or skip 'httpd did not start', 1;
    like(wait_for_log($off, qr/telemetry state \Q$sfile\E: /, 5) // '', qr/: new \(\Q$FILE_SIZE\E bytes\)/,
        '(a) a new state file was made');
    cmp_ok(blocks_of($sfile) // 0, '>=', $FILE_SIZE,
        "(a) every block of the new state file is allocated ($FILE_SIZE bytes)");
    my $st0 = status_auto();

    # Some room used while there is room: a day file, a current value.
    my $first = post_event(ev('disk-23'));
    is($first->{code}, 200, '(a) a stored event while there is room') or diag $first->{body};
    my $day = site_file_for($first->{j}{ts} // '');
    my $last_seq = $first->{j}{seq} // 0;

    # Fill both file systems to the last block.
    my %filler;
    for my $d (@mounted) {
        $filler{$d} = "$d/filler-23";
        my $b = fill_fs($filler{$d});
        my $f = fill_fs("$filler{$d}.tail");       # nothing left after the first
        ok($f == 0, "(a) $d filled ($b bytes of filler)");
    }

    # A stored current event: the file cannot grow (5 kB: the line cannot
    # fit in what is left of the file's last page).
    my $fpad = 'f' x 5000;
    my $bytes = read_bytes($day);
    my $r = post_event(ev('disk-23', pad => $fpad));
    ok_json_error($r, 500, qr/^Cannot write \Q$day\E: No space left on device$/,
        '(a) full disk: a stored event is 500 {"detail": "Cannot write <day file>: No space left on device"}');
    diag '(a) detail: ' . ($r->{j}{detail} // $r->{body});
    is(read_bytes($day), $bytes, '(a) ... the day file is as it was');
    json_is(get('/current/disk-23')->{body}, $first->{body}, '(a) ... /current/disk-23 unchanged');

    # Values that only change the state: 100 kB each, a type each, until
    # the 4 MiB state is full.
    my $pad = 'p' x 100_000;
    my (%codes, @other, $ok, $first_full, $last_ok);
    for my $i (1 .. 60) {
        my $e = post_event(ev("eph-23-$i", pad => $pad, ephemeral => 1));
        $codes{ $e->{code} }++;
        if ($e->{code} == 200) {
            $ok++;
            $last_ok = $i;
            $last_seq = $e->{j}{seq};
        }
        elsif ($e->{code} == 507) {
            $first_full //= $e;
        }
        else {
            push @other, "eph-23-$i: $e->{code} " . substr($e->{body}, 0, 200)
                . ($e->{client_error} ? " ($e->{client_error})" : '');
        }
    }
    diag '(a) 100 kB ephemeral values: ' . join(', ', map { "$codes{$_} x $_" } sort keys %codes);
    ok(!@other, '(a) every 100 kB ephemeral value on the full disk was answered 200 or 507')
        or diag join "\n", @other[0 .. ($#other < 9 ? $#other : 9)];
    cmp_ok($ok // 0, '>=', 35, '(a) ... the whole 4 MiB state was usable (35 or more 100 kB values)');
    ok($first_full, '(a) ... until the state was full (507)');
    ok_json_error($first_full, 507, qr/\S/, '(a) ... 507 is JSON {"detail": ...}') if $first_full;
    if ($last_ok) {
        my $c = get("/current/eph-23-$last_ok");
        ok($c->{code} == 200 && ($c->{j}{data}{pad} // '') eq $pad,
            "(a) /current/eph-23-$last_ok holds its 100 kB value");
    }

    # A stored event that needs no state: still the disk.
    $r = post_event(ev('disk-23-nc', pad => $fpad, not_current => 1));
    ok_json_error($r, 500, qr/^Cannot write \Q$day\E: No space left on device$/,
        '(a) full disk and full state: a stored, not current event is 500 No space left on device');

    # Nothing crashed, nothing needed a repair, the parent is the same.
    my @crash = crash_lines($off);
    ok(!@crash, '(a) no child crashed (no AH00052, exit signal, bus error or segfault logged)')
        or diag join "\n", @crash[0 .. ($#crash < 9 ? $#crash : 9)];
    my $st1 = status_auto();
    is($st1->{PanoptesStateRepairs}, $st0->{PanoptesStateRepairs}, '(a) the state needed no repair');
    is(httpd_pid(), $pid, '(a) the same httpd parent runs');
    is(get('/health')->{code}, 200, '(a) /health answers');

    # Room again, no restart: stored events work and take the next seq.
    unlink values %filler, map { "$_.tail" } values %filler;
    $r = post_event(ev('disk-23-nc', pad => $fpad, not_current => 1));
    is($r->{code}, 200, '(a) filler removed: a stored event is accepted again') or diag $r->{body};
    my $want = $last_seq + 1;
    is($r->{j}{seq}, $want, '(a) ... with the next seq (the failures used none)');
    my ($lines, $complete) = file_lines(site_file_for($r->{j}{ts} // '') // $day);
    ok($complete && @$lines && $lines->[-1] =~ /^\{"seq":$want,/ && $lines->[-1] =~ /"type":"disk-23-nc"/,
        '(a) ... as the last, whole line of its day file');
    # Room in the state again: an overwrite frees a 100 kB value.
    $r = post_event(ev('eph-23-1'));
    is($r->{code}, 200, '(a) a current value overwritten with a small stored one');
    is(httpd_pid(), $pid, '(a) ... all without a restart');
    @crash = crash_lines($off);
    ok(!@crash, '(a) still no crash logged') or diag join "\n", @crash[0 .. ($#crash < 9 ? $#crash : 9)];
}

# --- (b) a start that cannot allocate the state --------------------------------------------
SKIP: {
    skip 'no tmpfs', 1 unless @mounted;
    ok(stop_server(60), '(b) httpd stopped');
    unlink $sfile;
    ok(!-e $sfile, '(b) state file removed');
    # Fill the state's file system, then leave 1 MiB: 4 MiB cannot fit.
    my $filler = "$sdir/filler-23";
    fill_fs($filler);
    truncate $filler, (-s $filler) - 1024 * 1024 or die "truncate $filler: $!";
    my $off = error_log_size();
    my $t0 = Time::HiRes::time();
    ok(start_refused($orig, 30), '(b) httpd refuses to start: every process exits, nothing answers');
    diag sprintf '(b) gave up after %.1f s', Time::HiRes::time() - $t0;
    my @crit = crit_lines($off);
    ok(@crit == 1 && index($crit[0], $sfile) >= 0
        && $crit[0] =~ /No space left on device/ && $crit[0] =~ /cannot allocate/,
        '(b) exactly one CRIT line: cannot allocate <state file>: No space left on device')
        or diag "crit lines:\n" . join("\n", @crit) . "\nall lines:\n" . join("\n", error_log_since($off));
    diag "(b) $crit[0]" if @crit;
    opendir my $dh, $sdir or die "$sdir: $!";
    my @left = sort grep { !/^\.\.?$/ } readdir $dh;
    closedir $dh;
    is("@left", 'filler-23', '(b) no state file and no partial file left in the state directory');
    ok(!crash_lines($off), '(b) no crash logged');
    stop_server(30) if httpd_pid();     # in case it did start

    unlink $filler;
    $off = error_log_size();
    ok(start_server($orig, 60), '(b) room again: httpd starts');
    like(wait_for_log($off, qr/telemetry state \Q$sfile\E: /, 5) // '', qr/: new /, '(b) ... with a new state');
    cmp_ok(blocks_of($sfile) // 0, '>=', $FILE_SIZE, '(b) ... fully allocated');
    is(post_event(ev('disk-23-b'))->{code}, 200, '(b) ... and events are accepted');
}

# --- (c) the usual state back, made sparse as an earlier version left it -------------------
{
    ok(stop_server(60), '(c) httpd stopped');
    ok(umount_all(), '(c) tmpfs unmounted') if @mounted;
    ok(-f $sfile && -s $sfile == $FILE_SIZE, "(c) the suite's own state file is there ($FILE_SIZE bytes)");
    # Copy it with holes where its blocks are zeros, as ftruncate left it.
    my $tmp = "$sfile.sparse-23";
    is(system('cp', '--sparse=always', $sfile, $tmp), 0, '(c) a sparse copy made');
    chmod 0600, $tmp;
    rename $tmp, $sfile or die "rename $tmp: $!";
    my $before = blocks_of($sfile);
    cmp_ok($before, '<', $FILE_SIZE, "(c) the state file is sparse ($before bytes allocated)");
    my $off = error_log_size();
    ok(start_server($orig, 60), '(c) httpd starts');
    like(wait_for_log($off, qr/telemetry state \Q$sfile\E: /, 5) // '', qr/: recovered /,
        '(c) the state was recovered in place');
    cmp_ok(blocks_of($sfile) // 0, '>=', $FILE_SIZE, '(c) ... and every block of it is allocated now');
    json_is(get('/current/keep-23')->{body}, $keep->{body}, '(c) the current value from before this file is back');
    ok(!crash_lines($off), '(c) no crash logged');
}

all_answers_json();

done_testing();
