# Readers copy the current view without the lock (issue 14, 2), and what
# they copy is always one snapshot.  Writers POST as fast as they can while
# readers poll GET /current and GET /current/{type}, across the children
# of every MPM; every answer must be valid JSON and one moment of the view:
#
#  - each envelope is whole: its data carries an MD5 of itself, its writer
#    and counter, and its type is the key it is under;
#  - each writer posts its K types in turn over one connection, waiting
#    for each answer, so at any one moment the counters of its K types are
#    the K latest, N-K+1..N: an answer with a hole in that window mixes two
#    moments (or half of a change); a writer's seqs grow with its counter
#    within a stream;
#  - a reader's answers never go back in time: N per writer never
#    decreases from one answer to the next;
#
# half way a run starts (the writers' events then go to the run stream and
# its values win in place), so copies race the run's start as well.
# At the end: every POST answered 200, every GET 200 and whole, and
# server-status shows that the readers went without the lock (only a few
# took it after PTM_VIEW_TRIES copies overlapped by changes).
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use Digest::MD5 qw(md5_hex);
use File::Temp ();
use POSIX ();
use HTTP::Request ();
use LWP::UserAgent ();
use Time::HiRes ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;
use PTMTest qw(status_auto);

my $WRITERS = 4;
my $READERS = 4;
my $K       = 5;            # types per writer
my $SECONDS = $ENV{PTM_HAMMER_SECONDS} || 6;
my $MIN_READS = 10;         # per reader, however long /current takes
my $MAX_SECONDS = 90;       # (earlier files leave thousands of types:
                            # JSON::PP takes its time over each answer)
my $tag     = "hm$$";
my $tmp     = File::Temp::tempdir(CLEANUP => 1);
my $base    = base_url();

ensure_no_run();

sub agent {
    return LWP::UserAgent->new(keep_alive => 1, timeout => 30,
                               max_redirect => 0);
}

sub pad_of { my ($n) = @_; return 'x' x (($n * 37) % 200) }

