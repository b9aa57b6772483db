# The current view (SPEC §3.7, §3.8, §7): merge order of site and run
# values, /current/{type} with percent-decoding, the Python-repr 404
# detail, types containing "/".
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;

ensure_no_run();

sub pos_of {
    my ($body) = @_;
    my @k = okeys($body, 'current');
    my %p; @p{@k} = (0 .. $#k);
    return (\%p, \@k);
}

# --- merge order ------------------------------------------------------------------------
my $A  = post_event('{"type":"cur-a-07","data":"a1"}');
my $B  = post_event('{"type":"cur-b-07","data":"b1"}');
my $C  = post_event('{"type":"cur-c-07","data":"c1"}');
my $A2 = post_event('{"type":"cur-a-07","data":"a2"}');
{
    my $c = get('/current');
    is($c->{code}, 200, 'GET /current');
    is_deeply([okeys($c->{body})], ['current'], '{"current": {...}}');
    my ($p) = pos_of($c->{body});
    ok($p->{'cur-a-07'} < $p->{'cur-b-07'} && $p->{'cur-b-07'} < $p->{'cur-c-07'},
        'site types in insertion order; an update keeps the position');
    my $n = oparse($c->{body});
    is(canon(onode($n, 'current', 'cur-a-07'), 1), canon(oparse($A2->{body}), 1),
        'the entry is the public envelope of the last event');
    my $bad = 0;
    for my $pair (@{ onode($n, 'current')->[1] }) {
        my @k = okeys($pair->[1]);
        $bad++, diag("$pair->[0]: @k") unless "@k" eq 'seq ts type data meta';
        $bad++, diag("$pair->[0]: key/type mismatch")
            unless node_value(onode($pair->[1], 'type')) eq Encode::encode('UTF-8', $pair->[0]);
    }
    is($bad, 0, 'every entry: keys seq, ts, type, data, meta; keyed by its type; no stream');
}

my $st = start_run('{"run_dir":"cur-07","run_id":"C7"}');
is($st->{code}, 200, 'run C7 started');
my $rC = post_event('{"type":"cur-c-07","data":"c-run"}');
my $rD = post_event('{"type":"cur-d-07","data":"d-run"}');
my $rA = post_event('{"type":"cur-a-07","data":"a-run"}');
my $rE = post_event('{"type":"cur-e-07","data":"e-run"}');
{
    my $c = get('/current');
    my ($p, $k) = pos_of($c->{body});
    ok($p->{'cur-a-07'} < $p->{'cur-b-07'} && $p->{'cur-b-07'} < $p->{'cur-c-07'},
        'run values keep the site positions');
    is_deeply([@$k[-2, -1]], ['cur-d-07', 'cur-e-07'], 'run-only types follow, in run order')
        or diag "keys: @$k";
    my $n = oparse($c->{body});
    is(canon(onode($n, 'current', 'cur-a-07'), 1), canon(oparse($rA->{body}), 1), 'A: run value');
    is(canon(onode($n, 'current', 'cur-b-07'), 1), canon(oparse($B->{body}), 1), 'B: site value');
    is(canon(onode($n, 'current', 'cur-c-07'), 1), canon(oparse($rC->{body}), 1), 'C: run value');
    json_is_ordered(get('/current/cur-a-07')->{body}, $rA->{body}, '/current/{type}: run value first');
    json_is_ordered(get('/current/cur-b-07')->{body}, $B->{body}, '/current/{type}: site value otherwise');
    json_is_ordered(get('/current/cur-d-07', mount => 'root')->{body}, $rD->{body}, 'run-only type, root mount');
}
stop_run();
{
    my $c = get('/current');
    my ($p) = pos_of($c->{body});
    ok(!exists $p->{'cur-d-07'} && !exists $p->{'cur-e-07'}, 'run-only types gone after stop');
    json_is_ordered(get('/current/cur-a-07')->{body}, $A2->{body}, 'A: the site value again');
    json_is_ordered(get('/current/cur-c-07')->{body}, $C->{body}, 'C: the site value again');
}

# --- /current/{type}: one percent-decoded path segment -------------------------------------
my @types = (
    ['hello world',      '/current/hello%20world'],
    ["caf\xc3\xa9-07",   '/current/caf%C3%A9-07'],
    ["caf\xc3\xa9-07",   "/current/caf\xc3\xa9-07"],
    ["it's-07",          "/current/it's-07"],
    ["it's-07",          '/current/it%27s-07'],
    ['100%',             '/current/100%25'],
    ['a+b',              '/current/a+b'],
    ['semi;colon',       '/current/semi;colon'],
    ['q?x',              '/current/q%3Fx'],
    ['hash#x',           '/current/hash%23x'],
    ['tab	x',          '/current/tab%09x'],
    ['..x',              '/current/..x'],
    ['~tilde',           '/current/%7Etilde'],
    ['UPPER',            '/current/%55PPER'],
);
my %posted;
for my $t (@types) {
    my ($type, $path) = @$t;
    $posted{$type} ||= post_event('{"type":' . js($type) . ',"data":' . js("v-$type") . '}');
    my $r = get($path);
    is($r->{code}, 200, "GET $path is 200") or diag $r->{body};
    json_is_ordered($r->{body}, $posted{$type}{body}, "GET $path finds type " . js($type));
}

# Types with "/" and "" are listed but cannot be fetched.
{
    my $s = post_event('{"type":"a/b-07","data":1}');
    my $e = post_event('{"type":"","data":"empty"}');
    my $n = oparse(get('/current')->{body});
    ok(onode($n, 'current', 'a/b-07'), 'a type with / is in /current');
    ok(onode($n, 'current', ''), 'the type "" is in /current');
    for my $m (mounts()) {
        is_err(get('/current/a%2Fb-07', mount => $m), 404, 'Not Found', "[$m] %2F: 404 Not Found");
        is_err(get('/current/a%2fb-07', mount => $m), 404, 'Not Found', "[$m] %2f: 404 Not Found");
        is_err(get('/current/a/b-07', mount => $m), 404, 'Not Found', "[$m] a/b: 404 Not Found");
        is_err(get('/current/', mount => $m), 404, 'Not Found', "[$m] /current/: 404 Not Found");
    }
}

# --- 404 detail: Python repr of the decoded type ----------------------------------------------
my @repr = (
    ['/current/abc',            q{'abc'}],
    ['/current/it%27s',         q{"it's"}],
    ["/current/it's",           q{"it's"}],
    ['/current/a%22b%27c',      q{'a"b\\'c'}],
    ['/current/a%22b',          q{'a"b'}],
    ['/current/%0A',            q{'\\n'}],
    ['/current/%C3%A9',         qq{'\xc3\xa9'}],
    ['/current/%09',            q{'\\t'}],
    ['/current/%0D',            q{'\\r'}],
    ['/current/%01',            q{'\\x01'}],
    ['/current/%1F',            q{'\\x1f'}],
    ['/current/%7F',            q{'\\x7f'}],
    ['/current/%5C',            q{'\\\\'}],
    ['/current/a%20b',          q{'a b'}],
    ['/current/%C2%A0',         q{'\\xa0'}],
    ['/current/%F0%9F%98%80',   qq{'\xf0\x9f\x98\x80'}],
    ['/current/%E6%97%A5%E6%9C%AC', qq{'\xe6\x97\xa5\xe6\x9c\xac'}],
    # Invalid UTF-8 decodes with replacement characters (Python's unquote).
    ['/current/a%FFb',          qq{'a\xef\xbf\xbdb'}],
);
for my $c (@repr) {
    my ($path, $repr) = @$c;
    for my $m (mounts()) {
        is_err(get($path, mount => $m), 404, "No current event for type $repr", "[$m] GET $path: $repr");
    }
}

# "." and ".." are normalised away by httpd before the module sees them:
# either way the answer is a JSON 404.
for my $path ('/current/..', '/current/.') {
    my $raw = raw_http('root', "GET $path HTTP/1.0\r\nHost: localhost\r\n\r\n");
    is($raw->{code}, 404, "literal GET $path: 404");
    ok(ref $raw->{j} eq 'HASH' && ($raw->{j}{detail} // '') =~ /^(Not Found|No current event for type )/,
        "literal GET $path: JSON detail") or diag $raw->{raw};
}

# HEAD on /current/{type}.
{
    my $h = head('/current/cur-a-07');
    is($h->{code}, 200, 'HEAD /current/{type}: 200');
    is($h->{body}, '', 'HEAD /current/{type}: no body');
    $h = head('/current/nope-07');
    is($h->{code}, 404, 'HEAD /current/{missing}: 404');
}

all_answers_json();

done_testing();
