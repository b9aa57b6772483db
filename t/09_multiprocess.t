# Several clients at once against several httpd children (SPEC §1, §5,
# §11.4): seqs unique and contiguous, file order = seq order, no torn or
# interleaved line, /current = the last event per type, and a request
# served by any child sees every acknowledged request before it.  Each
# request uses its own connection, so the kernel spreads them over the
# children; the access log's %P proves more than one child served.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use File::Temp ();
use POSIX ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;

ensure_no_run();
my $site    = site_dir();
my $pid_log = Apache::Test::vars('t_logs') . '/pid_log';
my $tmp     = File::Temp::tempdir(CLEANUP => 1);

# Children of the httpd parent, from /proc.
sub httpd_children {
    my $pidfile = Apache::Test::vars('t_pid_file');
    open my $fh, '<', $pidfile or return ();
    chomp(my $ppid = <$fh> // '');
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $s, '<', $stat or next;
        my $line = <$s> // '';
        my ($pid, $pp) = $line =~ /^(\d+) \(.*\) \S+ (\d+)/ or next;
        push @kids, $pid if $pp == $ppid;
    }
    return @kids;
}

# Run $n client processes; each calls $work->($i) and returns lines that
# it prints to its result file.  Returns the lines of each worker.
sub burst {
    my ($n, $work) = @_;
    my @pids;
    for my $i (0 .. $n - 1) {
        my $pid = fork;
        die "fork: $!" unless defined $pid;
        if (!$pid) {
            my @out = eval { $work->($i) };
            @out = ("ERROR $@") if $@;
            open my $fh, '>', "$tmp/w$i" or POSIX::_exit(1);
            print {$fh} "$_\n" for @out;
            close $fh;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    waitpid $_, 0 for @pids;
    my @res;
    for my $i (0 .. $n - 1) {
        open my $fh, '<', "$tmp/w$i" or do { push @res, ['ERROR no result']; next };
        chomp(my @l = <$fh>);
        push @res, \@l;
        unlink "$tmp/w$i";
    }
    return @res;
}

sub pid_log_size { return -s $pid_log || 0 }

sub pids_since {
    my ($offset, $re) = @_;
    open my $fh, '<', $pid_log or return ();
    seek $fh, $offset, 0;
    my %p;
    while (<$fh>) {
        my ($pid, $m, $uri) = split ' ';
        $p{$pid}++ if defined $uri && $uri =~ $re;
    }
    return %p;
}

my @kids = httpd_children();
diag 'MPM ' . ($ENV{PTM_MPM} // '?') . ': ' . scalar(@kids) . " httpd children: @kids";
cmp_ok(scalar(@kids), '>=', 2, 'httpd runs several children');

# --- site stream: 8 clients x 50 events, 5 kB payloads ------------------------------------------
my ($W, $N) = (8, 50);
my $pad = 'p' x 5000;
my $first = post_event('{"type":"mp-start-09","data":0}');
my $s0 = $first->{j}{seq};
my $off = pid_log_size();
my @res = burst($W, sub {
    my ($i) = @_;
    my @out;
    for my $n (0 .. $N - 1) {
        my $m = ($n % 2) ? 'root' : 'prefix';
        my $r = post_event('{"type":"mp-' . $i . '","data":{"w":' . $i . ',"n":' . $n
            . ',"pad":"' . $pad . '"}}', mount => $m);
        push @out, join ' ', $r->{code}, ($r->{j} ? ($r->{j}{seq}, $r->{j}{ts}) : ('-', '-')), $n;
    }
    return @out;
});
my %pids = pids_since($off, qr{/event$});
diag 'site burst served by ' . scalar(keys %pids) . ' children: '
    . join(', ', map { "$_ x$pids{$_}" } sort keys %pids);
cmp_ok(scalar(keys %pids), '>=', 2, 'more than one child served the burst');

my (%seen, %last, @errors, %files);
for my $i (0 .. $W - 1) {
    my $prev = 0;
    for my $l (@{ $res[$i] }) {
        my ($code, $seq, $ts, $n) = split ' ', $l;
        if (!defined $code || $code ne '200') { push @errors, "w$i: $l"; next }
        push @errors, "w$i: seq $seq not increasing" unless $seq > $prev;
        $prev = $seq;
        $seen{$seq}++;
        $last{$i} = { seq => $seq, n => $n };
        $files{ site_file_for($ts) }++;
    }
}
is(scalar(@errors), 0, 'every event answered 200, each client saw increasing seqs')
    or diag join "\n", @errors[0 .. ($#errors < 9 ? $#errors : 9)];
my @seqs = sort { $a <=> $b } keys %seen;
is(scalar(@seqs), $W * $N, 'as many distinct seqs as events');
ok(!grep({ $seen{$_} != 1 } @seqs), 'no seq handed out twice');
is_deeply([$seqs[0], $seqs[-1]], [$s0 + 1, $s0 + $W * $N], 'seqs are exactly s0+1 .. s0+400 (contiguous)');

# The file: every line whole, our 400 lines contiguous and in seq order.
{
    my @ours;
    my ($torn, $complete_all) = (0, 1);
    for my $f (sort keys %files) {
        my ($lines, $complete) = file_lines($f);
        $complete_all &&= $complete;
        for my $l (@$lines) {
            my $n = eval { oparse($l) };
            if (!$n || py_dumps($n) ne $l) { $torn++; next }
            my $seq = node_value(onode($n, 'seq'));
            push @ours, $seq if $seq > $s0 && $seq <= $s0 + $W * $N;
        }
    }
    ok($complete_all, 'the day file ends with a complete line');
    is($torn, 0, 'no torn, interleaved or non-canonical line');
    is_deeply(\@ours, [$s0 + 1 .. $s0 + $W * $N], 'file order = seq order, nothing missing or doubled');
}

# /current holds the last event of each type.
for my $i (0 .. $W - 1) {
    my $c = get("/current/mp-$i");
    my $j = $c->{j} || {};
    ok($j->{seq} && $j->{seq} == $last{$i}{seq} && $j->{data}{n} == $N - 1,
        "/current/mp-$i is the client's last event (seq $last{$i}{seq})")
        or diag $c->{code} . ' seq=' . ($j->{seq} // '?');
}

# --- run stream: 8 clients x 100 small events ----------------------------------------------------
{
    my $st = start_run('{"run_dir":"mp-run-09","run_id":"MP"}');
    is($st->{code}, 200, 'run MP started');
    my $r0 = post_event('{"type":"mp-run-start","data":0}')->{j}{seq};
    my $RN = 100;
    $off = pid_log_size();
    my @rres = burst($W, sub {
        my ($i) = @_;
        my @out;
        for my $n (0 .. $RN - 1) {
            my $r = post_event('{"type":"mpr-' . ($n % 5) . '","data":[' . $i . ',' . $n . '],"meta":{"w":' . $i . '}}',
                mount => ($n % 3 ? 'prefix' : 'root'));
            push @out, join ' ', $r->{code}, ($r->{j} ? $r->{j}{seq} : '-');
        }
        return @out;
    });
    my %rp = pids_since($off, qr{/event$});
    cmp_ok(scalar(keys %rp), '>=', 2, 'more than one child served the run burst');
    my %rs;
    my $bad = 0;
    for my $w (@rres) {
        for (@$w) { my ($c, $s) = split ' '; $c eq '200' ? $rs{$s}++ : $bad++ }
    }
    is($bad, 0, 'every run event answered 200');
    is(scalar(keys %rs), $W * $RN, 'distinct run seqs');
    stop_run();
    my ($lines, $complete) = file_lines("$site/mp-run-09/telemetry.ndjson");
    ok($complete, 'run file ends with a complete line');
    my @s = map { /^\{"seq":(\d+),"ts":"[^"]+","stream":"run","type":"mp(?:r-\d|-run-start)","data":[^\n]*,"meta":\{(?:"w":\d,)?"run_id":"MP"\}\}$/ ? $1 : -1 } @$lines;
    is_deeply(\@s, [$r0 .. $r0 + $W * $RN], 'run file: seqs contiguous, in order, every line whole');
}

# --- read-your-writes across children --------------------------------------------------------------
{
    my $fails = 0;
    for my $k (1 .. 60) {
        my $m1 = $k % 2 ? 'prefix' : 'root';
        my $m2 = $k % 3 ? 'root' : 'prefix';
        my $p = post_event('{"type":"ryw-09","data":' . $k . '}', mount => $m1);
        my $g = get('/current/ryw-09', mount => $m2);
        $fails++ unless $g->{j} && $g->{j}{seq} == $p->{j}{seq} && $g->{j}{data} == $k;
        my $c = get('/current', mount => $m1);
        $fails++ unless $c->{j} && $c->{j}{current}{'ryw-09'}{seq} == $p->{j}{seq};
    }
    is($fails, 0, 'every GET, on whatever child, sees the event acknowledged just before');
}

# Mixed readers and writers at once: GET /current always parses and never
# goes backwards for a type.
{
    my @r = burst(6, sub {
        my ($i) = @_;
        my @out;
        if ($i < 3) {
            for my $n (1 .. 60) {
                my $r = post_event('{"type":"mix-' . $i . '","data":' . $n . '}');
                push @out, "bad post $r->{code}" unless $r->{code} == 200;
            }
        }
        else {
            my %seen;
            for (1 .. 60) {
                my $r = get('/current');
                if ($r->{code} != 200 || !$r->{j}) { push @out, "bad get $r->{code}"; next }
                for my $t (grep { /^mix-/ } keys %{ $r->{j}{current} }) {
                    my $s = $r->{j}{current}{$t}{seq};
                    push @out, "went back $t $s < $seen{$t}" if $seen{$t} && $s < $seen{$t};
                    $seen{$t} = $s;
                }
            }
        }
        return @out;
    });
    my @problems = map { @$_ } @r;
    is(scalar(@problems), 0, 'concurrent readers see whole, monotonic snapshots')
        or diag join "\n", @problems[0 .. ($#problems < 9 ? $#problems : 9)];
}

all_answers_json();

done_testing();
