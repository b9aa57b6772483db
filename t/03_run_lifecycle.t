# Run lifecycle (SPEC §3.3-§3.5, §3.6 step 2, §5, §7, §8.5-8.10) and the
# module's confinement of run_dir / run_id (§11.3 F1, F2, F15).
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use File::Path ();
use JSON::PP ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;

ensure_no_run();
my $site    = site_dir();
my $runroot = runroot_dir();

sub seqs_of { my ($f) = @_; return [map { /^\{"seq":(\d+),/ ? $1 + 0 : -1 } @{ file_lines($f) }] }

# ---------------------------------------------------------------------------
# A full run: start, GET, events, current view, stop.

my $w1 = post_event('{"type":"weather-03","data":{"sky":"site-before"}}');
my $s0 = $w1->{j}{seq};
my $o1 = post_event('{"type":"site-only-03","data":1}');
is($o1->{j}{seq}, $s0 + 1, 'site events numbered consecutively');

my $st = start_run('{"run_dir":"life/a","run_id":"L1","meta":{"operator":"ann","n":[1,2]}}');
is($st->{code}, 200, 'run L1 started') or diag $st->{body};
my $started = $st->{j}{started_at};
ok(ts_near_now($started), 'started_at is the server clock, UTC with milliseconds');
json_is_ordered($st->{body},
    '{"run_dir":' . js("$site/life/a") . ',"run_id":"L1","meta":{"operator":"ann","n":[1,2],"run_id":"L1"},"started_at":' . js($started) . '}',
    'start answers the run object, keys in order; meta.run_id appended');
ok(-d "$site/life/a", 'run_dir created (mkdir -p)');
ok(!-e "$site/life/a/telemetry.ndjson", 'telemetry.ndjson is not created at start');

for my $m (mounts()) {
    my $g = get('/run', mount => $m);
    is($g->{code}, 200, "[$m] GET /run is 200 during the run");
    json_is_ordered($g->{body}, $st->{body}, "[$m] GET /run is identical to the start response");
}
is(get('/ready')->{j}{run_active}, 1, '/ready: run_active true');
like(get('/ready')->{body}, qr/"run_active"\s*:\s*true/, '/ready: run_active is JSON true');

is_err(start_run('{"run_dir":"life/other","run_id":"L9"}'), 409, 'A run is already active',
    'starting a second run is 409');
ok(!-e "$site/life/other", '409 created no directory');
is_422(start_run('{"meta":null}'),
    '[{"type":"dict_type","loc":["body","meta"],"msg":"Input should be a valid dictionary","input":null}]',
    'validation comes before the state check: 422, not 409');
is_422(start_run('{"run_id":5}'),
    '[{"type":"string_type","loc":["body","run_id"],"msg":"Input should be a valid string","input":5}]',
    'run_id 5 during a run: 422');
json_is_ordered(get('/run')->{body}, $st->{body}, 'the active run is unchanged');

# Events go to the run stream; meta.run_id is stamped in place or appended.
my $e1 = post_event('{"type":"weather-03","data":{"sky":"run"},"meta":{"a":1,"run_id":"client","b":2}}');
is($e1->{code}, 200, 'run event accepted');
my $r1 = $e1->{j}{seq};
json_is_ordered($e1->{body},
    '{"seq":' . $r1 . ',"ts":' . js($e1->{j}{ts}) . ',"type":"weather-03","data":{"sky":"run"},"meta":{"a":1,"run_id":"L1","b":2}}',
    'meta.run_id overridden by the active run id, keeping its position');
my $e2 = post_event('{"type":"runonly-03","data":2,"meta":{"a":1}}');
is($e2->{j}{seq}, $r1 + 1, 'run seq +1');
json_is_ordered($e2->{body},
    '{"seq":' . ($r1 + 1) . ',"ts":' . js($e2->{j}{ts}) . ',"type":"runonly-03","data":2,"meta":{"a":1,"run_id":"L1"}}',
    'meta.run_id appended last');
my $e3 = post_event('{"type":"runonly2-03","data":3}', mount => 'root');
json_is_ordered($e3->{body},
    '{"seq":' . ($r1 + 2) . ',"ts":' . js($e3->{j}{ts}) . ',"type":"runonly2-03","data":3,"meta":{"run_id":"L1"}}',
    'no meta: {"run_id": id}');

my $runfile = "$site/life/a/telemetry.ndjson";
ok(-f $runfile, 'the first stored event creates telemetry.ndjson');
is_deeply(seqs_of($runfile), [$r1, $r1 + 1, $r1 + 2], 'run file holds the run events in order');
my $l = file_lines($runfile);
like($l->[0], qr/^\{"seq":$r1,"ts":"[^"]+","stream":"run","type":"weather-03",/,
    'run file line: stream "run"');

# The current view during the run: run wins in the site position, run-only
# types follow.
{
    my $c = get('/current');
    my @k = okeys($c->{body}, 'current');
    my %pos; @pos{@k} = (0 .. $#k);
    ok(defined $pos{'weather-03'} && defined $pos{'site-only-03'}
        && $pos{'weather-03'} < $pos{'site-only-03'},
        'weather-03 keeps its site position (before site-only-03)');
    ok(defined $pos{'runonly-03'} && defined $pos{'runonly2-03'}
        && $pos{'runonly-03'} == @k - 2 && $pos{'runonly2-03'} == @k - 1,
        'run-only types follow all site types, in run order') or diag "keys: @k";
    my $cn = oparse($c->{body});
    is(canon(onode($cn, 'current', 'weather-03'), 1), canon(oparse($e1->{body}), 1),
        '/current: the run value wins');
    is(canon(onode($cn, 'current', 'site-only-03'), 1), canon(oparse($o1->{body}), 1),
        '/current: site-only type shows the site value');
    json_is_ordered(get('/current/weather-03')->{body}, $e1->{body},
        '/current/{type}: the run value wins');
}

my $sp = stop_run();
is($sp->{code}, 200, 'run stopped');
json_is_ordered($sp->{body}, $st->{body}, 'stop answers the run object as it was');
is_err(get('/run'), 404, 'No run is active', 'GET /run after stop');
is_err(stop_run(), 404, 'No run is active', 'second stop is 404');
like(get('/ready')->{body}, qr/"run_active"\s*:\s*false/, '/ready: run_active false');

json_is_ordered(get('/current/weather-03')->{body}, $w1->{body},
    'after stop the site value shows through again');
is_err(get('/current/runonly-03'), 404, q{No current event for type 'runonly-03'},
    'run-only types are gone after stop');
unlike(get('/current')->{body}, qr/runonly/, '/current has no run values after stop');

my $s_after = post_event('{"type":"site-after-03","data":0}');
is($s_after->{j}{seq}, $s0 + 2, 'site numbering continues after the run (run events used no site seq)');
like($s_after->{body}, qr/"meta"\s*:\s*\{\s*\}/, 'no run_id stamped on site events');

# ---------------------------------------------------------------------------
# A second run: seq.run continues; nothing carried over.
{
    my $st2 = start_run('{"run_dir":"life/b","run_id":"L2"}');
    is($st2->{code}, 200, 'run L2 started');
    json_is_ordered(get('/current/weather-03')->{body}, $w1->{body},
        'new run: the site value is current until the run posts the type');
    unlike(get('/current')->{body}, qr/runonly/, 'new run: no values from the previous run');
    my $e = post_event('{"type":"weather-03","data":{"sky":"L2"}}');
    is($e->{j}{seq}, $r1 + 3, 'second run continues seq.run (not reset per run)');
    json_is_ordered(get('/current/weather-03')->{body}, $e->{body}, 'L2 value current');
    stop_run();
    json_is_ordered(get('/current/weather-03')->{body}, $w1->{body}, 'after L2: site value again');
    my $f = file_lines("$site/life/b/telemetry.ndjson");
    is(scalar(@$f), 1, 'L2 file has its one event');
    like($f->[0] // '', qr/^\{"seq":${\($r1 + 3)},/, 'L2 file starts at the continued seq');
}

# Reusing a run directory appends.
{
    my $before = file_lines($runfile);
    my $st3 = start_run('{"run_dir":"life/a","run_id":"L3"}');
    is($st3->{code}, 200, 'run L3 reuses life/a');
    my $e = post_event('{"type":"reuse-03","data":1}');
    stop_run();
    my $after = file_lines($runfile);
    is(scalar(@$after), @$before + 1, 'existing telemetry.ndjson appended to');
    is_deeply([@$after[0 .. $#$before]], $before, 'earlier lines untouched');
    like($after->[-1], qr/^\{"seq":$e->{j}{seq},.*"meta":\{"run_id":"L3"\}\}$/, 'L3 line appended');
}

# ---------------------------------------------------------------------------
# run_id / meta.run_id resolution.

sub run_case {
    my ($body, $name, %want) = @_;
    my $r = start_run($body);
    my $ok = is($r->{code}, 200, "$name: 200");
    diag $r->{body} unless $ok;
    if (defined $want{run_id}) {
        is(node_value(onode(eval { oparse($r->{body}) }, 'run_id')), $want{run_id},
            "$name: run_id $want{run_id}");
    }
    if (defined $want{run_dir}) {
        is(node_value(onode(eval { oparse($r->{body}) }, 'run_dir')), $want{run_dir},
            "$name: run_dir $want{run_dir}");
        ok(-d $want{run_dir}, "$name: directory exists");
    }
    if (defined $want{meta}) {
        my $n = eval { oparse($r->{body}) };
        is($n ? canon(onode($n, 'meta'), 1) : undef, canon(oparse($want{meta}), 1),
            "$name: meta $want{meta}");
    }
    stop_run() if $r->{code} == 200;
    return $r;
}

run_case('{"run_dir":"ids/a","run_id":"","meta":{"run_id":"M1","z":0}}', 'run_id "" falls back to meta.run_id',
    run_id => 'M1', meta => '{"run_id":"M1","z":0}');
{
    my $r = run_case('{"meta":{"k":"v","run_id":4242}}', 'meta.run_id 4242',
        run_id => '4242', run_dir => "$site/4242", meta => '{"k":"v","run_id":"4242"}');
    like($r->{body}, qr/"run_id"\s*:\s*"4242"\s*,\s*"meta"/, 'run_id "4242" is a string');
}
run_case('{"run_dir":"ids/b","run_id":"Y","meta":{"a":1,"run_id":"X","b":2}}', 'run_id wins over meta.run_id, in place',
    run_id => 'Y', meta => '{"a":1,"run_id":"Y","b":2}');
run_case('{"run_id":"plain-03"}', 'run_id without run_dir names the directory',
    run_id => 'plain-03', run_dir => "$site/plain-03");
run_case('{"run_id":"a b"}', 'a run_id with a space is one safe segment',
    run_id => 'a b', run_dir => "$site/a b");
run_case(qq({"run_id":"run-\xc3\xa9"}), 'non-ASCII run_id',
    run_id => "run-\xc3\xa9", run_dir => "$site/run-\xc3\xa9");
run_case('{"run_id":"' . ('x' x 255) . '"}', 'run_id of 255 bytes',
    run_id => 'x' x 255, run_dir => "$site/" . ('x' x 255));
run_case('{"run_dir":"nest-03","run_id":"slash-03/b"}', 'with run_dir, run_id is not a path (a/b allowed)',
    run_id => 'slash-03/b', run_dir => "$site/nest-03");
ok(!-e "$site/slash-03", '... and no directory slash-03/ was made');

for my $c (['true', 'true'], ['1.5', 'a float'], ['{"a":1}', 'an object'], ['[1]', 'an array']) {
    my ($v, $what) = @$c;
    my $r = start_run('{"run_dir":"ids/c","meta":{"run_id":' . $v . '}}');
    is($r->{code}, 422, "meta.run_id $what: 422 (F15)") or diag $r->{body};
    ok(ref $r->{j} eq 'HASH' && ref $r->{j}{detail} eq 'ARRAY', "meta.run_id $what: 422 detail is a list");
    is_err(get('/run'), 404, 'No run is active', "meta.run_id $what: no run started");
}

# ---------------------------------------------------------------------------
# run_dir resolution (§3.4 step 5, §8.6) inside the site directory.

run_case('{"run_dir":"","run_id":"empty-dir"}', 'run_dir "" is the site dir', run_dir => $site);
{
    my $r = start_run('{"run_dir":"","run_id":"empty-dir2"}');
    post_event('{"type":"empty-dir-03","data":1}');
    stop_run();
    my $f = file_lines("$site/telemetry.ndjson");
    like($f->[-1] // '', qr/"stream":"run","type":"empty-dir-03"/,
        'run_dir "": events go to site_dir/telemetry.ndjson');
}
run_case('{"run_dir":"a//b/./c/","run_id":"norm"}', 'a//b/./c/ is normalised', run_dir => "$site/a/b/c");
run_case('{"run_dir":"./dotted-03","run_id":"dot"}', 'leading ./ dropped', run_dir => "$site/dotted-03");
run_case('{"run_dir":"~/tilde-03","run_id":"tilde"}', '~ is not expanded', run_dir => "$site/~/tilde-03");
run_case('{"run_dir":' . js("$site/abs-03//y/./z/") . ',"run_id":"abs"}',
    'absolute run_dir inside the site dir, normalised', run_dir => "$site/abs-03/y/z");
{
    my $r = start_run('{"run_dir":"updown-03/../up-03","run_id":"updown"}');
    is($r->{code}, 200, 'run_dir with .. that stays inside: 200') or diag $r->{body};
    like($r->{j}{run_dir} // '', qr{^\Q$site\E/(updown-03/\.\./)?up-03$}, 'run_dir reported under the site dir');
    ok(-d "$site/up-03", 'the resolved directory exists');
    stop_run() if $r->{code} == 200;
}

run_case('{"run_dir":' . js($site) . ',"run_id":"site-itself"}', 'absolute run_dir = the site dir', run_dir => $site);
run_case('{"run_dir":' . js("$site/") . ',"run_id":"site-slash"}', 'absolute run_dir = the site dir/', run_dir => $site);
{
    my $r = start_run('{"run_dir":"nul\u0000dir","run_id":"nul"}');
    ok($r->{code} >= 400 && $r->{code} < 600 && ref $r->{j} eq 'HASH', 'run_dir with NUL: a JSON error')
        or diag "$r->{code} $r->{body}";
    is_err(get('/run'), 404, 'No run is active', 'run_dir with NUL: no run started');
}
{
    my $want = expected_next_id();
    my $r = start_run('', ct => 'text/plain');
    is($r->{code}, 200, 'empty body with Content-Type text/plain: defaults (no body)') or diag $r->{body};
    is($r->{j}{run_id}, $want, "... derived id $want");
    stop_run() if $r->{code} == 200;
}

# PanoptesTelemetryRunRoot: an extra root for absolute run_dir.
File::Path::make_path($runroot);
chown_to_server($runroot);
run_case('{"run_dir":' . js("$runroot/r1") . ',"run_id":"rr"}', 'absolute run_dir in a PanoptesTelemetryRunRoot',
    run_dir => "$runroot/r1");

# ---------------------------------------------------------------------------
# Confinement (F1, F2): 422 value_error, nothing created, no run.

sub confined_422 {
    my ($body, $field, $input, $name, $path_created) = @_;
    my $r = start_run($body);
    my $j = $r->{j};
    my $item = (ref $j eq 'HASH' && ref $j->{detail} eq 'ARRAY') ? $j->{detail}[0] : undef;
    is($r->{code}, 422, "$name: 422") or diag $r->{body};
    is_json_ct($r, "$name: JSON");
    ok($item && ref $item eq 'HASH', "$name: a 422 item") or return;
    is(scalar @{ $j->{detail} }, 1, "$name: one item");
    is($item->{type}, 'value_error', "$name: type value_error");
    my @loc = ref $item->{loc} eq 'ARRAY' ? @{ $item->{loc} } : ();
    if ($field eq 'run_id') {
        ok("@loc" eq 'body run_id' || "@loc" eq 'body meta run_id', "$name: loc at run_id")
            or diag "loc: @loc";
    }
    else {
        is("@loc", "body $field", "$name: loc [\"body\",\"$field\"]");
    }
    like($item->{msg} // '', qr/^Value error, /, "$name: msg starts 'Value error, '");
    if ($field eq 'run_dir') {
        like($item->{msg} // '', qr/\Q$site\E/, "$name: msg names the allowed roots");
    }
    is(canon(oparse(JSON::PP->new->allow_nonref->utf8->encode($item->{input}))),
        canon(oparse(js($input))), "$name: input is the offending value") if defined $input;
    is_err(get('/run'), 404, 'No run is active', "$name: no run started");
    ok(!-e $path_created, "$name: $path_created not created") if $path_created;
}

my $outside = "/tmp/ptm-escape-$$";
confined_422('{"run_dir":' . js($outside) . '}', 'run_dir', $outside, 'absolute run_dir outside', $outside);
confined_422('{"run_dir":"/"}', 'run_dir', '/', 'run_dir /');
confined_422('{"run_dir":"../escape-03"}', 'run_dir', '../escape-03', 'relative ../',
    "$site/../escape-03");
confined_422('{"run_dir":"a/../../escape-03b"}', 'run_dir', 'a/../../escape-03b', 'a/../../',
    "$site/../escape-03b");
confined_422('{"run_dir":' . js("$site/../escape-03c") . '}', 'run_dir', "$site/../escape-03c",
    'absolute with ..', "$site/../escape-03c");
confined_422('{"run_dir":' . js("$site-evil/x") . '}', 'run_dir', "$site-evil/x",
    'a sibling sharing the site dir prefix', "$site-evil");
confined_422('{"run_dir":' . js("$runroot/../outside-03") . '}', 'run_dir',
    "$runroot/../outside-03", 'runroot/..', Apache::Test::vars('serverroot') . '/outside-03');

confined_422('{"run_id":"slash2-03/b"}', 'run_id', 'slash2-03/b', 'run_id with /', "$site/slash2-03");
confined_422('{"run_id":".."}', 'run_id', '..', 'run_id ..');
confined_422('{"run_id":"."}', 'run_id', '.', 'run_id .');
confined_422('{"run_id":"/abs-03"}', 'run_id', '/abs-03', 'absolute run_id', '/abs-03');
confined_422('{"run_id":"../up-03b"}', 'run_id', '../up-03b', 'run_id ../x', "$site/../up-03b");
confined_422('{"run_id":"nul\u0000x"}', 'run_id', undef, 'run_id with NUL');
confined_422('{"run_id":"tab\tx"}', 'run_id', undef, 'run_id with a control character');
confined_422('{"run_id":"' . ('y' x 256) . '"}', 'run_id', 'y' x 256, 'run_id of 256 bytes');
confined_422('{"meta":{"run_id":"../m-03"}}', 'run_id', undef, 'meta.run_id ../x',
    "$site/../m-03");

# Symlinks below the site dir are never followed for a run directory
# (F1, §11.6); t/40_run_trust.t has the cases.
{
    my $target = "/tmp/ptm-link-target-$$";
    mkdir $target;
    chown_to_server($target);    # writable: an escape would succeed
    symlink $target, "$site/evil-link-03";
    confined_422('{"run_dir":"evil-link-03/x","run_id":"evil"}', 'run_dir', 'evil-link-03/x',
        'run_dir through a symlink leaving the site dir', "$target/x");
    File::Path::remove_tree($target);
}

# ---------------------------------------------------------------------------
# Types of the run/start fields (§2.4, §2.6).

is_422(start_run('{"run_dir":true}'),
    '[{"type":"string_type","loc":["body","run_dir"],"msg":"Input should be a valid string","input":true}]',
    'run_dir true: string_type');
is_422(start_run('{"run_id":["x"]}'),
    '[{"type":"string_type","loc":["body","run_id"],"msg":"Input should be a valid string","input":["x"]}]',
    'run_id list: string_type');
is_422(start_run('{"meta":"x"}'),
    '[{"type":"dict_type","loc":["body","meta"],"msg":"Input should be a valid dictionary","input":"x"}]',
    'meta string: dict_type');
is_422(start_run('{"run_dir":1,"run_id":2,"meta":[3],"extra":4}'),
    '[{"type":"string_type","loc":["body","run_dir"],"msg":"Input should be a valid string","input":1},'
  . '{"type":"string_type","loc":["body","run_id"],"msg":"Input should be a valid string","input":2},'
  . '{"type":"dict_type","loc":["body","meta"],"msg":"Input should be a valid dictionary","input":[3]}]',
    'every failing field reported, in field order');
is_422(start_run('[]'),
    '[{"type":"model_attributes_type","loc":["body"],"msg":"Input should be a valid dictionary or object to extract fields from","input":[]}]',
    'body [] on /run/start');
is_422(start_run('{"run_id":"x"}', ct => undef),
    '[{"type":"model_attributes_type","loc":["body"],"msg":"Input should be a valid dictionary or object to extract fields from","input":"{\"run_id\":\"x\"}"}]',
    'a body without Content-Type is not parsed as JSON');
is_err(get('/run'), 404, 'No run is active', 'none of these started a run');

# ---------------------------------------------------------------------------
# run_dir pointing at a regular file: no run (4xx or 500, JSON).
{
    open my $fh, '>', "$site/plainfile-03" or die; close $fh;
    my $r = start_run('{"run_dir":"plainfile-03","run_id":"pf"}');
    ok($r->{code} >= 400 && $r->{code} <= 599, 'run_dir is a regular file: an error') or diag $r->{body};
    ok(ref $r->{j} eq 'HASH' && exists $r->{j}{detail}, 'the error is JSON {"detail": ...}');
    is_json_ct($r, 'the error is application/json');
    is_err(get('/run'), 404, 'No run is active', 'run_dir is a file: no run started');
}

# ---------------------------------------------------------------------------
# The run file is recreated when deleted mid-run; a directory in its place
# is a 500 that uses no seq and changes no state (§4, §8.10, §11.4).
{
    my $r = start_run('{"run_dir":"del-03/r","run_id":"del"}');
    is($r->{code}, 200, 'run del started');
    my $a = post_event('{"type":"del-03","data":"a"}');
    my $f = "$site/del-03/r/telemetry.ndjson";
    ok(-f $f, 'run file created');
    File::Path::remove_tree("$site/del-03/r");
    my $b = post_event('{"type":"del-03","data":"b"}');
    is($b->{code}, 200, 'event after the run dir was deleted: 200');
    is($b->{j}{seq}, $a->{j}{seq} + 1, '... seq +1');
    is_deeply(seqs_of($f), [$b->{j}{seq}], 'run dir and file recreated with the new event');

    unlink $f;
    mkdir $f or die "mkdir $f: $!";
    my $c = post_event('{"type":"del-03","data":"c"}');
    is($c->{code}, 500, 'telemetry.ndjson replaced by a directory: 500');
    ok(ref $c->{j} eq 'HASH' && defined $c->{j}{detail}, '500 is JSON {"detail": ...}');
    is_json_ct($c, '500 is application/json');
    json_is_ordered(get('/current/del-03')->{body}, $b->{body}, '500: current not updated');
    rmdir $f or die "rmdir $f: $!";
    my $d = post_event('{"type":"del-03","data":"d"}');
    is($d->{j}{seq}, $b->{j}{seq} + 1, 'the failed write used no seq');
    is_deeply(seqs_of($f), [$d->{j}{seq}], 'writing works again');
    stop_run();
}

all_answers_json();

done_testing();
