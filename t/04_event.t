# POST /event (SPEC §3.6, §2.4, §5, §7, §8.1-8.4, 8.12-8.13): the response
# envelope and its key order, client ts, make_current, store_permanently,
# the lax bool rules, unknown fields, duplicate keys, meta without a run.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;

ensure_no_run();
my $site = site_dir();

my $last;    # last site seq seen; every accepted event must be $last + 1
sub ev {
    my ($body, $name, %o) = @_;
    my $r = post_event($body, %o);
    is($r->{code}, 200, "$name: 200") or diag $r->{body};
    if (defined $last && $r->{j}) {
        is($r->{j}{seq}, $last + 1, "$name: seq is the next number");
    }
    $last = $r->{j}{seq} if $r->{j};
    return $r;
}

sub line_for {
    my ($r) = @_;
    my $f = site_file_for($r->{j}{ts}) or return undef;
    return lines_by_seq($f)->{ $r->{j}{seq} };
}

sub any_line_for_seq {
    my ($seq) = @_;
    opendir my $dh, $site or return undef;
    for my $f (grep { /^site_\d{8}\.ndjson$/ } readdir $dh) {
        my $l = lines_by_seq("$site/$f")->{$seq};
        return $l if defined $l;
    }
    return undef;
}

# --- the envelope -------------------------------------------------------------
{
    my $r = ev('{"type":"env-04","data":{"z":1,"a":[1,2,{"y":null,"b":true}]},"meta":{"m2":1,"m1":"x"}}',
        'envelope');
    is_json_ct($r);
    is_deeply([okeys($r->{body})], [qw(seq ts type data meta)],
        'response keys in order seq, ts, type, data, meta (no stream)');
    unlike($r->{body}, qr/"stream"/, 'no stream in the response');
    ok(ts_near_now($r->{j}{ts}), 'ts stamped by the server: YYYY-MM-DDTHH:MM:SS.mmmZ, now');
    json_is_ordered($r->{body},
        '{"seq":' . $r->{j}{seq} . ',"ts":' . js($r->{j}{ts})
        . ',"type":"env-04","data":{"z":1,"a":[1,2,{"y":null,"b":true}]},"meta":{"m2":1,"m1":"x"}}',
        'data and meta echoed with key order preserved');
    json_is_ordered(get('/current/env-04')->{body}, $r->{body}, '/current/{type} is the same envelope');
    my $line = line_for($r);
    is($line, '{"seq":' . $r->{j}{seq} . ',"ts":"' . $r->{j}{ts}
        . '","stream":"site","type":"env-04","data":{"z":1,"a":[1,2,{"y":null,"b":true}]},"meta":{"m2":1,"m1":"x"}}',
        'the file line: compact, stream "site" after ts');
}

# --- data: any JSON value; must be present ----------------------------------------
for my $d ('null', '[]', '{}', '0', '-17', '-1.5', '"text"', 'true', 'false', '[1,"a",null,{"k":[]}]',
           '"\u00e9\ud83d\ude00"', '9223372036854775807', '-9223372036854775808')
{
    my $r = ev('{"type":"data-04","data":' . $d . '}', "data $d");
    json_is(canon(onode(oparse($r->{body}), 'data')), $d, "data $d echoed");
}
is_422(post_event('{"type":"data-04"}'),
    '[{"type":"missing","loc":["body","data"],"msg":"Field required","input":{"type":"data-04"}}]',
    'data is required (a key with null is fine, a missing key is not)');

# --- type: any string --------------------------------------------------------------
for my $t ('', ' ', 'with space', 'a/b', "caf\xc3\xa9", 'x' x 1000, '..', '.', "tab\\there", 'emoji \ud83d\ude00') {
    my $r = ev('{"type":' . (($t =~ /\\/) ? qq{"$t"} : js($t)) . ',"data":1}', 'type ' . substr($t, 0, 20));
    my $n = oparse($r->{body});
    is(canon(onode($n, 'type')), canon(oparse(($t =~ /\\/) ? qq{"$t"} : js($t))), 'type echoed verbatim');
}

# --- ts: client value verbatim, null means server time; the day file comes from
# the server clock, never from the client ts.
{
    my $a = ev('{"type":"clientts-04","data":1,"ts":""}', 'ts ""');
    is($a->{j}{ts}, '', 'ts "" stored as ""');
    like(any_line_for_seq($a->{j}{seq}) // '', qr/^\{"seq":$a->{j}{seq},"ts":"","stream":"site"/,
        'ts "" in the file');
    my $b = ev('{"type":"clientts-04","data":2,"ts":"not-a-timestamp"}', 'ts not-a-timestamp');
    is($b->{j}{ts}, 'not-a-timestamp', 'any string stored verbatim');
    my $now = ev('{"type":"tsnull-04","data":3,"ts":null}', 'ts null');
    ok(ts_near_now($now->{j}{ts}), 'ts null: server time');
    my $c = ev('{"type":"clientts-04","data":4,"ts":"2001-01-01T00:00:00.000Z"}', 'ts in 2001');
    is($c->{j}{ts}, '2001-01-01T00:00:00.000Z', 'client ts echoed');
    my $f = site_file_for($now->{j}{ts});
    ok(defined lines_by_seq($f)->{ $c->{j}{seq} }, 'the day file is chosen by the server clock');
    ok(!-e "$site/site_20001231.ndjson" && !-e "$site/site_20010101.ndjson",
        'no day file named after the client ts');
    json_is_ordered(get('/current/clientts-04')->{body}, $c->{body}, 'client ts in /current');
}

