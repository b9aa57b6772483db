# Runs last: every NDJSON file the suite made, site and run, is a sequence
# of whole lines, each exactly Python's json.dumps of an envelope with keys
# seq, ts, stream, type, data, meta; seqs increase within a file; site seqs
# are unique across day files; server-stamped site lines sit in the day
# file of their ts (SPEC §4, §5).  And the server is still answering.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use File::Find ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;

my @files;
for my $root (site_dir(), runroot_dir()) {
    next unless -d $root;
    File::Find::find({ no_chdir => 1, wanted => sub {
        # The runs index (.runs.ndjson) is no stream: t/5x check it.
        push @files, $File::Find::name
            if -f $_ && /\.ndjson$/ && !m{/\.runs\.ndjson$};
    } }, $root);
}
cmp_ok(scalar(@files), '>=', 10, 'the suite left NDJSON files to check: ' . scalar(@files));

my %site_seq;
for my $f (sort @files) {
    (my $short = $f) =~ s{^\Q${\ site_dir()}\E/?}{site:};
    my ($is_site) = $f =~ m{/site_(\d{8})\.ndjson$};
    ok($is_site || $f =~ m{/telemetry\.ndjson$}, "$short: a day file or a run file");
    my $stream = $is_site ? 'site' : 'run';
    my ($lines, $complete) = file_lines($f);
    ok($complete, "$short: ends with a complete line");
    my ($bad, $prev, $dup) = (0, 0, 0);
    for my $l (@$lines) {
        my $n = eval { oparse($l) };
        if (!$n || py_dumps($n) ne $l) { $bad++; diag "$short: not canonical: " . substr($l, 0, 200) if $bad <= 3; next }
        my @k = okeys($n);
        if ("@k" ne 'seq ts stream type data meta') { $bad++; diag "$short: keys @k"; next }
        my $st = node_value(onode($n, 'stream'));
        if ($st ne $stream) { $bad++; diag "$short: stream $st"; next }
        my $seq = node_value(onode($n, 'seq'));
        if ($seq !~ /^[1-9][0-9]*$/ || $seq <= $prev) { $bad++; diag "$short: seq $seq after $prev" }
        $prev = $seq;
        if ($is_site) {
            $dup++ if $site_seq{$seq}++;
            my $ts = node_value(onode($n, 'ts'));
            my $type = node_value(onode($n, 'type'));
            # Client-stamped events (SPEC §6) may sit in any day file: their
            # types start with "clientts-", except t/51's event of type ""
            # (data {"id":"empty"}), which cannot carry the prefix.
            my $client_ts = $type =~ /^clientts-/
                || ($type eq '' && canon(onode($n, 'data') // ['z']) eq '{"id":"empty"}');
            if (!$client_ts && ts_ok($ts) && day_key($ts) ne $is_site) {
                $bad++; diag "$short: ts $ts belongs to site_" . day_key($ts);
            }
        }
        else {
            my $rid = onode($n, 'meta', 'run_id');
            if (!$rid || $rid->[0] ne 's') { $bad++; diag "$short: run line without meta.run_id" }
        }
    }
    is($bad, 0, "$short: " . scalar(@$lines) . ' canonical lines, seqs increasing');
    is($dup, 0, "$short: no site seq also used in another day file") if $is_site;
}

json_is(get('/health')->{body}, '{"ok":true}', 'the server still answers /health');
json_is(get('/health', mount => 'root')->{body}, '{"ok":true}', '... on both mounts');

all_answers_json();

done_testing();
