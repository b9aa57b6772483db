# PanoptesTelemetrySync On (SPEC §11.3 F12; issue 14, part 1: group
# commit).  httpd is started again with `-c "PanoptesTelemetrySync On"`
# and t/lib/ptm_syncspy.c preloaded: a disk that keeps only what
# fdatasync said it kept (it writes down each flush: size made durable,
# or a failure that may have lost whatever was not durable yet; and each
# ftruncate) and that fails the next fdatasync, once, with EIO, when told
# to.  Then:
#   (a) events are answered, and server-status counts their flushes;
#   (b) crash, site stream and run stream: eight clients post on kept-alive
#       connections; once a few hundred are answered, every httpd process
#       is SIGKILLed (stopped first, so none can finish anything after);
#       every answered event is in its file, byte for byte, inside what a
#       flush made durable before it was answered (a power cut at the kill
#       would have kept it); fewer flushes than events (they were shared);
#       httpd starts again and the counters go on;
#   (c) flush failures: while the clients post, eight writeback errors are
#       injected; every answer is 200 or a 500 {"detail": "Cannot sync
#       <file>: Input/output error; ..."}, never anything else, each 500
#       logged once; every 200 is inside what the disk kept, never in what
#       a failed flush may have lost (the flushes after a failure succeed:
#       only the board's poison keeps their lines from answering 200);
#   (d) graceful restart while the clients post: every request answered
#       200, every event durable (the board outlives the generation).
# httpd is started again as the suite runs it at the end, even when this
# file dies half-way (END).
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use Time::HiRes ();
use FindBin ();
use File::Path ();
use lib "$FindBin::Bin/lib";
use PTMTest;
use PTMTest qw(restore_server status_auto httpd_pid server_snapshot start_server stop_server
    kill_server server_answers error_log_size error_log_since wait_for_log
    start_clients wait_clients raise_flag wait_progress load_event load_outcome load_line
    check_events);

my $W = 8;
my $orig = server_snapshot();
$orig->{test_pid} = $$;

END {
    # The suite's own server (Sync Off, no preload) for the files after.
    local $?;
    restore_server($orig, sub { 1 });
}

my $site = site_dir();
my $cli = PTMTest::Client->new(timeout => 30);

# --- the spy ----------------------------------------------------------------
my $spydir = Apache::Test::vars('t_logs') . '/syncspy';
File::Path::rmtree($spydir);
mkdir $spydir or die "$spydir: $!";
chmod 0777, $spydir;            # the children (User) write and unlink here
my $spy = "$spydir/ptm_syncspy.so";
my $cc = $ENV{CC} || 'cc';
is(system($cc, '-shared', '-fPIC', '-O2', '-Wall', '-o', $spy,
           "$FindBin::Bin/lib/ptm_syncspy.c", '-ldl'), 0, "the spy is built ($cc)")
    or BAIL_OUT('cannot build t/lib/ptm_syncspy.c');
my $log = "$spydir/flushes.log";
my $failctl = "$spydir/fail-next";
open my $lf, '>', $log or die "$log: $!";
close $lf;
chmod 0666, $log;

my %env = %{ $orig->{env} };
$env{LD_PRELOAD} = join ' ', grep { defined && length } $env{LD_PRELOAD}, $spy;
$env{PTM_SYNCSPY_LOG} = $log;
$env{PTM_SYNCSPY_FAIL} = $failctl;
my $sync = { %$orig, env => \%env,
             argv => [ @{ $orig->{argv} }, '-c', 'PanoptesTelemetrySync On' ] };

