# Request body parsing and validation (SPEC §2.3, §2.4, §2.6, §8.11,
# §11.2, §11.3 F7-F9): exact 422 bodies, Content-Type rules, the four
# json_invalid cases, the module's extra rejections (NaN/Infinity, integers
# beyond int64, invalid UTF-8, lone surrogates), 400 for deep nesting, and
# "a rejected request changes nothing and uses no seq".
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;

ensure_no_run();

my $MA = 'Input should be a valid dictionary or object to extract fields from';

# Snapshot before the rejected requests.
my $p1 = post_event('{"type":"probe-05","data":1}');
my $cur_before = get('/current')->{body};

# --- §2.6 table -----------------------------------------------------------------
my $missing_body = '[{"type":"missing","loc":["body"],"msg":"Field required","input":null}]';
is_422(post_event(undef, ct => undef), $missing_body, 'no body, no Content-Type');
is_422(post_event(undef), $missing_body, 'no body, Content-Type application/json');
is_422(post_event(''), $missing_body, 'empty body');
is_422(post_event('null'), $missing_body, 'body null');
is_422(post_event(" null \n"), $missing_body, 'body null with whitespace');
is_422(post_event('', ct => undef), $missing_body, 'empty body without Content-Type');

is_422(post_event('{"data":{"a":1}}'),
    '[{"type":"missing","loc":["body","type"],"msg":"Field required","input":{"data":{"a":1}}}]',
    'type missing: input is the whole body');
is_422(post_event('{"type":"x"}'),
    '[{"type":"missing","loc":["body","data"],"msg":"Field required","input":{"type":"x"}}]',
    'data missing');
is_422(post_event('{}'),
    '[{"type":"missing","loc":["body","type"],"msg":"Field required","input":{}},'
  . '{"type":"missing","loc":["body","data"],"msg":"Field required","input":{}}]',
    '{}: type then data missing');

for my $v ('"str"', '5', 'true', '[]', '[1,2]', '-1.5') {
    my $exp = qq{[{"type":"model_attributes_type","loc":["body"],"msg":"$MA","input":$v}]};
    is_422(post_event($v), $exp, "/event body $v is not an object");
    is_422(start_run($v), $exp, "/run/start body $v is not an object");
}

