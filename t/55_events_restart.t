# GET /events across restarts (SPEC §11.4, §12.1, §12.2): the ring, the
# ids and the runs index survive them, so the same window is answered
# identically -- events, next and recent_since, JSON and NDJSON -- before
# and after a graceful restart (SIGUSR1), and after every httpd process was
# killed with SIGKILL and httpd started again.  The window holds site and
# run events (a run under a PanoptesTelemetryRunRoot, stopped, and a run
# still active through the restarts), stored and ephemeral, with server
# and client ts.  PanoptesEventIdNext keeps its epoch and n, and a cursor
# of a page before the restart continues after it.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use Time::HiRes ();
use POSIX ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest qw(:DEFAULT :events httpd_pid server_snapshot start_server stop_server kill_server
    server_answers error_log_size wait_for_log);

my $orig = server_snapshot();
$orig->{test_pid} = $$;
END {
    local $?;
    if ($orig && $$ == $orig->{test_pid} && !(httpd_pid() && server_answers())) {
        print STDERR "# 55_events_restart.t: httpd is down at exit, starting it again\n";
        stop_server(30);
        start_server($orig, 60) or print STDERR "# 55_events_restart.t: could not start httpd again\n";
    }
    eval { ensure_no_run() } if $orig && $$ == $orig->{test_pid} && httpd_pid();
}

ensure_no_run();
my $T = "clientts-ev55-$$";
my $now = now_ms();
my $H = (POSIX::floor(time / 3600) - 7) * 3600 * 1000;    # this file's slot: 7 hours back
my @ev;
push @ev, hist_post(type => $T, id => 's1');
push @ev, hist_post(type => $T, id => 'e1', sp => 0);
push @ev, hist_post(type => $T, id => 'c1', ts => iso_ms($H + 1000));
push @ev, hist_post(type => $T, id => 'c2', ts => iso_ms($H + 2000), sp => 0);
my $R1 = "EV55a-$$";
my $rr = runroot_dir() . "/ev55-$$";
mkdir_p(runroot_dir());             # the admin's, handed to the server's User
chown_to_server(runroot_dir());
my $st = start_run('{"run_id":"' . $R1 . '","run_dir":' . js($rr) . '}');
is($st->{code}, 200, "run $R1 started under the run root") or diag $st->{body};
push @ev, hist_post(type => $T, id => 'r1', run => $R1);
push @ev, hist_post(type => $T, id => 'r2', run => $R1, sp => 0);
push @ev, hist_post(type => $T, id => 'r3', run => $R1, ts => iso_ms($H + 1500));
is(stop_run()->{code}, 200, 'run stopped');
push @ev, hist_post(type => $T, id => 's2', mc => 0);
my $R2 = "EV55b-$$";
is(start_run('{"run_id":"' . $R2 . '","run_dir":"ev55b-' . $$ . '"}')->{code}, 200, "run $R2 started (active through the restarts)");
push @ev, hist_post(type => $T, id => 'q1', run => $R2);
push @ev, hist_post(type => $T, id => 'q2', run => $R2, sp => 0);
push @ev, hist_post(type => $T, id => 'q3', run => $R2, ts => iso_ms($H + 1000));
is(scalar(grep { $_->{code} == 200 } @ev), scalar @ev, scalar(@ev) . ' events posted');

my $until = iso_ms(now_ms() + 1000);
Time::HiRes::sleep(1.1);    # the window ends before now: nothing new can fall in it
my @W = (type => $T, since => iso_ms($H), until => $until);
my @QUERIES = (
    [ 'asc', [ @W, order => 'asc' ] ],
    [ 'desc', [ @W ] ],
    [ 'limit 3', [ @W, limit => 3 ] ],
    [ 'stream=run', [ @W, stream => 'run', order => 'asc' ] ],
    [ 'stream=site', [ @W, stream => 'site' ] ],
    [ "run_id=$R1", [ @W, run_id => $R1 ] ],
    [ "run_id=$R2", [ @W, run_id => $R2, order => 'asc' ] ],
    [ 'every 1h', [ @W, every => '1h', order => 'asc' ] ],
    [ 'NDJSON', [ @W ], headers => ['Accept' => 'application/x-ndjson'] ],
    [ 'NDJSON limit 4', [ @W, limit => 4 ], headers => ['Accept' => 'application/x-ndjson'] ],
);

