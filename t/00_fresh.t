# State right after httpd starts.  This file runs first (Apache::Test sorts
# t/*.t) on an empty site directory: nothing is current, no run is active,
# and both seq counters start at 1 (SPEC §1, §5).  Both mounts share one
# state.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;

my $site = site_dir();

my $r = get('/current');
is($r->{code}, 200, 'GET /current answers 200 after start');
json_is($r->{body}, '{"current":{}}', 'nothing is current after start');
is_err(get('/run'), 404, 'No run is active', 'no run is active after start');

$r = get('/ready');
json_is($r->{body},
    '{"ready":true,"run_active":false,"version":' . js($r->{j}{version} // '') . '}',
    '/ready: no run active');

ok(-d $site, "the module created PanoptesTelemetrySiteDir ($site)");

# Site counter starts at 1, shared by both mounts.
my @site;
$r = post_event('{"type":"boot","data":{"n":1}}');
is($r->{code}, 200, 'first site event accepted') or diag $r->{body};
is($r->{j}{seq}, 1, 'first site event has seq 1');
push @site, $r;
$r = post_event('{"type":"boot","data":{"n":2}}', mount => 'root');
is($r->{j}{seq}, 2, 'second event (root mount) has seq 2: one state for both mounts');
push @site, $r;

$r = get('/current/boot');
json_is($r->{body}, $site[1]{body}, 'the root mount\'s event is current on the prefix mount');

# Run counter starts at 1 and is independent of the site counter.
$r = start_run('{"run_dir":"fresh-run","run_id":"fresh"}');
is($r->{code}, 200, 'run started') or diag $r->{body};
$r = post_event('{"type":"boot","data":{"n":3}}');
is($r->{j}{seq}, 1, 'first run event has seq 1');
$r = post_event('{"type":"boot","data":{"n":4}}', mount => 'root');
is($r->{j}{seq}, 2, 'second run event has seq 2');
is(stop_run()->{code}, 200, 'run stopped');

$r = post_event('{"type":"boot","data":{"n":5}}');
is($r->{j}{seq}, 3, 'site numbering continues after the run (3)');
push @site, $r;

# The site lines, 1..3 in order, in the day file named by the noon rule.
my %files;
for my $e (@site) {
    my $f = site_file_for($e->{j}{ts});
    ok($f && -f $f, "day file for ts $e->{j}{ts} exists: " . ($f // 'undef'));
    $files{$f}++ if $f;
}
if (keys %files == 1) {
    my ($f) = keys %files;
    my $lines = file_lines($f);
    is(scalar(@$lines), 3, 'three site lines in the day file');
    is_deeply([map { /^\{"seq":(\d+),/ ? $1 : 'bad' } @$lines], [1, 2, 3],
        'site file holds seqs 1, 2, 3 in order');
}
my $run_lines = file_lines("$site/fresh-run/telemetry.ndjson");
is_deeply([map { /^\{"seq":(\d+),/ ? $1 : 'bad' } @$run_lines], [1, 2],
    'run file holds seqs 1, 2');

all_answers_json();

done_testing();
