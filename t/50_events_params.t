# GET /events (SPEC §12.2, §2, §11.1): the shape of the answer, routing
# (both mounts, HEAD like GET, 405, no trailing slash), and every 422 of
# the parameters: pydantic's shape, loc ["query", name], items in
# parameter order (type, since, until, stream, run_id, order, limit,
# every, cursor, format), input the decoded value; a repeated parameter
# other than type, and cursors that are not ours or belong to other
# parameters.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use Time::HiRes ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest qw(:DEFAULT :events);

ensure_no_run();
my $T = "ev50-$$";

# --- the answer -------------------------------------------------------------
my @ev = map { hist_post(type => "$T-basic", id => "b$_") } 1 .. 3;
is(scalar(grep { $_->{code} == 200 } @ev), 3, 'three events posted');
my $r = events_get([type => "$T-basic"]);
is($r->{code}, 200, 'GET /events?type=... is 200') or diag events_desc($r);
is_json_ct($r, 'Content-Type application/json');
is_deeply($r->{top}, [qw(events next recent_since)], 'keys events, next, recent_since, in that order');
lines_are($r->{lines}, [ map { $_->{line} } reverse @ev ],
    'the three events, newest first (order=desc is the default), each in file form with "stream"');
ok($r->{has_next} && !defined $r->{next}, 'next is null: nothing more matches');
like($r->{recent_since} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
    'recent_since is a UTC stamp (the ring holds events)');
ok(defined $r->{recent_since} && $r->{recent_since} le $ev[0]{ts},
    'recent_since is no later than the first event (which is in the ring)')
    or diag "recent_since $r->{recent_since}, event ts $ev[0]{ts}";
is_deeply([ map { [okeys($_)] } @{ $r->{evs} } ],
    [ map { [qw(seq ts stream type data meta)] } 1 .. 3 ], 'each event has seq, ts, stream, type, data, meta in order');

