# Trust no one on the site (issue 9, SPEC §11.3 F1/F2, §11.6): run
# directories are reached without following a symbolic link planted in the
# site directory or a run root, wherever it appears and whenever it was
# planted (before the start, or mid-run); a run never takes a name the
# module owns in the site directory (site_*.ndjson, anything beginning with
# "."); no run id carries a control character; a symbolic link planted at
# the site day file is not followed.  The server user could plant every
# one of these links: the outside directories are made writable by it, so
# following a link would succeed, and the tests look there.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use File::Find ();
use File::Path ();
use POSIX ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;

ensure_no_run();
my $site    = site_dir();
my $runroot = runroot_dir();
File::Path::make_path($runroot);
chown_to_server($runroot);

# Somewhere outside the site dir that the server user can write to.
my $out = "/tmp/ptm-outside-40-$$";
File::Path::remove_tree($out);
File::Path::make_path("$out/a/b", "$out/m/r", "$out/x", "$out/r");
chown_to_server($out, "$out/a", "$out/a/b", "$out/m", "$out/m/r", "$out/x",
    "$out/r");
END { File::Path::remove_tree($out) if $out && -d $out }

sub seqs_of { my ($f) = @_; return [map { /^\{"seq":(\d+),/ ? $1 + 0 : -1 } @{ file_lines($f) }] }

# Every file below $dir (symbolic links not followed).
sub files_below {
    my ($dir) = @_;
    my @f;
    File::Find::find({ no_chdir => 1, wanted => sub { push @f, $_ if -f $_ && !-l $_ } }, $dir)
        if -d $dir;
    return \@f;
}

# Every entry below the site dir, the run root and the outside dir (links
# not followed), with its type: what a refused request must leave as it was.
sub tree {
    my @e;
    for my $top ($site, $runroot, $out) {
        File::Find::find({ no_chdir => 1, wanted => sub {
            push @e, $_ . (-l $_ ? ' l' : -d _ ? ' d' : ' f');
        } }, $top) if -d $top;
    }
    return join "\n", sort @e;
}

# A 422 with one value_error item at @loc whose msg starts "Value error, "
# and whose input is $input; no run started; nothing made anywhere (and,
# named, nothing at @absent).
sub refused_422 {
    my ($body, $loc, $input, $name, @absent) = @_;
    my $before = tree();
    my $r = start_run($body);
    my $j = $r->{j};
    my $items = ref $j eq 'HASH' && ref $j->{detail} eq 'ARRAY' ? $j->{detail} : [];
    my $item = $items->[0];
    is($r->{code}, 422, "$name: 422") or diag $r->{body};
    is_json_ct($r, "$name: JSON");
    is(scalar @$items, 1, "$name: one item");
    is(ref $item eq 'HASH' ? $item->{type} : undef, 'value_error', "$name: value_error");
    is(ref $item eq 'HASH' && ref $item->{loc} eq 'ARRAY' ? join(' ', @{ $item->{loc} }) : '',
        $loc, "$name: loc [$loc]");
    like(ref $item eq 'HASH' ? $item->{msg} // '' : '', qr/^Value error, /,
        "$name: msg starts 'Value error, '");
    is(ref $item eq 'HASH' ? $item->{input} : undef, $input, "$name: input") if defined $input;
    is_err(get('/run'), 404, 'No run is active', "$name: no run started");
    ok(!-e $_ && !-l $_, "$name: $_ not made") for @absent;
    my $after = tree();
    ok($after eq $before, "$name: nothing made or removed")
        or diag "before:\n$before\nafter:\n$after";
    stop_run() if $r->{code} == 200;
    return $r;
}

# ---------------------------------------------------------------------------
# Item 4: run_dir confinement is checked on the text, used on the raw path.

# site/data -> /elsewhere/a/b: "data/../escaped" is site/escaped as text,
# but the kernel resolves data/.. to /elsewhere/a: mkdir -p of it used to
# make /elsewhere/a/escaped and the run wrote there.  Now every directory
# mkdir -p of the reported path makes, detours included, is walked beneath
# the site dir without following links: the link in the detour refuses the
# start (the reported path would name a directory out there).
symlink "$out/a/b", "$site/data-40" or die "symlink: $!";
refused_422('{"run_dir":"data-40/../escaped-40","run_id":"esc"}', 'body run_dir',
    'data-40/../escaped-40', 'data/../escaped (data a link outside)',
    "$out/a/escaped-40", "$site/escaped-40");
is_deeply(files_below($out), [], '... nothing at all was written outside');

# Without a link the detour is made, as upstream's mkdir -p makes it, and
# the reported path names the run directory the events go to.
{
    my $r = start_run('{"run_dir":"det-40/../det2-40","run_id":"det"}');
    is($r->{code}, 200, 'det/../det2: the run starts') or diag $r->{body};
    is($r->{j}{run_dir}, "$site/det-40/../det2-40", '... run_dir reported as pathlib has it (.. kept)');
    ok(-d "$site/det-40" && -d "$site/det2-40", '... the detour and the run directory are made');
    my $e = post_event('{"type":"det-40","data":1}');
    is($e->{code}, 200, '... an event is stored') or diag $e->{body};
    stop_run();
    is_deeply(seqs_of("$site/det-40/../det2-40/telemetry.ndjson"), [$e->{j}{seq} // -1],
        '... in the file the reported path names');
    ok(!-e "$site/det-40/telemetry.ndjson", '... and not in the detour');
}

# A link inside the run_dir: refused, nothing made outside.
refused_422('{"run_dir":"data-40/x","run_id":"lnk"}', 'body run_dir', 'data-40/x',
    'run_dir through a link to outside', "$out/a/b/x");
refused_422('{"run_dir":' . js("$site/data-40/y") . ',"run_id":"lnk"}', 'body run_dir', "$site/data-40/y",
    'absolute run_dir through a link to outside', "$out/a/b/y");
refused_422('{"run_dir":"data-40","run_id":"lnk"}', 'body run_dir', 'data-40',
    'run_dir that is a link to outside');
symlink "$out/no-such-dir", "$site/dangling-40" or die "symlink: $!";
refused_422('{"run_dir":"dangling-40/z","run_id":"lnk"}', 'body run_dir', 'dangling-40/z',
    'run_dir through a dangling link', "$out/no-such-dir");
# A link to a directory inside the site dir is refused too: links are not
# looked at, only not followed.
mkdir "$site/real-40" or die;
symlink "real-40", "$site/alias-40" or die;
refused_422('{"run_dir":"alias-40/w","run_id":"lnk"}', 'body run_dir', 'alias-40/w',
    'run_dir through a link to a directory inside', "$site/real-40/w");
# The same in a run root.
symlink "$out/x", "$runroot/link-40" or die;
refused_422('{"run_dir":' . js("$runroot/link-40/q") . ',"run_id":"lnk"}', 'body run_dir',
    "$runroot/link-40/q", 'run_dir through a link in a run root', "$out/x/q");
# run_id naming a link (no run_dir): 422 at run_id.
symlink "$out/r", "$site/linkid-40" or die;
refused_422('{"run_id":"linkid-40"}', 'body run_id', 'linkid-40', 'run_id naming a link');
refused_422('{"meta":{"run_id":"linkid-40"}}', 'body meta run_id', 'linkid-40',
    'meta.run_id naming a link');
# A reused run dir whose telemetry.ndjson is a link: refused, the file
# behind the link is not read, cut or written.
{
    mkdir "$site/reuse-40" or die;
    open my $fh, '>', "$out/victim" or die; print {$fh} "not a line"; close $fh;
    chown_to_server("$out/victim");
    symlink "$out/victim", "$site/reuse-40/telemetry.ndjson" or die;
    refused_422('{"run_dir":"reuse-40","run_id":"lnk"}', 'body run_dir', 'reuse-40',
        'reused run dir with telemetry.ndjson a link');
    is(read_bytes("$out/victim"), 'not a line', '... the file behind the link is untouched');
    unlink "$site/reuse-40/telemetry.ndjson";
}
is_deeply(files_below($out), ["$out/victim"], 'nothing was written outside by the refused starts');

# Links planted mid-run: the event answers 500 JSON naming the path, uses
# no seq, changes no current value, writes nothing outside; once the link
# is gone the run directory is made again.
{
    my $r = start_run('{"run_dir":"mid-40/r","run_id":"mid"}');
    is($r->{code}, 200, 'run mid started') or diag $r->{body};
    my $a = post_event('{"type":"mid-40","data":"a"}');
    is($a->{code}, 200, 'mid: first event stored');

    # The run directory itself replaced by a link.
    rename "$site/mid-40/r", "$site/mid-40/r-moved" or die "rename: $!";
    symlink "$out/r", "$site/mid-40/r" or die;
    my $b = post_event('{"type":"mid-40","data":"b"}');
    is($b->{code}, 500, 'mid: run dir replaced by a link: 500');
    ok_json_error($b, 500, qr/\Q$site\E\/mid-40\/r/, 'mid: the 500 is JSON naming the path');
    ok(!-e "$out/r/telemetry.ndjson", 'mid: nothing written through the link');
    json_is_ordered(get('/current/mid-40')->{body}, $a->{body}, 'mid: current not updated');

    # A directory above it replaced by a link.
    unlink "$site/mid-40/r";
    rename "$site/mid-40", "$site/mid-40-moved" or die "rename: $!";
    symlink "$out/m", "$site/mid-40" or die;
    my $c = post_event('{"type":"mid-40","data":"c"}');
    is($c->{code}, 500, 'mid: a parent replaced by a link: 500');
    ok_json_error($c, 500, qr/\Q$site\E\/mid-40/, 'mid: the 500 is JSON naming the path');
    ok(!-e "$out/m/r/telemetry.ndjson", 'mid: nothing written through the parent link');

    unlink "$site/mid-40";
    my $d = post_event('{"type":"mid-40","data":"d"}');
    is($d->{code}, 200, 'mid: link gone, run directory made again') or diag $d->{body};
    is($d->{j}{seq}, $a->{j}{seq} + 1, 'mid: the refused events used no seq');
    is_deeply(seqs_of("$site/mid-40/r/telemetry.ndjson"), [$a->{j}{seq} + 1],
        'mid: the event is in the re-made run directory');
    stop_run();
}
is_deeply(files_below($out), ["$out/victim"], 'nothing was written outside mid-run');

# A link planted at the site day file: 500 naming the cause, nothing
# written through it, no seq used; the real file works again afterwards.
{
    my $now = sub { POSIX::strftime('%Y-%m-%dT%H:%M:%S.000Z', gmtime) };
    my $k0 = day_key($now->());
    my $a = post_event('{"type":"day-40","data":"a"}');
    is($a->{code}, 200, 'site event stored');
    my $day = site_file_for($a->{j}{ts});
    ok(-f $day, "the day file $day exists");
    rename $day, "$site/moved-day-40.ndjson" or die "rename: $!";
    open my $fh, '>', "$out/dayfile" or die; close $fh;
    chown_to_server("$out/dayfile");
    symlink "$out/dayfile", $day or die;
    my $b = post_event('{"type":"day-40","data":"b"}');
    SKIP: {
        skip 'the day changed during the test (noon)', 4 if day_key($now->()) ne $k0;
        is($b->{code}, 500, 'a link at the day file: 500');
        ok_json_error($b, 500, qr/\Q$day\E.*symbolic link/, '... JSON naming the file and the cause');
        is(-s "$out/dayfile", 0, '... nothing written through the link');
        json_is_ordered(get('/current/day-40')->{body}, $a->{body}, '... current not updated');
    }
    unlink $day;
    rename "$site/moved-day-40.ndjson", $day or die "rename back: $!";
    my $c = post_event('{"type":"day-40","data":"c"}');
    is($c->{code}, 200, 'link gone: site events stored again');
    is($c->{j}{seq}, $a->{j}{seq} + 1, '... the refused event used no seq');
}

# ---------------------------------------------------------------------------
# Item 5: a run cannot take the site stream's names.

# The day file of today may exist (site_20261203.ndjson is, at the UTC-11
# of the event MPM run, on 2026-12-04 before 11:00 UTC): tree() checks
# that nothing was made, here or anywhere.
for my $name ('site_20261203.ndjson', '.hidden', '.panoptes-telemetry.state', 'site_x.ndjson') {
    refused_422('{"run_id":' . js($name) . '}', 'body run_id', $name, "run_id $name");
    refused_422('{"meta":{"run_id":' . js($name) . '}}', 'body meta run_id', $name,
        "meta.run_id $name");
    refused_422('{"run_dir":' . js("$name/r") . ',"run_id":"own"}', 'body run_dir', "$name/r",
        "run_dir $name/r");
    refused_422('{"run_dir":' . js("$site/$name") . ',"run_id":"own"}', 'body run_dir', "$site/$name",
        "absolute run_dir $site/$name");
    refused_422('{"run_dir":' . js("x-40/../$name") . ',"run_id":"own"}', 'body run_dir', "x-40/../$name",
        "run_dir x/../$name", "$site/x-40");
}
ok(!-d "$site/site_20261203.ndjson", 'no directory site_20261203.ndjson');
# A detour would be made by mkdir -p too.
refused_422('{"run_dir":".d-40/../r-40","run_id":"own"}', 'body run_dir', '.d-40/../r-40',
    'run_dir .d/../r (a dot-name detour)', "$site/.d-40", "$site/r-40");
refused_422('{"run_dir":"site_1.ndjson/../r-40","run_id":"own"}', 'body run_dir',
    'site_1.ndjson/../r-40', 'run_dir site_1.ndjson/../r (a day-name detour)',
    "$site/site_1.ndjson", "$site/r-40");
ok(!-d "$site/.panoptes-telemetry.state", 'no directory .panoptes-telemetry.state');
{
    # The scenario of the issue: the site stream keeps working.
    my $e = post_event('{"type":"own-40","data":1}');
    is($e->{code}, 200, 'site events are stored after the refused starts') or diag $e->{body};
}
# Names that only look like the module's are fine, and so is a run id that
# names no directory (run_dir given), and a dot name in a run root.
for my $c (['site_20261203.ndjsonx', 'run_id'], ['xsite_1.ndjson', 'run_id'],
           ['site-1.ndjson', 'run_id'], ['a.hidden', 'run_id'],
           ['site_20261203.ndjson', 'label'], ['.hidden', 'label'],
           ["$runroot/.dot-40", 'rootdot'], ['sub-40/.dot', 'deepdot']) {
    my ($v, $how) = @$c;
    my $body = $how eq 'run_id'  ? '{"run_id":' . js($v) . '}'
             : $how eq 'label'   ? '{"run_dir":"label-40","run_id":' . js($v) . '}'
             :                     '{"run_dir":' . js($v) . ',"run_id":"ok"}';
    my $r = start_run($body);
    is($r->{code}, 200, "$how $v: allowed") or diag $r->{body};
    stop_run() if $r->{code} == 200;
}

# ---------------------------------------------------------------------------
# Item 8: control characters in every run id, with or without run_dir.

my $forged = "abc\nPanoptesWriteErrors: 999";
refused_422('{"run_dir":"ctl-40","run_id":' . js($forged) . '}', 'body run_id', $forged,
    'run_id with a newline, run_dir given', "$site/ctl-40");
refused_422('{"run_id":' . js($forged) . '}', 'body run_id', $forged,
    'run_id with a newline, no run_dir');
refused_422('{"run_dir":"ctl-40","meta":{"run_id":' . js($forged) . '}}', 'body meta run_id', $forged,
    'meta.run_id with a newline, run_dir given', "$site/ctl-40");
refused_422('{"run_dir":"ctl-40","run_id":"del\u007f"}', 'body run_id', "del\x7f",
    'run_id with DEL, run_dir given', "$site/ctl-40");
refused_422('{"run_dir":"ctl-40","run_id":"tab\tx"}', 'body run_id', "tab\tx",
    'run_id with a tab, run_dir given', "$site/ctl-40");
refused_422('{"run_dir":"ctl-40","run_id":"nul\u0000x"}', 'body run_id', undef,
    'run_id with NUL, run_dir given', "$site/ctl-40");
{
    # Both fields wrong: both reported, in field order.
    my $r = start_run('{"run_dir":"../out-40","run_id":"a\nb"}');
    my @loc = map { join ' ', @{ $_->{loc} } } @{ ref $r->{j} eq 'HASH' && ref $r->{j}{detail} eq 'ARRAY' ? $r->{j}{detail} : [] };
    is("@loc", 'body run_dir body run_id', 'bad run_dir and bad run_id: two items, in field order')
        or diag $r->{body};
}
is_err(get('/run'), 404, 'No run is active', 'no run is active at the end');

all_answers_json();

done_testing();
