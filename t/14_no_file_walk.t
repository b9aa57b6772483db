# The API's URLs name no file: httpd does not walk the file system for them
# (no stat of the path or its directories), as for mod_proxy's.  Access
# control set in the API's <Location> still applies; a <Directory> section
# does not (README "Security"); a static file under the mount (SetHandler
# none) is walked as before, its <Directory> included; TRACE stays httpd's.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;

my $base = 'http://' . hostport('prefix');

sub fetch {
    my ($method, $path) = @_;
    my $res = PTMTest::ua()->request(HTTP::Request->new($method, $base . $path));
    return ($res->code, scalar($res->header('Content-Type')) // '', $res->content);
}

# The <Location>'s Require.
my ($code, $ct, $body) = fetch(GET => '/denied/health');
is($code, 403, 'a <Location> with Require all denied refuses GET /health');
($code) = fetch(POST => '/denied/event');
is($code, 403, '... and POST /event');
unlike($body, qr/"ok"/, 'nothing of the API in the refusal');

# A <Directory> section of the document root does not apply to the API.
my $docroot = Apache::Test::vars('documentroot');
mkdir_p("$docroot/walled/static");
open(my $fh, '>', "$docroot/walled/static/x.txt") or die "x.txt: $!";
print $fh "hello\n";
close $fh;
($code, $ct, $body) = fetch(GET => '/walled/health');
is($code, 200, 'a <Directory> of the document root that denies does not apply to the API');
like($ct, qr{^application/json}, '... which answers its JSON');
is($body, '{"ok":true}', '... of GET /health');

# A static file under the mount is walked: its <Directory> applies.
($code) = fetch(GET => '/walled/static/x.txt');
is($code, 403, 'a static file under the mount (SetHandler none) still gets its <Directory>');

# The usual mount, and TRACE as httpd answers it (not the module's 405).
($code, $ct, $body) = fetch(GET => '/telemetry/health');
is($code, 200, 'GET /telemetry/health');
($code, $ct) = fetch(TRACE => '/telemetry/health');
unlike($ct, qr{^application/json}, "TRACE is httpd's ($code $ct), as before");

done_testing();
