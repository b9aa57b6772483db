# httpd's parent runs as root; the site directory is the User's (SPEC
# §11.6, issue 9 item 2).  An earlier version kept its state file in the
# site directory and opened, truncated and chowned paths there as root:
# `.panoptes-telemetry.state -> /some/root/file` replaced that file with
# the state, `site_20200101.ndjson -> /other/root/file` cut it to its last
# newline, and every start gave the site directory back to the User.
# With httpd stopped, as the User could:
#   (a) plant `.panoptes-telemetry.state` (where the state used to live)
#       and `site_20200101.ndjson` as links to root's files (the second
#       ends without a newline), a FIFO named `site_20200102.ndjson`, and
#       (as an admin would) give the site directory to root, 0755: httpd
#       starts (no hang on the FIFO), both root files are byte for byte as
#       they were, the state is a new regular file in the state directory,
#       the site directory is still root's (only a directory httpd creates
#       is given to the User) and a warning says the User cannot write it;
#   (b) with the plants gone and the directory the User's again, a state
#       file left where an earlier version kept it is not read when the
#       User owns it, and carried over into the state directory and
#       removed when it is root's (0600, as that version made it); events
#       work;
#   (c) the state file replaced by a link to a root file, or by a FIFO, and
#       a state directory the User owns: httpd refuses to start with one
#       CRIT line naming the path, and the root file is untouched.
# Everything is put back, and the server started with its usual state,
# even when this file dies half-way (END).
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use POSIX ();
use Time::HiRes ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;
use PTMTest qw(restore_server httpd_pid server_snapshot start_server stop_server server_answers
    error_log_size error_log_since wait_for_log state_dir state_file start_refused
    crit_lines crash_lines);

my $STATE_SIZE = 4194304;       # PanoptesTelemetryStateSize of the suite
my $RING = 1048576;             # PanoptesTelemetryRecent of the suite
my $FILE_SIZE = $STATE_SIZE + $RING;    # the state file holds both
my $site   = site_dir();
my $sdir   = state_dir();
my $sfile  = state_file();
my $legacy = "$site/.panoptes-telemetry.state";
my $logs   = Apache::Test::vars('t_logs');
my ($uid, $gid) = server_user_ids();
ok(defined $uid && $uid != 0, 'the children run as an unprivileged User');

my $off0 = error_log_size();
ensure_no_run();
my $keep = post_event('{"type":"keep-24","data":{"kept":true},"store_permanently":false}');
is($keep->{code}, 200, 'a current value in the usual state');

my $orig = server_snapshot();
$orig->{test_pid} = $$;
my @cleanup;

END {
    local $?;
    restore_server($orig, @cleanup ? sub { $_->() for reverse @cleanup } : undef);
}

sub write_file {
    my ($path, $bytes) = @_;
    open my $fh, '>:raw', $path or die "$path: $!";
    print {$fh} $bytes;
    close $fh or die "$path: $!";
    chmod 0644, $path;
}

# Root's files, outside every directory of the module.
my %victim = (
    "$logs/victim-24-state" => "root's own file, not a state\n" x 20,
    "$logs/victim-24-site"  => "root's first line\nroot's last line, without a newline",
    "$logs/victim-24-link"  => "another root file\n",
);
write_file($_, $victim{$_}) for keys %victim;
push @cleanup, sub { unlink keys %victim };

sub victims_intact {
    my ($name) = @_;
    for my $v (sort keys %victim) {
        my $now = read_bytes($v);
        (my $short = $v) =~ s{.*/}{};
        ok(defined $now && $now eq $victim{$v} && !-l $v && (stat $v)[4] == 0,
            "$name: $short is byte for byte as it was")
            or diag "$short: " . (defined $now ? length($now) . ' bytes now, ' . length($victim{$v}) . ' before' : 'gone');
    }
}

# The usual state, kept aside while the tests need the state directory
# without it (put back by END if the test dies).
my $aside = "$logs/state.aside-24";
sub keep_state_aside {
    rename $sfile, $aside or die "rename $sfile: $!";
}
push @cleanup, sub {
    if (-f $aside) {
        unlink $sfile if -l $sfile || -p $sfile || -f $sfile;
        rename $aside, $sfile;
    }
};