# The server may close a kept-alive connection just as the next request
# goes out (the event MPM does when busy): LWP then makes up a 500 and
# the request never arrived.  Send it again on a new connection (a POST
# that arrived after all: the same counter again keeps the window whole).
sub send_req {
    my ($uaref, $req) = @_;
    my $res;
    for my $try (1 .. 5) {
        $res = $$uaref->request($req);
        last unless ($res->header('Client-Warning') // '')
            eq 'Internal response';
        $$uaref = agent();
    }
    return $res;
}

# One writer: its K types in turn, each event waiting for its answer,
# until the readers are done.
sub writer {
    my ($w, $stop) = @_;
    my $ua = agent();
    my ($n, $bad, $first) = (0, 0, '');
    while (!-e $stop) {
        $n++;
        my $pad = pad_of($n);
        my $body = sprintf('{"type":"%s-w%d-t%d","data":{"w":%d,"n":%d,'
            . '"pad":"%s","md5":"%s"}}', $tag, $w, $n % $K, $w, $n, $pad,
            md5_hex("$w:$n:$pad"));
        my $res = send_req(\$ua, HTTP::Request->new(POST => "$base/event",
            ['Content-Type' => 'application/json'], $body));
        if ($res->code != 200) {
            $first ||= $res->code . ' ' . $res->content;
            $bad++;
        }
    }
    return "posts=$n bad=$bad first=$first";
}

# One envelope of ours under key $key, whole?  Returns (w, n, seq, run) or
# dies saying why.
sub whole {
    my ($key, $env) = @_;
    die "$key: not an object\n" unless ref $env eq 'HASH';
    my ($w, $i) = $key =~ /^\Q$tag\E-w(\d+)-t(\d+)$/ or die "key $key\n";
    die "$key: type $env->{type}\n" unless ($env->{type} // '') eq $key;
    my $d = $env->{data};
    die "$key: data\n" unless ref $d eq 'HASH' && defined $d->{n}
        && defined $d->{pad} && defined $d->{md5};
    die "$key: torn data (md5)\n"
        unless md5_hex("$d->{w}:$d->{n}:$d->{pad}") eq $d->{md5}
            && $d->{pad} eq pad_of($d->{n});
    die "$key: writer $d->{w}\n" unless $d->{w} == $w;
    die "$key: counter $d->{n} is not type $i\n" unless $d->{n} % $K == $i;
    die "$key: seq\n" unless ($env->{seq} // '') =~ /^\d+$/;
    my $run = ref $env->{meta} eq 'HASH' && exists $env->{meta}{run_id} ? 1 : 0;
    return ($w, $d->{n}, $env->{seq}, $run);
}

# One /current answer: one moment?  Dies saying why; returns the latest
# counter per writer.
sub snapshot {
    my ($j) = @_;
    die "not {\"current\":{...}}\n" unless ref $j eq 'HASH'
        && ref $j->{current} eq 'HASH';
    my %by;
    for my $key (keys %{ $j->{current} }) {
        next unless index($key, "$tag-") == 0;
        my ($w, $n, $seq, $run) = whole($key, $j->{current}{$key});
        push @{ $by{$w} }, [$n, $seq, $run];
    }
    my %top;
    for my $w (keys %by) {
        my @e = sort { $a->[0] <=> $b->[0] } @{ $by{$w} };
        my $top = $e[-1][0];
        my $from = $top - $K + 1 < 1 ? 1 : $top - $K + 1;
        my @want = ($from .. $top);
        die "writer $w: counters @{[ map { $_->[0] } @e ]}, want @want\n"
            unless "@{[ map { $_->[0] } @e ]}" eq "@want";
        for my $x (1 .. $#e) {
            next unless $e[$x][2] == $e[$x - 1][2];     # same stream
            die "writer $w: seq $e[$x][1] after $e[$x - 1][1]\n"
                unless $e[$x][1] > $e[$x - 1][1];
        }
        $top{$w} = $top;
    }
    return \%top;
}

# One reader: /current, and every other time /current/{type}, for
# $SECONDS and at least $MIN_READS times.
sub reader {
    my ($r, $until) = @_;
    my $ua = agent();
    my ($reads, $ones, $bad, $first, %last) = (0, 0, 0, '');
    my $cap = $until - $SECONDS + $MAX_SECONDS;
    while ((Time::HiRes::time() < $until || $reads < $MIN_READS)
           && Time::HiRes::time() < $cap) {
        my $res = send_req(\$ua, HTTP::Request->new(GET => "$base/current"));
        $reads++;
        my $top = eval {
            die 'status ' . $res->code . "\n" unless $res->code == 200;
            die "Content-Type\n"
                unless ($res->header('Content-Type') // '') =~ m{^application/json};
            snapshot(jd($res->content));
        };
        if ($top) {
            for my $w (keys %$top) {
                if (($last{$w} // 0) > $top->{$w}) {
                    $top = undef;
                    $@ = "writer $w went back from $last{$w} to ...\n";
                    last;
                }
                $last{$w} = $top->{$w};
            }
        }
        if (!$top) {
            $bad++;
            $first ||= $@ . ' ' . substr($res->content, 0, 600);
        }
        next if $reads % 2;
        my $key = sprintf('%s-w%d-t%d', $tag, $reads % $WRITERS, $reads % $K);
        $res = send_req(\$ua, HTTP::Request->new(GET => "$base/current/$key"));
        $ones++;
        next if $res->code == 404;      # not posted yet
        my $ok = eval {
            die 'status ' . $res->code . "\n" unless $res->code == 200;
            whole($key, jd($res->content));
            1;
        };
        if (!$ok) {
            $bad++;
            $first ||= "/current/$key: $@ " . substr($res->content, 0, 600);
        }
    }
    return "reads=$reads ones=$ones bad=$bad first=$first";
}

my $s0 = status_auto();
my $until = Time::HiRes::time() + $SECONDS;
my $stop = "$tmp/stop";
my (@writers, @readers);
for my $role ((map { ['w', $_] } 1 .. $WRITERS),
              (map { ['r', $_] } 1 .. $READERS)) {
    my ($kind, $i) = @$role;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        my $line = $kind eq 'w' ? writer($i, $stop) : reader($i, $until);
        open my $fh, '>', "$tmp/$kind$i" or POSIX::_exit(2);
        print {$fh} "$line\n";
        close $fh;
        POSIX::_exit(0);
    }
    push @{ $kind eq 'w' ? \@writers : \@readers }, $pid;
}
# Half way, a run starts under the readers.
Time::HiRes::sleep($SECONDS / 2);
my $run = start_run(qq({"run_id":"$tag","run_dir":"$tag"}));
is($run->{code}, 200, 'a run started half way') or diag $run->{body};
for my $pid (@readers) {
    waitpid $pid, 0;
    is($?, 0, "reader $pid exited cleanly");
}
open my $sfh, '>', $stop or die "$stop: $!";
close $sfh;
for my $pid (@writers) {
    waitpid $pid, 0;
    is($?, 0, "writer $pid exited cleanly");
}

my ($posts, $reads, $ones) = (0, 0, 0);
for my $w (1 .. $WRITERS) {
    open my $fh, '<', "$tmp/w$w" or die "writer $w left no result";
    my $l = <$fh> // '';
    my ($n, $bad, $first) = $l =~ /^posts=(\d+) bad=(\d+) first=(.*)$/;
    ok(defined $n && $n > 0 && $bad == 0, "writer $w: $n POSTs, all 200")
        or diag "writer $w: $l";
    $posts += $n // 0;
}
for my $r (1 .. $READERS) {
    open my $fh, '<', "$tmp/r$r" or die "reader $r left no result";
    my $l = <$fh> // '';
    my ($n, $o, $bad, $first) = $l =~ /^reads=(\d+) ones=(\d+) bad=(\d+) first=(.*)$/;
    ok(defined $n && $n >= $MIN_READS && $bad == 0,
        "reader $r: $n /current and $o /current/{type}, every one a snapshot")
        or diag "reader $r: $l";
    $reads += $n // 0;
    $ones += $o // 0;
}
my $s1 = status_auto();
my $locked = $s1->{PanoptesReadLocked} - $s0->{PanoptesReadLocked};
my $retries = $s1->{PanoptesReadRetries} - $s0->{PanoptesReadRetries};
diag "$posts POSTs, $reads /current, $ones /current/{type}; "
    . "$retries copies made again, $locked reads took the lock";
# server-status' own run reads count too; a reader goes to the lock only
# after PTM_VIEW_TRIES copies in a row overlapped a change.
cmp_ok($locked, '<=', ($reads + $ones) / 4,
    'most reads went without the lock');
is(stop_run()->{code}, 200, 'run stopped');

done_testing();