# --- Content-Type (§2.3 rules 2, 3) --------------------------------------------------
my $accepted = 0;    # site events accepted between the two probes
my $ok_body = '{"type":"ct-05","data":1,"make_current":false}';
for my $ct ('application/json; charset=utf-8', 'APPLICATION/JSON', 'Application/Json;charset=UTF-8',
            'application/vnd.panoptes+json', 'application/merge-patch+json', 'application/json ; x=y')
{
    my $r = post_event($ok_body, ct => $ct);
    $accepted++ if $r->{code} == 200;
    is($r->{code}, 200, "Content-Type '$ct' is parsed as JSON") or diag $r->{body};
}
for my $ct (undef, 'text/plain', 'application/x-json', 'text/json', 'application/jsonx',
            'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'json')
{
    my $exp = '[{"type":"model_attributes_type","loc":["body"],"msg":"' . $MA . '","input":'
        . js($ok_body) . '}]';
    is_422(post_event($ok_body, ct => $ct), $exp,
        'Content-Type ' . ($ct // '(none)') . ': raw body, input is the text');
}
is_422(post_event('not json at all', ct => 'text/plain'),
    qq{[{"type":"model_attributes_type","loc":["body"],"msg":"$MA","input":"not json at all"}]},
    'text/plain body that is not JSON either');
is_422(post_event("caf\xc3\xa9", ct => 'text/plain'),
    qq{[{"type":"model_attributes_type","loc":["body"],"msg":"$MA","input":"caf\xc3\xa9"}]},
    'text/plain UTF-8 body: input decoded as UTF-8');

is_422(post_event('null', ct => 'text/plain'),
    qq{[{"type":"model_attributes_type","loc":["body"],"msg":"$MA","input":"null"}]},
    'text/plain body null is the text "null", not "no body"');
is_422(post_event('', ct => 'text/plain'), $missing_body, 'empty text/plain body: no body');

# BOM and surrounding whitespace are accepted.
{
    my $r = post_event("\xEF\xBB\xBF \r\n\t{\"type\":\"bom-05\",\"data\":1,\"make_current\":false} \n");
    $accepted++ if $r->{code} == 200;
    is($r->{code}, 200, 'UTF-8 BOM and whitespace around the document accepted') or diag $r->{body};
}

# --- json_invalid: the four acceptance cases, exact -----------------------------------
is_422(post_event('{bad json'),
    '[{"type":"json_invalid","loc":["body",1],"msg":"JSON decode error","input":{},"ctx":{"error":"Expecting property name enclosed in double quotes"}}]',
    '{bad json');
is_422(post_event('{"type": }'),
    '[{"type":"json_invalid","loc":["body",9],"msg":"JSON decode error","input":{},"ctx":{"error":"Expecting value"}}]',
    '{"type": }');
is_422(post_event('{"type":"x","data":1} trailing'),
    '[{"type":"json_invalid","loc":["body",22],"msg":"JSON decode error","input":{},"ctx":{"error":"Extra data"}}]',
    'trailing data');
is_422(post_event(' '),
    '[{"type":"json_invalid","loc":["body",1],"msg":"JSON decode error","input":{},"ctx":{"error":"Expecting value"}}]',
    'whitespace-only body');
is_422(start_run('{bad json'),
    '[{"type":"json_invalid","loc":["body",1],"msg":"JSON decode error","input":{},"ctx":{"error":"Expecting property name enclosed in double quotes"}}]',
    '{bad json on /run/start');
# Positions count characters, not bytes.
is_422(post_event("{\"type\":\"\xc3\xa9\xc3\xa9\" x}"),
    '[{"type":"json_invalid","loc":["body",13],"msg":"JSON decode error","input":{},"ctx":{"error":"Expecting \',\' delimiter"}}]',
    'json_invalid position in characters after non-ASCII');

# Other Python messages: shape only (type, loc [body, int], msg, ctx.error).
sub json_invalid_ok {
    my ($r, $name, $err_re) = @_;
    my $j = $r->{j};
    my $it = (ref $j eq 'HASH' && ref $j->{detail} eq 'ARRAY' && @{ $j->{detail} } == 1)
        ? $j->{detail}[0] : undef;
    my $ok = $r->{code} == 422 && $it && ref $it eq 'HASH'
        && ($it->{type} // '') eq 'json_invalid'
        && ref $it->{loc} eq 'ARRAY' && @{ $it->{loc} } == 2 && $it->{loc}[0] eq 'body'
        && $it->{loc}[1] =~ /^\d+$/
        && ($it->{msg} // '') eq 'JSON decode error'
        && ref $it->{ctx} eq 'HASH' && defined $it->{ctx}{error} && length $it->{ctx}{error}
        && (!$err_re || $it->{ctx}{error} =~ $err_re);
    ok($ok, "$name: 422 json_invalid") or diag "$r->{code} $r->{body}";
    is_json_ct($r, "$name: JSON");
}
json_invalid_ok(post_event('{"type":"x","data":[1,2}'), 'missing ]', qr/^Expecting ',' delimiter/);
json_invalid_ok(post_event('{"type" "x"}'), 'missing :', qr/^Expecting ':' delimiter/);
json_invalid_ok(post_event('{"type":"x'), 'unterminated string', qr/^Unterminated string starting at/);
json_invalid_ok(post_event("{\"type\":\"a\nb\",\"data\":1}"), 'raw newline in a string',
    qr/^Invalid control character at/);
json_invalid_ok(post_event('{"type":"\q","data":1}'), 'bad escape', qr/^Invalid \\escape/);
json_invalid_ok(post_event("{'type':'x'}"), 'single quotes');
json_invalid_ok(post_event('{"type":"x","data":01}'), 'leading zero');
json_invalid_ok(post_event('{"type":"x","data":tru}'), 'bad literal');

# --- the module's narrowing (§11.2, §11.3 F7, F8/F9) ------------------------------------
for my $v ('NaN', 'Infinity', '-Infinity', '1e400', '-1e400', '[1,NaN]', '{"x":Infinity}') {
    json_invalid_ok(post_event('{"type":"nan-05","data":' . $v . '}'), "data $v rejected (F7)");
}
json_invalid_ok(start_run('{"meta":{"x":NaN}}'), 'NaN in run meta rejected');
for my $v ('12345678901234567890123', '9223372036854775808', '-9223372036854775809',
           '[1,99999999999999999999]') {
    json_invalid_ok(post_event('{"type":"bigint-05","data":' . $v . '}'), "integer $v beyond int64 rejected");
}
for my $s ('"\ud800"', '"\udc00"', '"x\ud800y"', '"\ud800\u0041"', '"\udc00\ud800"') {
    my $r = post_event('{"type":"surrogate-05","data":' . $s . '}');
    is($r->{code}, 422, "lone surrogate $s: 422 (F8)") or diag $r->{body};
    ok(ref $r->{j} eq 'HASH' && ref $r->{j}{detail} eq 'ARRAY', "lone surrogate $s: 422 detail list");
}
{
    my $r = post_event('{"type":"\ud800","data":1}');
    is($r->{code}, 422, 'lone surrogate in type: 422');
    $r = start_run('{"run_dir":"s-05","meta":{"k":"\udfff"}}');
    is($r->{code}, 422, 'lone surrogate in run meta: 422, no run');
    is_err(get('/run'), 404, 'No run is active', 'no run started by a lone surrogate');
}
for my $c (["\xff", 'byte FF'], ["\xc3\x28", 'bad continuation'], ["\xc0\xaf", 'overlong /'],
           ["\xed\xa0\x80", 'UTF-8-encoded surrogate'], ["\xf4\x90\x80\x80", 'above U+10FFFF'],
           ["\xe2\x82", 'truncated sequence'])
{
    my ($bytes, $what) = @$c;
    my $body = '{"type":"utf8-05","data":"a' . $bytes . 'b"}';
    my $r = post_event($body);
    is($r->{code}, 422, "invalid UTF-8 ($what), JSON body: 422 (F8/F9)") or diag $r->{body};
    ok(ref $r->{j} eq 'HASH' && ref $r->{j}{detail} eq 'ARRAY', "invalid UTF-8 ($what): 422 detail list");
    is_json_ct($r, "invalid UTF-8 ($what): JSON");
    $r = post_event($body, ct => undef);
    is($r->{code}, 422, "invalid UTF-8 ($what) without Content-Type: 422, not 500 (F9)") or diag $r->{body};
    $r = post_event($body, ct => 'text/plain');
    is($r->{code}, 422, "invalid UTF-8 ($what) as text/plain: 422, not 500 (F9)") or diag $r->{body};
}

# Nesting too deep for Python's recursion: 400.
{
    my $deep = '{"type":"deep-05","data":' . ('[' x 100000) . (']' x 100000) . '}';
    is_err(post_event($deep), 400, 'There was an error parsing the body', 'nesting 100000 deep: 400');
    my $ok = '{"type":"deep-05","make_current":false,"data":' . ('[' x 100) . '1' . (']' x 100) . '}';
    my $r = post_event($ok);
    $accepted++ if $r->{code} == 200;
    is($r->{code}, 200, 'nesting 100 deep is fine') or diag $r->{body};
    is_err(start_run('{"meta":' . ('{"a":' x 50000) . '1' . ('}' x 50000) . '}'), 400,
        'There was an error parsing the body', 'deep run meta: 400');
    is_err(get('/run'), 404, 'No run is active', 'no run started');
}

# --- per-field errors (§2.4, §2.6) ----------------------------------------------------------
for my $v ('5', 'null', 'true', '[]', '{}', '1.5') {
    is_422(post_event('{"type":' . $v . ',"data":1}'),
        '[{"type":"string_type","loc":["body","type"],"msg":"Input should be a valid string","input":' . $v . '}]',
        "type $v: string_type");
}
for my $v ('5', 'true', '[]', '{"a":1}') {
    is_422(post_event('{"type":"x","data":1,"ts":' . $v . '}'),
        '[{"type":"string_type","loc":["body","ts"],"msg":"Input should be a valid string","input":' . $v . '}]',
        "ts $v: string_type");
}
for my $v ('[]', '"x"', 'null', '5', 'true', '[{"a":1}]') {
    is_422(post_event('{"type":"x","data":1,"meta":' . $v . '}'),
        '[{"type":"dict_type","loc":["body","meta"],"msg":"Input should be a valid dictionary","input":' . $v . '}]',
        "meta $v: dict_type");
}
is_422(post_event('{"ts":7,"meta":[],"store_permanently":1.5,"make_current":"maybe","data":null,"type":1}'),
    '[{"type":"string_type","loc":["body","type"],"msg":"Input should be a valid string","input":1},'
  . '{"type":"bool_parsing","loc":["body","make_current"],"msg":"Input should be a valid boolean, unable to interpret input","input":"maybe"},'
  . '{"type":"bool_type","loc":["body","store_permanently"],"msg":"Input should be a valid boolean","input":1.5},'
  . '{"type":"dict_type","loc":["body","meta"],"msg":"Input should be a valid dictionary","input":[]},'
  . '{"type":"string_type","loc":["body","ts"],"msg":"Input should be a valid string","input":7}]',
    'every failing field reported, in field-declaration order (not body order)');
is_422(post_event('{"meta":5,"data":1}'),
    '[{"type":"missing","loc":["body","type"],"msg":"Field required","input":{"meta":5,"data":1}},'
  . '{"type":"dict_type","loc":["body","meta"],"msg":"Input should be a valid dictionary","input":5}]',
    'missing and invalid fields together');

# --- validation before state; rejected requests use no run seq ------------------------------
{
    my $st = start_run('{"run_dir":"val-05","run_id":"V5"}');
    is($st->{code}, 200, 'run V5 started');
    my $a = post_event('{"type":"v5-05","data":1}');
    is_422(start_run('{"meta":null}'),
        '[{"type":"dict_type","loc":["body","meta"],"msg":"Input should be a valid dictionary","input":null}]',
        'during a run, an invalid start is 422 (not 409)');
    is_422(start_run('[]'), qq{[{"type":"model_attributes_type","loc":["body"],"msg":"$MA","input":[]}]},
        'during a run, start with [] is 422');
    json_invalid_ok(start_run('{bad'), 'during a run, broken JSON start');
    is_err(start_run('{}'), 409, 'A run is already active', 'a valid start is 409');
    post_event('{"type":"v5-05"}');
    post_event('{"type":"v5-05","data":NaN}');
    post_event('{"type":"v5-05","data":"\ud800"}');
    post_event('{bad');
    my $b = post_event('{"type":"v5-05","data":2}');
    is($b->{j}{seq}, $a->{j}{seq} + 1, 'rejected run events used no run seq');
    json_is_ordered(get('/current/v5-05')->{body}, $b->{body}, 'current is the last accepted event');
    is_deeply([map { /^\{"seq":(\d+),/ ? $1 : -1 } @{ file_lines(site_dir() . '/val-05/telemetry.ndjson') }],
        [$a->{j}{seq}, $b->{j}{seq}], 'run file holds only the accepted events');
    stop_run();
}

# --- nothing changed, no site seq used ---------------------------------------------------------
is(get('/current')->{body}, $cur_before,
    'after all rejected requests /current is byte-identical (the run values are gone)');
my $p2 = post_event('{"type":"probe-05","data":2}');
is($p2->{j}{seq}, $p1->{j}{seq} + $accepted + 1,
    "site seqs used only by the $accepted accepted events");
{
    my $by = site_lines_by_seq();
    my @mine = grep { $_ > $p1->{j}{seq} && $_ <= $p2->{j}{seq} } keys %$by;
    is(scalar(@mine), $p2->{j}{seq} - $p1->{j}{seq}, 'every used seq is in the file, nothing else');
    ok(!grep({ /"type":"(nan|bigint|surrogate|utf8)-05"/ } values %$by), 'no rejected event in the file');
}

all_answers_json();

done_testing();
