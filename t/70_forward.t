# Forwarding to a real MQTT broker (SPEC §12.5, issue 13).  Debian's
# mosquitto is started on a loopback port, httpd is started again with
# `-c 'PanoptesTelemetryForward "|mosquitto_pub -l ..."'` (the suite's own
# configuration: several children, this run's MPM), and a mosquitto_sub
# collects what arrives:
#   (a) events from several clients at once, stored and ephemeral, site
#       and run: every one arrives, in id order, each line `{"id":"E-N",`
#       + its file form (byte for byte the file line for a stored one);
#   (b) the program killed with SIGKILL every 150 events: every event
#       still arrives, restarts and repeats are counted in server-status
#       and what arrived twice is no more than the repeats counted;
#   (c) a graceful restart in the middle of a stream: nothing lost;
#   (d) a program that cannot be found: a clear line in the error log,
#       POSTs answered as always.
# The usual server is started again at the end (END), whatever happened.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use JSON::PP ();
use POSIX ();
use File::Temp ();
use Time::HiRes ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;
use PTMTest qw(restore_server status_auto httpd_pid httpd_children server_snapshot
    error_log_size error_log_since wait_for_log crash_lines);
use PTMForward qw(kill_spawned start_broker broker_dropped lines_of);

my $MOSQ = '/usr/sbin/mosquitto';
plan skip_all => "no $MOSQ (make test installs mosquitto and mosquitto-clients)"
    unless -x $MOSQ && -x '/usr/bin/mosquitto_pub' && -x '/usr/bin/mosquitto_sub';

