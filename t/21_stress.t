# Stress (SPEC §1, §5, §11.4): many forked clients, many events, every
# child of the MPM.  Half the clients keep their connections alive, half
# open one per request; both mounts; 20 types shared by all clients (so
# /current must follow seq order across clients); some 5 kB payloads;
# some make_current false, some store_permanently false.
#   1. site stream: 16 clients x 100 events;
#   2. a run: 16 clients x 100 events;
#   3. runs started and stopped by the test while 8 clients post.
# Each time: every event answered 200; nothing lost, doubled or torn; each
# line byte for byte what the answer said; seqs contiguous per stream;
# the number of lines = the number of acknowledged stored events; /current
# = the last make_current event per type; GET /current/{type} agrees.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use Time::HiRes ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;
use PTMTest qw(httpd_children start_clients wait_clients wait_progress load_event
    load_outcome check_events check_current);

my $T0   = Time::HiRes::time();
my $site = site_dir();
my $pad  = 'p' x 5000;
my $cli  = PTMTest::Client->new(timeout => 30);
my $pid_log = Apache::Test::vars('t_logs') . '/pid_log';

ensure_no_run();
my @kids = httpd_children();
cmp_ok(scalar(@kids), '>=', 2, 'httpd runs several children: ' . scalar(@kids));

# The test's own events (markers), as outcomes.
my $own = 0;
sub own_event {
    my ($tag, $type) = @_;
    my $ev = load_event(id => "$tag-t" . $own++, type => $type, c => 99, n => $own);
    return load_outcome($ev, $cli->request('POST', '/event', $ev->{body}));
}

# $W clients x $N events; client $i's event $n is of type
# "$types-" . (($i * 7 + $n) % $T).
sub burst {
    my ($tag, $W, $N, $types, $T, $during) = @_;
    my $h = start_clients($W, sub {
        my ($i, $ctl) = @_;
        my $c = PTMTest::Client->new(keep_alive => $i % 2, timeout => 30);
        my @out;
        for my $n (0 .. $N - 1) {
            my $ev = load_event(id => "$tag-c$i-n$n", type => "$types-" . (($i * 7 + $n) % $T),
                                c => $i, n => $n, mc => $n % 7 != 6, sp => $n % 11 != 10,
                                pad => (($i + $n) % 10 == 0 ? $pad : undef));
            my $o = load_outcome($ev, $c->request('POST', '/event', $ev->{body},
                                                  mount => $n % 3 ? 'prefix' : 'root'));
            push @out, $o;
            $ctl->tick if $o->{outcome} eq 'ack';
        }
        # How many requests went again on a new connection (see Client).
        $out[-1]{retried} = $c->retried if @out;
        return @out;
    });
    $during->($h) if $during;
    my @all = map { @$_ } wait_clients($h);
    my $retried = 0;
    $retried += $_->{retried} // 0 for @all;
    diag "$tag: $retried requests sent again after httpd closed a kept-alive connection" if $retried;
    return @all;
}

sub children_since {
    my ($offset) = @_;
    open my $fh, '<', $pid_log or return 0;
    seek $fh, $offset, 0;
    my %p;
    while (<$fh>) {
        my ($pid, $m, $uri) = split ' ';
        $p{$pid}++ if defined $uri && $uri =~ m{/event$};
    }
    return scalar keys %p;
}

