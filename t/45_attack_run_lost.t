# Attack (issue 9 review): a run the module accepts is silently dropped by
# the next stop/start (and by any repair after a crash), because the check
# made when the state is attached (ptm_repair.c run_checks_out) is stricter
# than the one made when the run starts (ptm_api.c do_run_start):
#   (a) a run_dir holding a control character (only NUL is refused at
#       start; run_checks_out wants a "printable" run dir);
#   (b) a run_id longer than 255 bytes given together with a run_dir (the
#       255-byte limit is only applied when the id names the directory;
#       run_checks_out wants 1..255 bytes).
# SPEC §11.4: "After a full stop and start ... the active run is still
# active (persisted)"; README "Stop/start and crashes".  Either answer is
# fine here: the start refused with 422 (nothing started), or the run still
# active, unchanged, after a stop and start.
use strict;
use warnings;
use Test::More;
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;
use PTMTest qw(httpd_pid server_snapshot start_server stop_server server_answers);

my $orig = server_snapshot();
$orig->{test_pid} = $$;

END {
    local $?;
    if ($orig && $$ == $orig->{test_pid} && !(httpd_pid() && server_answers())) {
        stop_server(30);
        start_server($orig, 60);
    }
}

my @cases = (
    [ '(a) run_dir with a control character',
      '{"run_dir":"attack45-ctl\u0001dir","run_id":"attack45-a"}' ],
    [ '(b) run_id of 300 bytes with a run_dir',
      '{"run_dir":"attack45-long","run_id":"' . ('x' x 300) . '"}' ],
);

for my $c (@cases) {
    my ($name, $body) = @$c;
    ensure_no_run();
    my $r = start_run($body);
    if ($r->{code} == 422) {
        pass("$name: refused with 422 at start");
        is(get('/run')->{code}, 404, "$name: ... and no run is active");
        next;
    }
    is($r->{code}, 200, "$name: started (200)") or next;
    ok(stop_server(60), "$name: httpd stopped");
    ok(start_server($orig, 60), "$name: httpd started again");
    my $g = get('/run');
    is($g->{code}, 200, "$name: the run is still active after stop/start")
        or diag "GET /run: $g->{code} $g->{body}";
    is($g->{body}, $r->{body}, "$name: ... unchanged") if $g->{code} == 200;
    ensure_no_run();
}

done_testing();