# --- make_current=false ---------------------------------------------------------------
{
    my $r = ev('{"type":"mcnew-04","data":1,"make_current":false}', 'make_current false, new type');
    is_err(get('/current/mcnew-04'), 404, q{No current event for type 'mcnew-04'},
        'make_current false: a new type stays 404');
    unlike(get('/current')->{body}, qr/"mcnew-04"/, '... and is not in /current');
    ok(defined line_for($r), '... but it is stored');
    my $v1 = ev('{"type":"mc-04","data":"v1"}', 'mc v1');
    my $v2 = ev('{"type":"mc-04","data":"v2","make_current":false}', 'mc v2 not current');
    json_is_ordered(get('/current/mc-04')->{body}, $v1->{body}, 'make_current false: current unchanged');
    ok(defined line_for($v2), 'make_current false: stored');
}

# --- store_permanently=false: live only, leaves a gap in the file -----------------------
{
    my $e = ev('{"type":"eph-04","data":"live","store_permanently":false}', 'ephemeral');
    my $n = ev('{"type":"eph-after-04","data":1}', 'after ephemeral');
    my $by = site_lines_by_seq();
    ok(!defined any_line_for_seq($e->{j}{seq}), 'ephemeral event not in any file');
    ok(defined $by->{ $n->{j}{seq} } && defined $by->{ $e->{j}{seq} - 1 },
        'the neighbours are stored: a gap of exactly the ephemeral seq');
    json_is_ordered(get('/current/eph-04')->{body}, $e->{body}, 'ephemeral event is live in /current/{type}');
    like(get('/current')->{body}, qr/"eph-04"/, '... and in /current');
    my $both = ev('{"type":"ghost-04","data":1,"store_permanently":false,"make_current":false}',
        'neither stored nor current');
    is_err(get('/current/ghost-04'), 404, q{No current event for type 'ghost-04'}, 'ghost not current');
    ok(!defined any_line_for_seq($both->{j}{seq}), 'ghost not stored');
}

# --- lax bools (§2.4) -----------------------------------------------------------------
my @FALSE = ('"false"', '"no"', '"off"', '0', 'false', '"0"', '"f"', '"n"', '"OFF"', '"False"', '"N"', '0.0');
my @TRUE  = ('"TRUE"', '"yes"', '1', 'true', '"on"', '"t"', '"y"', '"1"', '"Yes"', '1.0', '"ON"');
{
    my $i = 0;
    my $base = ev('{"type":"bool-mc-04","data":"base"}', 'bool base');
    my $current = $base;
    for my $v (@FALSE, @TRUE) {
        my $want = (grep { $_ eq $v } @TRUE) ? 1 : 0;
        $i++;
        my $r = ev('{"type":"bool-mc-04","data":' . $i . ',"make_current":' . $v . '}', "make_current $v");
        $current = $r if $want;
        json_is_ordered(get('/current/bool-mc-04')->{body}, $current->{body},
            "make_current $v is " . ($want ? 'true' : 'false'));
    }
    for my $v (@FALSE, @TRUE) {
        my $want = (grep { $_ eq $v } @TRUE) ? 1 : 0;
        my $r = ev('{"type":"bool-sp-04","data":0,"store_permanently":' . $v . '}', "store_permanently $v");
        my $stored = defined any_line_for_seq($r->{j}{seq});
        is($stored ? 1 : 0, $want, "store_permanently $v is " . ($want ? 'true' : 'false'));
    }
}
for my $field (qw(make_current store_permanently)) {
    for my $c (['"maybe"', 'bool_parsing'], ['2', 'bool_parsing'], ['-1', 'bool_parsing'],
               ['" true"', 'bool_parsing'], ['""', 'bool_parsing'], ['"truee"', 'bool_parsing'],
               ['1.5', 'bool_type'], ['null', 'bool_type'], ['[]', 'bool_type'], ['{}', 'bool_type'],
               ['[true]', 'bool_type'])
    {
        my ($v, $type) = @$c;
        my $msg = $type eq 'bool_parsing'
            ? 'Input should be a valid boolean, unable to interpret input'
            : 'Input should be a valid boolean';
        is_422(post_event('{"type":"boolerr-04","data":1,"' . $field . '":' . $v . '}'),
            qq{[{"type":"$type","loc":["body","$field"],"msg":"$msg","input":$v}]},
            "$field $v: $type");
    }
}
is_err(get('/current/boolerr-04'), 404, q{No current event for type 'boolerr-04'},
    'rejected bools stored nothing');

