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
my $first_at = iso_ms($now);    # before the first set was accepted

# The clients: events of the same type until the flag, half with a client
# ts somewhere in the window.
my $h = start_clients(3, sub {
    my ($i, $ctl) = @_;
    my $cl = PTMTest::Client->new(timeout => 30);
    my @out;
    # At most ~100 events a second each: the pages (several events each)
    # outrun them, so an ascending walk reaches its end, and the suite's
    # 1 MiB ring keeps the first set's ephemeral events throughout.
    for (my $n = 0; $n < 1500 && !$ctl->flag; $n++) {
        Time::HiRes::sleep(0.01);
        my %o = (client => $cl, type => $T, id => "c$i-$n", sp => ($n % 5 != 0));
        $o{ts} = iso_ms($now - 1_700_000 + int(rand(1_650_000))) if $n % 2;
        my $r = hist_post(%o);
        push @out, { id => "c$i-$n", code => $r->{code}, sp => $o{sp} };
        $ctl->tick if $r->{code} == 200;
    }
    return @out;
});
ok(wait_progress($h, 30, 30), 'the clients are posting');

sub traverse {
    my ($name, $pairs, %o) = @_;
    my $p0 = progress($h);
    my $f = events_follow_check(name => $name, pairs => [type => $T, since => '1h', @$pairs], opts => \%o,
        first => \%first, type => $T, more => qr/^c\d-\d+$/, desc => scalar(grep { $_ eq 'desc' } @$pairs));
    my $added = progress($h) - $p0;
    cmp_ok($added, '>=', 5, "$name: the clients posted meanwhile ($added events)");
    return $f;
}

traverse('JSON asc, limit 7', [order => 'asc', limit => 7]);
traverse('JSON desc, limit 6', [order => 'desc', limit => 6]);
traverse('NDJSON, limit 9', [limit => 9], headers => ['Accept' => 'application/x-ndjson']);
traverse('JSON desc, limit 2 on the root mount', [order => 'desc', limit => 2], mount => 'root', max_pages => 5000);

# The checks above ask for the first set's ephemeral events: the ring must
# have held them all along (else this file posts too much for the ring).
ok((status_auto()->{PanoptesRecentOldest} // 'z') le $first_at,
    'the ring still holds every event since the first set (PanoptesRecentOldest)');
raise_flag($h);
my @res = map { @$_ } wait_clients($h);
my @bad = grep { ($_->{code} // 0) != 200 } @res;
ok(!@bad, 'every event of the clients was accepted (' . scalar(@res) . ')')
    or diag join "\n", map { "$_->{id}: " . ($_->{code} // $_->{outcome}) . ' ' . ($_->{error} // '') } @bad[0 .. ($#bad < 9 ? $#bad : 9)];

# Once the clients have stopped: one page with every event (the clients'
# ephemeral ones as far as the ring still holds them), and following next
# with a small limit gives the same list.
{
    my $all = events_get([type => $T, since => '1h', order => 'asc', limit => 10000]);
    my %got;
    $got{$_ // ''}++ for @{ $all->{ids} || [] };
    my @want = (keys %first, map { $_->{id} } grep { $_->{code} == 200 && $_->{sp} } @res);
    my @miss = grep { !$got{$_} } @want;
    my @twice = grep { $got{$_} > 1 } keys %got;
    ok(!@miss && !@twice, 'quiet: one page holds every event of the first set and every stored one of the clients, each once ('
        . scalar(@{ $all->{ids} || [] }) . ' events)')
        or diag scalar(@miss) . ' missing: ' . join(' ', @miss[0 .. ($#miss < 9 ? $#miss : 9)]) . '; twice: ' . join(' ', @twice[0 .. ($#twice < 9 ? $#twice : 9)]);
    my $f = events_follow([type => $T, since => '1h', order => 'asc', limit => 13]);
    ok(!$f->{error}, 'quiet: pages of 13') or diag $f->{error};
    is_deeply($f->{lines}, $all->{lines}, 'quiet: pages of 13 give the same list');
}

done_testing();