my $PORT  = $ENV{PTM_MQTT_PORT} || 18652;
my $TOPIC = "ptm/fwd-$$";
my $dir   = File::Temp::tempdir('ptm-fwd-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;
my $orig  = server_snapshot();
$orig->{test_pid} = $$;

END {
    kill_spawned();
    restore_server($orig, sub { });
}

# The broker and the subscriber.
my $got = "$dir/got.ndjson";
start_broker($dir, $PORT, $TOPIC, $got);

sub restart_with { return PTMForward::restart_with($orig, @_) }

my $PROGRAM = "|/usr/bin/mosquitto_pub -l -h 127.0.0.1 -p $PORT -t $TOPIC -q 1";
ok(restart_with($PROGRAM), 'httpd starts with PanoptesTelemetryForward');
my $epoch = (status_auto()->{PanoptesEventIdNext} // '') =~ /^(\d+)-/ ? $1 : '';

# Post $n events per client from $clients clients at once; returns the
# ids (n) acknowledged, from the answers' order of the ring: the POST
# answer has no id, so each event carries a unique tag and the ids come
# from what arrives.  Returns the tags.
my $tagseq = 0;
sub post_many {
    my ($clients, $n, $tag, $every) = @_;
    my @pids;
    for my $c (1 .. $clients) {
        my $pid = fork // die;
        if (!$pid) {
            my $bad = 0;
            for my $i (1 .. $n) {
                my $k = "$tag-$c-$i";
                my $store = $i % 3 ? 'true' : 'false';
                my $r = post_event(qq({"type":"fwd","data":{"k":"$k"},"store_permanently":$store}));
                $bad++ unless $r->{code} == 200;
                $every->($c, $i) if $every;
            }
            POSIX::_exit($bad ? 1 : 0);
        }
        push @pids, $pid;
    }
    my $ok = 1;
    for (@pids) { waitpid $_, 0; $ok = 0 if $? }
    return $ok;
}

sub arrived { return lines_of($got) }

sub tags_of { my ($l) = @_; return map { $_->[1] =~ /"k":"([^"]+)"/ ? ($1) : () } @$l }

# Wait until every tag of @want has arrived.
sub wait_tags {
    my ($timeout, @want) = @_;
    my $end = Time::HiRes::time() + $timeout;
    my %missing;
    while (1) {
        my %have = map { $_ => 1 } tags_of(arrived());
        %missing = map { $_ => 1 } grep { !$have{$_} } @want;
        last if !%missing || Time::HiRes::time() > $end;
        Time::HiRes::sleep(0.2);
    }
    return scalar keys %missing;
}

sub tags { my ($tag, $c, $n) = @_; return map { my $x = $_; map { "$tag-$x-$_" } 1 .. $n } 1 .. $c }

# The stored lines of the site and run files, as a set.
sub file_line_set {
    my %s;
    for my $f (glob(site_dir() . '/site_*.ndjson'), glob(site_dir() . '/*/telemetry.ndjson')) {
        open my $fh, '<', $f or next;
        while (<$fh>) { chomp; $s{$_} = 1 }
    }
    return \%s;
}

# (a) several clients, stored and ephemeral, site then run.
ensure_no_run();
ok(post_many(4, 30, 'a'), '(a) every POST answered 200 (site)');
my $run = start_run('{"run_id":"fwd-70-' . $$ . '"}');
ok(post_many(4, 30, 'ar'), '(a) every POST answered 200 (run)');
stop_run();
my @want_a = (tags('a', 4, 30), tags('ar', 4, 30));
is(wait_tags(30, @want_a), 0, '(a) every event arrived through the broker');
{
    my $l = arrived();
    my %seen;
    my @mine = grep { $_->[1] =~ /"k":"ar?-/ } @$l;
    is(scalar(@mine), scalar(@want_a), '(a) each exactly once');
    my $inorder = 1;
    for my $i (1 .. $#$l) { $inorder = 0 if $l->[$i][0] <= $l->[$i - 1][0] }
    ok($inorder, '(a) in id order');
    my $files = file_line_set();
    my ($idfirst, $same, $stored, $ephemeral, $json) = (1, 1, 0, 0, 1);
    for my $m (@mine) {
        my ($n, $line) = @$m;
        $idfirst = 0 unless $line =~ /^\{"id":"$epoch-\d+","seq":\d+,"ts":"/;
        (my $file = $line) =~ s/^\{"id":"[^"]*",/{/;
        $json = 0 unless eval { JSON::PP->new->decode($line); 1 };
        if ($files->{$file}) { $stored++ } else { $ephemeral++ }
    }
    ok($idfirst, '(a) "id" first, this state\'s epoch, then "seq"');
    ok($json, '(a) every line is JSON');
    # 2 of every 3 events are stored: their lines are the file's.
    is($stored, 2 * 4 * 30 * 2 / 3, '(a) a stored event\'s line is its file line after the id');
    is($ephemeral, 4 * 30 * 2 / 3, '(a) ephemeral events are forwarded too');
    like(join('', map { $_->[1] } grep { $_->[1] =~ /"k":"ar-/ } @mine), qr/"stream":"run"/, '(a) run events carry "stream":"run"');
}

# (b) the program killed every 150 events.
sub program_pids {
    my @p;
    for my $k (httpd_children()) {
        open my $fh, '<', "/proc/$k/cmdline" or next;
        my $c = <$fh> // '';
        push @p, $k if $c =~ /^\/usr\/bin\/mosquitto_pub\0/;
    }
    return @p;
}
my $before = status_auto();
my $kills = 0;
my $killer = sub {
    my ($c, $i) = @_;
    if ($c == 1 && $i % 150 == 0) {
        # A restart waits out a second after a start: wait for the new one.
        my $end = Time::HiRes::time() + 5;
        my @p;
        Time::HiRes::sleep(0.1) until (@p = program_pids()) || Time::HiRes::time() > $end;
        if (@p && kill KILL => @p) {
            open my $k, '>>', "$dir/kills" or die; print $k "x"; close $k;
        }
    }
};
ok(post_many(2, 600, 'b', $killer), '(b) every POST answered 200 while the program dies');
$kills = -s "$dir/kills" || 0;
cmp_ok($kills, '>=', 3, "(b) the program was killed $kills times");
is(wait_tags(60, tags('b', 2, 600)), 0, '(b) every event arrived');
{
    # The last kill may come with the last POST, and the parent restarts
    # the program a second after its start at the soonest: wait for it.
    my ($st, $restarts);
    my $end = Time::HiRes::time() + 10;
    while (1) {
        $st = status_auto();
        $restarts = $st->{PanoptesForwardRestarts} - $before->{PanoptesForwardRestarts};
        last if $restarts >= $kills || Time::HiRes::time() > $end;
        Time::HiRes::sleep(0.2);
    }
    cmp_ok($restarts, '>=', $kills, "(b) server-status counts the restarts ($restarts)");
    my $repeats = $st->{PanoptesForwardRepeats} - $before->{PanoptesForwardRepeats};
    my %n;
    $n{$_}++ for grep { /^b-/ } tags_of(arrived());
    my $twice = grep { $n{$_} > 1 } keys %n;
    my $extra = 0;
    $extra += $n{$_} - 1 for keys %n;
    cmp_ok($extra, '<=', $repeats, "(b) what arrived twice ($extra) is within the repeats counted ($repeats)");
    like($st->{PanoptesForwardLastError}, qr/ended \(exit code or signal 9\)|pipe is full/, '(b) last error says why lines waited');
}

# (c) a graceful restart in the middle of a stream.
{
    my $pid = fork // die;
    if (!$pid) { POSIX::_exit(post_many(2, 300, 'c') ? 0 : 1) }
    Time::HiRes::sleep(0.3);
    kill USR1 => httpd_pid();
    waitpid $pid, 0;
    is($?, 0, '(c) every POST answered 200 across the graceful restart');
    is(wait_tags(60, tags('c', 2, 300)), 0, '(c) every event arrived');
}

# (d) a program that does not exist.
{
    my $off = error_log_size();
    ok(restart_with('|/nonexistent/panoptes-forwarder --x'), '(d) httpd starts with a missing program');
    ok(wait_for_log($off, qr/PanoptesTelemetryForward .*nonexistent.*not found or not executable/, 10),
       '(d) the error log says the program is not found');
    # More than the pipe holds (64 KiB), and time for the thread to find
    # it full: the reason shown stays why no program reads it.
    ok(post_many(2, 200, 'd'), '(d) every POST answered 200');
    Time::HiRes::sleep(1);
    like(status_auto()->{PanoptesForwardLastError} // '', qr/cannot start the program/, '(d) server-status says why');
}

# (e) a program that ends at once, with exit code 3: started again once a
# second, its end reported as it is (httpd gives the code or the signal, not
# which), POSTs unaffected.
{
    my $off = error_log_size();
    ok(restart_with('|$exit 3'), '(e) httpd starts with a program that exits at once');
    my $r0 = status_auto()->{PanoptesForwardRestarts} // 0;
    Time::HiRes::sleep(3.5);
    my $st = status_auto();
    my $n = ($st->{PanoptesForwardRestarts} // 0) - $r0;
    ok($n >= 1 && $n <= 5, "(e) started again about once a second ($n times in 3.5 s)");
    # (server-status keeps the last error only: while the program runs,
    # that may be the full pipe.)
    ok(wait_for_log($off, qr/PanoptesTelemetryForward \|\$exit 3: the program ended \(exit code or signal 3\)/, 5),
       '(e) the error log: the program ended (exit code or signal 3)');
    ok(post_many(2, 20, 'e'), '(e) every POST answered 200');
}

# (f) PanoptesTelemetryForwardUser: the program runs as that user, not as
# httpd's User (whose other processes, a neighbour web application, could
# signal or trace it), and still gets every event.
SKIP: {
    skip '(f) httpd does not start as root here', 6 unless $> == 0;
    my $nobody = getpwnam('nobody');
    skip '(f) no user nobody', 6 unless defined $nobody;
    my $fdir = "$dir/f";
    mkdir $fdir or die "$fdir: $!";
    chmod 01777, $fdir;
    my $file = "$fdir/got";
    ok(restart_with("|\$exec cat >> $file", 'PanoptesTelemetryForwardUser nobody'),
       '(f) httpd starts with PanoptesTelemetryForwardUser nobody');
    my ($prog, $uid, $gid, $groups);
    my $end = Time::HiRes::time() + 5;
    until ($prog || Time::HiRes::time() > $end) {
        ($prog) = grep { (readlink("/proc/$_/exe") // '') =~ m{/cat$} } httpd_children();
        Time::HiRes::sleep(0.1) unless $prog;
    }
    if ($prog && open my $st, '<', "/proc/$prog/status") {
        while (<$st>) {
            $uid = (split)[1] if /^Uid:/;
            $gid = (split)[1] if /^Gid:/;
            $groups = join ' ', sort { $a <=> $b } split ' ', $1 if /^Groups:\s*(.*)$/;
        }
    }
    is($uid, $nobody, "(f) the program runs as nobody (uid $nobody), not as httpd's User");
    is($gid, (getpwnam('nobody'))[3], '(f) in nobody\'s primary group');
    # Its own supplementary groups, none of the root parent's (APR's fork
    # sets only the uid and gid).
    my $want = join ' ', sort { $a <=> $b } split ' ', `id -G nobody`;
    is($groups, $want, "(f) with nobody's groups ($want), none of root's");
    ok(post_many(2, 20, 'f'), '(f) every POST answered 200');
    $end = Time::HiRes::time() + 10;
    my %seen;
    until (keys %seen == 40 || Time::HiRes::time() > $end) {
        %seen = map { $_ => 1 } tags_of(lines_of($file));
        %seen = map { $_ => 1 } grep { /^f-/ } keys %seen;
        Time::HiRes::sleep(0.2);
    }
    is(scalar(keys %seen), 40, '(f) every event reached the program');
}

is(broker_dropped($dir), 0, 'the broker dropped nothing (all of the above is the module\'s)');
is(scalar(crash_lines()), 0, 'no crash in the error log');
done_testing();
