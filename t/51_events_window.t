# GET /events (SPEC §12.2): which events a window selects and in what
# order.  Events with client-supplied ts in an hour slot of their own, a
# few hours back, so no other file's events fall in the windows:
#   * order by ts (the instant: offsets, fractions below the millisecond,
#     a missing offset meaning UTC), then stream (site before run), then
#     seq; desc is the exact reverse; a ts that is not a time matches no
#     window;
#   * type (exact, repeated, percent-decoded, "" included), stream, run_id
#     (meta.run_id, so a site event with a client run_id matches too);
#   * since inclusive and until exclusive, as RFC 3339 (Z, offsets,
#     fractions) and as durations back from now; the default window is the
#     last hour with no upper bound;
#   * limit and next; every (at most one event per type per bucket, the
#     latest in it);
#   * an event whose client ts is a day off is found by its ts.
# Types with a client ts start with "clientts-" (t/99_final.t lets their
# lines sit in a day file other than their ts's).
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use POSIX ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest qw(:DEFAULT :events);

ensure_no_run();
my $T = "clientts-ev51-$$";

# An hour boundary three hours back: the slot of this file.
my $B = (POSIX::floor(time / 3600) - 3) * 3600 * 1000;

# A ts at $ms with an offset of $off minutes (+01:00, -05:30), and an
# optional fraction text instead of the milliseconds.
sub tso {
    my ($ms, $off, $frac) = @_;
    my $local = POSIX::floor($ms / 1000) + $off * 60;
    $frac //= sprintf '.%03d', $ms % 1000;
    my $sign = $off < 0 ? '-' : '+';
    return POSIX::strftime('%Y-%m-%dT%H:%M:%S', gmtime $local) . $frac
        . sprintf('%s%02d:%02d', $sign, abs($off) / 60, abs($off) % 60);
}
sub noz { my ($ms) = @_; return POSIX::strftime('%Y-%m-%dT%H:%M:%S', gmtime POSIX::floor($ms / 1000)) }

sub post_ok {
    my (%a) = @_;
    my $r = hist_post(%a);
    is($r->{code}, 200, "posted $a{id}" . (defined $a{ts} ? " (ts $a{ts})" : '')) or diag $r->{body};
    return $r;
}

sub sel {
    my ($pairs, $want, $name) = @_;
    my $r = events_get($pairs);
    is($r->{code}, 200, "$name: 200") or diag events_desc($r);
    lines_are($r->{lines}, [ map { $_->{line} } @$want ], $name);
    ok(!defined $r->{next}, "$name: next is null") or diag "next: $r->{next}";
    return $r;
}

# --- order, stream, run_id ------------------------------------------------------
my $TA = "$T-ord";
my %e;
my $s10 = $B + 10_000;
$e{a1}  = post_ok(type => $TA, id => 'a1', ts => iso_ms($s10));
$e{a2}  = post_ok(type => $TA, id => 'a2', ts => iso_ms($B + 5_000));
$e{a3}  = post_ok(type => $TA, id => 'a3', ts => iso_ms($s10));
$e{a4}  = post_ok(type => $TA, id => 'a4', ts => tso($s10, 60, ''));           # the same instant, +01:00
$e{a5}  = post_ok(type => $TA, id => 'a5', ts => tso($s10, 0, '.0005') =~ s/\+00:00$/Z/r);  # 10.0005 s
$e{a6}  = post_ok(type => $TA, id => 'a6', ts => noz($s10));                   # no offset: UTC
$e{a7}  = post_ok(type => $TA, id => 'a7', ts => 'not-a-time');
$e{a8}  = post_ok(type => $TA, id => 'a8', ts => '');
$e{a11} = post_ok(type => $TA, id => 'a11', ts => tso($s10, -330, '.000'));   # the same instant, -05:30
$e{a9}  = post_ok(type => $TA, id => 'a9', ts => iso_ms($B + 20_000), meta => '{"run_id":"EV51-' . $$ . '"}');
my $R = "EV51-$$";
is(start_run('{"run_id":"' . $R . '","run_dir":"ev51-' . $$ . '"}')->{code}, 200, "run $R started");
$e{r1} = post_ok(type => $TA, id => 'r1', ts => iso_ms($s10), run => $R);
$e{r2} = post_ok(type => $TA, id => 'r2', ts => iso_ms($B + 2_000), run => $R);
$e{r3} = post_ok(type => $TA, id => 'r3', ts => iso_ms($B + 15_000), run => $R, sp => 0);
$e{r4} = post_ok(type => $TA, id => 'r4', ts => iso_ms($B + 16_000), run => $R, mc => 0);
is(stop_run()->{code}, 200, 'run stopped');
$e{a10} = post_ok(type => $TA, id => 'a10', ts => iso_ms($s10));
# Other types in the same window: a type filter leaves them out.
my $o1 = post_ok(type => "$TA-other", id => 'o1', ts => iso_ms($s10));
my $o2 = post_ok(type => "$T-or", id => 'o2', ts => iso_ms($s10));