# Mounts: the same answer under /telemetry, at / (its own port), and /small.
for my $m ('root', 'small') {
    my $o = events_get([type => "$T-basic"], mount => $m);
    is($o->{code} . ' ' . $o->{body}, $r->{code} . ' ' . $r->{body}, "the $m mount answers the same");
}
my $empty = events_get([type => "$T-none"]);
is($empty->{code}, 200, 'no match: 200');
json_is($empty->{body}, '{"events":[],"next":null,"recent_since":' . js($empty->{recent_since} // '') . '}',
    'no match: events [] and next null');

# --- routing ------------------------------------------------------------------
for my $m (mounts()) {
    my $g = events_get([type => "$T-basic", limit => 2], mount => $m);
    my $h = events_get([type => "$T-basic", limit => 2], mount => $m, method => 'HEAD');
    is($h->{code}, 200, "[$m] HEAD /events: 200 like GET");
    is($h->{ct}, $g->{ct}, "[$m] HEAD /events: same Content-Type as GET");
    is($h->{body}, '', "[$m] HEAD /events: no body");
    my $cl = $h->{h}->header('Content-Length');
    ok(!defined $cl || $cl == length $g->{body}, "[$m] HEAD: Content-Length, if sent, is the GET body's");
    my $h422 = events_get([limit => 0], mount => $m, method => 'HEAD');
    is($h422->{code} . ' ' . $h422->{body}, '422 ', "[$m] HEAD /events?limit=0: 422 without a body");
    for my $meth (qw(POST PUT DELETE)) {
        my $x = req(method => $meth, path => '/events', mount => $m, body => '', ct => 'application/json');
        is_err($x, 405, 'Method Not Allowed', "[$m] $meth /events: 405");
        is($x->{h}->header('Allow'), 'GET', "[$m] $meth /events: Allow: GET");
    }
    is_err(get('/events/', mount => $m), 404, 'Not Found', "[$m] GET /events/: 404 (no redirect)");
    is_err(get('/events/x', mount => $m), 404, 'Not Found', "[$m] GET /events/x: 404");
}

# --- 422: exact bodies -------------------------------------------------------
my $TIME_ERR = 'not an RFC 3339 time or a duration (90s, 15m, 24h, 7d)';
is_422(events_get([limit => 'abc']),
    '[{"type":"int_parsing","loc":["query","limit"],"msg":"Input should be a valid integer, unable to parse string as an integer","input":"abc"}]',
    'limit=abc: int_parsing');
is_422(events_get([limit => '0']),
    '[{"type":"greater_than_equal","loc":["query","limit"],"msg":"Input should be greater than or equal to 1","input":"0","ctx":{"ge":1}}]',
    'limit=0: greater_than_equal, ctx {"ge":1}');
is_422(events_get([limit => '10001']),
    '[{"type":"less_than_equal","loc":["query","limit"],"msg":"Input should be less than or equal to 10000","input":"10001","ctx":{"le":10000}}]',
    'limit=10001: less_than_equal, ctx {"le":10000}');
is_422(events_get([stream => 'both']),
    q{[{"type":"literal_error","loc":["query","stream"],"msg":"Input should be 'site', 'run' or 'all'","input":"both","ctx":{"expected":"'site', 'run' or 'all'"}}]},
    'stream=both: literal_error');
is_422(events_get([order => 'up']),
    q{[{"type":"literal_error","loc":["query","order"],"msg":"Input should be 'asc' or 'desc'","input":"up","ctx":{"expected":"'asc' or 'desc'"}}]},
    'order=up: literal_error');
is_422(events_get([format => 'xml']),
    q{[{"type":"literal_error","loc":["query","format"],"msg":"Input should be 'json' or 'ndjson'","input":"xml","ctx":{"expected":"'json' or 'ndjson'"}}]},
    'format=xml: literal_error');
is_422(events_get([since => 'yesterday']),
    '[{"type":"value_error","loc":["query","since"],"msg":"Value error, ' . $TIME_ERR
    . '","input":"yesterday","ctx":{"error":"' . $TIME_ERR . '"}}]',
    'since=yesterday: value_error with ctx.error');
is_422(events_get([until => '2026-12-04T25:00:00Z']),
    '[{"type":"value_error","loc":["query","until"],"msg":"Value error, ' . $TIME_ERR
    . '","input":"2026-12-04T25:00:00Z","ctx":{"error":"' . $TIME_ERR . '"}}]',
    'until with hour 25: value_error with ctx.error');

# One item per bad parameter, in parameter order whatever the query order.
{
    my $x = events_get([format => 'xml', cursor => 'not-a-cursor', every => 'often', limit => '0',
                        order => 'up', stream => 'x', until => 'later', since => 'soon', type => 'ok']);
    is($x->{code}, 422, 'eight bad parameters: 422');
    is_deeply([ map { "$_->[1] $_->[0]" } @{ q422_items($x) || [] } ],
        ['since value_error', 'until value_error', 'stream literal_error', 'order literal_error',
         'limit greater_than_equal', 'every value_error', 'cursor value_error', 'format literal_error'],
        'one item each, in the order since, until, stream, order, limit, every, cursor, format')
        or diag events_desc($x);
}

# --- 422 by type, loc, msg and input ------------------------------------------
# [pairs, name, type, msg, input (JSON text)]
my @bad;
for my $v ('ten', '', '0x10', '1 0') {
    push @bad, [[limit => $v], 'limit', 'int_parsing',
        'Input should be a valid integer, unable to parse string as an integer', js($v)];
}
for my $v ('-1', '-10001') {
    push @bad, [[limit => $v], 'limit', 'greater_than_equal', 'Input should be greater than or equal to 1', js($v)];
}
for my $v ('10002', '99999999999999999999') {
    push @bad, [[limit => $v], 'limit', 'less_than_equal', 'Input should be less than or equal to 10000', js($v)];
}
for my $v ('Site', 'RUN', '', 'site ', 'both') {
    push @bad, [[stream => $v], 'stream', 'literal_error', q{Input should be 'site', 'run' or 'all'}, js($v)];
}
for my $v ('ASC', 'Desc', '', 'newest') {
    push @bad, [[order => $v], 'order', 'literal_error', q{Input should be 'asc' or 'desc'}, js($v)];
}
for my $v ('JSON', 'text', '', 'x-ndjson') {
    push @bad, [[format => $v], 'format', 'literal_error', q{Input should be 'json' or 'ndjson'}, js($v)];
}
for my $p ('since', 'until') {
    for my $v ('yesterday', '', '2026-12-04', '2026-12-04T07:00:00', '2026-13-01T00:00:00Z',
               '2026-12-04T07:00:00+2', '15', 'm', '-5m', '1.5h', '5y', '2026-12-04T07:00Z') {
        push @bad, [[$p => $v], $p, 'value_error', "Value error, $TIME_ERR", js($v)];
    }
}
for my $v ('often', '', '10', '0s', '-1h', '1.5m') {
    push @bad, [[every => $v], 'every', 'value_error', 'Value error, not a duration (90s, 15m, 24h, 7d)', js($v)];
}
# until not after since (absolute, equal, and as durations: until=2h is
# before since=1h).
push @bad, [[since => '2026-12-01T10:00:00Z', until => '2026-12-01T10:00:00Z'], 'until', 'value_error',
    'Value error, until must be after since', js('2026-12-01T10:00:00Z')];
push @bad, [[since => '2026-12-01T10:00:00.001Z', until => '2026-12-01T10:00:00Z'], 'until', 'value_error',
    'Value error, until must be after since', js('2026-12-01T10:00:00Z')];
push @bad, [[since => '2026-12-01T10:00:00Z', until => '2026-12-01T11:00:00+01:00'], 'until', 'value_error',
    'Value error, until must be after since', js('2026-12-01T11:00:00+01:00')];
push @bad, [[since => '1h', until => '2h'], 'until', 'value_error', 'Value error, until must be after since', js('2h')];
push @bad, [[until => '3h'], 'until', 'value_error', 'Value error, until must be after since', js('3h')];
# Repeated parameters: only type may repeat.
for my $p ([since => '1h', '2h'], [until => '1m', '1m'], [stream => 'site', 'run'], [run_id => 'a', 'b'],
           [order => 'asc', 'asc'], [limit => '1', '2'], [every => '1m', '1h'], [cursor => 'x', 'y'],
           [format => 'json', 'ndjson']) {
    my ($n, @v) = @$p;
    push @bad, [[$n => $v[0], type => 'x', $n => $v[1]], $n, 'value_error', 'Value error, given more than once',
        '[' . join(',', map { js($_) } @v) . ']'];
}
push @bad, [[stream => 'a', stream => 'b', stream => 'c'], 'stream', 'value_error', 'Value error, given more than once',
    '["a","b","c"]'];
# Cursors that are not ours.
for my $v ('not-a-cursor', 'AAAA', '%%%', 'eyJ0cyI6MX0') {
    push @bad, [[cursor => $v], 'cursor', 'value_error', 'Value error, not a cursor of this server', js($v)];
}
# The input is the percent-decoded value.
push @bad, [[stream => " x\xc3\xa9&="], 'stream', 'literal_error', q{Input should be 'site', 'run' or 'all'},
    js(" x\xc3\xa9&=")];

for my $b (@bad) {
    my ($pairs, $name, $type, $msg, $input) = @$b;
    my $x = events_get($pairs);
    my $items = q422_items($x);
    my $want = [[ $type, $name, $msg, canon_text($input) ]];
    my $ok = $x->{code} == 422 && $items && eq_array($items, $want);
    ok($ok, "?$x->{query}: 422 $type at [\"query\",\"$name\"]")
        or diag events_desc($x) . "\n  expected one item: $type $name '$msg' input $input";
}

# The same bad values are fine where they are good: type repeats; bounds.
{
    my $x = events_get([type => "$T-basic", type => "$T-none", type => "$T-basic"]);
    is($x->{code}, 200, 'type repeated: 200 (type may repeat)');
    is(scalar @{ $x->{evs} || [] }, 3, '... each event once');
    for my $v (1, 10000) {
        is(events_get([type => "$T-basic", limit => $v])->{code}, 200, "limit=$v: 200");
    }
    for my $p ([stream => 'site'], [stream => 'run'], [stream => 'all'], [order => 'asc'], [order => 'desc'],
               [format => 'json'], [every => '90s'], [every => '15m'], [every => '24h'], [every => '7d'],
               [since => '90s'], [since => '15m'], [since => '24h'], [since => '7d'],
               [since => '2026-12-04T07:00:00Z'], [since => '2026-12-04T07:00:00.5+02:00'],
               [since => '2026-12-04T07:00:00.123456789-05:30'], [until => '1m']) {
        my $x = events_get([type => "$T-basic", @$p]);
        is($x->{code}, 200, "$p->[0]=$p->[1]: 200") or diag events_desc($x);
    }
}

# Never a 500: values that are not UTF-8 are a 422 at their parameter;
# unknown parameters are ignored (as FastAPI does).
for my $p (['type', "\xff"], ['since', "\xc3("], ['run_id', "a\xffb"], ['stream', "\xfe"]) {
    my $x = events_get([ $p->[0] => $p->[1] ]);
    my $items = q422_items($x) || [];
    ok($x->{code} == 422 && @$items == 1 && $items->[0][1] eq $p->[0],
        "$p->[0] not UTF-8: 422 at [\"query\",\"$p->[0]\"]") or diag events_desc($x);
}
{
    my $x = events_get([type => "$T-basic", foo => 'bar', Type => 'x', limit_ => '0']);
    is($x->{code} . ' ' . scalar(@{ $x->{evs} || [] }), '200 3', 'unknown parameters (foo, Type, limit_) are ignored');
}

# Cost follows the window: a window of centuries answers at once.
for my $w ([since => '1900-01-01T00:00:00Z'], [since => '1900-01-01T00:00:00Z', until => '2100-01-01T00:00:00Z'],
           [since => '9999-12-31T23:59:59Z'], [since => '0001-01-01T00:00:00Z', until => '0001-01-02T00:00:00Z']) {
    my $t0 = Time::HiRes::time();
    my $x = events_get([type => "$T-none", @$w]);
    my $took = Time::HiRes::time() - $t0;
    ok($x->{code} == 200 && $took < 5, sprintf('?%s: 200 in %.2f s (under 5 s)', $x->{query}, $took))
        or diag events_desc($x);
}

# A cursor of one query given to another: the cursor belongs to other
# parameters (type, stream, run_id, since, until, order, every).
{
    my $first = events_get([type => "$T-basic", limit => 1]);
    my $c = $first->{next};
    ok(defined $c && length $c, 'limit=1 of three: a next cursor') or diag events_desc($first);
    $c //= 'none';
    my $same = events_get([type => "$T-basic", limit => 1, cursor => $c]);
    is($same->{code}, 200, 'the cursor with the same parameters: 200') or diag events_desc($same);
    for my $other ([type => "$T-other"], [type => "$T-basic", stream => 'site'], [type => "$T-basic", order => 'asc'],
                   [type => "$T-basic", since => '2h'], [type => "$T-basic", run_id => 'R'],
                   [type => "$T-basic", every => '1m'], [type => "$T-basic", type => "$T-none"],
                   [type => "$T-basic", until => '1s']) {
        my $x = events_get([@$other, limit => 1, cursor => $c]);
        my $items = q422_items($x) || [];
        ok($x->{code} == 422 && eq_array($items,
                [[ 'value_error', 'cursor', 'Value error, the cursor belongs to other parameters', canon_text(js($c)) ]]),
            "the cursor with $x->{query}: 422 the cursor belongs to other parameters") or diag events_desc($x);
    }
}

all_answers_json();

done_testing();