my $off;

# --- (a) links and a FIFO planted in the site directory, the site directory root's ---------
{
    ok(stop_server(60), '(a) httpd stopped');
    ok(-f $sfile && !-l $sfile, '(a) the state file is in the state directory');
    keep_state_aside();
    my @site_st = stat $site;
    my %plant = (
        $legacy => "$logs/victim-24-state",
        "$site/site_20200101.ndjson" => "$logs/victim-24-site",
    );
    for my $p (sort keys %plant) {
        symlink $plant{$p}, $p or die "symlink $p: $!";
        POSIX::lchown($uid, $gid, $p);      # as the User would have made it
    }
    my $fifo = "$site/site_20200102.ndjson";
    POSIX::mkfifo($fifo, 0644) or die "mkfifo $fifo: $!";
    chown $uid, $gid, $fifo;
    push @cleanup, sub {
        unlink $fifo, grep { -l $_ } keys %plant;
        chown $site_st[4], $site_st[5], $site;
        chmod $site_st[2] & 07777, $site;
    };
    chown 0, 0, $site;
    chmod 0755, $site;

    $off = error_log_size();
    my $t0 = Time::HiRes::time();
    my $pid = start_server($orig, 30);
    ok($pid, '(a) httpd starts with the plants in place (no hang on the FIFO)');
    diag sprintf '(a) started in %.1f s', Time::HiRes::time() - $t0;
    victims_intact('(a)');
    ok(-l $legacy && -l "$site/site_20200101.ndjson" && -p $fifo, '(a) the plants are as they were');
    ok(-f $sfile && !-l $sfile && -s $sfile == $FILE_SIZE && (stat $sfile)[4] == 0
        && (stat $sfile)[3] == 1 && ((stat $sfile)[2] & 07777) == 0600,
        '(a) the state is a regular file of root (0600, one link) in the state directory');
    like(wait_for_log($off, qr/telemetry state \Q$sfile\E: /, 5) // '', qr/: new /,
        '(a) ... a new one: the link where the state used to live was not read');
    my @now = stat $site;
    is("$now[4]:$now[5]", '0:0', '(a) the site directory is still root:root after the start');
    is(sprintf('%04o', $now[2] & 07777), '0755', '(a) ... mode 0755');
    ok(wait_for_log($off, qr/\[panoptes_telemetry:warn\].*PanoptesTelemetrySiteDir \Q$site\E is not writable by the server user/, 5),
        '(a) a warning says the User cannot write the site directory');
    ok(!crit_lines($off), '(a) no CRIT line') or diag join "\n", crit_lines($off);
    is(get('/health')->{code}, 200, '(a) /health answers');
    is(get('/current')->{code}, 200, '(a) /current answers');
}