my @asc = map { $e{$_} } qw(r2 a2 a1 a3 a4 a6 a11 a10 r1 a5 r3 r4 a9);
my @W = (since => iso_ms($B), until => iso_ms($B + 60_000));
sel([type => $TA, @W, order => 'asc'], \@asc,
    'order=asc: by ts (offsets and fractions as instants), then site before run, then seq; no ts that is not a time');
sel([type => $TA, @W], [reverse @asc], 'the default order (desc) is the exact reverse');
sel([type => $TA, @W, order => 'desc'], [reverse @asc], 'order=desc');
sel([type => $TA, @W, order => 'asc', stream => 'site'], [grep { $_->{stream} eq 'site' } @asc], 'stream=site');
sel([type => $TA, @W, order => 'asc', stream => 'run'], [grep { $_->{stream} eq 'run' } @asc],
    'stream=run (ephemeral and not-current events included)');
sel([type => $TA, @W, order => 'asc', stream => 'all'], \@asc, 'stream=all');
sel([type => $TA, @W, order => 'asc', run_id => $R], [ @e{qw(r2 r1 r3 r4 a9)} ],
    'run_id: the run events and a site event whose meta.run_id is the same');
sel([type => $TA, @W, order => 'asc', run_id => $R, stream => 'run'], [ @e{qw(r2 r1 r3 r4)} ], 'run_id and stream=run');
sel([type => $TA, @W, run_id => "$R-no"], [], 'run_id of no event: nothing');
sel([type => $TA, type => "$TA-other", @W, order => 'asc'],
    [ @e{qw(r2 a2 a1 a3 a4 a6 a11 a10)}, $o1, @e{qw(r1 a5 r3 r4 a9)} ], 'type repeated: both types, merged in order');
sel([type => $TA, type => $TA, @W, order => 'asc'], \@asc, 'the same type twice: each event once');
sel([type => "$T-o", @W], [], 'type is exact: no prefix match');
{
    my $r = events_get([@W, order => 'asc']);
    lines_are($r->{lines}, [ map { $_->{line} } @e{qw(r2 a2 a1 a3 a4 a6 a11 a10)}, $o1, $o2, @e{qw(r1 a5 r3 r4 a9)} ],
        'no type: every type in the window');
}
{
    # A wide window (two days back, one ahead): a ts that is not a time
    # or is empty is in none.
    my $r = events_get([type => $TA, since => '2d', until => iso_ms(now_ms() + 86_400_000)]);
    is($r->{code}, 200, 'a window of three days: 200');
    ok(!grep({ defined $_ && ($_ eq 'a7' || $_ eq 'a8') } @{ $r->{ids} || [] }),
        'ts "not-a-time" and "" are in no window');
    is(scalar @{ $r->{ids} || [] }, scalar @asc, '... and the others are there once each');
}

# --- since (inclusive) and until (exclusive), RFC 3339 ------------------------------
my @at10 = @e{qw(a1 a3 a4 a6 a11 a10 r1)};
my @after = @e{qw(a5 r3 r4 a9)};
my @U = (until => iso_ms($B + 60_000));
sel([type => $TA, order => 'asc', since => iso_ms($s10), @U], [@at10, @after], 'since is inclusive (Z)');
sel([type => $TA, order => 'asc', since => tso($s10, 120, ''), @U], [@at10, @after], 'since with +02:00, no fraction');
sel([type => $TA, order => 'asc', since => tso($s10, -330, '.000000'), @U], [@at10, @after], 'since with -05:30');
sel([type => $TA, order => 'asc', since => tso($s10 - 1000, 0, '.9999999') =~ s/\+00:00$/Z/r, @U],
    [@at10, @after], 'since 9.9999999 s (a fraction of seven digits)');
