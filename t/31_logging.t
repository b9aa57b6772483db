# Logging (LogLevel panoptes_telemetry:debug in extra.conf.in): one debug
# line per event with type, stream, seq and run id, like upstream's
# --verbose; info lines for run start and stop; one line per refused
# request.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest qw(:DEFAULT error_log_size error_log_since wait_for_log);

ensure_no_run();

my $type = "log-probe-$$";
my $off = error_log_size();
my $r = post_event(qq({"type":"$type","data":1}));
is($r->{code}, 200, 'site event stored');
my $seq = $r->{j}{seq};
my $l = wait_for_log($off, qr/panoptes_telemetry:debug.*event type="\Q$type\E" stream=site seq=$seq\b/, 10);
ok($l, 'one debug line for the site event') or diag(join "\n", error_log_since($off));
is(scalar(grep { /event type="\Q$type\E"/ } error_log_since($off)), 1,
    'exactly one line for it');

$off = error_log_size();
my $run = start_run(qq({"run_id":"log-run-$$","run_dir":"log-$$"}));
is($run->{code}, 200, 'run started');
ok(wait_for_log($off, qr/panoptes_telemetry:info.*run log-run-$$ started in \S+log-$$/, 10),
    'info line for the run start');
$r = post_event(qq({"type":"$type","data":2,"store_permanently":false}));
ok(wait_for_log($off, qr/event type="\Q$type\E" stream=run seq=$r->{j}{seq} run_id=log-run-$$ ephemeral/, 10),
    'debug line for the run event says run id and ephemeral');
is(stop_run()->{code}, 200, 'run stopped');
ok(wait_for_log($off, qr/panoptes_telemetry:info.*run stopped/, 10), 'info line for the stop');

$off = error_log_size();
is(post_event('{"type":1,"data":2}')->{code}, 422, 'a 422');
ok(wait_for_log($off, qr/panoptes_telemetry:info.*POST \S*event -> 422 /, 10),
    'the refused request is logged');
is(scalar(grep { /-> 422 / } error_log_since($off)), 1, 'once');

done_testing();
