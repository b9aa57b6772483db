# Routing and common HTTP behaviour (SPEC §2.1, §2.2, §3.1, §3.2, §3.9,
# §11.1) on both mounts: /telemetry on the main server and / in the
# panoptes_root virtual host.  Every answer is JSON.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest;

ensure_no_run();

my @GET_ROUTES  = ('/health', '/ready', '/run', '/current', '/current/some-type', '/events');
my @POST_ROUTES = ('/event', '/run/start', '/run/stop', '/shutdown');

sub mount_prefix_of { return $_[0] eq 'root' ? '' : '/telemetry' }

sub seq_probe {
    my ($m) = @_;
    my $r = post_event('{"type":"probe-01","data":null,"make_current":false,"store_permanently":false}',
        mount => $m);
    return $r->{j} ? $r->{j}{seq} : undef;
}

for my $m (mounts()) {
    my $w = "[$m]";

    # --- the 9 routes -------------------------------------------------------
    my $r = get('/health', mount => $m);
    json_is_ordered($r->{body}, '{"ok":true}', "$w GET /health");
    is($r->{code}, 200, "$w GET /health is 200");
    is_json_ct($r, "$w /health is application/json");

    $r = get('/ready', mount => $m);
    is($r->{code}, 200, "$w GET /ready is 200");
    is_json_ct($r, "$w /ready is application/json");
    is_deeply([okeys($r->{body})], [qw(ready run_active version)],
        "$w /ready keys in order ready, run_active, version");
    my $ready = oparse($r->{body});
    is(onode($ready, 'ready')->[0], 't', "$w ready is true");
    is(onode($ready, 'run_active')->[0], 'f', "$w run_active is false");
    my $v = onode($ready, 'version');
    ok($v && $v->[0] eq 's' && length $v->[1], "$w version is a non-empty string");

    is_err(get('/run', mount => $m), 404, 'No run is active', "$w GET /run without a run");
    is_err(stop_run(mount => $m), 404, 'No run is active', "$w POST /run/stop without a run");

    $r = get('/current', mount => $m);
    is($r->{code}, 200, "$w GET /current is 200");
    is_deeply([okeys($r->{body})], ['current'], "$w /current has the single key current");
    is_err(get('/current/nothing-here-01', mount => $m), 404,
        q{No current event for type 'nothing-here-01'}, "$w GET /current/{type} miss");

    is_err(post('/shutdown', undef, mount => $m), 409, 'Server shutdown not available',
        "$w POST /shutdown is 409");
    is_err(post('/shutdown', '{"force":true}', mount => $m, ct => 'application/json'),
        409, 'Server shutdown not available', "$w POST /shutdown ignores its body");
    is_err(post('/shutdown', '{bad json', mount => $m, ct => 'application/json'),
        409, 'Server shutdown not available', "$w POST /shutdown ignores a broken body");
    is_err(post('/run/stop', '{bad json', mount => $m, ct => 'application/json'),
        404, 'No run is active', "$w POST /run/stop ignores a broken body");

    # --- unknown paths: 404 Not Found -----------------------------------------
    for my $c (['GET', '/nope'], ['POST', '/nope'], ['DELETE', '/nope'],
               ['POST', '/run/restart'], ['GET', '/run/restart'], ['GET', '/healthz'],
               ['GET', '/health/x'], ['GET', '/run/start/x'], ['GET', '/current/a/b'],
               ['GET', '/current/a%2Fb'], ['GET', '/current/a%2fb'],
               ['POST', '/current/a%2Fb'], ['GET', '/events/x'], ['GET', '/Health'],
               ['POST', '/EVENT'], ['HEAD', '/nope'])
    {
        my ($meth, $path) = @$c;
        my $r = req(method => $meth, path => $path, mount => $m,
            ($meth eq 'POST' ? (body => '{"type":"x","data":1}', ct => 'application/json') : ()));
        if ($meth eq 'HEAD') {
            is($r->{code}, 404, "$w HEAD $path is 404");
            is($r->{body}, '', "$w HEAD $path has no body");
            next;
        }
        is_err($r, 404, 'Not Found', "$w $meth $path is 404 Not Found");
    }
    is_err(get('/', mount => $m), 404, 'Not Found', "$w GET / (the mount point) is 404");
    is_err(post('/', '{}', mount => $m, ct => 'application/json'), 404, 'Not Found',
        "$w POST / is 404");

    # --- trailing slashes: 404 (SPEC §11.1), nothing happens -------------------
    my $before = seq_probe($m);
    for my $c (['GET', '/health/'], ['GET', '/ready/'], ['GET', '/run/'],
               ['GET', '/current/'], ['POST', '/event/'], ['POST', '/run/start/'],
               ['POST', '/run/stop/'], ['POST', '/shutdown/'])
    {
        my ($meth, $path) = @$c;
        my $r = req(method => $meth, path => $path, mount => $m,
            ($meth eq 'POST' ? (body => '{"type":"slash-01","data":1}', ct => 'application/json') : ()));
        is_err($r, 404, 'Not Found', "$w $meth $path (trailing slash) is 404 Not Found");
        ok(!$r->{h}->header('Location'), "$w $meth $path does not redirect");
    }
    is_err(get('/run', mount => $m), 404, 'No run is active', "$w POST /run/start/ started nothing");
    is_err(get('/current/slash-01', mount => $m), 404,
        q{No current event for type 'slash-01'}, "$w POST /event/ stored nothing");
    is(seq_probe($m), $before + 1, "$w 404s used no seq number");

    # --- wrong method: 405 + Allow --------------------------------------------
    $before = seq_probe($m);
    for my $path (@GET_ROUTES) {
        for my $meth (qw(POST PUT DELETE PATCH OPTIONS)) {
            my $r = req(method => $meth, path => $path, mount => $m,
                body => '{"type":"x405","data":1}', ct => 'application/json');
            is_err($r, 405, 'Method Not Allowed', "$w $meth $path is 405");
            is($r->{h}->header('Allow'), 'GET', "$w $meth $path: Allow: GET");
        }
    }
    for my $path (@POST_ROUTES) {
        for my $meth (qw(GET PUT DELETE PATCH OPTIONS)) {
            my $r = req(method => $meth, path => $path, mount => $m,
                body => '{"type":"x405","data":1}', ct => 'application/json');
            is_err($r, 405, 'Method Not Allowed', "$w $meth $path is 405");
            is($r->{h}->header('Allow'), 'POST', "$w $meth $path: Allow: POST");
        }
        my $r = head($path, mount => $m);
        is($r->{code}, 405, "$w HEAD $path (a POST route) is 405");
        is($r->{h}->header('Allow'), 'POST', "$w HEAD $path: Allow: POST");
        like($r->{ct} // '', qr{^application/json}, "$w HEAD $path: Content-Type application/json");
        is($r->{body}, '', "$w HEAD $path has no body");
    }
    is(seq_probe($m), $before + 1, "$w 405s used no seq number and stored nothing");
    is_err(get('/run', mount => $m), 404, 'No run is active', "$w GET /run/start (405) started nothing");
    is_err(get('/current/x405', mount => $m), 404, q{No current event for type 'x405'},
        "$w a 405 on /event stored nothing");

    # --- HEAD on GET routes: like GET without a body -----------------------------
    post_event('{"type":"some-type","data":{"h":1}}', mount => $m);
    for my $path (@GET_ROUTES, '/current/not-there-01', '/nope') {
        my $g = get($path, mount => $m);
        my $h = head($path, mount => $m);
        is($h->{code}, $g->{code}, "$w HEAD $path: same status as GET ($g->{code})");
        is($h->{ct}, $g->{ct}, "$w HEAD $path: same Content-Type as GET");
        is($h->{body}, '', "$w HEAD $path: no body");
        my $cl = $h->{h}->header('Content-Length');
        ok(!defined $cl || $cl == length $g->{body},
            "$w HEAD $path: Content-Length, if sent, is the GET body's length");
    }

    # --- query strings are ignored ------------------------------------------------
    $r = get('/health?verbose=1&x=%2F', mount => $m);
    json_is($r->{body}, '{"ok":true}', "$w GET /health?query");
    $r = post('/event?type=ignored&make_current=false', '{"type":"qs-01","data":7}',
        mount => $m, ct => 'application/json');
    is($r->{code}, 200, "$w POST /event?query accepted");
    is($r->{j}{type}, 'qs-01', "$w query parameters do not override the body");
    json_is(get('/current/qs-01?x=1', mount => $m)->{body}, $r->{body},
        "$w GET /current/{type}?query: the query is not part of the type");
    is_err(get('/current/nothing-01?x=1', mount => $m), 404,
        q{No current event for type 'nothing-01'}, "$w 404 detail has no query string");

    # --- percent-encoded route names are decoded (Starlette matches decoded) -----
    json_is(get('/h%65alth', mount => $m)->{body}, '{"ok":true}', "$w GET /h%65alth is /health");
}

# Paths around the prefix mount.
is_err(get('/telemetry', mount => 'root'), 404, 'Not Found',
    'root mount: /telemetry is just an unknown path');
{
    my $r = req(method => 'GET', path => '', mount => 'prefix');
    is_err($r, 404, 'Not Found', 'GET /telemetry (the bare prefix) is 404 Not Found');
}
json_is(get('/health', mount => 'small')->{body}, '{"ok":true}',
    'the /small location serves the same API');

# One state for all mounts.
my $r = post_event('{"type":"shared-01","data":"from-root"}', mount => 'root');
json_is(get('/current/shared-01', mount => 'prefix')->{body}, $r->{body},
    'an event posted on / is current under /telemetry');
json_is(get('/current/shared-01', mount => 'small')->{body}, $r->{body},
    '... and under /small');

# One keep-alive connection, requests pipelined: every answer (including
# errors after a request body) keeps the connection in step.
sub parse_responses {
    my ($buf, @methods) = @_;
    my @out;
    for my $meth (@methods) {
        my $i = index($buf, "\r\n\r\n");
        last if $i < 0;
        my $head = substr($buf, 0, $i);
        substr($buf, 0, $i + 4) = '';
        my ($code) = $head =~ m{^HTTP/1\.\d (\d{3})};
        my ($cl) = $head =~ /^Content-Length:\s*(\d+)/mi;
        my $body = '';
        if ($meth eq 'HEAD') {
        }
        elsif (defined $cl) {
            $body = substr($buf, 0, $cl, '');
        }
        elsif ($head =~ /^Transfer-Encoding:\s*chunked/mi) {
            while ($buf =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
                my $len = hex $1;
                if ($len == 0) { $buf =~ s/^(?:[^\r\n]+\r\n)*\r\n//; last }
                $body .= substr($buf, 0, $len, '');
                $buf =~ s/^\r\n//;
            }
        }
        push @out, [$code, $body, $head];
    }
    return @out;
}
for my $m (mounts()) {
    my $p = mount_prefix_of($m);
    my $ev = '{"type":"ka-01","data":"' . $m . '"}';
    my @reqs = (
        ['POST', "POST $p/event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{bad json"],
        ['PUT',  "PUT $p/event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " . length($ev) . "\r\n\r\n$ev"],
        ['POST', "POST $p/event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " . length($ev) . "\r\n\r\n$ev"],
        ['POST', "POST $p/nope HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"],
        ['HEAD', "HEAD $p/current/ka-01 HTTP/1.1\r\nHost: x\r\n\r\n"],
        ['POST', "POST $p/shutdown HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"],
        ['GET',  "GET $p/current/ka-01 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"],
    );
    my $raw = eval { raw_http($m, join('', map { $_->[1] } @reqs), timeout => 30) };
    my @r = $raw ? parse_responses($raw->{raw}, map { $_->[0] } @reqs) : ();
    is_deeply([map { $_->[0] } @r], [422, 405, 200, 404, 200, 409, 200],
        "[$m] pipelined keep-alive requests: 422, 405, 200, 404, 200 (HEAD), 409, 200")
        or diag($raw ? $raw->{raw} : $@);
    like($r[6][1] // '', qr/"type"\s*:\s*"ka-01".*"data"\s*:\s*"\Q$m\E"/s,
        "[$m] the event posted on the kept-alive connection is current");
}

all_answers_json();

done_testing();
