package PTMTest;

# Helpers for the mod_panoptes_telemetry Apache::Test suite.
#
# * HTTP: req() sends exactly the bytes and headers given (no implicit
#   Content-Type, one connection per request so successive requests may hit
#   different children); raw_http() for what LWP would normalise (chunked
#   bodies, odd paths).  Three mounts share one state: "prefix"
#   (/telemetry on the main server), "root" (/ in the panoptes_root virtual
#   host) and "small" (/small, PanoptesTelemetryMaxBody 1024).
# * JSON: an order-preserving reader (oparse) so key order is checked on the
#   raw body text, canonical forms for exact comparisons (int 1 and float
#   1.0 differ, true and 1 differ), and py_dumps(), Python's
#   json.dumps(separators=(",", ":")) with ensure_ascii, to check file lines
#   byte for byte.
# * Files: the site directory, the noon day-key rule, NDJSON lines.
#
# Test files use bytes everywhere (no "use utf8"): request bodies, paths and
# expected details are UTF-8 byte strings.

use strict;
use warnings;
no warnings 'recursion';

use Exporter 'import';
use Test::More ();
use Apache::Test ();
use Apache::TestRequest ();
use LWP::UserAgent ();
use HTTP::Request ();
use IO::Socket::INET ();
use JSON::PP ();
use Encode ();
use POSIX ();
use Time::Local qw(timegm);
use Math::BigInt ();
use File::Path ();

our @EXPORT = qw(
    req get post head post_event start_run stop_run ensure_no_run
    raw_http base_url hostport mounts all_answers_json
    oparse canon canon_text okeys onode node_value py_dumps py_float js
    jd json_is json_is_ordered is_json_ct is_err is_422 ok_json_error
    site_dir runroot_dir server_user_ids chown_to_server mkdir_p
    day_key site_file_for read_bytes file_lines lines_by_seq site_lines_by_seq
    ts_ok ts_near_now expected_next_id
);

my $TB = Test::More->builder;

# ---------------------------------------------------------------------------
# Server addresses

my %HP;

sub hostport {
    my ($which) = @_;
    $which ||= 'prefix';
    return $HP{$which} if $HP{$which};
    my $cfg  = Apache::Test::config();
    my $vars = $cfg->{vars};
    my $port;
    if ($which eq 'root') {
        $port = $vars->{panoptes_root_port};
        unless ($port) {
            my $hp = $cfg->{vhosts}{panoptes_root}{hostport} || '';
            ($port) = $hp =~ /:(\d+)$/;
        }
        die "no port for the panoptes_root virtual host\n" unless $port;
    }
    else {
        $port = $vars->{port};
    }
    # Listen is 0.0.0.0:port: talk IPv4 loopback, never "localhost" (::1).
    return $HP{$which} = "127.0.0.1:$port";
}

my %PREFIX = (prefix => '/telemetry', root => '', small => '/small');

sub mounts { return qw(prefix root) }

sub base_url {
    my ($which) = @_;
    $which ||= 'prefix';
    die "unknown mount $which" unless exists $PREFIX{$which};
    return 'http://' . hostport($which eq 'root' ? 'root' : 'prefix')
        . $PREFIX{$which};
}

sub mount_prefix { return $PREFIX{ $_[0] || 'prefix' } }

# ---------------------------------------------------------------------------
# HTTP

my $UA;
my $UA_PID = -1;

sub ua {
    if (!$UA || $UA_PID != $$) {
        $UA = LWP::UserAgent->new(
            keep_alive   => 0,
            max_redirect => 0,
            timeout      => 60,
            agent        => 'ptm-apache-test/1',
        );
        $UA_PID = $$;
    }
    return $UA;
}

