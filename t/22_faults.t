# Write failures (SPEC §3.6 step 4, §4, §5, §8.10, §11.4): a full disk, a
# run directory the server user cannot write, one deleted or replaced by a
# regular file mid-run, and a site day file that cannot be opened.  Each
# failure answers 500 {"detail": "Cannot write|open <path>: <strerror>"},
# logs exactly one error-log line, leaves the file as it was (no partial
# line), uses no seq and changes nothing in /current; once the cause is
# gone the next event works by itself and takes the next seq.
#
# The tests run as root; httpd's children run as the User Apache::Test
# picked (nobody), which is who the permissions below lock out.  The full
# disk is a 64 kB tmpfs mounted inside PanoptesTelemetryRunRoot (skipped
# when mount is not permitted).
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use File::Copy ();
use File::Path ();
use Time::HiRes ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;
use PTMTest qw(error_log_size error_log_since);

my $site = site_dir();
my $user = Apache::Test::vars('user');
my ($uid, $gid) = server_user_ids();
ok(defined $uid && $uid != 0, "httpd's children run as $user (uid " . ($uid // '?') . '), not root');

ensure_no_run();

my (@cleanup, $mounted);
END {
    local $?;
    $_->() for reverse @cleanup;
    system('umount', '-l', $mounted) if $mounted;
}

my $n = 0;
sub ev {
    my ($type, %o) = @_;
    $n++;
    return '{"type":"' . $type . '","data":{"n":' . $n . (defined $o{pad} ? ',"pad":"' . $o{pad} . '"' : '') . '}'
        . ($o{ephemeral} ? ',"store_permanently":false' : '')
        . ($o{not_current} ? ',"make_current":false' : '') . '}';
}

# Module error lines since $off (the error log may carry other noise).
sub module_errors {
    my ($off) = @_;
    return grep { /\[panoptes_telemetry:(?:error|crit|alert|emerg|warn)\]/ } error_log_since($off);
}

# POST an event that must fail: 500 with a detail matching $re, exactly
# one error-log line saying so, the file (if given) byte for byte as it
# was, and /current/$type unchanged.  Returns the answer.
sub fails_cleanly {
    my ($name, $type, $re, $file, %o) = @_;
    my $cur0  = get("/current/$type");
    my $bytes = defined $file ? read_bytes($file) : undef;
    my $off   = error_log_size();
    my $r = post_event(ev($type, %o));
    ok_json_error($r, 500, $re, "$name: 500 {\"detail\": $re}");
    diag "$name: detail: " . ($r->{j}{detail} // '');
    Time::HiRes::sleep(0.2);
    my @l = module_errors($off);
    my $detail = $r->{j} ? $r->{j}{detail} // "\0" : "\0";
    ok(@l == 1 && index($l[0], ' -> 500 ') >= 0 && index($l[0], $detail) >= 0,
        "$name: exactly one error-log line, with the cause")
        or diag "new module lines:\n" . join("\n", @l);
    if (defined $file) {
        my $now = read_bytes($file);
        ok((defined $bytes ? defined $now && $now eq $bytes : !defined $now),
            "$name: the file is as it was (nothing written, no partial line)")
            or diag 'before ' . (defined $bytes ? length($bytes) . ' bytes' : 'absent')
                . ', after ' . (defined $now ? length($now) . ' bytes, ends '
                . (substr($now, -1) eq "\n" ? 'with' : 'without') . ' a newline' : 'absent');
    }
    my $cur1 = get("/current/$type");
    ok($cur1->{code} == $cur0->{code} && $cur1->{body} eq $cur0->{body}, "$name: /current/$type unchanged")
        or diag "before $cur0->{code} $cur0->{body}\nafter  $cur1->{code} $cur1->{body}";
    return $r;
}

# POST a stored event that must work and take seq $want; its line must be
# the last line of $file (which must end with a whole line).
sub works {
    my ($name, $type, $want, $file, %o) = @_;
    my $r = post_event(ev($type, %o));
    is($r->{code}, 200, "$name: 200") or diag $r->{body};
    is($r->{j}{seq}, $want, "$name: seq $want (the failure used none)");
    if (defined $file && !$o{ephemeral}) {
        my ($lines, $complete) = file_lines($file);
        ok($complete && @$lines && $lines->[-1] =~ /^\{"seq":\Q$want\E,/ && $lines->[-1] =~ /"data":\{"n":$n[,}]/,
            "$name: stored as the last, whole line of " . substr($file, length($site) + 1));
    }
    return $r;
}

# --- (a) a full disk -------------------------------------------------------------------------
SKIP: {
    my $mnt = runroot_dir() . '/full-22';
    mkdir_p($mnt);
    my $rc = system('mount', '-t', 'tmpfs', '-o', "size=64k,mode=0755,uid=$uid,gid=$gid", 'ptm-full-22', $mnt);
    skip "cannot mount a tmpfs at $mnt (mount exited " . ($? >> 8) . '): no disk-full test here', 1 if $rc != 0;
    $mounted = $mnt;
    my $file = "$mnt/telemetry.ndjson";
    my $st = start_run('{"run_dir":"' . $mnt . '","run_id":"FULL22"}');
    is($st->{code}, 200, "(a) run started in a 64 kB tmpfs ($mnt)") or diag $st->{body};
    my $pad = 'f' x 3000;
    my ($last, $full);
    for (1 .. 60) {
        my $cur0 = get('/current/full22');
        my $bytes = read_bytes($file);
        my $off = error_log_size();
        my $r = post_event(ev('full22', pad => $pad));
        if ($r->{code} == 200) { $last = $r; next }
        $full = { r => $r, cur0 => $cur0, bytes => $bytes, off => $off };
        last;
    }
    ok($last && $full, '(a) events fill the disk until one fails: '
        . ($last ? "last accepted seq $last->{j}{seq}" : 'none accepted'));
    skip 'the disk never filled', 1 unless $last && $full;
    my $r = $full->{r};
    ok_json_error($r, 500, qr/^Cannot write \Q$file\E: No space left on device$/,
        '(a) 500 {"detail": "Cannot write <file>: No space left on device"}');
    diag '(a) detail: ' . ($r->{j}{detail} // $r->{body});
    Time::HiRes::sleep(0.2);
    my @l = module_errors($full->{off});
    ok(@l == 1 && index($l[0], ' -> 500 ') >= 0 && index($l[0], 'No space left on device') >= 0,
        '(a) exactly one error-log line, naming the cause') or diag "new module lines:\n" . join("\n", @l);
    my $now = read_bytes($file);
    ok(defined $now && $now eq $full->{bytes}, '(a) the file is as it was before the failed event (no partial line)')
        or diag 'before ' . length($full->{bytes}) . ' bytes, after ' . length($now // '') . ' bytes';
    my ($lines, $complete) = file_lines($file);
    ok($complete && $lines->[-1] =~ /^\{"seq":$last->{j}{seq},/, "(a) the file ends with the whole line of seq $last->{j}{seq}");
    my $cur1 = get('/current/full22');
    is($cur1->{body}, $full->{cur0}{body}, '(a) /current/full22 unchanged by the failure');
    json_is($cur1->{body}, $last->{body}, '(a) ... it is the last accepted event');
    # A second try, still full: the same.
    fails_cleanly('(a) still full', 'full22', qr/^Cannot write \Q$file\E: No space left on device$/, $file,
                  pad => $pad);
    # Room again.
    ok(system('mount', '-o', 'remount,size=1m', $mnt) == 0, '(a) remounted with 1 MB');
    works('(a) after making room', 'full22', $last->{j}{seq} + 1, $file, pad => $pad);
    is(stop_run()->{code}, 200, '(a) run stopped');
    # No process may still hold the run's file once the run is over.
    my $umounted = system('umount', $mnt) == 0;
    ok($umounted, "(a) $mnt unmounted once the run stopped");
    undef $mounted if $umounted;       # else END detaches it
}

# --- (b) a run directory the server user cannot write ---------------------------------------------
{
    ensure_no_run();
    my $dir = "$site/perm-22";
    my $file = "$dir/telemetry.ndjson";
    is(start_run('{"run_dir":"perm-22","run_id":"PERM22"}')->{code}, 200, '(b) run PERM22 started');
    ok(-d $dir && !-e $file, '(b) run directory made, no file yet');
    my $e = post_event(ev('perm22', ephemeral => 1));
    is($e->{code}, 200, '(b) an ephemeral event is current');
    chmod 0555, $dir;
    push @cleanup, sub { chmod 0755, $dir };
    fails_cleanly('(b) directory mode 0555', 'perm22',
        qr/^Cannot (?:open|write) \Q$file\E: Permission denied$/, $file);
    ok(!-e $file, '(b) no file created');
    my $e2 = post_event(ev('perm22-eph', ephemeral => 1));
    is($e2->{j}{seq}, $e->{j}{seq} + 1, '(b) an ephemeral event still works and takes the next seq');
    chmod 0755, $dir;
    works('(b) mode 0755 again', 'perm22', $e->{j}{seq} + 2, $file);
    my ($lines) = file_lines($file);
    is(scalar(@$lines), 1, '(b) the file has that one line');
    is(stop_run()->{code}, 200, '(b) run stopped');
}

# --- (c) the run directory deleted mid-run, (d) replaced by a regular file ---------------------
{
    my $dir = "$site/gone-22";
    my $file = "$dir/telemetry.ndjson";
    is(start_run('{"run_dir":"gone-22","run_id":"GONE22"}')->{code}, 200, '(c) run GONE22 started');
    my $e1 = post_event(ev('gone22'));
    is($e1->{code}, 200, '(c) first event stored');
    ok(-f $file, '(c) run file exists');
    File::Path::remove_tree($dir);
    ok(!-e $dir, '(c) run directory deleted');
    works('(c) next event', 'gone22', $e1->{j}{seq} + 1, $file);
    ok(-d $dir, '(c) the directory was recreated');
    my ($lines) = file_lines($file);
    is(scalar(@$lines), 1, '(c) ... with a new file holding just that event');

    File::Path::remove_tree($dir);
    open my $fh, '>', $dir or die "$dir: $!";
    print {$fh} "not a directory\n";
    close $fh;
    push @cleanup, sub { unlink $dir if -f $dir };
    fails_cleanly('(d) run directory replaced by a regular file', 'gone22',
        qr/^Cannot (?:open|write) \Q$dir\E(?:\/telemetry\.ndjson)?: (?:Not a directory|File exists)$/, undef);
    is(read_bytes($dir), "not a directory\n", '(d) the regular file is untouched');
    unlink $dir;
    works('(d) file removed, next event', 'gone22', $e1->{j}{seq} + 2, $file);
    is(stop_run()->{code}, 200, '(d) run stopped');
}

# --- (e) the site day file ------------------------------------------------------------------
SKIP: {
    my $s1 = post_event(ev('site22'));
    is($s1->{code}, 200, '(e) a site event');
    my $file = site_file_for($s1->{j}{ts});
    ok(-f $file, '(e) in ' . substr($file, length($site) + 1));
    my $mode = (stat $file)[2] & 07777;
    my $same_day = sub {
        my $ts = post_event(ev('site22-probe', ephemeral => 1, not_current => 1));
        return site_file_for($ts->{j}{ts}) eq $file ? $ts : undef;
    };
    my $p = $same_day->() or skip 'the day file changed at local noon', 1;
    my $seq = $p->{j}{seq};
    chmod 0444, $file;
    push @cleanup, sub { chmod $mode, $file if -f $file };
    fails_cleanly('(e) day file mode 0444', 'site22', qr/^Cannot (?:open|write) \Q$file\E: Permission denied$/, $file);
    chmod $mode, $file;
    works('(e) writable again', 'site22', $seq + 1, $file);

    rename $file, "$file.aside-22" or die "rename $file: $!";
    mkdir $file or die "mkdir $file: $!";
    push @cleanup, sub { if (-d $file) { rmdir $file; rename "$file.aside-22", $file } };
    fails_cleanly('(e) day file replaced by a directory', 'site22',
        qr/^Cannot (?:open|write) \Q$file\E: Is a directory$/, undef);
    rmdir $file;
    rename "$file.aside-22", $file or die "rename back: $!";
    works('(e) file back', 'site22', $seq + 2, $file);
    my ($lines, $complete) = file_lines($file);
    ok($complete, '(e) the day file ends with a whole line');
}

# --- (f) the site day file rotated or deleted under children that hold it open ------------
# Each child keeps the site file open between events; a rename (logrotate)
# or an unlink must send the next line of every child to a new file at the
# path, as an open per event would, and leave the old file untouched.
SKIP: {
    my $s1 = post_event(ev('rot22'));
    is($s1->{code}, 200, '(f) a site event');
    my $file = site_file_for($s1->{j}{ts});
    # A new connection per request: the events reach every child.
    my @warm = map { post_event(ev('rot22')) } 1 .. 24;
    skip 'the day file changed at local noon', 1
        if grep { $_->{code} != 200 || site_file_for($_->{j}{ts}) ne $file } @warm;
    for my $how ('renamed', 'deleted') {
        my $aside = "$file.$how-22";
        if ($how eq 'renamed') {
            rename $file, $aside or die "rename $file: $!";
        }
        else {
            File::Copy::copy($file, $aside) or die "copy $file: $!";
            unlink $file or die "unlink $file: $!";
        }
        my $before = read_bytes($aside);
        my @r = map { post_event(ev('rot22')) } 1 .. 24;
        ok(!(grep { $_->{code} != 200 } @r), "(f) $how: 24 events accepted");
        my @seqs = map { $_->{j}{seq} } @r;
        skip 'the day file changed at local noon', 1
            if grep { site_file_for($_->{j}{ts}) ne $file } @r;
        my ($lines, $complete) = file_lines($file);
        my @got = map { /^\{"seq":(\d+),/ ? $1 : -1 } @$lines;
        ok($complete && "@got" eq "@seqs",
            "(f) $how: a new file at the path holds exactly those 24 lines, in order")
            or diag "want @seqs\ngot  @got";
        is(read_bytes($aside), $before, "(f) $how: the old file is untouched");
        # Put the lines back together for the files' later checks.
        my $tmp = "$file.join-22";
        open my $fh, '>:raw', $tmp or die "$tmp: $!";
        print $fh $before, read_bytes($file);
        close $fh or die "$tmp: $!";
        chmod 0644, $tmp;
        chown $uid, $gid, $tmp;
        rename $tmp, $file or die "rename $tmp: $!";
        unlink $aside;
    }
    works('(f) after both', 'rot22', post_event(ev('rot22', ephemeral => 1))->{j}{seq} + 1, $file);
}

all_answers_json();

done_testing();