# What the spy's disk kept: per "dev ino", the bytes made durable and the
# ranges a failed flush may have lost.
sub disk {
    my %d;
    open my $fh, '<', $log or die "$log: $!";
    while (<$fh>) {
        my ($what, $dev, $ino, $size) = /^(ok|fail|trunc) (\d+) (\d+) (-?\d+)$/ or next;
        my $f = $d{"$dev $ino"} //= { durable => 0, lost => [] };
        if ($what eq 'ok') {
            $f->{durable} = $size if $size > $f->{durable};
        }
        elsif ($what eq 'trunc') {
            # The bytes beyond are gone: what is written there later is new.
            $f->{durable} = $size if $size < $f->{durable};
            $f->{lost} = [ grep { $_->[0] < $_->[1] }
                           map { [ $_->[0], $_->[1] < $size ? $_->[1] : $size ] } @{ $f->{lost} } ];
        }
        elsif ($size > $f->{durable}) {
            push @{ $f->{lost} }, [ $f->{durable}, $size ];
        }
    }
    return \%d;
}

sub file_key {
    my ($path) = @_;
    my @st = stat $path or return undef;
    return "$st[0] $st[1]";
}

# Every acknowledged stored event of @$att: its line in its file, and that
# line inside what the disk kept.  Returns the problems.
sub not_durable {
    my ($att, $run_file) = @_;
    my $d = disk();
    my (%bytes, @bad);
    for my $r (grep { $_->{outcome} eq 'ack' && $_->{sp} } @$att) {
        my $path = $r->{stream} eq 'run' ? $run_file : site_file_for($r->{ts});
        my $line = load_line($r, $r->{stream}, $r->{seq}, $r->{ts}, $r->{rid}) . "\n";
        $bytes{$path} //= read_bytes($path) // '';
        my $at = index($bytes{$path}, $line);
        if ($at < 0) {
            push @bad, "$r->{id} ($r->{stream} seq $r->{seq}) is not in $path";
            next;
        }
        my $end = $at + length $line;
        my $f = $d->{ file_key($path) // '' } // { durable => 0, lost => [] };
        if ($end > $f->{durable}) {
            push @bad, "$r->{id} ($r->{stream} seq $r->{seq}) ends at byte $end of $path, "
                . "beyond the $f->{durable} a flush made durable";
        }
        for my $l (@{ $f->{lost} }) {
            push @bad, "$r->{id} ($r->{stream} seq $r->{seq}) at bytes $at..$end of $path, "
                . "which a failed flush may have lost ($l->[0]..$l->[1])"
                if $at < $l->[1] && $end > $l->[0];
        }
    }
    return @bad;
}

sub spy_lines {
    my ($what) = @_;
    open my $fh, '<', $log or return 0;
    return scalar grep { /^\Q$what\E / } <$fh>;
}

# Clients posting until the flag (or their first failed request).  With
# `ka`, one connection each, kept alive; not where httpd is killed (a
# request that got nothing on a kept-alive connection is sent again, which
# is right only when httpd never read it).
sub clients {
    my ($tag, $max, $ka) = @_;
    return start_clients($W, sub {
        my ($i, $ctl) = @_;
        my $c = PTMTest::Client->new(timeout => 30, keep_alive => $ka);
        my @out;
        for (my $n = 0; $n < $max && !$ctl->flag; $n++) {
            my $ev = load_event(id => "$tag-c$i-n$n", type => "$tag-c$i-t" . ($n % 3),
                                c => $i, n => $n);
            my $o = load_outcome($ev, $c->request('POST', '/event', $ev->{body}));
            push @out, $o;
            last if $o->{outcome} eq 'noans' || $o->{outcome} eq 'nosend';
            $ctl->tick;
        }
        return @out;
    });
}

sub all_of {
    my ($att, @res) = @_;
    my @all = (@$att, map { @$_ } @res);
    my @died = grep { $_->{outcome} eq 'client_died' } @all;
    ok(!@died, 'every client finished') or diag join "\n", map { "$_->{id}: $_->{error}" } @died;
    return grep { $_->{outcome} ne 'client_died' } @all;
}

# --- (a) Sync On --------------------------------------------------------------
ensure_no_run();
ok(stop_server(60), 'httpd stopped');
my $up = start_server($sync, 60);
ok($up, 'httpd started with PanoptesTelemetrySync On and the spy preloaded')
    or BAIL_OUT('see t/logs/error_log and t/logs/ptm-start.log');
{
    my $s0 = status_auto();
    ok(exists $s0->{PanoptesSyncLines}, 'server-status shows the group-commit counters');
    my $r = post_event('{"type":"sync-27","data":{"x":1}}');
    is($r->{code}, 200, 'an event is answered');
    my $s1 = status_auto();
    is($s1->{PanoptesSyncLines} - $s0->{PanoptesSyncLines}, 1, 'one line waited for');
    cmp_ok($s1->{PanoptesSyncFlushes} - $s0->{PanoptesSyncFlushes}, '>=', 1, 'and flushed');
    cmp_ok(spy_lines('ok'), '>=', 1, 'the spy saw the flush');
}

# --- (b) crash ------------------------------------------------------------------
for my $mode ('site', 'run') {
    my $tag = "sync27-crash-$mode";
    my @att;
    my ($run_file, $rid);
    if ($mode eq 'run') {
        $rid = "SYNC27";
        is(start_run('{"run_dir":"' . $tag . '","run_id":"' . $rid . '"}')->{code}, 200,
           "$mode: run started");
        $run_file = "$site/$tag/telemetry.ndjson";
    }
    my $mev = load_event(id => "$tag-marker", type => "$tag-marker");
    my $m = load_outcome($mev, $cli->request('POST', '/event', $mev->{body}));
    is($m->{outcome} . ' ' . ($m->{stream} // ''), "ack $mode", "$mode: marker event");
    push @att, $m;
    my $s0 = status_auto();
    my $h = clients($tag, 100000, 0);
    ok(wait_progress($h, 400, 60), "$mode: 400 events answered");
    ok(kill_server(), "$mode: every httpd process SIGKILLed right after (stopped first)");
    my @all = all_of(\@att, wait_clients($h));
    my %n;
    $n{ $_->{outcome} }++ for @all;
    diag "$mode: " . join(', ', map { "$_ $n{$_}" } sort keys %n);
    check_events(name => "$mode crash", attempts => \@all,
                 ($mode eq 'site' ? (site_lo => $m->{seq} - 1)
                                  : (run_files => [ { path => $run_file, run_id => $rid } ],
                                     run_lo => $m->{seq} - 1)));
    my @bad = not_durable(\@all, $run_file);
    ok(!@bad, "$mode: every answered event ($n{ack}) was inside what a flush made durable when "
       . 'it was answered: a power cut at the kill would have kept it') or diag join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)];
    ok(start_server($sync, 60), "$mode: httpd started again");
    my $s1 = status_auto();
    ok(defined $s1->{PanoptesSyncFlushes}, "$mode: server-status after the start");
    my $next = post_event('{"type":"' . $tag . '-after","data":{}}');
    is($next->{code}, 200, "$mode: the next event is answered");
    my $hi = (sort { $b <=> $a } map { $_->{seq} } grep { $_->{outcome} eq 'ack' } @all)[0];
    cmp_ok($next->{j}{seq}, '>', $hi, "$mode: its seq follows every answered one");
    if ($mode eq 'run') {
        is(stop_run()->{code}, 200, 'run stopped');
    }
}
{
    # Shared flushes: far fewer than events (the counters of the httpd
    # killed above are lost with it; the spy's log is not).
    my $oks = spy_lines('ok');
    diag "flushes the spy saw: $oks";
}

# --- (c) flush failures -----------------------------------------------------------
{
    my $tag = 'sync27-fail';
    my $off = error_log_size();
    my $s0 = status_auto();
    my $fails0 = spy_lines('fail');
    my $h = clients($tag, 100000, 1);
    ok(wait_progress($h, 100, 60), 'failures: clients are posting');
    my $injected = 0;
    for my $k (1 .. 8) {
        open my $fh, '>', $failctl or die "$failctl: $!";
        close $fh;
        my $end = Time::HiRes::time() + 10;
        Time::HiRes::sleep(0.005) while -e $failctl && Time::HiRes::time() < $end;
        $injected++ unless -e $failctl;
        Time::HiRes::sleep(0.1);
    }
    unlink $failctl;
    is($injected, 8, 'eight writeback errors were injected (each taken by a flush)');
    raise_flag($h);
    my @all = all_of([], wait_clients($h));
    my %n;
    $n{ $_->{outcome} . ($_->{code} ? " $_->{code}" : '') }++ for @all;
    diag 'failures: ' . join(', ', map { "$_ $n{$_}" } sort keys %n);
    my @other = grep { !($_->{outcome} eq 'ack' || ($_->{outcome} eq 'err' && $_->{code} == 500)) } @all;
    ok(!@other, 'every answer is 200 or 500') or diag join "\n", map { "$_->{id}: $_->{outcome} "
        . ($_->{code} // '') . ' ' . ($_->{rbody} // $_->{error} // '') } @other[0 .. ($#other < 9 ? $#other : 9)];
    my @e500 = grep { $_->{outcome} eq 'err' && $_->{code} == 500 } @all;
    cmp_ok(scalar @e500, '>=', $injected, 'at least one 500 per failed flush (its flusher\'s own line)');
    my @badbody = grep {
        my $j = eval { jd($_->{rbody}) };
        !(ref $j eq 'HASH' && ($j->{detail} // '') =~
          m{^Cannot sync \Q$site\E/site_\d{8}\.ndjson: Input/output error; the event is not known to be on stable storage})
    } @e500;
    ok(!@badbody, 'each 500 says {"detail": "Cannot sync <file>: Input/output error; ..."}')
        or diag join "\n", map { $_->{rbody} } @badbody[0 .. ($#badbody < 4 ? $#badbody : 4)];
    my @logged = grep { /Cannot sync .*Input\/output error/ } error_log_since($off);
    is(scalar @logged, scalar @e500, 'each 500 logged once');
    my @bad = not_durable(\@all);
    ok(!@bad, 'no 200 for a line a failed flush may have lost; every 200 durable ('
       . scalar(grep { $_->{outcome} eq 'ack' } @all) . ' of ' . scalar(@all) . ')') or diag join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)];
    is(spy_lines('fail') - $fails0, 8, 'the spy saw the eight failures');
    my $s1 = status_auto();
    is($s1->{PanoptesSyncFailures} - $s0->{PanoptesSyncFailures}, 8, 'server-status counts them');
    my $r = post_event('{"type":"sync27-fail-after","data":{}}');
    is($r->{code}, 200, 'the next event is answered 200');
}

# --- (d) graceful restart -------------------------------------------------------------
{
    my $tag = 'sync27-graceful';
    my $h = clients($tag, 400, 1);
    ok(wait_progress($h, 150, 60), 'graceful: clients are posting');
    my $pid0 = httpd_pid();
    my $off = error_log_size();
    kill USR1 => $pid0;
    ok(wait_for_log($off, qr/resuming normal operations/, 60), 'graceful: httpd resumed');
    is(httpd_pid(), $pid0, 'graceful: same parent');
    my @all = all_of([], wait_clients($h));
    my @un = grep { $_->{outcome} ne 'ack' } @all;
    ok(!@un, 'graceful: every request answered 200 (' . scalar(@all) . ')')
        or diag join "\n", map { "$_->{id}: $_->{outcome} " . ($_->{code} // '') . ' '
                                 . ($_->{rbody} // $_->{error} // '') } @un[0 .. ($#un < 9 ? $#un : 9)];
    my @bad = not_durable(\@all);
    ok(!@bad, 'graceful: every event durable when answered') or diag join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)];
}

done_testing();
