# Byte-count directives (SPEC §11.5): PanoptesTelemetryMaxBody and
# PanoptesTelemetryStateSize take decimal digits only, and a value out of
# range -- however many digits -- is a configtest error that says so,
# never a truncated or wrapped number (issue 9, item 9b); so is a
# PanoptesTelemetryForwardUser that names no user or group.  Runs httpd -t on
# a configuration of its own with the modules of this run.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use File::Temp ();

my $httpd = Apache::Test::vars('httpd');
my $t_conf = Apache::Test::vars('t_conf');
my $mods = "$t_conf/httpd-minimal.conf";
plan skip_all => "no $mods (run through t/run-httpd-tests.sh)" unless -f $mods;

my $dir = File::Temp::tempdir('ptm-conf-XXXXXX', TMPDIR => 1, CLEANUP => 1);

# (exit status, output) of httpd -t with these directives.
sub configtest {
    my (@lines) = @_;
    open my $fh, '>', "$dir/httpd.conf" or die "$dir/httpd.conf: $!";
    print $fh "ServerRoot $dir\nServerName localhost\nDefaultRuntimeDir $dir\n"
        . "PidFile $dir/pid\nErrorLog $dir/error_log\nListen 127.0.0.1:1\n"
        . "Include $mods\n" . join("\n", @lines) . "\n";
    close $fh;
    my $out = `'$httpd' -t -f '$dir/httpd.conf' 2>&1`;
    return ($? >> 8, $out);
}

my @cases = (
    # directive, value, error (undef: Syntax OK)
    [ 'PanoptesTelemetryMaxBody', '1048576', undef ],
    [ 'PanoptesTelemetryMaxBody', '1', undef ],
    [ 'PanoptesTelemetryMaxBody', '1099511627776', undef ],
    [ 'PanoptesTelemetryMaxBody', '1e3', qr/'1e3' is not a number of bytes/ ],
    [ 'PanoptesTelemetryMaxBody', '-1', qr/'-1' is not a number of bytes/ ],
    [ 'PanoptesTelemetryMaxBody', '0x10', qr/'0x10' is not a number of bytes/ ],
    [ 'PanoptesTelemetryMaxBody', '1M', qr/'1M' is not a number of bytes/ ],
    [ 'PanoptesTelemetryMaxBody', '0', qr/0 is out of range \(1\.\.\d+\)/ ],
    [ 'PanoptesTelemetryMaxBody', '1099511627777', qr/1099511627777 is out of range/ ],
    [ 'PanoptesTelemetryMaxBody', '99999999999999999999999',
      qr/99999999999999999999999 is out of range/ ],
    [ 'PanoptesTelemetryMaxBody', '18446744073709551617',
      qr/18446744073709551617 is out of range/ ],
    [ 'PanoptesTelemetryStateSize', '4194304', undef ],
    [ 'PanoptesTelemetryStateSize', '65535', qr/65535 is out of range \(65536\.\./ ],
    [ 'PanoptesTelemetryStateSize', '16M', qr/'16M' is not a number of bytes/ ],
    [ 'PanoptesTelemetryStateSize', '4294967297', qr/4294967297 is out of range/ ],
    [ 'PanoptesTelemetryStateSize', '18446744073709551616',
      qr/18446744073709551616 is out of range/ ],
    # Whom the forwarding program runs as: checked when read.
    [ 'PanoptesTelemetryForwardUser', 'nobody', undef ],
    [ 'PanoptesTelemetryForwardUser', 'nobody nogroup', undef ],
    [ 'PanoptesTelemetryForwardUser', 'ptm-no-such-user', qr/no user 'ptm-no-such-user' on this system/ ],
    [ 'PanoptesTelemetryForwardUser', 'nobody ptm-no-such-group', qr/no group 'ptm-no-such-group' on this system/ ],
    [ 'PanoptesTelemetryForwardUser', 'root', qr/'root' is root: the program must not run as root/ ],
    [ 'PanoptesTelemetryForwardUser', 'nobody root', qr/group 'root' is gid 0: the program must not run in root's group/ ],
);

for my $c (@cases) {
    my ($name, $value, $err) = @$c;
    my ($rc, $out) = configtest("$name $value");
    if (defined $err) {
        ok($rc != 0 && $out =~ /\Q$name\E: $err/, "$name $value: refused, saying why")
            or diag "exit $rc: $out";
    }
    else {
        ok($rc == 0 && $out =~ /Syntax OK/, "$name $value: accepted")
            or diag "exit $rc: $out";
    }
}

done_testing();
