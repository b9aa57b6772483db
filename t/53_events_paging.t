# GET /events paging under load (SPEC §12.2): following next until it is
# null returns every event that matched when the first page was asked for
# exactly once, whatever arrives meanwhile; events that arrive later may or
# may not be included, never twice.  Before the first page: site and run
# events, stored and ephemeral, server-stamped and with client ts spread
# over the window.  While the pages are read, three forked clients post
# more events of the same type (server ts, and client ts inside the window
# already read), one connection per request so every child serves pages and
# posts.  Checked for JSON asc, JSON desc and NDJSON (Panoptes-Next-Cursor),
# each page of a few events (one on the root mount): no page fails, no event twice, every event of
# the first set there, each answer in key order, nothing of another type,
# and what was added by the clients is theirs.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use Time::HiRes ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest qw(:DEFAULT :events start_clients wait_clients raise_flag progress wait_progress);

ensure_no_run();
my $T = "clientts-ev53-$$";
my $c = PTMTest::Client->new(keep_alive => 1);
my $now = now_ms();

# The first set: 120 site events, 40 run events, one in four ephemeral,
# one in three with a client ts in the last 30 minutes (some equal).
my @first;
for my $i (0 .. 119) {
    my %o = (client => $c, type => $T, id => "s$i", sp => ($i % 4 != 1));
    $o{ts} = iso_ms($now - 1_800_000 + ($i % 7) * 250_000) if $i % 3 == 0;
    push @first, hist_post(%o);
}
my $R = "EV53-$$";
is(start_run('{"run_id":"' . $R . '","run_dir":"ev53-' . $$ . '"}')->{code}, 200, "run $R started");
for my $i (0 .. 39) {
    my %o = (client => $c, type => $T, id => "r$i", run => $R, sp => ($i % 4 != 1));
    $o{ts} = iso_ms($now - 1_800_000 + ($i % 7) * 250_000) if $i % 3 == 0;
    push @first, hist_post(%o);
}
is(stop_run()->{code}, 200, 'run stopped');
push @first, hist_post(client => $c, type => "$T-other", id => 'other');
is(scalar(grep { $_->{code} == 200 } @first), scalar @first, scalar(@first) . ' events posted');
my %first = map { $_->{id} => $_ } grep { $_->{type} eq $T } @first;

# The clients: events of the same type until the flag, half with a client
# ts somewhere in the window.
my $h = start_clients(3, sub {
    my ($i, $ctl) = @_;
    my $cl = PTMTest::Client->new(timeout => 30);
    my @out;
    # At most ~250 events a second each: the pages (several events each)
    # outrun them, so an ascending walk reaches its end.
    for (my $n = 0; $n < 2000 && !$ctl->flag; $n++) {
        Time::HiRes::sleep(0.004);
        my %o = (client => $cl, type => $T, id => "c$i-$n", sp => ($n % 5 != 0));
        $o{ts} = iso_ms($now - 1_700_000 + int(rand(1_650_000))) if $n % 2;
        my $r = hist_post(%o);
        push @out, { id => "c$i-$n", code => $r->{code} };
        $ctl->tick if $r->{code} == 200;
    }
    return @out;
});
ok(wait_progress($h, 30, 30), 'the clients are posting');

# Sort key of an event node: (ts in ms, site before run, seq).
sub key_of {
    my ($n) = @_;
    return [ ms_of(node_value(onode($n, 'ts'))) // -1,
             node_value(onode($n, 'stream')) eq 'run' ? 1 : 0, node_value(onode($n, 'seq')) ];
}
sub key_cmp { my ($x, $y) = @_; return $x->[0] <=> $y->[0] || $x->[1] <=> $y->[1] || $x->[2] <=> $y->[2] }

