# Restarts under load (SPEC §5, §11.3 F4, §11.4).  For each way httpd
# goes down or reloads -- graceful restart (SIGUSR1), restart (SIGHUP), a
# full stop and start, SIGKILL of the parent and every child then a start
# -- and with a run active or on the site stream, four forked clients keep
# posting (one connection per request, both mounts, mixed make_current and
# store_permanently) while the signal is delivered (except SIGHUP under the
# event MPM, see below), and retry what got no
# answer (with a new event: an unanswered request may or may not have been
# stored).  Then:
#   * every acknowledged event is in its stream's file exactly once, with
#     its seq, byte for byte; no seq twice; file order = seq order; no torn
#     line; unanswered events are stored at most once;
#   * after a graceful restart every request was answered and the seqs are
#     contiguous; otherwise a gap only where a request went unanswered;
#   * the run is still active with the same run object; /current is, per
#     type, the latest acknowledged make_current event (or a later
#     unanswered one), ephemeral values included; the next event continues
#     the counter, and after the run the site counter continues where it
#     was;
#   * after a crash, a torn last line left in a file is cut off by the next
#     append (httpd's parent, as root, only reads the files)
#     and does not move the counter.
# httpd is started again with the command line and environment Apache::Test
# gave it (read from /proc), so later files find the same server; an END
# block starts it if this file dies while it is down.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use Time::HiRes ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;
use PTMTest qw(httpd_pid httpd_children server_snapshot start_server stop_server
    kill_server server_answers error_log_size wait_for_log start_clients
    wait_clients raise_flag wait_progress hold_clients release_clients
    load_event load_outcome check_events check_current);

my $MPM  = $ENV{PTM_MPM} // 'event';
my $orig = server_snapshot();
my ($W, $N) = (4, 150);
my $T0 = time;

END {
    # Never leave the server down for the files after this one.
    local $?;
    if ($orig && $$ == $orig->{test_pid} && !(httpd_pid() && server_answers())) {
        print STDERR "# 20_restart.t: httpd is down at exit, starting it again\n";
        stop_server(30);
        start_server($orig, 60)
            or print STDERR "# 20_restart.t: could not start httpd again\n";
    }
}
$orig->{test_pid} = $$;

diag "MPM $MPM: httpd " . join(' ', @{ $orig->{argv} });

my $site = site_dir();
my $cli  = PTMTest::Client->new(timeout => 30);