# --- (b) the directory the User's again, the old state where an earlier version kept it ----
{
    ok(stop_server(60), '(b) httpd stopped');
    # Undo (a): the plants go, the site directory is the User's again.
    $_->() for splice @cleanup, -1;
    ok(!-e $legacy && !-e "$site/site_20200102.ndjson", '(b) the plants removed');
    is(join(':', (stat $site)[4, 5]), "$uid:$gid", '(b) the site directory is the User\'s again');
    victims_intact('(b)');
    # The usual state where an earlier version kept it, in the site
    # directory, 0600: first the User's (so planted: never read) ...
    unlink $sfile;
    rename $aside, $legacy or die "rename $aside: $!";
    chmod 0600, $legacy;
    chown $uid, $gid, $legacy;
    push @cleanup, sub {
        return unless -f $legacy && !-l $legacy;
        chown 0, 0, $legacy;
        unlink $sfile;
        rename $legacy, $sfile;
    };
    $off = error_log_size();
    ok(start_server($orig, 60), '(b) httpd starts with a state file of the User in the site directory');
    like(wait_for_log($off, qr/telemetry state \Q$sfile\E: /, 5) // '', qr/: new /,
        '(b) ... which is not read: the state is new');
    ok(-f $legacy && (stat $legacy)[4] == $uid, '(b) ... nor removed');
    is(get('/current/keep-24')->{code}, 404, '(b) ... and nothing of it is current');
    ok(stop_server(60), '(b) httpd stopped');
    # ... then root's, as an earlier version made it.
    unlink $sfile;
    chown 0, 0, $legacy;
    $off = error_log_size();
    ok(start_server($orig, 60), '(b) httpd starts with root\'s state file in the site directory');
    like(wait_for_log($off, qr/telemetry state \Q$sfile\E: /, 5) // '', qr/: moved from /,
        '(b) the state in the site directory was carried over');
    ok(!-e $legacy, '(b) ... and removed from the site directory');
    ok(-f $sfile && !-l $sfile && -s $sfile == $FILE_SIZE, '(b) ... into the state directory');
    json_is(get('/current/keep-24')->{body}, $keep->{body}, '(b) the current value from before this file is back');
    ok(!wait_for_log($off, qr/is not writable by the server user/, 0.5), '(b) no warning about the site directory');
    my $r = post_event('{"type":"links-24","data":{"n":1}}');
    is($r->{code}, 200, '(b) a stored event is accepted') or diag $r->{body};
    my ($lines, $complete) = file_lines(site_file_for($r->{j}{ts} // '') // '');
    ok($complete && @$lines && $lines->[-1] =~ /^\{"seq":\Q$r->{j}{seq}\E,.*"type":"links-24"/,
        '(b) ... as the last, whole line of its day file');
}

# --- (c) the state file a link or a FIFO, the state directory the User's -------------------
{
    my @sdir_st = stat $sdir;
    my %case = (
        'a link to a root file' => sub { symlink "$logs/victim-24-link", $sfile or die "symlink: $!" },
        'a FIFO'                => sub { POSIX::mkfifo($sfile, 0600) or die "mkfifo: $!" },
        "in a directory the User owns" => sub {
            push @cleanup, sub { chown $sdir_st[4], $sdir_st[5], $sdir; chmod $sdir_st[2] & 07777, $sdir };
            chown $uid, $gid, $sdir;
        },
    );
    for my $how ('a link to a root file', 'a FIFO', 'in a directory the User owns') {
        my $moved = $how =~ /^a /;
        my $name = "(c) the state file $how";
        ok(stop_server(60), "$name: httpd stopped");
        if ($moved) {
            keep_state_aside();
        }
        $case{$how}->();
        $off = error_log_size();
        my $t0 = Time::HiRes::time();
        ok(start_refused($orig, 30), "$name: httpd refuses to start");
        diag sprintf '%s: gave up after %.1f s', $name, Time::HiRes::time() - $t0;
        my @crit = crit_lines($off);
        my $path = $moved ? $sfile : $sdir;
        ok(@crit == 1 && index($crit[0], $path) >= 0, "$name: exactly one CRIT line, naming $path")
            or diag "crit lines:\n" . join("\n", @crit) . "\nall lines:\n" . join("\n", error_log_since($off));
        diag "$name: $crit[0]" if @crit;
        victims_intact($name);
        stop_server(30) if httpd_pid();     # in case it did start
        # Put it back.
        if ($moved) {
            unlink $sfile if -l $sfile || -p $sfile;
            rename $aside, $sfile or die "rename $aside: $!";
        }
        else {
            $_->() for splice @cleanup, -1;
        }
    }
    is(join(':', (stat $sdir)[4, 5]), '0:0', '(c) the state directory is root\'s again');
    $off = error_log_size();
    ok(start_server($orig, 60), '(c) all put back: httpd starts');
    like(wait_for_log($off, qr/telemetry state \Q$sfile\E: /, 5) // '', qr/: recovered /,
        '(c) ... with the usual state');
    json_is(get('/current/keep-24')->{body}, $keep->{body}, '(c) the current value from before this file is there');
    is(post_event('{"type":"links-24","data":{"n":2}}')->{code}, 200, '(c) a stored event is accepted');
}

# What is left to undo needs no stop (the victims, nothing aside).
$_->() for reverse splice @cleanup;

my @crash = crash_lines($off0);
ok(!@crash, 'no crash in the error log') or diag join "\n", @crash[0 .. ($#crash < 9 ? $#crash : 9)];

all_answers_json();

done_testing();
