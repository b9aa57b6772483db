# A full shared state (SPEC §11.3 F10): with PanoptesTelemetryStateSize
# 4 MiB (t/conf/extra.conf.in), current values of ~900 kB fill it; the
# event that does not fit answers 507 {"detail": ...} and changes nothing:
# no seq, no file line, /current as before.  Events that need no state
# (make_current false) still work, and overwriting frees space.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;

ensure_no_run();

my $big = 'z' x 900_000;
my ($full, @ok);
for my $i (1 .. 8) {
    my $r = post_event('{"type":"big-10-' . $i . '","data":"' . $big . '"}');
    if ($r->{code} == 507) { $full = $r; last }
    is($r->{code}, 200, "900 kB current value #$i fits") or last;
    push @ok, $r;
}
ok($full, 'the state fills up: 507 after ' . scalar(@ok) . ' large values');
SKIP: {
    skip 'no 507', 8 unless $full;
    ok_json_error($full, 507, qr/\S/, '507 is JSON {"detail": ...}');
    diag '507 detail: ' . ($full->{j}{detail} // '');
    my $n = scalar(@ok) + 1;
    is_err(get("/current/big-10-$n"), 404, "No current event for type 'big-10-$n'",
        '507: the type is not current');
    my $probe = post_event('{"type":"probe-10","data":1,"make_current":false}');
    is($probe->{code}, 200, 'an event that needs no state is still accepted');
    is($probe->{j}{seq}, $ok[-1]{j}{seq} + 1, '507 used no seq');
    my $by = lines_by_seq(site_file_for($probe->{j}{ts}));
    ok(!grep({ /"type":"big-10-$n"/ } values %$by), '507 wrote no file line');

    # Overwriting a large value with a small one frees its space.
    for my $r (@ok) {
        my $t = $r->{j}{type};
        my $s = post_event('{"type":"' . $t . '","data":"small"}');
        is($s->{code}, 200, "overwrite $t with a small value");
    }
    my $again = post_event('{"type":"big-10-again","data":"' . $big . '"}');
    is($again->{code}, 200, 'after the overwrites a large value fits again');
    post_event('{"type":"big-10-again","data":"small"}');
}
like(get('/current')->{body}, qr/^\{"current":\{/, '/current still answers');

all_answers_json();

done_testing();
