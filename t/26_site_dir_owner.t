# Which site directory root gives to the User (SPEC §11.6, issue 9 item 2).
# httpd's parent runs as root; when the site directory is missing it makes
# it and gives it to the User, who writes the day files in it.  An earlier
# version gave away whatever directory it found at that path when it came
# to chown it (a link was refused, nothing else): whoever can write the
# site directory's parent could swap in, between the mkdir and the chown,
# a directory of root's with files in it, or one of a third user, and have
# it given to the User.  Now only the empty directory of root's it just
# made is given.  The race is made deterministic: httpd runs with a small
# LD_PRELOAD library whose mkdir(), once the site directory is made,
# removes it and renames a prepared directory into its place: exactly what
# a swap that wins the race leaves.  With httpd stopped and the site
# directory moved aside:
#   (a) nothing swapped: httpd makes the site directory, it is the User's
#       (uid and gid), mode 0755, empty, no warning, and events are stored
#       in it;
#   (b) a directory of root's with a file in it swapped in: it stays
#       root:root, its file untouched, and a warning "cannot give <dir> to
#       the server user" is logged (and no CRIT: httpd starts);
#   (c) an empty directory of a third uid swapped in: it keeps its owner,
#       with the same warning.
# A site directory that exists when httpd starts (root's, with links in
# it) is left root's with a warning: t/24_site_links.t (a).
# The usual site directory is put back and the server started with it,
# even when this file dies half-way (END).
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use File::Path ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;
use PTMTest qw(restore_server httpd_pid server_snapshot start_server stop_server server_answers
    error_log_size error_log_since wait_for_log crit_lines crash_lines);

my $site  = site_dir();
my $sroot = Apache::Test::vars('serverroot');
my $logs  = Apache::Test::vars('t_logs');
my $aside = "$sroot/site.aside-26";     # the usual site directory, kept aside
my $swap  = "$sroot/site.swap-26";      # what the swap puts in its place
my ($uid, $gid) = server_user_ids();
ok(defined $uid && $uid != 0, 'the children run as an unprivileged User');
my $third = $uid + 1000;                # neither root nor the User

my $off0 = error_log_size();
ensure_no_run();
my $orig = server_snapshot();
$orig->{test_pid} = $$;
my @cleanup;

END {
    local $?;
    restore_server($orig, @cleanup ? sub { $_->() for reverse @cleanup } : undef);
}

# The LD_PRELOAD library: mkdir($PTM_SWAP_PATH), once it succeeded, is
# followed by rmdir($PTM_SWAP_PATH) and rename($PTM_SWAP_FROM,
# $PTM_SWAP_PATH), once per process.
my $shim_c  = "$logs/ptm-swap-26.c";
my $shim_so = "$logs/ptm-swap-26.so";
push @cleanup, sub { unlink $shim_c, $shim_so };
{
    open my $fh, '>', $shim_c or die "$shim_c: $!";
    print {$fh} <<'C';
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int mkdir(const char *path, mode_t mode)
{
    static int (*real)(const char *, mode_t);
    static int done;
    const char *want = getenv("PTM_SWAP_PATH");
    const char *from = getenv("PTM_SWAP_FROM");
    int rc;

    if (!real) {
        real = (int (*)(const char *, mode_t))dlsym(RTLD_NEXT, "mkdir");
    }
    rc = real(path, mode);
    if (rc == 0 && !done && want && from && strcmp(path, want) == 0) {
        done = 1;
        if (rmdir(path) != 0 || rename(from, path) != 0) {
            perror("ptm-swap-26");
        }
    }
    return rc;
}
C
    close $fh or die "$shim_c: $!";
}
my $cc = system('cc', '-shared', '-fPIC', '-O1', '-o', $shim_so, $shim_c, '-ldl') == 0;