sub traverse {
    my ($name, $pairs, %o) = @_;
    my $p0 = progress($h);
    my $f = events_follow([type => $T, since => '1h', @$pairs], %o);
    my $added = progress($h) - $p0;
    ok(!$f->{error}, "$name: every page answered, next ends null ($f->{pages} pages)") or diag $f->{error};
    cmp_ok($added, '>=', 5, "$name: the clients posted meanwhile ($added events)");
    my (%seen, @twice, @foreign, @missing, @unsorted);
    my $desc = grep { $_ eq 'desc' } @$pairs;
    my $prev;
    for my $i (0 .. $#{ $f->{evs} }) {
        my $n = $f->{evs}[$i];
        my $id = $f->{ids}[$i] // '?';
        my $k = key_of($n);
        my $key = join '/', node_value(onode($n, 'stream')), node_value(onode($n, 'seq')),
            node_value(onode($n, 'meta', 'run_id')) // '';
        push @twice, "$id ($key)" if $seen{$key}++ || $seen{"id $id"}++;
        push @foreign, "$id: type " . (node_value(onode($n, 'type')) // '?')
            unless (node_value(onode($n, 'type')) // '') eq $T;
        push @foreign, "$id: none of this test's events" unless $first{$id} || $id =~ /^c\d-\d+$/;
        if ($prev) {
            my $c = key_cmp($prev, $k);
            push @unsorted, "[$i] $id after " . $f->{ids}[$i - 1] if $desc ? $c <= 0 : $c >= 0;
        }
        $prev = $k;
    }
    my %got = map { ($_ // '') => 1 } @{ $f->{ids} };
    push @missing, grep { !$got{$_} } sort keys %first;
    ok(!@twice, "$name: no event twice") or diag join "\n", @twice[0 .. ($#twice < 9 ? $#twice : 9)];
    ok(!@missing, "$name: every one of the " . scalar(keys %first) . ' events of the first set')
        or diag scalar(@missing) . ' missing: ' . join ' ', @missing[0 .. ($#missing < 19 ? $#missing : 19)];
    ok(!@foreign, "$name: nothing else") or diag join "\n", @foreign[0 .. ($#foreign < 9 ? $#foreign : 9)];
    ok(!@unsorted, "$name: in " . ($desc ? 'descending' : 'ascending') . ' order of (ts, stream, seq)')
        or diag join "\n", @unsorted[0 .. ($#unsorted < 9 ? $#unsorted : 9)];
    my $firsts = grep { $first{$_ // ''} } @{ $f->{ids} };
    diag "$name: $f->{pages} pages, " . scalar(@{ $f->{ids} }) . " events ($firsts of the first set)";
    return $f;
}

traverse('JSON asc, limit 7', [order => 'asc', limit => 7]);
traverse('JSON desc, limit 6', [order => 'desc', limit => 6]);
traverse('NDJSON, limit 9', [limit => 9], headers => ['Accept' => 'application/x-ndjson']);
traverse('JSON desc, limit 1 on the root mount', [order => 'desc', limit => 1], mount => 'root', max_pages => 5000);

raise_flag($h);
my @res = map { @$_ } wait_clients($h);
my @bad = grep { ($_->{code} // 0) != 200 } @res;
ok(!@bad, 'every event of the clients was accepted (' . scalar(@res) . ')')
    or diag join "\n", map { "$_->{id}: " . ($_->{code} // $_->{outcome}) . ' ' . ($_->{error} // '') } @bad[0 .. ($#bad < 9 ? $#bad : 9)];

# Once the clients have stopped: one page with every event, and following
# next with a small limit gives the same list.
{
    my $all = events_get([type => $T, since => '1h', order => 'asc', limit => 10000]);
    my $n = scalar @{ $all->{ids} || [] };
    is($n, scalar(keys %first) + scalar(grep { $_->{code} == 200 } @res), "quiet: all $n events on one page");
    my $f = events_follow([type => $T, since => '1h', order => 'asc', limit => 13]);
    ok(!$f->{error}, 'quiet: pages of 13') or diag $f->{error};
    is_deeply($f->{lines}, $all->{lines}, 'quiet: pages of 13 give the same list');
}

done_testing();