# Result of a request: a hash with code, body (bytes), ct, h (HTTP::Headers),
# j (decoded JSON or undef), res (the HTTP::Response), desc.
sub _wrap {
    my ($res, $desc) = @_;
    my $body = $res->content;
    $body = '' unless defined $body;
    my $r = {
        code => $res->code,
        body => $body,
        ct   => scalar($res->header('Content-Type')),
        h    => $res->headers,
        res  => $res,
        desc => $desc,
    };
    if (($res->header('Client-Warning') || '') eq 'Internal response') {
        $r->{client_error} = $res->message . ' ' . $body;
    }
    $r->{j} = eval { jd($body) } if length $body;
    _note_ct($r);
    return $r;
}

# Every answer of the module must be application/json (SPEC §2.1, §11.1):
# remember the ones that were not, for all_answers_json().
my @NOT_JSON;
my $ANSWERS = 0;

sub _note_ct {
    my ($r) = @_;
    return if $r->{client_error} || !$r->{code};
    $ANSWERS++;
    push @NOT_JSON, "$r->{desc} -> $r->{code} [" . ($r->{ct} // 'no Content-Type') . ']'
        unless defined $r->{ct} && $r->{ct} =~ m{^application/json\s*(;|$)}i;
}

sub all_answers_json {
    my $ok = $TB->ok(!@NOT_JSON && $ANSWERS > 0,
        "all $ANSWERS answers in this file were Content-Type: application/json");
    $TB->diag(join "\n", @NOT_JSON[0 .. ($#NOT_JSON < 9 ? $#NOT_JSON : 9)]) unless $ok;
    return $ok;
}

# req(method => M, path => P, body => B, ct => CT, headers => [..],
#     mount => 'prefix'|'root'|'small')
sub req {
    my (%a) = @_;
    my $method = $a{method} || 'GET';
    my $url    = base_url($a{mount}) . $a{path};
    my @h      = @{ $a{headers} || [] };
    push @h, 'Content-Type' => $a{ct} if defined $a{ct};
    my $body = $a{body};
    my $r = HTTP::Request->new($method, $url, \@h);
    if (defined $body) {
        if (ref $body eq 'CODE') {
            $r->content($body);    # LWP sends it chunked
        }
        else {
            $r->content($body);
            $r->header('Content-Length' => length $body);
        }
    }
    my $res = ua()->request($r);
    return _wrap($res, "$method $url");
}

sub get  { my ($path, %a) = @_; return req(%a, method => 'GET',  path => $path) }
sub head { my ($path, %a) = @_; return req(%a, method => 'HEAD', path => $path) }

sub post {
    my ($path, $body, %a) = @_;
    return req(%a, method => 'POST', path => $path, body => $body);
}

# POST /event with a JSON body.
sub post_event {
    my ($body, %a) = @_;
    $a{ct} = 'application/json' unless exists $a{ct};
    return req(%a, method => 'POST', path => '/event', body => $body);
}

sub start_run {
    my ($body, %a) = @_;
    $a{ct} = 'application/json' if defined $body && !exists $a{ct};
    return req(%a, method => 'POST', path => '/run/start', body => $body);
}

sub stop_run {
    my (%a) = @_;
    return req(%a, method => 'POST', path => '/run/stop');
}

sub ensure_no_run {
    my $r = get('/run');
    stop_run() if $r->{code} == 200;
    $r = get('/run');
    die "a run is still active\n" unless $r->{code} == 404;
    return 1;
}

# A raw HTTP exchange on a fresh connection.  $bytes is the whole request,
# or a code ref called with the socket (to send in pieces).  Returns the
# same hash as req().
sub raw_http {
    my ($which, $bytes, %a) = @_;
    my ($host, $port) = split /:/, hostport($which eq 'root' ? 'root' : 'prefix');
    my $sock = IO::Socket::INET->new(
        PeerAddr => $host, PeerPort => $port, Proto => 'tcp', Timeout => 30,
    ) or die "connect $host:$port: $!\n";
    binmode $sock;
    if (ref $bytes eq 'CODE') {
        $bytes->($sock);
    }
    else {
        print {$sock} $bytes;
    }
    shutdown($sock, 1) if $a{half_close};
    my $resp = '';
    my $deadline = time + ($a{timeout} || 30);
    local $SIG{ALRM} = sub { die "raw_http timeout\n" };
    alarm($a{timeout} || 30);
    while (1) {
        my $n = sysread($sock, my $buf, 65536);
        last unless $n;
        $resp .= $buf;
    }
    alarm 0;
    close $sock;
    my ($head, $body) = split /\r\n\r\n/, $resp, 2;
    $head = '' unless defined $head;
    $body = '' unless defined $body;
    my ($status_line, @hl) = split /\r\n/, $head;
    my ($code) = ($status_line || '') =~ m{^HTTP/\d\.\d (\d{3})};
    my $h = HTTP::Headers->new;
    for (@hl) {
        my ($k, $v) = split /:\s*/, $_, 2;
        $h->push_header($k => $v);
    }
    if (lc($h->header('Transfer-Encoding') || '') eq 'chunked') {
        my $out = '';
        while ($body =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $len = hex $1;
            last if $len == 0;
            $out .= substr($body, 0, $len, '');
            $body =~ s/^\r\n//;
        }
        $body = $out;
    }
    my $r = {
        code => $code || 0, body => $body, h => $h,
        ct => scalar($h->header('Content-Type')), raw => $resp,
        desc => 'raw request',
    };
    $r->{j} = eval { jd($body) } if length $body;
    _note_ct($r);
    return $r;
}

# ---------------------------------------------------------------------------
# JSON: decoding

my $JD = JSON::PP->new->utf8->allow_nonref;

# Plain decode (hashes; booleans are JSON::PP::Boolean).
sub jd {
    local $SIG{__WARN__} = sub { warn @_ unless $_[0] =~ /^Deep recursion/ };
    return $JD->decode($_[0]);
}

# A JSON string literal for a UTF-8 byte string.
sub js {
    my ($bytes) = @_;
    my $chars = Encode::decode('UTF-8', $bytes, Encode::FB_CROAK | Encode::LEAVE_SRC);
    return JSON::PP->new->allow_nonref->ascii->encode($chars);
}

# Order-preserving parser.  Nodes:
#   ['o', [[key, node], ...]]  ['a', [node, ...]]  ['s', chars]
#   ['n', text, 'i'|'f']       ['t'] ['f'] ['z']
# Dies on anything that is not strict JSON (no NaN, no trailing garbage).
sub oparse {
    my ($bytes) = @_;
    die "undefined JSON text\n" unless defined $bytes;
    local $_ = Encode::decode('UTF-8', $bytes, Encode::FB_CROAK | Encode::LEAVE_SRC);
    pos($_) = 0;
    my $v = _val();
    /\G[ \t\r\n]*/gc;
    die "trailing data at char " . pos($_) . "\n" if pos($_) < length $_;
    return $v;
}

sub _val {
    /\G[ \t\r\n]*/gc;
    if (/\G\{/gc) {
        my @pairs;
        /\G[ \t\r\n]*/gc;
        return ['o', \@pairs] if /\G\}/gc;
        while (1) {
            /\G[ \t\r\n]*/gc;
            my $k = _str();
            die "expected key at char " . pos($_) . "\n" unless defined $k;
            /\G[ \t\r\n]*/gc;
            /\G:/gc or die "expected ':' at char " . pos($_) . "\n";
            push @pairs, [$k, _val()];
            /\G[ \t\r\n]*/gc;
            next if /\G,/gc;
            last if /\G\}/gc;
            die "expected ',' or '}' at char " . pos($_) . "\n";
        }
        return ['o', \@pairs];
    }
    if (/\G\[/gc) {
        my @items;
        /\G[ \t\r\n]*/gc;
        return ['a', \@items] if /\G\]/gc;
        while (1) {
            push @items, _val();
            /\G[ \t\r\n]*/gc;
            next if /\G,/gc;
            last if /\G\]/gc;
            die "expected ',' or ']' at char " . pos($_) . "\n";
        }
        return ['a', \@items];
    }
    if (substr($_, pos($_), 1) eq '"') {
        return ['s', _str()];
    }
    if (/\G(-?(?:0|[1-9][0-9]*))((?:\.[0-9]+)?)((?:[eE][-+]?[0-9]+)?)/gc) {
        my $float = length($2) || length($3);
        return ['n', "$1$2$3", $float ? 'f' : 'i'];
    }
    return ['t'] if /\Gtrue/gc;
    return ['f'] if /\Gfalse/gc;
    return ['z'] if /\Gnull/gc;
    die "unexpected JSON at char " . (pos($_) || 0) . "\n";
}

my %UNESC = ('"' => '"', '\\' => '\\', '/' => '/', b => "\b", f => "\f",
             n => "\n", r => "\r", t => "\t");

sub _str {
    return undef unless /\G"/gc;
    my $out = '';
    no warnings 'utf8';
    while (1) {
        if (/\G([^"\\\x00-\x1f]+)/gc) {
            $out .= $1;
        }
        elsif (/\G"/gc) {
            return $out;
        }
        elsif (/\G\\u([0-9a-fA-F]{4})/gc) {
            my $c = hex $1;
            if ($c >= 0xD800 && $c <= 0xDBFF
                && /\G\\u([dD][c-fC-F][0-9a-fA-F]{2})/gc) {
                $c = 0x10000 + (($c - 0xD800) << 10) + (hex($1) - 0xDC00);
            }
            $out .= chr $c;
        }
        elsif (/\G\\(["\\\/bfnrt])/gc) {
            $out .= $UNESC{$1};
        }
        else {
            die "bad string at char " . pos($_) . "\n";
        }
    }
}

# ---------------------------------------------------------------------------
# JSON: canonical forms and Python's serialisation

sub _qs {
    my ($s) = @_;
    no warnings 'utf8';
    my $o = '"';
    for my $ch (split //, $s) {
        my $c = ord $ch;
        if ($ch eq '"')     { $o .= '\\"' }
        elsif ($ch eq '\\') { $o .= '\\\\' }
        elsif ($ch eq "\n") { $o .= '\\n' }
        elsif ($ch eq "\r") { $o .= '\\r' }
        elsif ($ch eq "\t") { $o .= '\\t' }
        elsif ($ch eq "\b") { $o .= '\\b' }
        elsif ($ch eq "\f") { $o .= '\\f' }
        elsif ($c >= 0x20 && $c <= 0x7e) { $o .= $ch }
        elsif ($c > 0xFFFF) {
            my $v = $c - 0x10000;
            $o .= sprintf '\\u%04x\\u%04x', 0xD800 + ($v >> 10),
                0xDC00 + ($v & 0x3FF);
        }
        else { $o .= sprintf '\\u%04x', $c }
    }
    return $o . '"';
}

# Python repr() of a float given as JSON number text.
sub py_float {
    my ($text) = @_;
    my ($v, $unparsed) = POSIX::strtod($text);
    die "bad float $text\n" if $unparsed;
    if ($v == 0) {
        return $text =~ /^-/ ? '-0.0' : '0.0';
    }
    return ($v < 0 ? '-' : '') . 'inf' if $v == 9**9**9 || $v == -9**9**9;
    my ($neg, $digits, $exp);
    for my $p (0 .. 17) {
        my $s = sprintf "%.${p}e", $v;
        my ($sv) = POSIX::strtod($s);
        next unless $sv == $v;
        ($neg, my $m, $exp) = $s =~ /^(-?)([0-9.]+)e([-+][0-9]+)$/;
        ($digits = $m) =~ s/\.//;
        last;
    }
    $digits =~ s/0+$//;
    $digits = '0' if $digits eq '';
    $exp += 0;
    my $out;
    if ($exp < -4 || $exp >= 16) {
        $out = substr($digits, 0, 1);
        $out .= '.' . substr($digits, 1) if length($digits) > 1;
        $out .= sprintf 'e%s%02d', ($exp < 0 ? '-' : '+'), abs $exp;
    }
    elsif ($exp >= 0) {
        if (length($digits) > $exp + 1) {
            $out = substr($digits, 0, $exp + 1) . '.' . substr($digits, $exp + 1);
        }
        else {
            $out = $digits . ('0' x ($exp + 1 - length $digits)) . '.0';
        }
    }
    else {
        $out = '0.' . ('0' x (-$exp - 1)) . $digits;
    }
    return ($neg ? '-' : '') . $out;
}

sub _int_text {
    my ($t) = @_;
    return Math::BigInt->new($t)->bstr;
}

# Python json.dumps(v, separators=(",", ":")) (ensure_ascii) of a node.
sub py_dumps {
    my ($n) = @_;
    my $k = $n->[0];
    return '{' . join(',', map { _qs($_->[0]) . ':' . py_dumps($_->[1]) } @{ $n->[1] }) . '}'
        if $k eq 'o';
    return '[' . join(',', map { py_dumps($_) } @{ $n->[1] }) . ']' if $k eq 'a';
    return _qs($n->[1]) if $k eq 's';
    return $n->[2] eq 'f' ? py_float($n->[1]) : _int_text($n->[1]) if $k eq 'n';
    return 'true' if $k eq 't';
    return 'false' if $k eq 'f';
    return 'null';
}

# Canonical text of a node: Python-style scalars; object keys sorted (and
# duplicates resolved, last wins) unless $ordered.
sub canon {
    my ($n, $ordered) = @_;
    my $k = $n->[0];
    if ($k eq 'o') {
        my @pairs = @{ $n->[1] };
        unless ($ordered) {
            my %h;
            $h{ $_->[0] } = $_->[1] for @pairs;
            @pairs = map { [$_, $h{$_}] } sort keys %h;
        }
        return '{' . join(',', map { _qs($_->[0]) . ':' . canon($_->[1], $ordered) } @pairs) . '}';
    }
    return '[' . join(',', map { canon($_, $ordered) } @{ $n->[1] }) . ']' if $k eq 'a';
    return py_dumps($n);
}

# canon() of JSON text; undef if it does not parse.
sub canon_text {
    my ($text, $ordered) = @_;
    my $n = eval { oparse($text) };
    return undef unless $n;
    return canon($n, $ordered);
}

# The node at a path of keys / array indexes, or undef.
sub onode {
    my ($n, @path) = @_;
    for my $p (@path) {
        return undef unless $n;
        if ($n->[0] eq 'o') {
            my $found;
            for (@{ $n->[1] }) { $found = $_->[1] if $_->[0] eq $p }
            $n = $found;
        }
        elsif ($n->[0] eq 'a') {
            $n = $n->[1][$p];
        }
        else {
            return undef;
        }
    }
    return $n;
}

# Keys, in order, of the object at @path of JSON text (or a node).
sub okeys {
    my ($text, @path) = @_;
    my $n = ref $text ? $text : eval { oparse($text) };
    $n = onode($n, @path) if $n;
    return () unless $n && $n->[0] eq 'o';
    return map { $_->[0] } @{ $n->[1] };
}

# A Perl value for scalar nodes (strings as UTF-8 bytes).
sub node_value {
    my ($n) = @_;
    return undef unless $n;
    return Encode::encode('UTF-8', $n->[1]) if $n->[0] eq 's';
    return $n->[1] if $n->[0] eq 'n';
    return 1 if $n->[0] eq 't';
    return 0 if $n->[0] eq 'f';
    return undef;
}

# ---------------------------------------------------------------------------
# Assertions (all return true/false like ok())

sub _desc {
    my ($r) = @_;
    my $b = defined $r->{body} ? $r->{body} : '';
    $b = substr($b, 0, 600) . '...' if length $b > 600;
    return "$r->{desc} -> $r->{code}"
        . ($r->{ct} ? " [$r->{ct}]" : ' [no Content-Type]')
        . ($r->{client_error} ? " CLIENT ERROR: $r->{client_error}" : '')
        . "\n  body: $b";
}

sub is_json_ct {
    my ($r, $name) = @_;
    my $ok = defined $r->{ct} && $r->{ct} =~ m{^application/json\s*(;|$)}i;
    $TB->ok($ok, $name || "Content-Type application/json") or $TB->diag(_desc($r));
    return $ok;
}

# Body JSON equals $expected (JSON text), keys compared unordered.
sub json_is {
    my ($got, $expected, $name) = @_;
    my $g = canon_text($got);
    my $e = canon_text($expected);
    die "bad expected JSON in test: $expected\n" unless defined $e;
    my $ok = defined $g && $g eq $e;
    $TB->ok($ok, $name) or $TB->diag("     got: " . (defined $got ? $got : 'undef')
        . "\nexpected: $expected");
    return $ok;
}

# Same, and key order must match everywhere.
sub json_is_ordered {
    my ($got, $expected, $name) = @_;
    my $g = canon_text($got, 1);
    my $e = canon_text($expected, 1);
    die "bad expected JSON in test: $expected\n" unless defined $e;
    my $ok = defined $g && $g eq $e;
    $TB->ok($ok, $name) or $TB->diag("     got: " . (defined $got ? $got : 'undef')
        . "\nexpected: $expected (key order matters)");
    return $ok;
}

# Status + application/json + body exactly {"detail": $detail}.
sub is_err {
    my ($r, $code, $detail, $name) = @_;
    $name ||= "$code $detail";
    my $exp = '{"detail":' . js($detail) . '}';
    my $ok = $r->{code} == $code
        && defined $r->{ct} && $r->{ct} =~ m{^application/json\s*(;|$)}i
        && defined canon_text($r->{body})
        && canon_text($r->{body}) eq canon_text($exp);
    $TB->ok($ok, $name) or $TB->diag(_desc($r) . "\n  expected: $code $exp");
    return $ok;
}

# Status + application/json + {"detail": <string matching $re>}.
sub ok_json_error {
    my ($r, $code, $re, $name) = @_;
    my $j = $r->{j};
    my $ok = $r->{code} == $code
        && defined $r->{ct} && $r->{ct} =~ m{^application/json\s*(;|$)}i
        && ref $j eq 'HASH' && defined $j->{detail} && !ref $j->{detail}
        && (!$re || $j->{detail} =~ $re)
        && keys %$j == 1;
    $TB->ok($ok, $name) or $TB->diag(_desc($r) . "\n  expected: $code {\"detail\": /$re/}");
    return $ok;
}

# 422 with {"detail": <items>} where items is JSON text of the array.
sub is_422 {
    my ($r, $items, $name) = @_;
    my $exp = '{"detail":' . $items . '}';
    my $e = canon_text($exp);
    die "bad expected JSON in test: $exp\n" unless defined $e;
    my $g = canon_text($r->{body});
    my $ok = $r->{code} == 422
        && defined $r->{ct} && $r->{ct} =~ m{^application/json\s*(;|$)}i
        && defined $g && $g eq $e;
    $TB->ok($ok, $name) or $TB->diag(_desc($r) . "\n  expected: 422 $exp");
    return $ok;
}

# ---------------------------------------------------------------------------
# Files

sub site_dir    { return Apache::Test::vars('serverroot') . '/site' }
sub runroot_dir { return Apache::Test::vars('serverroot') . '/runroot' }

sub server_user_ids {
    my $user = Apache::Test::vars('user');
    my ($uid, $gid) = (getpwnam($user))[2, 3];
    return ($uid, $gid);
}

sub mkdir_p {
    my ($dir) = @_;
    File::Path::make_path($dir);
    return -d $dir;
}

# Give a path we created (as root) to the server's User, as an admin would.
sub chown_to_server {
    my (@paths) = @_;
    my ($uid, $gid) = server_user_ids();
    return unless defined $uid;
    chown $uid, $gid, @paths;
}

# Day key (YYYYMMDD) of a server-stamped UTC ts: the local date, minus one
# day before local noon (TZ is the same for httpd and the tests).
sub day_key {
    my ($ts) = @_;
    my ($Y, $M, $D, $h, $m, $s) =
        $ts =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.\d{3}Z$/
        or return undef;
    my $epoch = timegm($s, $m, $h, $D, $M - 1, $Y);
    my @lt = localtime $epoch;
    my $label = timegm(0, 0, 12, $lt[3], $lt[4], $lt[5] + 1900);
    $label -= 86400 if $lt[2] < 12;
    return POSIX::strftime('%Y%m%d', gmtime $label);
}

sub site_file_for {
    my ($ts) = @_;
    my $k = day_key($ts);
    return defined $k ? site_dir() . "/site_$k.ndjson" : undef;
}

sub read_bytes {
    my ($path) = @_;
    open my $fh, '<:raw', $path or return undef;
    local $/;
    my $d = <$fh>;
    close $fh;
    return defined $d ? $d : '';
}

# Lines of an NDJSON file (without "\n").  In list context also returns
# whether the file ends with a complete line.
sub file_lines {
    my ($path) = @_;
    my $d = read_bytes($path);
    return wantarray ? ((), 1) : [] unless defined $d && length $d;
    my $complete = substr($d, -1) eq "\n";
    my @l = split /\n/, $d, -1;
    pop @l if $complete;
    return wantarray ? (\@l, $complete) : \@l;
}

# seq => line, for an NDJSON file.
sub lines_by_seq {
    my ($path) = @_;
    my %by;
    my $lines = file_lines($path);
    for my $l (@$lines) {
        my ($seq) = $l =~ /^\{"seq":(\d+),/ or next;
        $by{$seq} = $l;
    }
    return \%by;
}

# seq => line over every site day file (robust across the noon boundary).
sub site_lines_by_seq {
    my %by;
    opendir my $dh, site_dir() or return \%by;
    for my $f (grep { /^site_\d{8}\.ndjson$/ } readdir $dh) {
        my $part = lines_by_seq(site_dir() . "/$f");
        @by{ keys %$part } = values %$part;
    }
    return \%by;
}

sub ts_ok {
    my ($ts) = @_;
    return defined $ts && !ref $ts
        && $ts =~ /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
}

# A server-stamped ts within $slack seconds of the test's clock.
sub ts_near_now {
    my ($ts, $slack) = @_;
    $slack ||= 120;
    return 0 unless ts_ok($ts);
    my ($Y, $M, $D, $h, $m, $s) = $ts =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)/;
    my $t = timegm($s, $m, $h, $D, $M - 1, $Y);
    return abs($t - time) <= $slack;
}

# derive_next() of SPEC §3.4 with the module's ASCII-digit rule (F13).
sub expected_next_id {
    my $site = site_dir();
    opendir my $dh, $site or return '001';
    my ($max, $width);
    for my $e (readdir $dh) {
        next unless $e =~ /^[0-9]+$/;
        next unless -d "$site/$e";
        my $v = Math::BigInt->new($e);
        if (!defined $max || $v > $max) { $max = $v }
    }
    closedir $dh;
    return '001' unless defined $max;
    my $next = $max + 1;
    my $w = length($max->bstr);
    $w = 3 if $w < 3;
    my $s = $next->bstr;
    return ('0' x ($w - length $s)) . $s;
}

1;