# After what httpd already preloads (the sanitizer runtimes under make
# test-asan must come first).
sub swapped_snapshot {
    my $pre = join ' ', grep { length } ($orig->{env}{LD_PRELOAD} // ''), $shim_so;
    return { %$orig, env => { %{ $orig->{env} }, LD_PRELOAD => $pre,
                              PTM_SWAP_PATH => $site, PTM_SWAP_FROM => $swap } };
}

sub owner { my @st = stat $_[0] or return 'none'; return "$st[4]:$st[5]" }

sub entries {
    opendir my $dh, $_[0] or return "cannot read $_[0]: $!";
    my @e = sort grep { !/^\.\.?$/ } readdir $dh;
    closedir $dh;
    return "@e";
}

# The usual site directory aside (same file system: a rename), put back
# by the last cleanup, whatever is at its place then removed.
ok(stop_server(60), 'httpd stopped');
ok(rename($site, $aside), 'the usual site directory moved aside') or diag "rename $site: $!";
push @cleanup, sub {
    return unless -d $aside;
    File::Path::remove_tree($site) if -e $site && !-l $site;
    unlink $site if -l $site;
    rename $aside, $site or print STDERR "# rename $aside $site: $!\n";
};
push @cleanup, sub { File::Path::remove_tree($swap) if -d $swap };
ok(!-e $site, 'no site directory');

my $off;

# --- (a) httpd makes the site directory ----------------------------------------------------
{
    $off = error_log_size();
    ok(start_server($orig, 60), '(a) httpd starts without a site directory');
    ok(-d $site && !-l $site, '(a) httpd made the site directory');
    is(owner($site), "$uid:$gid", "(a) ... and gave it to the User ($uid:$gid)");
    is(sprintf('%04o', (stat $site)[2] & 07777), '0755', '(a) ... mode 0755');
    ok(!grep({ /cannot give|not writable by the server user/ } error_log_since($off)),
        '(a) no warning about the site directory');
    my $r = post_event('{"type":"owner-26","data":{"n":1}}');
    is($r->{code}, 200, '(a) a stored event is accepted') or diag $r->{body};
    my $f = site_file_for($r->{j}{ts} // '');
    ok($f && -f $f && owner($f) eq "$uid:$gid", '(a) ... in a day file of the User in it');
    ok(stop_server(60), '(a) httpd stopped');
    File::Path::remove_tree($site);
    ok(!-e $site, '(a) the new site directory removed');
}

# --- (b), (c): a directory swapped in between the mkdir and the chown ----------------------
my %case = (
    "(b) a directory of root's with a file in it" => sub {
        mkdir $swap, 0755 or die "mkdir $swap: $!";
        chmod 0755, $swap;
        open my $fh, '>', "$swap/root-26" or die "$swap/root-26: $!";
        print {$fh} "root's own file\n";
        close $fh;
        chmod 0600, "$swap/root-26";
        return ('0:0', 'root-26');
    },
    '(c) an empty directory of a third uid' => sub {
        mkdir $swap, 0755 or die "mkdir $swap: $!";
        chmod 0755, $swap;
        chown $third, $third, $swap;
        return ("$third:$third", '');
    },
);
SKIP: {
    skip 'no C compiler to build the LD_PRELOAD library', 1 unless $cc;
    for my $name (sort keys %case) {
        my ($want_owner, $want_entries) = $case{$name}->();
        my $ino = (stat $swap)[1];
        $off = error_log_size();
        my $pid = start_server(swapped_snapshot(), 60);
        ok($pid, "$name: httpd starts");
        ok(!-e $swap && -d $site && (stat $site)[1] == $ino,
            "$name: ... and the swap happened (that directory is the site directory now)")
            or diag join "\n", error_log_since($off);
        is(owner($site), $want_owner, "$name: it keeps its owner ($want_owner), not given to the User");
        is(entries($site), $want_entries, "$name: ... with what was in it");
        if ($want_entries) {
            is(owner("$site/root-26") . ' ' . read_bytes("$site/root-26"), "0:0 root's own file\n",
                "$name: ... root's file untouched");
        }
        my @w = grep { /\[panoptes_telemetry:warn\].*cannot give \Q$site\E to the server user/ }
            error_log_since($off);
        is(scalar @w, 1, "$name: one warning: cannot give <site> to the server user")
            or diag join "\n", error_log_since($off);
        diag "$name: $w[0]" if @w;
        my @crit = crit_lines($off);
        ok(!@crit, "$name: no CRIT line") or diag join "\n", @crit;
        is(get('/health')->{code}, 200, "$name: /health answers");
        ok(stop_server(60), "$name: httpd stopped");
        File::Path::remove_tree($site);
        ok(!-e $site, "$name: the site directory removed");
    }
}

# --- the usual site directory back ----------------------------------------------------------
{
    $_->() for reverse splice @cleanup;
    ok(-d $site && !-e $aside, 'the usual site directory is back');
    is(owner($site), "$uid:$gid", '... the User\'s');
    $off = error_log_size();
    ok(start_server($orig, 60), 'httpd starts as it was');
    my $r = post_event('{"type":"owner-26","data":{"n":2}}');
    is($r->{code}, 200, 'a stored event is accepted') or diag $r->{body};
    ok(!grep({ /cannot give|not writable by the server user/ } error_log_since($off)),
        'no warning about the site directory');
}

my @crash = crash_lines($off0);
ok(!@crash, 'no crash in the error log') or diag join "\n", @crash[0 .. ($#crash < 9 ? $#crash : 9)];

all_answers_json();

done_testing();
