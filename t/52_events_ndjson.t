# GET /events as NDJSON (SPEC §12.2): with Accept: application/x-ndjson
# or format=ndjson, Content-Type application/x-ndjson, the selection in
# ascending order (whatever order= says), one envelope per line, each
# byte-identical to its line in the day file or run file (and an
# ephemeral event exactly as the module would have written it); no limit
# unless one is given (1005 events where JSON stops at 1000), and with a
# limit that cut it short, the Panoptes-Next-Cursor header continues it.
# The JSON answer holds the same events (as values).
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest qw(:DEFAULT :events);

ensure_no_run();
my $T = "ev52-$$";
my $site = site_dir();
my $NDJ = ['Accept' => 'application/x-ndjson'];

sub is_ndjson {
    my ($r, $name) = @_;
    my $ok = $r->{code} == 200 && ($r->{ct} // '') =~ m{^application/x-ndjson\s*(;|$)}i;
    ok($ok, "$name: 200 application/x-ndjson") or diag events_desc($r);
    return $ok;
}

# Events whose file lines exercise the serialisation: floats in Python's
# repr, escapes, non-ASCII, big integers, key order; stored and ephemeral,
# site and run.
my @data = (
    '{"id":"f","v":[1.5,1E2,1e-7,0.1,1e22,-0.0,123456789.0,5e-324]}',
    '{"id":"s","t":"caf\u00e9 \ud83d\ude00 \"q\" \\\\ / \n\t\u0001\u007f","u":"' . "\xc3\xa9" . '"}',
    '{"id":"i","big":9223372036854775807,"neg":-9223372036854775808,"z":-0}',
    '{"z":1,"id":"k","a":{"y":[],"b":{}},"m":null,"t":true,"f":false}',
);
my @ev;
for my $i (0 .. $#data) {
    push @ev, hist_post(type => "$T-a", id => "x$i", data => $data[$i], meta => '{"m":' . $i . '}');
}
push @ev, hist_post(type => "$T-a", id => 'eph', data => '{"id":"eph","v":2.50}', sp => 0);
my $R = "EV52-$$";
is(start_run('{"run_id":"' . $R . '","run_dir":"ev52-' . $$ . '"}')->{code}, 200, "run $R started");
push @ev, hist_post(type => "$T-a", id => 'r0', data => '{"id":"r0","v":1e-05}', run => $R, meta => '{"run_id":"client"}');
push @ev, hist_post(type => "$T-a", id => 'r1', data => '{"id":"r1","v":"\u00e9"}', run => $R, sp => 0);
push @ev, hist_post(type => "$T-a", id => 'r2', data => '{"id":"r2","v":[{}]}', run => $R);
is(stop_run()->{code}, 200, 'run stopped');
is(scalar(grep { $_->{code} == 200 } @ev), scalar @ev, scalar(@ev) . ' events posted') or diag join "\n", map { $_->{body} } @ev;
# r0 sent meta.run_id "client": the module keeps its position and sets the
# run's id.
$ev[5]{line} =~ s/"meta":\{"run_id":"client","run_id":"[^"]*"\}/"meta":{"run_id":"$R"}/;

# The file line of each stored event, from the day file or run file.
my $runfile = "$site/ev52-$$/telemetry.ndjson";
my @want;
for my $e (@ev) {
    my $line = $e->{line};
    if ($e->{sp}) {
        my $f = $e->{stream} eq 'run' ? $runfile : site_file_for($e->{ts});
        my $fl = lines_by_seq($f)->{ $e->{seq} };
        is($fl, $e->{line}, "$e->{id}: the file line is Python's json.dumps (the test's expectation holds)");
        $line = $fl // 'missing';
    }
    push @want, $line;
}
# Ascending: by ts, then site before run, then seq.
my @order = sort { $ev[$a]{ts} cmp $ev[$b]{ts} || ($ev[$a]{stream} eq 'run') <=> ($ev[$b]{stream} eq 'run')
                   || $ev[$a]{seq} <=> $ev[$b]{seq} } 0 .. $#ev;
my @asc = @want[@order];

my @q = (type => "$T-a", since => '10m');
{
    my $r = events_get(\@q, headers => $NDJ);
    is_ndjson($r, 'Accept: application/x-ndjson');
    ok($r->{complete}, 'the body ends with a newline');
    is($r->{body}, join('', map { "$_\n" } @asc), 'each line byte-identical to the file line (ephemeral: as it would be), ascending');
    ok(!defined $r->{next}, 'no Panoptes-Next-Cursor: nothing was cut');
    ok(!defined $r->{skipped}, 'no Panoptes-Skipped');
    my $f = events_get([@q, format => 'ndjson']);
    is_ndjson($f, 'format=ndjson');
    is($f->{body}, $r->{body}, 'format=ndjson: the same bytes');
    my $d = events_get([@q, order => 'desc'], headers => $NDJ);
    is($d->{body}, $r->{body}, 'NDJSON with order=desc: still ascending');
    my $j = events_get([@q, order => 'asc']);
    is($j->{code}, 200, 'the same query as JSON');
    lines_are($j->{lines}, \@asc, 'JSON: the same events, as values in file form');
    my $jd = events_get(\@q);
    lines_are($jd->{lines}, [reverse @asc], 'JSON, default order: newest first');
    for my $acc ('application/json', '*/*') {
        my $x = events_get(\@q, headers => ['Accept' => $acc]);
        ok($x->{code} == 200 && ($x->{ct} // '') =~ m{^application/json}, "Accept: $acc: JSON")
            or diag events_desc($x);
    }
    my $h = events_get(\@q, headers => $NDJ, method => 'HEAD');
    is($h->{code} . ' ' . ($h->{ct} // '') . ' [' . $h->{body} . ']', '200 ' . ($r->{ct} // '') . ' []',
        'HEAD with Accept: application/x-ndjson: 200, the same Content-Type, no body');
    my $e = events_get([type => "$T-none"], headers => $NDJ);
    is_ndjson($e, 'nothing selected');
    is($e->{body}, '', 'nothing selected: an empty body');
    my $bad = events_get([@q, limit => 0], headers => $NDJ);
    is($bad->{code}, 422, 'a bad parameter with NDJSON asked for: 422');
    like($bad->{ct} // '', qr{^application/json}, '... as JSON');
    my $bad2 = events_get([@q, format => 'ndjson', stream => 'x']);
    ok($bad2->{code} == 422 && ($bad2->{ct} // '') =~ m{^application/json}, 'format=ndjson&stream=x: 422 JSON');
    my $run = events_get([@q, stream => 'run', run_id => $R], headers => $NDJ);
    is($run->{body}, join('', map { "$_\n" } grep { /"stream":"run"/ } @asc), 'stream=run&run_id: the run lines');
}

# A limit: the first lines, and Panoptes-Next-Cursor to the rest.
{
    my (@lines, @cursors);
    my $f = events_follow([@q, limit => 3], headers => $NDJ, each => sub {
        my ($r) = @_;
        push @cursors, $r->{next};
        push @lines, scalar @{ $r->{lines} || [] };
    });
    ok(!$f->{error}, 'limit=3: pages followed with Panoptes-Next-Cursor') or diag $f->{error};
    lines_are($f->{lines}, \@asc, 'limit=3: every line once, ascending, byte for byte');
    is_deeply(\@lines, [3, 3, 2], 'pages of 3, 3 and 2 lines');
    ok(!defined $cursors[-1] && !grep({ !defined } @cursors[0 .. $#cursors - 1]),
        'a cursor on the cut pages, none on the last');
    my $exact = events_get([@q, limit => scalar @asc], headers => $NDJ);
    ok(!defined $exact->{next}, 'limit = the number of events: no cursor');
}

# No limit unless one is given: 1005 events (JSON stops at 1000).
{
    my $c = PTMTest::Client->new(keep_alive => 1);
    my $TB = "$T-bulk";
    my @bulk;
    for my $i (1 .. 1005) {
        push @bulk, hist_post(client => $c, type => $TB, id => "b$i",
                              data => '{"id":"b' . $i . '","v":' . ($i / 8) . '}', sp => ($i % 10 != 0));
    }
    is(scalar(grep { $_->{code} == 200 } @bulk), 1005, '1005 events posted');
    my %by;    # day file => seq => line
    my @wantb = map {
        my $e = $_;
        if ($e->{sp}) {
            my $fn = site_file_for($e->{ts});
            $by{$fn} ||= lines_by_seq($fn);
            $by{$fn}{ $e->{seq} } // "missing seq $e->{seq}";
        }
        else { $e->{line} }
    } sort { $a->{ts} cmp $b->{ts} || $a->{seq} <=> $b->{seq} } @bulk;
    my $r = events_get([type => $TB, since => '10m'], headers => $NDJ);
    is_ndjson($r, 'NDJSON of 1005 events');
    lines_are($r->{lines}, \@wantb, 'NDJSON without a limit: all 1005, byte for byte, ascending');
    ok(!defined $r->{next}, '... and no cursor');
    my $j = events_get([type => $TB, since => '10m']);
    is(scalar @{ $j->{evs} || [] }, 1000, 'JSON without a limit: 1000 (the default)');
    ok(defined $j->{next}, '... and a next cursor');
    my $f = events_follow([type => $TB, since => '10m', order => 'asc']);
    ok(!$f->{error} && $f->{pages} == 2, 'JSON: two pages') or diag $f->{error} // "$f->{pages} pages";
    lines_are($f->{lines}, \@wantb, 'JSON pages: the same 1005 events');
    my $l = events_get([type => $TB, since => '10m', limit => 10000], headers => $NDJ);
    is(scalar @{ $l->{lines} || [] }, 1005, 'NDJSON with limit=10000: all 1005');
}

done_testing();
