# Client-chosen strings never forge a line (SPEC §11.6, issue 9 item 8):
# a run id or run_dir with line breaks or other control characters shows
# escaped in server-status?auto, the HTML status page and the error log.
# (The error log is escaped by httpd itself, ap_escape_errorlog_item; the
# module relies on that, and those checks guard it.)
#
# Run ids with control characters may be refused with 422 (F2 extended to
# every run id); a refused id never reaches a status line, so those cases
# only check that nothing forged appeared.  U+2028 is not an ASCII control
# character, but line-oriented readers (Python's str.splitlines) split on
# it, so it must not reach ?auto raw either.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use Apache::TestRequest qw(GET_BODY);
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest qw(:DEFAULT error_log_size error_log_since wait_for_log);

ensure_no_run();

# httpd's ap_escape_logitem, for the expected text.  The error log's own
# escaping (ap_escape_errorlog_item) is the same except that it leaves '"'
# alone: errlogitem.
sub logitem { return _esc($_[0], 1) }
sub errlogitem { return _esc($_[0], 0) }

sub _esc {
    my ($s, $quote) = @_;
    my %short = ("\b" => 'b', "\n" => 'n', "\r" => 'r', "\t" => 't', "\x0b" => 'v',
                 '\\' => '\\', '"' => '"');
    my $re = $quote ? qr/([\x00-\x1f\x7f-\xff\\"])/ : qr/([\x00-\x1f\x7f-\xff\\])/;
    $s =~ s/$re/exists $short{$1} ? "\\$short{$1}" : sprintf('\\x%02x', ord $1)/ge;
    return $s;
}

# Every line of an ?auto answer is printable ASCII.
sub auto_lines_ok {
    my ($body, $name) = @_;
    my @bad = grep { !/^[\x20-\x7e]*$/ } split /\n/, $body, -1;
    pop @bad if @bad && $bad[-1] eq '';    # after the final newline
    ok(!@bad, "$name: every ?auto line is printable ASCII")
        or diag join "\n", map { logitem($_) } @bad;
    my @forged = grep { /^Panoptes(WriteErrors|StateRepairs|Answers500):/ } split /\n/, $body;
    is(scalar @forged, 3, "$name: one line each for the keys a forger would repeat")
        or diag join "\n", map { logitem($_) } @forged;
}

my @hostile = (
    [ 'LF',     "\nPanoptesWriteErrors: 999" ],
    [ 'CR LF',  "\r\nPanoptesStateRepairs: 999" ],
    [ 'U+2028', "\xe2\x80\xa8PanoptesAnswers500: 999" ],
    [ 'TAB',    "\tx" ],
    [ 'quote and backslash', '"x\\' ],
);
my $n = 0;
for my $h (@hostile) {
    my ($name, $tail) = @$h;
    $n++;
    my $id_bytes = "esc-$$-$n$tail";
    my $id_json = js($id_bytes);
    my $off = error_log_size();
    my $r = start_run(qq({"run_id":$id_json,"run_dir":"esc-$$-$n"}));
    if ($r->{code} == 422) {
        pass("$name: the run id is refused (422); nothing can reach a status line");
        auto_lines_ok(GET_BODY('/server-status?auto'), $name);
        next;
    }
    is($r->{code}, 200, "$name: run started with run_dir given") or do {
        diag $r->{body};
        next;
    };
    my $auto = GET_BODY('/server-status?auto');
    auto_lines_ok($auto, $name);
    my ($shown) = $auto =~ /^PanoptesRunId: (.*)$/m;
    is($shown, logitem($id_bytes), "$name: PanoptesRunId is the id, escaped");
    like($auto, qr/^PanoptesRunStartedAt: \Q$r->{j}{started_at}\E$/m,
        "$name: PanoptesRunStartedAt on its own line");

    my $html = GET_BODY('/server-status');
    my ($row) = $html =~ m{<tr><td>active run</td><td>(.*?)</td></tr>}s;
    ok(defined $row && $row =~ /^[\x20-\x7e]*$/,
        "$name: the HTML row shows the id in printable ASCII")
        or diag logitem($row // '(no row)');

    # The info line for the start: one log record, the id escaped.
    my $l = wait_for_log($off, qr/panoptes_telemetry:info.* run esc-$$-$n/, 10);
    ok($l && index($l, 'run ' . errlogitem($id_bytes) . ' started in ') >= 0,
        "$name: the start is logged with the id escaped") or diag logitem($l // '(none)');
    my @strays = grep { !/^\[/ } error_log_since($off);
    ok(!@strays, "$name: every error_log line is a log record")
        or diag join "\n", map { logitem($_) } @strays;
    is(stop_run()->{code}, 200, "$name: run stopped");
}

# A run_dir with a line break (a legal path byte) in the start line.
{
    my $off = error_log_size();
    my $r = start_run(qq({"run_id":"esc-dir-$$","run_dir":"esc-dir-$$\\nPanoptesWriteErrors: 999"}));
    if ($r->{code} == 200) {
        like($r->{j}{run_dir} // '', qr/esc-dir-$$\nPanoptes/, 'run_dir with a line break accepted');
        my $l = wait_for_log($off, qr/panoptes_telemetry:info.* run esc-dir-$$ started in /, 10);
        like($l // '', qr/esc-dir-$$\\nPanoptesWriteErrors: 999$/,
            'the start line shows the run_dir escaped, on one line') or diag logitem($l // '');
        is(stop_run()->{code}, 200, 'run stopped');
    }
    else {
        is($r->{code}, 422, 'a run_dir with a line break is refused') or diag $r->{body};
    }
    my @strays = grep { !/^\[/ } error_log_since($off);
    ok(!@strays, 'run_dir: every error_log line is a log record')
        or diag join "\n", map { logitem($_) } @strays;
    auto_lines_ok(GET_BODY('/server-status?auto'), 'run_dir');
}

# An event type with control characters in the per-event debug line and in
# the line of a refused request (the body excerpt).
{
    my $off = error_log_size();
    my $r = post_event(qq({"type":"esc-type-$$\\nPanoptesWriteErrors: 999\\u2028x","data":1}));
    is($r->{code}, 200, 'event with a line break in its type stored');
    ok(wait_for_log($off, qr/panoptes_telemetry:debug.*event type=.*esc-type-$$/, 10),
        'debug line written');
    $r = post_event(qq({"type":["esc-type-$$\\nPanoptesWriteErrors: 999"],"data":1}));
    is($r->{code}, 422, 'the same string in a list as the type is a 422');
    ok(wait_for_log($off, qr/panoptes_telemetry:info.*-> 422 .*esc-type-$$/, 10),
        'the 422 is logged');
    my @strays = grep { !/^\[/ } error_log_since($off);
    ok(!@strays, 'type: every error_log line is a log record')
        or diag join "\n", map { logitem($_) } @strays;
    my @raw = grep { /[\x00-\x08\x0b-\x1f\x7f]/ } error_log_since($off);
    ok(!@raw, 'type: no control character in the error log')
        or diag join "\n", map { logitem($_) } @raw;
}

done_testing();
