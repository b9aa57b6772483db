# Derived run ids (SPEC §3.4 steps 3-4, §8.5, F13): "001", "002", ... from
# the all-digit directories of the site directory; the width comes from the
# integer value ("00007" gives "008"); files with numeric names and
# non-numeric directories are ignored; only ASCII digits count (F13);
# falsy meta.run_id derives.  Runs early, before other files create
# numeric directories.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;

ensure_no_run();
my $site = site_dir();

is(expected_next_id(), '001', 'precondition: no all-digit directory in the site dir yet');

# Start a run with $body (undef: no body at all), check the derived id and
# the whole run object, stop it.  Returns the start response.
sub derive_ok {
    my ($body, $want, $name, %o) = @_;
    my $r = start_run($body, %o);
    is($r->{code}, 200, "$name: 200") or diag $r->{body};
    my $meta = $o{meta} // '{"run_id":"' . $want . '"}';
    my $started = $r->{j} ? $r->{j}{started_at} : undef;
    ok(ts_near_now($started), "$name: started_at is now, YYYY-MM-DDTHH:MM:SS.mmmZ")
        or diag 'started_at: ' . ($started // 'undef');
    json_is_ordered($r->{body},
        '{"run_dir":' . js($o{run_dir} // "$site/$want") . ',"run_id":' . js($want)
        . ',"meta":' . $meta . ',"started_at":' . js($started // '') . '}',
        "$name: run object, id $want");
    my $dir = $o{run_dir} // "$site/$want";
    ok(-d $dir, "$name: $dir created");
    ok(!-e "$dir/telemetry.ndjson", "$name: telemetry.ndjson not created at start");
    my $g = get('/run');
    json_is_ordered($g->{body}, $r->{body}, "$name: GET /run returns the start response");
    my $s = stop_run();
    is($s->{code}, 200, "$name: stopped");
    json_is_ordered($s->{body}, $r->{body}, "$name: stop returns the run as it was");
    return $r;
}

derive_ok(undef, '001', 'no body');
derive_ok('{}', '002', 'empty object');
derive_ok('null', '003', 'JSON null body');
derive_ok('', '004', 'empty body with Content-Type application/json',
    ct => 'application/json');

# Width from the integer value, not from the name.
mkdir "$site/00007" or die "mkdir: $!";
derive_ok('{"run_dir":null,"run_id":null,"meta":{}}', '008', 'with 00007 present');

# Ignored: numeric-named files, names that are not all ASCII digits,
# symlinks to files, dangling symlinks.
{
    open my $fh, '>', "$site/5000" or die; close $fh;
    mkdir "$site/$_" or die "mkdir $_: $!"
        for '61-x', '9999x', 'x9999', '-12', '+12', ' 12', '12 ', '1.5', '0x10';
    mkdir "$site/\xc2\xb2" or die;              # superscript two: isdigit, int() fails
    mkdir "$site/\xd9\xa3\xd9\xa3" or die;      # Arabic-Indic 33
    mkdir "$site/\xef\xbc\x91\xef\xbc\x92" or die;  # fullwidth 12
    symlink "$site/5000", "$site/0800" or die;  # a symlink to a file
    symlink "$site/no-such-dir", "$site/0900" or die;  # dangling
}
derive_ok('{}', '009', 'numeric files, non-digit and non-ASCII-digit dirs ignored');

# A symlink to a directory is a directory (derive_next follows symlinks).
symlink "$site/fresh-run", "$site/0050" or die "symlink: $!";
derive_ok('{}', '051', 'a symlink to a directory counts');

# 999 is followed by 1000, and then the width is 4.
mkdir "$site/999" or die;
derive_ok('{}', '1000', '999 present');
derive_ok('{}', '1001', 'after 1000');

# Falsy meta.run_id derives; the resolved id is stored in meta, in place.
derive_ok('{"meta":{"run_id":""}}', '1002', 'meta.run_id ""');
derive_ok('{"meta":{"a":1,"run_id":0,"b":2}}', '1003', 'meta.run_id 0 keeps its position',
    meta => '{"a":1,"run_id":"1003","b":2}');
derive_ok('{"meta":{"run_id":false,"z":true}}', '1004', 'meta.run_id false',
    meta => '{"run_id":"1004","z":true}');
derive_ok('{"meta":{"run_id":null}}', '1005', 'meta.run_id null');
derive_ok('{"run_id":"","meta":{}}', '1006', 'run_id "" and no meta.run_id');
derive_ok('{"run_id":null,"meta":{"x":[1]}}', '1007', 'run_id null',
    meta => '{"x":[1],"run_id":"1007"}');

# A 409 derives nothing and creates nothing.
{
    my $r = start_run('{}');
    is($r->{j}{run_id}, '1008', 'run 1008 active');
    is_err(start_run('{}'), 409, 'A run is already active', 'second start is 409');
    is_err(start_run(undef), 409, 'A run is already active', 'second start without body is 409');
    ok(!-e "$site/1009", '409: no directory created');
    json_is_ordered(get('/run')->{body}, $r->{body}, '409: the active run is unchanged');
    stop_run();
    derive_ok('{}', '1009', 'after a 409');
}

# A derived id with an explicit run_dir: only run_dir is created, so the
# next derived id repeats it [quirk, F14].
derive_ok('{"run_dir":"explicit-02"}', '1010', 'derived id with run_dir',
    run_dir => "$site/explicit-02");
derive_ok('{}', '1010', 'the derived id repeats (its directory was never made)');

all_answers_json();

done_testing();