sel([type => $TA, order => 'asc', since => tso($s10, 0, '.0005') =~ s/\+00:00$/Z/r, @U], [@after],
    'since 10.0005 s: the event at 10.0005 s and later');
sel([type => $TA, order => 'asc', since => tso($s10, 0, '.000501') =~ s/\+00:00$/Z/r, @U], [ @e{qw(r3 r4 a9)} ],
    'since 10.000501 s: not the event at 10.0005 s');
sel([type => $TA, order => 'asc', since => iso_ms($B), until => iso_ms($s10)], [ @e{qw(r2 a2)} ],
    'until is exclusive');
sel([type => $TA, order => 'asc', since => iso_ms($B), until => tso($s10, 0, '.0005') =~ s/\+00:00$/Z/r],
    [ @e{qw(r2 a2)}, @at10 ], 'until 10.0005 s: not the event at 10.0005 s');
sel([type => $TA, order => 'asc', since => iso_ms($B), until => tso($s10, 60, '.000501')],
    [ @e{qw(r2 a2)}, @at10, $e{a5} ], 'until 10.000501 s (+01:00): the event at 10.0005 s');
sel([type => $TA, order => 'asc', since => iso_ms($B + 2_000), until => iso_ms($B + 2_001)], [ $e{r2} ],
    'a window of one millisecond');
sel([type => $TA, order => 'asc', since => iso_ms($B + 16_000), until => iso_ms($B + 20_000)], [ $e{r4} ],
    '[16 s, 20 s): only the event at 16 s');

# --- durations and the default window ----------------------------------------------
my $TD = "$T-dur";
my $now = now_ms();
my %d;
$d{d1} = post_ok(type => $TD, id => 'd1', ts => iso_ms($now - 30_000));
$d{d2} = post_ok(type => $TD, id => 'd2', ts => iso_ms($now - 10 * 60_000));
$d{d3} = post_ok(type => $TD, id => 'd3', ts => iso_ms($now - 50 * 60_000));
$d{d4} = post_ok(type => $TD, id => 'd4', ts => iso_ms($now - 70 * 60_000));
$d{d5} = post_ok(type => $TD, id => 'd5', ts => iso_ms($now - 23 * 3_600_000));
$d{d6} = post_ok(type => $TD, id => 'd6', ts => iso_ms($now - 25 * 3_600_000));
$d{d7} = post_ok(type => $TD, id => 'd7', ts => iso_ms($now - 6 * 86_400_000));
$d{d8} = post_ok(type => $TD, id => 'd8', ts => iso_ms($now - 8 * 86_400_000));
$d{d9} = post_ok(type => $TD, id => 'd9', ts => iso_ms($now + 10 * 60_000));
$d{d0} = post_ok(type => $TD, id => 'd0');    # the server's ts: now
my @dasc = sort { ms_of($a->{ts}) <=> ms_of($b->{ts}) } values %d;
my $within = sub { my ($lo, $hi) = @_; [ grep { my $t = ms_of($_->{ts}); $t >= $lo && (!defined $hi || $t < $hi) } @dasc ] };
sel([type => $TD, order => 'asc'], $within->($now - 3_600_000),
    'the default window: the last hour, no upper bound (a ts ahead of now included)');
sel([type => $TD, order => 'asc', since => '90s'], $within->($now - 90_000), 'since=90s');
sel([type => $TD, order => 'asc', since => '15m'], $within->($now - 15 * 60_000), 'since=15m');
sel([type => $TD, order => 'asc', since => '24h'], $within->($now - 86_400_000), 'since=24h');
sel([type => $TD, order => 'asc', since => '7d'], $within->($now - 7 * 86_400_000), 'since=7d');
sel([type => $TD, order => 'asc', until => '5m'], $within->($now - 3_600_000, $now - 5 * 60_000),
    'until=5m: from an hour ago to five minutes ago');
sel([type => $TD, order => 'asc', since => '2h', until => '45m'], [ @d{qw(d4 d3)} ], 'since=2h&until=45m');
sel([type => $TD, order => 'asc', since => '24h', until => '1m'], [ @d{qw(d5 d4 d3 d2)} ], 'since=24h&until=1m');
sel([type => $TD, order => 'asc', since => '7d', until => '24h'], [ @d{qw(d7 d6)} ], 'since=7d&until=24h');
sel([type => $TD, order => 'asc', since => iso_ms($now - 50 * 60_000), until => '20m'], [ $d{d3} ],
    'since as a time (inclusive), until as a duration');
