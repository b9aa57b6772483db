# The NDJSON files, byte for byte (SPEC §4, §11.2): Python's
# json.dumps(envelope, separators=(",", ":")) with ensure_ascii (lower-case
# hex, surrogate pairs), Python repr floats, integers exact, key order
# seq, ts, stream, type, data, meta; the site day file named by the noon
# rule from the server-stamped ts in local time; run files.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;

ensure_no_run();
my $site = site_dir();

# Post, then return the file line for the response's seq (site stream).
sub stored_line {
    my ($body, $name) = @_;
    my $r = post_event($body);
    is($r->{code}, 200, "$name: 200") or diag $r->{body};
    my $f = site_file_for($r->{j}{ts});
    ok($f && -f $f, "$name: day file site_" . (day_key($r->{j}{ts}) // '?') . '.ndjson exists');
    my $l = $f ? lines_by_seq($f)->{ $r->{j}{seq} } : undef;
    ok(defined $l, "$name: line seq $r->{j}{seq} in it");
    return ($r, $l);
}

# --- strings: ensure_ascii escapes ------------------------------------------------------
{
    my $body = '{"type":"file\xc3\xa9-06","data":{"s":"\u0000\u001f\u007f\b\f\n\r\t\"\\\\/'
        . "\xc3\xa9\xf0\x9f\x98\x80\xe2\x80\xa8\xef\xbf\xbf" . '\u00e9\ud83d\ude00 ~"},"meta":{"k":"v"}}';
    $body =~ s/\\xc3\\xa9/\xc3\xa9/;    # raw é in the type
    my ($r, $l) = stored_line($body, 'escapes');
    is($l, '{"seq":' . $r->{j}{seq} . ',"ts":"' . $r->{j}{ts} . '","stream":"site","type":"file\u00e9-06",'
        . '"data":{"s":"\u0000\u001f\u007f\b\f\n\r\t\"\\\\/\u00e9\ud83d\ude00\u2028\uffff\u00e9\ud83d\ude00 ~"},'
        . '"meta":{"k":"v"}}',
        'ensure_ascii: short escapes, \u00XX controls, DEL, lower-case hex, surrogate pairs, "/" unescaped');
    # The response carries the same values.
    my $n = oparse($r->{body});
    is(canon(onode($n, 'data'), 1), canon(onode(oparse($l), 'data'), 1), 'response data equals file data');
}

# --- numbers: Python repr floats, exact integers --------------------------------------------
{
    my @in  = qw(1.0 1E2 1.50 -0.0 0.1 1e-7 1e16 1e22 123456789.0 1e15 5e-324 -0 2.1 0.00001 0.0001
                 1.7976931348623157e308 12345678901234567 -9223372036854775808 9223372036854775807
                 1E+2 1e-0 0 -1 100 0.5e1 2.5E-3 1e21 3.141592653589793 0.30000000000000004 1e-5);
    my @out = qw(1.0 100.0 1.5 -0.0 0.1 1e-07 1e+16 1e+22 123456789.0 1000000000000000.0 5e-324 0 2.1 1e-05 0.0001
                 1.7976931348623157e+308 12345678901234567 -9223372036854775808 9223372036854775807
                 100.0 1.0 0 -1 100 5.0 0.0025 1e+21 3.141592653589793 0.30000000000000004 1e-05);
    my ($r, $l) = stored_line('{"type":"num-06","data":[' . join(',', @in) . ']}', 'numbers');
    my ($data) = ($l // '') =~ /"data":(\[.*?\]),"meta"/;
    is($data, '[' . join(',', @out) . ']', 'numbers in the file as Python prints them');
    for my $i (0 .. $#in) {
        my $got = $data ? (split /,/, substr($data, 1, -1))[$i] : undef;
        is($got, $out[$i], "$in[$i] -> $out[$i]") unless defined $got && $got eq $out[$i];
    }
    # The response: same values (formatting is not specified, values are).
    my $n = oparse($r->{body});
    my @resp = map { $_->[0] eq 'n' ? ($_->[2] eq 'f' ? py_float($_->[1]) : Math::BigInt->new($_->[1])->bstr) : 'x' }
        @{ onode($n, 'data')->[1] };
    is_deeply(\@resp, \@out, 'response numbers have the same values (int stays int, float stays float)');
}

# --- key order and nesting --------------------------------------------------------------------
{
    my ($r, $l) = stored_line('{"meta":{"z":1,"a":{"y":[],"b":{}}},"ts":null,"data":{"b":1,"a":[{"d":1,"c":2}]},"type":"order-06"}',
        'key order');
    is($l, '{"seq":' . $r->{j}{seq} . ',"ts":"' . $r->{j}{ts} . '","stream":"site","type":"order-06",'
        . '"data":{"b":1,"a":[{"d":1,"c":2}]},"meta":{"z":1,"a":{"y":[],"b":{}}}}',
        'envelope keys in fixed order, nested key order preserved, empty containers');
}

# --- the day file: noon rule on the server-stamped ts in local time --------------------------
{
    my $r = post_event('{"type":"day-06","data":1}');
    my $ts = $r->{j}{ts};
    my $key = day_key($ts);
    my @lt = localtime time;
    diag "TZ=" . ($ENV{TZ} // '(unset)') . " ts=$ts local hour=$lt[2] -> site_$key.ndjson";
    my $f = "$site/site_$key.ndjson";
    ok(defined lines_by_seq($f)->{ $r->{j}{seq} }, "event stored in site_$key.ndjson");
    opendir my $dh, $site or die;
    my @others = grep { /^site_\d{8}\.ndjson$/ && $_ ne "site_$key.ndjson" } readdir $dh;
    for my $o (@others) {
        ok(!defined lines_by_seq("$site/$o")->{ $r->{j}{seq} }, "not in $o");
    }
    like(join(' ', sort(@others, "site_$key.ndjson")), qr/^(site_\d{8}\.ndjson ?)+$/, 'only site_YYYYMMDD.ndjson day files');
}

# --- every line of every site file: canonical, in seq order, complete ---------------------------
{
    opendir my $dh, $site or die;
    for my $name (sort grep { /^site_\d{8}\.ndjson$/ } readdir $dh) {
        my ($lines, $complete) = file_lines("$site/$name");
        ok($complete, "$name ends with a newline");
        my ($bad, $order, $prev, $nocr) = (0, 1, 0, 1);
        for my $l (@$lines) {
            $nocr = 0 if $l =~ /\r/;
            my $n = eval { oparse($l) };
            if (!$n || py_dumps($n) ne $l) { $bad++; diag "not canonical: $l" if $bad < 5; next }
            my @k = okeys($n);
            $bad++, diag("keys: @k") unless "@k" eq 'seq ts stream type data meta';
            $bad++ unless node_value(onode($n, 'stream')) eq 'site';
            my $seq = node_value(onode($n, 'seq'));
            $order = 0 unless $seq > $prev;
            $prev = $seq;
            my $ts = node_value(onode($n, 'ts'));
            my $type = node_value(onode($n, 'type'));
            if ($type !~ /^clientts-/ && ts_ok($ts) && day_key($ts) ne substr($name, 5, 8)) {
                $bad++; diag "ts $ts in $name";
            }
        }
        is($bad, 0, "$name: every line is json.dumps(envelope) in the right day file");
        ok($order, "$name: seqs increase");
        ok($nocr, "$name: no \\r");
    }
}

# --- run file ------------------------------------------------------------------------------
{
    my $st = start_run('{"run_dir":"files-06","run_id":"F6","meta":{"night":"2026-03-17"}}');
    is($st->{code}, 200, 'run F6 started');
    my $r = post_event('{"type":"run' . "\xc3\xa9" . '","data":{"v":1.5,"w":[true,null]},"meta":{"x":"\u00e9","run_id":"ignored"},"ts":"client"}');
    is($r->{code}, 200, 'run event accepted');
    stop_run();
    my ($lines, $complete) = file_lines("$site/files-06/telemetry.ndjson");
    ok($complete, 'run file ends with a newline');
    is_deeply($lines, ['{"seq":' . $r->{j}{seq} . ',"ts":"client","stream":"run","type":"run\u00e9",'
        . '"data":{"v":1.5,"w":[true,null]},"meta":{"x":"\u00e9","run_id":"F6"}}'],
        'run line: stream "run", client ts verbatim, meta.run_id stamped in place');
}

all_answers_json();

done_testing();
