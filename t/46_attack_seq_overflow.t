# Attack (issue 9 review): the seq counters are raised at start to the last
# seq found in the site directory's files (ptm_reconcile.c, ptm_ndjson.c
# seq_of), whatever its size: any uint64 up to 18446744073709551609 is
# taken.  A file the User planted (another www-data application), or any
# stray site_*.ndjson, can so push the counter past INT64_MAX: POST /event
# then answers negative seqs (the answer prints it as a signed long long,
# the file as unsigned), the file gets seqs outside the int64 range the
# module itself refuses (SPEC §11.2), and a few events later the counter
# wraps to 0 and numbers already in the day file come round again (SPEC §5,
# §11.3 F4: seq numbers never repeat within a file).
# Expected: every answer's seq is an integer in 1..2**63-1, the same as its
# line in the file, and seqs only grow.
use strict;
use warnings;
use Test::More;
use File::Copy ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;
use PTMTest qw(httpd_pid server_snapshot start_server stop_server server_answers
    state_file);

my $site  = site_dir();
my $sfile = state_file();
my ($uid, $gid) = server_user_ids();
my $plant = "$site/site_20000101.ndjson";
my $orig = server_snapshot();
$orig->{test_pid} = $$;
my $aside = "$sfile.aside-46";
my %len;        # day files as they were: cut back at the end

END {
    local $?;
    if ($orig && $$ == $orig->{test_pid}) {
        stop_server(30);
        unlink $plant;
        if (-f $aside) {
            rename $aside, $sfile;
        }
        for my $f (glob "$site/site_*.ndjson") {
            if (exists $len{$f}) { truncate $f, $len{$f} } else { unlink $f }
        }
        start_server($orig, 60) unless httpd_pid() && server_answers();
    }
}

ensure_no_run();
ok(stop_server(60), 'httpd stopped');
File::Copy::copy($sfile, $aside) or die "copy $sfile: $!";
$len{$_} = -s $_ for glob "$site/site_*.ndjson";
# As the User could: a day file of long ago whose last line has a big seq.
open my $fh, '>', $plant or die "$plant: $!";
print {$fh} qq({"seq":18446744073709551608}\n);
close $fh;
chown $uid, $gid, $plant;
ok(start_server($orig, 60), 'httpd started with the planted file');

my $prev = 0;
my $bad = 0;
for my $i (1 .. 12) {
    my $r = post_event(qq({"type":"attack46","data":$i}));
    is($r->{code}, 200, "event $i: 200") or next;
    my ($seq) = $r->{body} =~ /^\{"seq":(-?\d+),/;
    my $in_range = defined $seq && $seq !~ /^-/ && $seq ne '0'
        && (length($seq) < 19 || (length($seq) == 19 && $seq le '9223372036854775807'));
    ok($in_range, "event $i: seq $seq is in 1..2**63-1") or $bad++;
    my $file = site_file_for(jd($r->{body})->{ts});
    my ($line) = grep { /"data":$i,/ && /"type":"attack46"/ } @{ scalar file_lines($file) };
    my ($fseq) = defined $line ? $line =~ /^\{"seq":(\d+),/ : ();
    is($fseq, $seq, "event $i: the file line has the seq of the answer");
    if (defined $seq && $seq !~ /^-/) {
        ok(!$prev || (length($seq) <=> length($prev) || $seq cmp $prev) > 0,
            "event $i: seq grows ($prev -> $seq)") or $bad++;
        $prev = $seq;
    }
    last if $bad > 3;
}

done_testing();
