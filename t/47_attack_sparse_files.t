# Attack (issue 9 review): the User (another www-data application) can make
# a sparse file of any size in the site directory at no cost in disk, and
# the module reads such files backwards, 8 KiB at a time, to their last
# newline (ptm_ndjson.c scan_back), with no bound:
#   (a) at start, httpd's root parent reads every site_*.ndjson to recover
#       the seq counters (ptm_reconcile.c): a 32 GiB sparse file ending in
#       one newline keeps the start in post_config for minutes (~200 MiB/s
#       here; 16 TiB, ext4's limit, would be about a day), with no log
#       line.  SPEC §11.6: nothing the User plants may make the root parent
#       hang at start.
#   (b) under the store lock, a child's append looks for a partial last
#       line (cut_partial): today's day file replaced by a 16 GiB sparse
#       file without a newline holds the lock for as long as the read
#       takes, and every event and /current waits behind it (issue 9 item
#       10: readers must not wait behind a writer's disk work).
# Expected: the start completes within 20 s; the event answers (whatever
# the code) and a concurrent GET /current answers within 5 s.
use strict;
use warnings;
use Test::More;
use Time::HiRes ();
use POSIX ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;
use PTMTest qw(httpd_pid server_snapshot start_server stop_server server_answers
    httpd_procs);

my $site = site_dir();
my ($uid, $gid) = server_user_ids();
my $orig = server_snapshot();
$orig->{test_pid} = $$;
my @plants;

sub kill_all {
    stop_server(10);
    my @p = httpd_procs($orig);
    kill KILL => @p if @p;
    Time::HiRes::sleep(0.5);
    unlink Apache::Test::vars('t_pid_file') unless httpd_procs($orig);
}

END {
    local $?;
    if ($orig && $$ == $orig->{test_pid}) {
        kill_all();
        unlink @plants;
        start_server($orig, 60) unless httpd_pid() && server_answers();
    }
}

# As the User could: a sparse file at `$path` of `$size` bytes, `$tail`
# at its end.
sub plant_sparse {
    my ($path, $size, $tail) = @_;
    unlink $path;
    open my $fh, '>', $path or die "$path: $!";
    truncate $fh, $size - length($tail) or die "truncate $path: $!";
    seek $fh, 0, 2;
    print {$fh} $tail;
    close $fh or die "$path: $!";
    chown $uid, $gid, $path;
    push @plants, $path;
}

# --- (a) the root parent at start ------------------------------------------
ensure_no_run();
ok(stop_server(60), '(a) httpd stopped');
plant_sparse("$site/site_20000102.ndjson", 32 << 30, "\n");
my $t0 = Time::HiRes::time();
my $pid = start_server($orig, 20);
ok($pid, '(a) httpd starts within 20 s with a 32 GiB sparse day file planted')
    or diag sprintf 'not up after %.0f s', Time::HiRes::time() - $t0;
kill_all() unless $pid;
unlink @plants;
@plants = ();
ok(start_server($orig, 60), '(a) httpd starts without the plant') unless $pid;

# --- (b) a child under the store lock --------------------------------------
my $r = post_event('{"type":"attack47","data":0}');
is($r->{code}, 200, '(b) an event to learn the day file');
my $today = site_file_for(jd($r->{body})->{ts});
my $keep = read_bytes($today);
plant_sparse($today, 16 << 30, '');
push @plants, $today;
my $kid = fork();
die "fork: $!" unless defined $kid;
if (!$kid) {
    my $c = PTMTest::Client->new(timeout => 30);
    $c->request('POST', '/event', '{"type":"attack47","data":1}');
    POSIX::_exit(0);
}
Time::HiRes::sleep(1);
my $c = PTMTest::Client->new(timeout => 5);
$t0 = Time::HiRes::time();
my $cur = $c->request('GET', '/current');
my $took = Time::HiRes::time() - $t0;
is($cur->{code}, 200, '(b) GET /current answers within 5 s while an event meets the sparse file')
    or diag sprintf 'answer %s after %.1f s', $cur->{code} // 'none', $took;
waitpid $kid, 0;
kill_all();
unlink $today;
if (defined $keep) {
    open my $fh, '>:raw', $today or die "$today: $!";
    print {$fh} $keep;
    close $fh;
    chown $uid, $gid, $today;
}
@plants = ();
ok(start_server($orig, 60), 'httpd started again');

done_testing();
