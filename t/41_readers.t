# Readers never wait behind a writer's disk (issue 9, item 10).  The one
# global lock is held across each event's writev and fdatasync, so a hung
# disk (NFS, USB) holds it for as long as it hangs: /ready and
# server-status must answer all the same, and a FIFO at a stream file's
# path must fail its event at once rather than block the writer forever.
#
# (a) Today's site day file replaced by a FIFO nobody reads, and an event of
#     100 KB (more than a pipe holds, 64 KiB): 500 {"detail": "Cannot
#     write <path>: ..."} at once, one error-log line, no seq used; /ready
#     and server-status answer.
# (b) The lock held by this test: httpd restarted for this part only with
#     `Mutex flock:<t/logs> panoptes-telemetry`, so that the test can flock
#     the lock file itself.  /ready, server-status (?auto and HTML, the run
#     shown all the same), /current, /current/{type} and /run answer at
#     once (issue 14: they copy the view without the lock, checking its
#     generation); server-status says "busy" for the one thing that needs
#     the lock (the age of the ring's oldest event); POST /event waits,
#     and is answered once the lock is free.  httpd is then started again
#     exactly as it was.
#
# Every request has a short client timeout: a reader that waits is a
# failure, not a stuck suite.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use Fcntl qw(:flock O_RDONLY O_NONBLOCK);
use HTTP::Request ();
use IO::Select ();
use IO::Socket::INET ();
use LWP::UserAgent ();
use POSIX ();
use Time::HiRes ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;
use PTMTest qw(server_snapshot start_server stop_server httpd_pid
    server_answers error_log_size error_log_since);

my $T = 3;          # seconds a reader may take
my $orig = server_snapshot();
my @cleanup;
my $restarted;

END {
    local $?;
    $_->() for reverse @cleanup;
    # Never leave the server with another mutex, or down, for later files.
    if ($orig && $$ == $orig->{test_pid}
        && ($restarted || !(httpd_pid() && server_answers()))) {
        stop_server(30);
        start_server($orig, 60)
            or print STDERR "# 41_readers.t: could not start httpd again\n";
    }
}
$orig->{test_pid} = $$;