sel([type => $TD, order => 'asc', since => '15m', until => iso_ms($now - 30_000)], [ $d{d2} ],
    'since as a duration, until as a time (exclusive)');

# --- a client ts a day off is found by its ts ------------------------------------------
{
    my $TX = "$T-dayoff";
    my $back = post_ok(type => $TX, id => 'x-back', ts => iso_ms($now - 23 * 3_600_000 - 1_800_000));
    my $ahead = post_ok(type => $TX, id => 'x-ahead', ts => iso_ms($now + 22 * 3_600_000));
    for my $x ($back, $ahead) {
        my $t = ms_of($x->{ts});
        sel([type => $TX, since => iso_ms($t - 60_000), until => iso_ms($t + 60_000)], [$x],
            "ts $x->{ts} (posted now): found in a window around its ts");
    }
    sel([type => $TX, since => '1h'], [$ahead], '... and not in the last hour but for the one ahead');
}

# --- types: exact, percent-decoded, "" ----------------------------------------------------
{
    my @W2 = (since => iso_ms($B + 30 * 60_000), until => iso_ms($B + 31 * 60_000));
    my $t0 = $B + 30 * 60_000;
    my $amp = post_ok(type => "$T-t a&b=c+d%", id => 'amp', ts => iso_ms($t0 + 1000));
    my $cafe = post_ok(type => "$T-caf\xc3\xa9 \xf0\x9f\x98\x80", id => 'cafe', ts => iso_ms($t0 + 2000));
    my $slash = post_ok(type => "$T-x/y", id => 'slash', ts => iso_ms($t0 + 3000));
    my $empty = post_ok(type => '', id => 'empty', ts => iso_ms($t0 + 4000));
    sel([type => "$T-t a&b=c+d%", @W2], [$amp], 'type with space, &, =, + and % (percent-encoded)');
    sel([type => "$T-caf\xc3\xa9 \xf0\x9f\x98\x80", @W2], [$cafe], 'type with non-ASCII (UTF-8, stored as \\u escapes)');
    sel([type => "$T-x/y", @W2], [$slash], 'type with a slash');
    sel([type => '', @W2], [$empty], 'type= (empty): the events of type ""');
    sel([@W2, order => 'asc'], [$amp, $cafe, $slash, $empty], 'all four without a type');
    sel([type => "$T-caf\xc3\xa9", @W2], [], 'a type is not matched by its prefix');

    # Types and run ids that JSON escapes: the filter compares the value,
    # not its spelling in the file (\", \\, \n, \u007f, surrogate pairs).
    my @W3 = (since => iso_ms($B + 40 * 60_000), until => iso_ms($B + 41 * 60_000));
    my $t1 = $B + 40 * 60_000;
    my $odd = "$T-q\"uo\\te\n\t\x7f\xf0\x9d\x84\x9e/";
    my $q = post_ok(type => $odd, id => 'odd', ts => iso_ms($t1 + 1000));
    sel([type => $odd, @W3], [$q], 'a type with a quote, a backslash, control characters, DEL and U+1D11E');
    my $rid = "R\xc3\xa9 \"51\"\\$$";
    my $st = start_run('{"run_id":' . js($rid) . ',"run_dir":"ev51u-' . $$ . '"}');
    is($st->{code}, 200, 'a run whose id has non-ASCII, quotes and a backslash') or diag $st->{body};
    my $u = post_ok(type => "$T-u", id => 'u1', ts => iso_ms($t1 + 2000), run => $rid);
    is(stop_run()->{code}, 200, '... stopped');
    my $us = post_ok(type => "$T-u", id => 'u2', ts => iso_ms($t1 + 3000), meta => '{"run_id":' . js($rid) . '}');
    sel([run_id => $rid, @W3, order => 'asc'], [$u, $us], 'run_id with non-ASCII, quotes and a backslash');
    sel([run_id => "R\xc3\xa9", @W3], [], '... and not its prefix');
}