sub scenario {
    my ($how, $mode) = @_;
    my $name = "$how/$mode";
    my $tag  = "rs20-$how-$mode";
    my $t0   = Time::HiRes::time();
    ensure_no_run();

    my @att;
    my $own = 0;
    my $post = sub {
        my ($type, %o) = @_;
        my $ev = load_event(id => "$tag-t" . $own, type => $type, c => 99, n => $own, %o);
        $own++;
        my $o = load_outcome($ev, $cli->request('POST', '/event', $ev->{body}));
        push @att, $o;
        return $o;
    };

    # Where the test's numbers start, per stream.
    my $m = $post->("$tag-marker");
    is($m->{outcome} . ' ' . ($m->{stream} // ''), 'ack site', "$name: site marker event accepted")
        or return 0;
    my $site_lo = $m->{seq} - 1;
    my ($run_obj, $rid, $run_lo, @run_files);
    if ($mode eq 'run') {
        $rid = "RS20-$how";
        my $st = start_run('{"run_dir":"' . $tag . '","run_id":"' . $rid . '","meta":{"how":"' . $how . '"}}');
        is($st->{code}, 200, "$name: run $rid started") or return 0;
        $run_obj = $st->{body};
        my $rm = $post->("$tag-marker");
        is($rm->{outcome} . ' ' . ($rm->{stream} // ''), 'ack run', "$name: run marker event accepted")
            or return 0;
        $run_lo = $rm->{seq} - 1;
        @run_files = ({ path => "$site/$tag/telemetry.ndjson", run_id => $rid });
    }
    # A live-only value (ephemeral, current): it must survive too.
    my $eph = $post->("$tag-live", sp => 0);
    is($eph->{outcome}, 'ack', "$name: an ephemeral current value");
    my @types = ("$tag-marker", "$tag-live", map { my $c = $_; map { "$tag-c$c-t$_" } 0 .. 2 } 0 .. $W - 1);

    # The clients: $N events each, and at least 10 more once the server is
    # back; an event that got no answer is sent again as a new event.
    my $h = start_clients($W, sub {
        my ($i, $ctl) = @_;
        my $c = PTMTest::Client->new(timeout => 30);
        my $end = Time::HiRes::time() + 120;
        my (@out, $flag_at);
        for (my $n = 0; ; $n++) {
            $flag_at //= $n if $ctl->flag;
            last if $n >= $N && defined $flag_at && $n >= $flag_at + 10;
            last if $n >= 6 * $N;
            for (my $a = 0; ; $a++) {
                $ctl->pause_point($i);
                my $ev = load_event(id => "$tag-c$i-n$n-a$a", type => "$tag-c$i-t" . ($n % 3),
                                    c => $i, n => $n, mc => $n % 4 != 3, sp => $n % 5 != 2);
                my $o = load_outcome($ev, $c->request('POST', '/event', $ev->{body},
                                                      mount => $n % 2 ? 'root' : 'prefix'));
                push @out, $o;
                if ($o->{outcome} eq 'ack') { $ctl->tick; last }
                last if $o->{outcome} eq 'err';
                if (Time::HiRes::time() > $end) {
                    push @out, { outcome => 'client_died', id => "client$i", error => 'no answer for 120 s' };
                    return @out;
                }
                Time::HiRes::sleep(0.02);
            }
        }
        return @out;
    });
    ok(wait_progress($h, int(0.4 * $W * $N), 60), "$name: clients are posting");

    # Down and up again, while the clients post.
    my $pid0 = httpd_pid();
    my $off  = error_log_size();
    my @torn;
    my $up;
    if ($how eq 'graceful' || $how eq 'restart') {
        # httpd's event MPM (2.4.71, Debian) sometimes segfaults in a child
        # that a SIGHUP or SIGTERM finds with requests in flight
        # (apr_os_sock_get in close_worker_sockets of mod_mpm_event; it
        # happens with the module not loaded at all), and
        # t/run-httpd-tests.sh rightly fails on any segfault.  Under event
        # the clients therefore pause, between two requests, for SIGHUP and
        # for SIGTERM; prefork and worker take both in flight.
        my $hold = $how eq 'restart' && $MPM eq 'event';
        ok(hold_clients($h, 30), "$name: clients paused between requests (event MPM)") if $hold;
        kill(($how eq 'graceful' ? 'USR1' : 'HUP') => $pid0);
        $up = wait_for_log($off, qr/resuming normal operations/, 60);
        ok($up, "$name: httpd logged 'resuming normal operations'") or diag "no such line after offset $off";
        is(httpd_pid(), $pid0, "$name: same parent process");
        $up &&= wait_server_up_same();
        release_clients($h) if $hold;
    }
    else {
        my $hold = $how eq 'stop' && $MPM eq 'event';
        if ($how eq 'stop') {
            ok(hold_clients($h, 30), "$name: clients paused between requests (event MPM)") if $hold;
            ok(stop_server(60), "$name: httpd stopped (parent and children gone)");
        }
        else {
            ok(kill_server(), "$name: every httpd process SIGKILLed and gone");
            # A crash mid-write, as it would look: a last line without its
            # newline (and a seq that must not count), in the file the
            # clients go on appending to.  httpd's parent only reads the
            # files (it runs as root, they are the User's): the next append
            # cuts the torn line.
            my @files;
            if ($mode eq 'run') {
                @files = ($run_files[0]{path});
            }
            else {
                my $last_site = (sort { $b->{seq} <=> $a->{seq} }
                                 grep { $_->{outcome} eq 'ack' && $_->{stream} eq 'site' } @att)[0];
                @files = (site_file_for($last_site->{ts}));
            }
            for my $f (@files) {
                open my $fh, '>>', $f or die "$f: $!";
                print {$fh} '{"seq":999999,"ts":"torn-20","stream":"';
                close $fh;
                push @torn, $f;
            }
        }
        $up = start_server($orig, 60);
        ok($up, "$name: httpd started again") or diag "see t/logs/error_log and t/logs/ptm-start.log";
        release_clients($h) if $hold;
    }
    raise_flag($h);
    if (!$up) {
        kill TERM => @{ $h->{pids} };
        wait_clients($h);
        return 0;
    }
    my @res = wait_clients($h);
    my $took = Time::HiRes::time() - $t0;

    my @all  = (@att, map { @$_ } @res);
    my @died = grep { $_->{outcome} eq 'client_died' } @all;
    ok(!@died, "$name: every client finished") or diag join "\n", map { "$_->{id}: $_->{error}" } @died;
    @all = grep { $_->{outcome} ne 'client_died' } @all;
    my %n;
    $n{ $_->{outcome} }++ for @all;
    diag sprintf "%s: %d requests (%s) in %.1f s", $name, scalar(@all),
        join(', ', map { "$_ $n{$_}" } sort keys %n), $took;

    for my $f (@torn) {
        my $d = read_bytes($f) // '';
        ok(index($d, 'torn-20') < 0 && substr($d, -1) eq "\n",
            "$name: the torn last line of " . substr($f, length($site) + 1) . ' was cut off by the next append');
    }

    my $live = get("/current/$tag-live");
    is($live->{code} . ' ' . (canon_text($live->{body}) // ''), '200 ' . canon_text($eph->{rbody}),
        "$name: the ephemeral current value is still current");
    if ($mode eq 'run') {
        my $g = get('/run');
        is($g->{code}, 200, "$name: the run is still active");
        json_is_ordered($g->{body}, $run_obj, "$name: ... with the same run object");
    }
    else {
        is(get('/run')->{code}, 404, "$name: still no run active");
    }

    # Only a graceful restart promises an answer to every request: SIGHUP
    # makes prefork children exit at once, even mid-request, and worker and
    # event drop connections they have not answered yet.  An unanswered
    # request may have used a seq (an ephemeral event leaves no line), so
    # there a gap is allowed for each unanswered request that is in no file.
    my $strict = $how eq 'graceful';
    my @lost = grep { $_->{outcome} eq 'noans' } @all;
    diag "$name: unanswered: " . join('; ', map {
        "$_->{id} (" . ($_->{sp} ? 'stored' : 'ephemeral') . ") $_->{error}" } @lost[0 .. ($#lost < 5 ? $#lost : 5)])
        if @lost;
    my $chk = check_events(name => $name, attempts => \@all, site_lo => $site_lo,
                           run_files => \@run_files, run_lo => $run_lo,
                           strict => $strict, answered => $how eq 'graceful');
    check_current(name => $name, attempts => \@all, types => \@types, run_id => $rid,
                  found => $chk->{found});

    # The next event continues the counter.
    my $hi = $chk->{hi}{$mode} // 0;
    my $nx = $post->("$tag-next");
    my $ok = $nx->{outcome} eq 'ack' && $nx->{stream} eq $mode
        && ($strict ? $nx->{seq} == $hi + 1
                    : $nx->{seq} > $hi && $nx->{seq} <= $hi + 1 + $chk->{unexplained});
    ok($ok, "$name: the next event continues the $mode counter ("
        . ($strict ? $hi + 1 : "$hi + 1 .. $hi + 1 + $chk->{unexplained}") . ')')
        or diag "got $nx->{outcome} " . ($nx->{stream} // '') . ' seq ' . ($nx->{seq} // '-');
    if ($nx->{outcome} eq 'ack') {
        my $f = $mode eq 'run' ? $run_files[0]{path} : site_file_for($nx->{ts});
        is(lines_by_seq($f)->{ $nx->{seq} }, PTMTest::load_line($nx, $mode, $nx->{seq}, $nx->{ts}, $rid),
            "$name: ... and is stored");
    }
    if ($mode eq 'run') {
        my $sp = stop_run();
        is($sp->{code}, 200, "$name: run stopped");
        json_is_ordered($sp->{body}, $run_obj, "$name: ... answering the run object");
        my $after = $post->("$tag-after");
        is(($after->{stream} // '') . ' ' . ($after->{seq} // ''), 'site ' . ($site_lo + 2),
            "$name: the site counter continues after the run (marker + 1)");
    }
    return 1;
}

# After SIGUSR1/SIGHUP, the new generation answers on both ports.
sub wait_server_up_same {
    my $end = time + 60;
    while (time < $end) {
        return 1 if server_answers();
        Time::HiRes::sleep(0.1);
    }
    return 0;
}

my @plan = (
    [graceful => 'run'], [graceful => 'site'],
    [restart  => 'site'], [restart => 'run'],
    [stop     => 'run'], [stop => 'site'],
    [kill     => 'site'], [kill => 'run'],
);
for my $s (@plan) {
    my $t = time;
    scenario(@$s) or do {
        fail("$s->[0]/$s->[1]: cannot go on");
        last;
    };
}

# The same server as before, for the files after this one.
my $pid = httpd_pid();
ok($pid && server_answers(), 'httpd runs and answers on both ports at the end');
SKIP: {
    skip 'httpd is down', 3 unless $pid;
    my $now = server_snapshot();
    is_deeply($now->{argv}, $orig->{argv}, 'same command line as the one Apache::Test started');
    cmp_ok(scalar(httpd_children($pid)), '>=', 2, 'several children');
    my $big = post_event('{"type":"rs20-small","data":"' . ('x' x 2000) . '"}', mount => 'small');
    is($big->{code}, 413, 'the same configuration (/small still caps bodies at 1024 bytes)');
}
ensure_no_run();
diag 'took ' . (time - $T0) . ' s';

all_answers_json();

done_testing();