# --- 1. the site stream ------------------------------------------------------------------------
{
    my $t = Time::HiRes::time();
    my $m = own_event('st21-p1', 'st21-a-0');
    is($m->{outcome} . ' ' . ($m->{stream} // ''), 'ack site', 'site marker accepted') or diag explain $m;
    my $off = -s $pid_log || 0;
    my @att = ($m, burst('st21-p1', 16, 100, 'st21-a', 20));
    cmp_ok(children_since($off), '>=', 2, 'site burst: served by several children');
    my $chk = check_events(name => 'site burst', attempts => \@att, site_lo => $m->{seq} - 1,
                           strict => 1, answered => 1);
    check_current(name => 'site burst', attempts => \@att, types => [map { "st21-a-$_" } 0 .. 19],
                  found => $chk->{found});
    diag sprintf 'site burst: %d events in %.1f s', scalar(@att), Time::HiRes::time() - $t;
}

# --- 2. a run ----------------------------------------------------------------------------------
my $run_hi;
{
    my $t = Time::HiRes::time();
    my $st = start_run('{"run_dir":"st21-run","run_id":"ST21"}');
    is($st->{code}, 200, 'run ST21 started') or diag $st->{body};
    my $m = own_event('st21-p2', 'st21-b-0');
    is($m->{outcome} . ' ' . ($m->{stream} // ''), 'ack run', 'run marker accepted');
    my $off = -s $pid_log || 0;
    my @att = ($m, burst('st21-p2', 16, 100, 'st21-b', 20));
    cmp_ok(children_since($off), '>=', 2, 'run burst: served by several children');
    my $chk = check_events(name => 'run burst', attempts => \@att, run_lo => $m->{seq} - 1,
                           run_files => [{ path => "$site/st21-run/telemetry.ndjson", run_id => 'ST21' }],
                           strict => 1, answered => 1);
    check_current(name => 'run burst', attempts => \@att, types => [map { "st21-b-$_" } 0 .. 19],
                  run_id => 'ST21', found => $chk->{found});
    $run_hi = $chk->{hi}{run};
    is(stop_run()->{code}, 200, 'run ST21 stopped');
    diag sprintf 'run burst: %d events in %.1f s', scalar(@att), Time::HiRes::time() - $t;
}

# --- 3. runs start and stop under load -----------------------------------------------------------
{
    my $t = Time::HiRes::time();
    my $m = own_event('st21-p3', 'st21-c-0');
    is($m->{outcome} . ' ' . ($m->{stream} // ''), 'ack site', 'site marker accepted');
    my (@runs, @ctl);
    my @att = ($m, burst('st21-p3', 8, 100, 'st21-c', 10, sub {
        my ($h) = @_;
        # At least 40 answers after each start: 8 clients have at most 8
        # requests in flight, so each run gets events.
        for my $k (1 .. 2) {
            wait_progress($h, 100 + 250 * ($k - 1), 60);
            my $st = start_run('{"run_dir":"st21-toggle-' . $k . '","run_id":"ST21-T' . $k . '"}');
            push @ctl, "start T$k: $st->{code}";
            push @runs, { path => "$site/st21-toggle-$k/telemetry.ndjson", run_id => "ST21-T$k" };
            wait_progress($h, PTMTest::progress($h) + 40, 60);
            push @ctl, 'stop: ' . stop_run()->{code};
        }
    }));
    is("@ctl", 'start T1: 200 stop: 200 start T2: 200 stop: 200', 'two runs started and stopped under load');
    my %per;
    $per{ $_->{outcome} eq 'ack' ? ($_->{rid} // 'site') : 'none' }++ for @att;
    diag 'runs under load: events per stream: ' . join(', ', map { "$_ $per{$_}" } sort keys %per);
    ok($per{site} && $per{'ST21-T1'} && $per{'ST21-T2'}, 'events went to the site stream and to both runs');
    my $chk = check_events(name => 'runs under load', attempts => \@att, site_lo => $m->{seq} - 1,
                           run_lo => $run_hi, run_files => \@runs, strict => 1, answered => 1);
    check_current(name => 'runs under load', attempts => \@att, types => [map { "st21-c-$_" } 0 .. 9],
                  found => $chk->{found});
    diag sprintf 'runs under load: %d events in %.1f s', scalar(@att), Time::HiRes::time() - $t;
}

diag sprintf 'took %.1f s', Time::HiRes::time() - $T0;

all_answers_json();

done_testing();