# --- limit and next --------------------------------------------------------------------
{
    my @q = (type => $TA, @W);
    my $n = scalar @asc;
    my $all = events_get([@q, order => 'asc', limit => $n]);
    lines_are($all->{lines}, [ map { $_->{line} } @asc ], "limit=$n of $n: all");
    ok(!defined $all->{next}, "limit=$n of $n: next null");
    my $cut = events_get([@q, order => 'asc', limit => $n - 1]);
    lines_are($cut->{lines}, [ map { $_->{line} } @asc[0 .. $n - 2] ], 'limit=' . ($n - 1) . ': the first ' . ($n - 1));
    ok(defined $cut->{next}, '... and a next cursor');
    my $rest = events_get([@q, order => 'asc', limit => $n - 1, cursor => $cut->{next} // 'x']);
    lines_are($rest->{lines}, [ $asc[-1]{line} ], '... which gives the last one');
    ok($rest->{code} == 200 && !defined $rest->{next}, '... and then next is null');
    for my $o ('asc', 'desc') {
        my @want = map { $_->{line} } ($o eq 'asc' ? @asc : reverse @asc);
        for my $l (1, 2, 5) {
            my $f = events_follow([@q, order => $o, limit => $l]);
            ok(!$f->{error}, "order=$o limit=$l: every page 200, next ends null") or diag $f->{error};
            lines_are($f->{lines}, \@want, "order=$o limit=$l: following next gives every event once, in order");
            is($f->{pages}, POSIX::ceil($n / $l), "order=$o limit=$l: " . POSIX::ceil($n / $l) . ' pages');
        }
    }
    my $one = events_get([@q, limit => 1]);
    is(scalar @{ $one->{evs} || [] }, 1, 'limit=1: one event');
}

# --- every: at most one event per type per bucket, the latest in it ------------------------
{
    my $H = $B - 2 * 3_600_000;
    my $m = sub { $H + $_[0] * 60_000 };
    my ($A, $Bt) = ("$T-evA", "$T-evB");
    my %v;
    $v{A10}  = post_ok(type => $A, id => 'A10', ts => iso_ms($m->(10)));
    $v{A30}  = post_ok(type => $A, id => 'A30', ts => iso_ms($m->(30)));
    $v{A20}  = post_ok(type => $A, id => 'A20', ts => iso_ms($m->(20)));    # posted later, earlier ts
    $v{B15}  = post_ok(type => $Bt, id => 'B15', ts => iso_ms($m->(15)));
    $v{A65}  = post_ok(type => $A, id => 'A65', ts => iso_ms($m->(65)));
    $v{A100} = post_ok(type => $A, id => 'A100', ts => iso_ms($m->(100)));
    $v{B59}  = post_ok(type => $Bt, id => 'B59', ts => iso_ms($m->(59) + 59_999));    # last ms of hour 0
    $v{B60}  = post_ok(type => $Bt, id => 'B60', ts => iso_ms($m->(60)));             # first of hour 1
    my @w = (since => iso_ms($H), until => iso_ms($m->(120)));
    my @types = (type => $A, type => $Bt);
    sel([@types, @w, order => 'asc'], [ @v{qw(A10 B15 A20 A30 B59 B60 A65 A100)} ], 'without every: all eight');
    sel([@types, @w, order => 'asc', every => '1h'], [ @v{qw(A30 B59 B60 A100)} ],
        'every=1h: per type and hour the latest (hours aligned with since)');
    sel([@types, @w, every => '1h'], [ reverse @v{qw(A30 B59 B60 A100)} ], 'every=1h, order desc');
    sel([@types, @w, order => 'asc', every => '30m'], [ @v{qw(B15 A20 A30 B59 B60 A65 A100)} ], 'every=30m');
    sel([@types, @w, order => 'asc', every => '10m'], [ @v{qw(A10 B15 A20 A30 B59 B60 A65 A100)} ],
        'every=10m: one per bucket already, nothing dropped');
    sel([type => $A, @w, order => 'asc', every => '1h'], [ @v{qw(A30 A100)} ], 'every=1h, type A only');
    my $f = events_follow([@types, @w, order => 'asc', every => '30m', limit => 2]);
    ok(!$f->{error}, 'every=30m with limit=2: pages') or diag $f->{error};
    lines_are($f->{lines}, [ map { $_->{line} } @v{qw(B15 A20 A30 B59 B60 A65 A100)} ],
        'every=30m, limit=2, following next: the same events');
    my $fd = events_follow([@types, @w, every => '30m', limit => 3]);
    lines_are($fd->{lines}, [ map { $_->{line} } reverse @v{qw(B15 A20 A30 B59 B60 A65 A100)} ],
        'every=30m, desc, limit=3, following next: the same events, newest first');
}

all_answers_json();

done_testing();