# --- unknown fields are ignored ------------------------------------------------------
{
    my $r = ev('{"seq":999999,"stream":"run","extra":{"x":1},"type":"unk-04","id":"x","data":1,"ts":null,"run_id":"r"}',
        'unknown fields');
    isnt($r->{j}{seq}, 999999, 'client seq ignored');
    is_deeply([okeys($r->{body})], [qw(seq ts type data meta)], 'no extra keys in the response');
    my $l = line_for($r) // '';
    like($l, qr/^\{"seq":$r->{j}{seq},"ts":"[^"]+","stream":"site","type":"unk-04","data":1,"meta":\{\}\}$/,
        'file line: server seq, stream site, no extra keys');
}

# --- meta without a run is stored untouched, run_id included --------------------------
{
    my $r = ev('{"type":"meta-04","data":1,"meta":{"run_id":"client-run","x":{"b":1,"a":2}}}', 'meta kept');
    json_is_ordered(canon(onode(oparse($r->{body}), 'meta'), 1), '{"run_id":"client-run","x":{"b":1,"a":2}}',
        'no run: client meta.run_id untouched');
    like(line_for($r) // '', qr/"meta":\{"run_id":"client-run","x":\{"b":1,"a":2\}\}\}$/,
        '... in the file too');
}

# --- duplicate keys: the last value wins, in the first position (§2.3, §8.12) -----------
{
    my $r = ev('{"type":"dup-a-04","data":1,"type":"dup-b-04"}', 'duplicate type');
    is($r->{j}{type}, 'dup-b-04', 'the last type wins');
    is_err(get('/current/dup-a-04'), 404, q{No current event for type 'dup-a-04'}, 'the first type is not current');
    my $d = ev('{"type":"dup-04","data":{"a":1,"b":2,"a":3}}', 'duplicate key in data');
    json_is_ordered(canon(onode(oparse($d->{body}), 'data'), 1), '{"a":3,"b":2}',
        'duplicate key: last value, first position');
    like(line_for($d) // '', qr/"data":\{"a":3,"b":2\}/, '... in the file too');
}

# --- the root mount takes events into the same numbering ------------------------------
ev('{"type":"root-04","data":1}', 'event on the root mount', mount => 'root');
ev('{"type":"root-04","data":2}', 'event on /small', mount => 'small');
json_is(get('/current/root-04', mount => 'root')->{body}, get('/current/root-04')->{body},
    'both mounts see the same current value');

# --- events during a run: ts, ephemeral, make_current ------------------------------------
{
    my $st = start_run('{"run_dir":"ev-04","run_id":"E4"}');
    my $a = post_event('{"type":"inrun-04","data":1,"ts":""}');
    is($a->{j}{ts}, '', 'client ts "" in a run');
    my $b = post_event('{"type":"inrun-04","data":2,"store_permanently":"no"}');
    is($b->{j}{seq}, $a->{j}{seq} + 1, 'ephemeral run event uses a run seq');
    my $c = post_event('{"type":"inrun-04","data":3,"make_current":"off"}');
    json_is_ordered(get('/current/inrun-04')->{body}, $b->{body}, 'run: ephemeral is current, make_current off is not');
    stop_run();
    my $lines = file_lines("$site/ev-04/telemetry.ndjson");
    is_deeply([map { /^\{"seq":(\d+),/ ? $1 : -1 } @$lines], [$a->{j}{seq}, $c->{j}{seq}],
        'run file: ephemeral event missing, gap left');
    like($lines->[0] // '', qr/^\{"seq":$a->{j}{seq},"ts":"","stream":"run","type":"inrun-04","data":1,"meta":\{"run_id":"E4"\}\}$/,
        'run line with client ts ""');
}

# A run with only ephemeral events has an empty directory (§3.4).
{
    my $st = start_run('{"run_dir":"eph-only-04","run_id":"EO"}');
    is($st->{code}, 200, 'run EO started');
    my $e = post_event('{"type":"eph-only-04","data":1,"store_permanently":false}');
    is($e->{code}, 200, 'ephemeral run event');
    json_is_ordered(get('/current/eph-only-04')->{body}, $e->{body}, 'ephemeral run event is current');
    stop_run();
    ok(-d "$site/eph-only-04", 'run directory exists');
    ok(!-e "$site/eph-only-04/telemetry.ndjson", 'only ephemeral events: no telemetry.ndjson');
}

all_answers_json();

done_testing();