sub answers {
    my %a;
    for my $q (@QUERIES) {
        my ($name, $pairs, %o) = @$q;
        my $r = events_get($pairs, %o);
        $a{$name} = { code => $r->{code}, body => $r->{body}, next => $r->{next}, ct => $r->{ct},
                      lines => $r->{lines}, recent_since => $r->{recent_since} };
    }
    return \%a;
}

sub same_answers {
    my ($base, $name) = @_;
    my $cur = answers();
    for my $q (@QUERIES) {
        my $k = $q->[0];
        my ($b, $n) = ($base->{$k}, $cur->{$k});
        lines_are($n->{lines}, $b->{lines}, "$name, $k: the same events");
        is($n->{recent_since}, $b->{recent_since}, "$name, $k: the same recent_since");
        is($n->{next}, $b->{next}, "$name, $k: the same next cursor");
        is($n->{body}, $b->{body}, "$name, $k: the same answer, byte for byte");
    }
}

my $base = answers();
{
    my $ans = $base->{asc};
    is($ans->{code}, 200, 'the window: 200');
    my @asc = hist_sort(@ev);
    lines_are($ans->{lines}, [ map { $_->{line} } @asc ], 'the window holds every event posted, in order');
    lines_are($base->{'stream=run'}{lines}, [ map { $_->{line} } grep { $_->{stream} eq 'run' } @asc ],
        'stream=run: the events of both runs');
    ok(defined $base->{'limit 3'}{next}, 'limit 3: a next cursor');
}
my $id0 = status_auto()->{PanoptesEventIdNext};
like($id0 // '', qr/^\d+-\d+$/, "PanoptesEventIdNext $id0");

# --- graceful restart ------------------------------------------------------------------
{
    my $pid = httpd_pid();
    my $off = error_log_size();
    kill USR1 => $pid;
    ok(wait_for_log($off, qr/resuming normal operations/, 60), 'graceful restart: httpd resumed');
    my $end = time + 30;
    Time::HiRes::sleep(0.1) until server_answers() || time > $end;
    is(httpd_pid(), $pid, 'graceful restart: the same parent');
    same_answers($base, 'after a graceful restart');
    is(status_auto()->{PanoptesEventIdNext}, $id0, 'after a graceful restart: PanoptesEventIdNext unchanged');
    my $c = events_get([ @W, limit => 3, cursor => $base->{'limit 3'}{next} // 'x' ]);
    my $full = $base->{desc}{lines};
    lines_are($c->{lines}, [ @{$full}[3 .. 5] ], 'a cursor of a page before the restart gives the next page');
}

# --- SIGKILL of every httpd process, then a start ------------------------------------------
{
    ok(kill_server(), 'every httpd process SIGKILLed and gone');
    ok(start_server($orig, 60), 'httpd started again');
    same_answers($base, 'after kill -9 and a start');
    is(status_auto()->{PanoptesEventIdNext}, $id0, 'after kill -9: PanoptesEventIdNext unchanged (same epoch and n)');
    my $g = get('/run');
    is($g->{j}{run_id}, $R2, "run $R2 still active");
    my $q4 = hist_post(type => $T, id => 'q4', run => $R2);
    is($q4->{code}, 200, 'a new run event');
    my ($e, $n) = ($id0 // '0-0') =~ /^(\d+)-(\d+)$/;
    is(status_auto()->{PanoptesEventIdNext}, "$e-" . ($n + 1), '... takes the next id');
    my $r = events_get([ type => $T, since => '10m', run_id => $R2, order => 'asc' ]);
    my @want = map { $_->{line} } grep { ($_->{id} =~ /^q/) && $_->{id} ne 'q3' } @ev, $q4;
    lines_are($r->{lines}, \@want, "run $R2: its events before and after the restarts (server ts)");
}
is(stop_run()->{code}, 200, 'run stopped');

done_testing();