# One request on a fresh connection with a $T s timeout.  Returns the
# answer as req() does, plus secs, and timeout when none came.
sub timed {
    my ($method, $path, $body) = @_;
    my $ua = LWP::UserAgent->new(keep_alive => 0, timeout => $T,
                                 max_redirect => 0);
    my @h = defined $body ? ('Content-Type' => 'application/json',
                             'Content-Length' => length $body) : ();
    my $req = HTTP::Request->new($method, 'http://' . hostport() . $path,
                                 \@h, $body);
    my $t0 = Time::HiRes::time();
    my $res = $ua->request($req);
    my $r = {
        code => $res->code, body => $res->content // '',
        ct => scalar $res->header('Content-Type'),
        secs => Time::HiRes::time() - $t0, desc => "$method $path",
    };
    $r->{timeout} = 1
        if ($res->header('Client-Warning') // '') eq 'Internal response';
    $r->{j} = eval { jd($r->{body}) } if length $r->{body};
    return $r;
}

sub answered {
    my ($r, $name) = @_;
    return ok(!$r->{timeout} && $r->{secs} < $T, "$name: answered at once")
        || diag sprintf('%s: %s after %.1f s', $r->{desc},
                        $r->{timeout} ? 'no answer' : "$r->{code}", $r->{secs});
}

# server-status?auto as a hash of its Panoptes lines (undef if no answer).
sub auto {
    my ($name) = @_;
    my $r = timed('GET', '/server-status?auto');
    answered($r, "$name: server-status?auto");
    return undef if $r->{timeout} || $r->{code} != 200;
    my %v;
    for (split /\n/, $r->{body}) {
        $v{$1} = $2 if /^(Panoptes\w+): (.*)$/;
    }
    return \%v;
}

sub ready_is {
    my ($active, $name) = @_;
    my $r = timed('GET', '/telemetry/ready');
    answered($r, "$name: /ready");
    ok($r->{code} == 200 && ref $r->{j} eq 'HASH' && $r->{j}{ready}
        && ($r->{j}{run_active} ? 1 : 0) == $active,
        "$name: /ready 200, run_active " . ($active ? 'true' : 'false'))
        or diag "$r->{code} $r->{body}";
}

# Read a FIFO dry (a writer blocked on it, without the fix, then finishes
# and lets go of the lock) and remove it.
sub drain_fifo {
    my ($path) = @_;
    return unless -p $path;
    if (sysopen my $fh, $path, O_RDONLY | O_NONBLOCK) {
        my ($idle, $end) = (0, time + 30);
        while ($idle < 10 && time < $end) {
            my $n = sysread($fh, my $buf, 65536);
            if ($n) { $idle = 0 } else { $idle++; Time::HiRes::sleep(0.1) }
        }
        close $fh;
    }
    unlink $path;
}

sub module_errors {
    my ($off) = @_;
    return grep { /\[panoptes_telemetry:(?:error|crit|alert|emerg|warn)\]/ }
        error_log_since($off);
}

ensure_no_run();

# --- (a) a FIFO at the site day file ------------------------------------------
{
    my $probe = post_event('{"type":"readers-probe","data":1}');
    is($probe->{code}, 200, '(a) a site event stored') or diag $probe->{body};
    my $file = site_file_for($probe->{j}{ts});
    my $kept = "$file.40-readers";
    ok(rename($file, $kept), "(a) today's day file moved aside") or diag $!;
    ok(POSIX::mkfifo($file, 0666) && chmod(0666, $file),
        '(a) a FIFO in its place') or diag $!;
    push @cleanup, sub {
        drain_fifo($file);
        rename $kept, $file if -e $kept && !-e $file;
    };
    my $a0 = auto('(a) before');
    my $off = error_log_size();
    my $r = timed('POST', '/telemetry/event',
        '{"type":"readers-fifo","data":{"pad":"' . ('x' x (100 * 1024)) . '"}}');
    answered($r, '(a) the 100 KB event to the FIFO');
    ok_json_error($r, 500, qr/^Cannot write \Q$file\E: \S/,
        '(a) 500 {"detail": "Cannot write <the FIFO>: <cause>"}');
    diag '(a) detail: ' . ($r->{j} && ref $r->{j} eq 'HASH' ? $r->{j}{detail} // '' : $r->{body});
    Time::HiRes::sleep(0.2);
    my @l = module_errors($off);
    my $detail = ref $r->{j} eq 'HASH' ? $r->{j}{detail} // "\0" : "\0";
    ok(@l == 1 && index($l[0], ' -> 500 ') >= 0 && index($l[0], $detail) >= 0,
        '(a) exactly one error-log line, with the cause')
        or diag "new module lines:\n" . join("\n", @l);
    ready_is(0, '(a) after');
    my $a1 = auto('(a) after');
    is($a1 && $a1->{PanoptesSeqSite}, $a0 && $a0->{PanoptesSeqSite},
        '(a) no seq used');
    is($a1 && $a1->{PanoptesWriteErrors},
        $a0 && $a0->{PanoptesWriteErrors} + 1, '(a) one write error counted');
    is($a1 && $a1->{PanoptesStateBusy}, 0, '(a) the lock is free');
    is(timed('GET', '/telemetry/current/readers-fifo')->{code}, 404,
        '(a) nothing became current');

    (pop @cleanup)->();
    ok(!-e "$kept" && -f $file, '(a) the day file is back');
    my $next = post_event('{"type":"readers-probe","data":2}');
    is($next->{code}, 200, '(a) the next event is stored') or diag $next->{body};
    is($next->{j}{seq}, $probe->{j}{seq} + 1, '(a) with the next seq');
    my $lines = file_lines(site_file_for($next->{j}{ts}));
    like($lines->[-1] // '', qr/^\{"seq":\Q$next->{j}{seq}\E,.*"readers-probe"/,
        '(a) as the last line of the day file');
}

# --- (b) the lock held from outside ------------------------------------------
{
    my $logs = Apache::Test::vars('t_logs');
    my $snap = { %$orig, argv => [ @{ $orig->{argv} },
                                   '-c', "Mutex flock:$logs panoptes-telemetry" ] };
    ok(stop_server(30), '(b) httpd stopped');
    $restarted = 1;
    my $pid = start_server($snap, 60);
    ok($pid, '(b) httpd started with Mutex flock for panoptes-telemetry')
        or BAIL_OUT('httpd did not start with Mutex flock');
    my ($lockfile) = grep { -f } "$logs/panoptes-telemetry.$pid",
        glob("$logs/panoptes-telemetry*");
    ok($lockfile, '(b) the lock file: ' . ($lockfile // 'missing'))
        or BAIL_OUT("no panoptes-telemetry lock file in $logs");

    my $run = start_run('{"run_id":"readers-' . $$ . '","run_dir":"readers-' . $$ . '"}');
    is($run->{code}, 200, '(b) a run started') or diag $run->{body};
    my $ev = post_event('{"type":"readers-run","data":1}');
    is($ev->{code}, 200, '(b) a run event stored');
    my $a0 = auto('(b) lock free');
    is($a0 && $a0->{PanoptesStateBusy}, 0, '(b) not busy while the lock is free');
    is($a0 && $a0->{PanoptesRunId}, "readers-$$", '(b) the run id shown');

    open my $lk, '<', $lockfile or die "open $lockfile: $!";
    my $held;
    for (1 .. 100) {
        last if ($held = flock($lk, LOCK_EX | LOCK_NB));
        Time::HiRes::sleep(0.05);
    }
    ok($held, '(b) this test holds the lock') or BAIL_OUT("cannot flock $lockfile");
    push @cleanup, sub { close $lk };

    # A writer takes the lock: it waits ...
    my $body = '{"type":"readers-late","data":2}';
    my $post = IO::Socket::INET->new(PeerAddr => hostport(), Proto => 'tcp',
                                     Timeout => $T) or die "connect: $!";
    print {$post} "POST /telemetry/event HTTP/1.0\r\nHost: " . hostport()
        . "\r\nContent-Type: application/json\r\nContent-Length: "
        . length($body) . "\r\n\r\n$body";
    # ... while the readers do not.
    ready_is(1, '(b) lock held');
    my $cur = timed('GET', '/telemetry/current');
    answered($cur, '(b) lock held: /current');
    ok($cur->{code} == 200 && ref $cur->{j} eq 'HASH'
        && ref $cur->{j}{current}{'readers-run'} eq 'HASH'
        && $cur->{j}{current}{'readers-run'}{seq} == $ev->{j}{seq}
        && !exists $cur->{j}{current}{'readers-late'},
        '(b) lock held: /current is the view as the last answered event left it')
        or diag "$cur->{code} $cur->{body}";
    my $one = timed('GET', '/telemetry/current/readers-run');
    answered($one, '(b) lock held: /current/{type}');
    is($one->{code} == 200 && $one->{j}{seq}, $ev->{j}{seq},
        '(b) lock held: /current/readers-run');
    my $rg = timed('GET', '/telemetry/run');
    answered($rg, '(b) lock held: /run');
    is($rg->{code} == 200 && $rg->{j}{run_id}, "readers-$$",
        '(b) lock held: /run');
    my $a1 = auto('(b) lock held');
    is($a1 && $a1->{PanoptesStateBusy}, 1, '(b) ?auto says PanoptesStateBusy: 1');
    is($a1 && $a1->{PanoptesRunActive}, 1, '(b) ?auto: the run is active');
    is($a1 && $a1->{PanoptesRunId}, "readers-$$",
        '(b) ?auto: the run id shown while busy');
    is($a1 && $a1->{PanoptesRecentOldest}, '',
        '(b) ?auto: no age of the oldest recent event while busy');
    is($a1 && $a1->{PanoptesReadLocked}, $a0 && $a0->{PanoptesReadLocked},
        '(b) ?auto: no reader went to the lock');
    for my $k (qw(PanoptesEventsSite PanoptesEventsRun PanoptesSeqSite
                  PanoptesSeqRun PanoptesCurrentTypesSite PanoptesCurrentTypesRun
                  PanoptesWriteErrors PanoptesStateRepairs PanoptesAnswers422)) {
        is($a1 && $a1->{$k}, $a0 && $a0->{$k}, "(b) ?auto: $k as before");
    }
    my $html = timed('GET', '/server-status');
    answered($html, '(b) lock held: server-status');
    like($html->{body}, qr{<td>active run</td><td>readers-$$, started },
        '(b) HTML: the run shown');
    like($html->{body}, qr{<td>state lock</td><td>busy}, '(b) HTML: the lock busy');
    ok(!IO::Select->new($post)->can_read(1), '(b) POST /event waits for the lock');

    (pop @cleanup)->();      # let go of the lock
    my $resp = '';
    if (IO::Select->new($post)->can_read(10)) {
        local $/;
        $resp = <$post> // '';
    }
    close $post;
    like($resp, qr{^HTTP/1\.\d 200 .*"seq":}s,
        '(b) POST /event answers once the lock is free');
    my $late = timed('GET', '/telemetry/current/readers-late');
    is($late->{code}, 200, '(b) and its event is current');
    my $a2 = auto('(b) lock free again');
    is($a2 && $a2->{PanoptesStateBusy}, 0, '(b) not busy any more');
    is($a2 && $a2->{PanoptesRunId}, "readers-$$", '(b) the run id shown again');
    is(stop_run()->{code}, 200, '(b) run stopped');

    ok(stop_server(30), '(b) httpd stopped');
    ok(start_server($orig, 60), '(b) httpd started again as it was');
    $restarted = 0;
}

done_testing();
