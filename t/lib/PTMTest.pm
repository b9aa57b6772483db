package PTMTest;

# Helpers for the mod_panoptes_telemetry Apache::Test suite.
#
# * HTTP: req() sends exactly the bytes and headers given (no implicit
#   Content-Type, one connection per request so successive requests may hit
#   different children); raw_http() for what LWP would normalise (chunked
#   bodies, odd paths).  The mounts share one state: "prefix"
#   (/telemetry on the main server), "root" (/ in the panoptes_root virtual
#   host) and "small" (/small, PanoptesTelemetryMaxBody 1024); "big"
#   (/big, 64 MiB bodies) for what needs large events.
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
use File::Temp ();

our @EXPORT = qw(
    req get post head post_event start_run stop_run ensure_no_run
    raw_http base_url hostport mounts all_answers_json
    oparse canon canon_text okeys onode node_value py_dumps py_float js
    jd json_is json_is_ordered is_json_ct is_err is_422 ok_json_error
    site_dir runroot_dir server_user_ids chown_to_server mkdir_p
    day_key site_file_for read_bytes file_lines lines_by_seq site_lines_by_seq
    ts_ok ts_near_now expected_next_id
);

# Helpers of the restart, stress and fault tests (t/20-22), imported by
# name: server control, a load client, and the checks of what a load left.
our @EXPORT_OK = qw(
    httpd_pid proc_alive httpd_children server_snapshot start_server
    stop_server kill_server wait_server_up server_answers
    error_log_path error_log_size error_log_since wait_for_log
    start_clients wait_clients progress raise_flag wait_progress
    hold_clients release_clients
    state_dir state_file httpd_procs start_refused crit_lines crash_lines
    mount_tmpfs fill_fs blocks_of restore_server status_auto
    load_event load_outcome load_line
    check_events check_current
    qenc events_get events_desc events_follow iso_ms now_ms ms_of hist_post
    hist_sort lines_are q422_items events_follow_check
);

our %EXPORT_TAGS = (events => [qw(qenc events_get events_desc events_follow iso_ms now_ms
    ms_of hist_post hist_sort lines_are q422_items events_follow_check status_auto)]);

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

my %PREFIX = (prefix => '/telemetry', root => '', small => '/small', big => '/big');

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
#     mount => 'prefix'|'root'|'small'|'big')
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
sub json_is { return _json_same(0, @_) }

# Same, and key order must match everywhere.
sub json_is_ordered { return _json_same(1, @_) }

sub _json_same {
    my ($ordered, $got, $expected, $name) = @_;
    my $g = canon_text($got, $ordered);
    my $e = canon_text($expected, $ordered);
    die "bad expected JSON in test: $expected\n" unless defined $e;
    my $ok = defined $g && $g eq $e;
    $TB->ok($ok, $name) or $TB->diag("     got: " . (defined $got ? $got : 'undef')
        . "\nexpected: $expected" . ($ordered ? ' (key order matters)' : ''));
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

# PanoptesTelemetryStateDir of t/conf/extra.conf.in (root's), and the
# state file in it.
sub state_dir   { return Apache::Test::vars('serverroot') . '/state' }
sub state_file  { return state_dir() . '/state' }
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

# Mount a tmpfs of $size (mount's units: 1m, 4400k) on $dir, made if
# missing, with the root directory's $mode, $uid and $gid (root's by
# default).  Returns 1, or 0 when mount failed (not permitted here).
sub mount_tmpfs {
    my ($dir, $size, %o) = @_;
    mkdir_p($dir);
    my $opts = join ',', "size=$size", sprintf('mode=%04o', $o{mode} // 0755),
        'uid=' . ($o{uid} // 0), 'gid=' . ($o{gid} // 0);
    return system('mount', '-t', 'tmpfs', '-o', $opts, 'ptm-test-tmpfs', $dir) == 0;
}

# Write zeros to $path until the file system is full (ENOSPC): the bytes
# written.  Dies on any other error.
sub fill_fs {
    my ($path) = @_;
    open my $fh, '>>:raw', $path or die "$path: $!";
    my ($n, $chunk) = (0, "\0" x 65536);
    while (1) {
        my $w = syswrite($fh, $chunk);
        if (!defined $w) {
            last if $!{ENOSPC} && length($chunk) == 512;
            die "$path: $!" unless $!{ENOSPC};
            $chunk = "\0" x (length($chunk) / 2);    # fill the last block too
            next;
        }
        $n += $w;
    }
    close $fh;
    return $n;
}

# Bytes of disk really allocated to $path (st_blocks, 512-byte units).
sub blocks_of {
    my ($path) = @_;
    my @st = lstat $path or return undef;
    return $st[12] * 512;
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
    return wantarray ? ([], 1) : [] unless defined $d && length $d;
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

# ---------------------------------------------------------------------------
# Server control (t/20_restart.t): the httpd that Apache::Test started is
# found through its pid file and restarted with exactly its own command
# line and environment, read from /proc.

use Time::HiRes ();

sub _pid_file { return Apache::Test::vars('t_pid_file') }

# Alive and not a zombie (a killed httpd's zombie may wait for init).
sub proc_alive {
    my ($pid) = @_;
    return 0 unless $pid && $pid =~ /^\d+$/;
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $line = <$fh> // '';
    my ($state) = $line =~ /^\d+ \(.*\) (\S)/ or return 0;
    return $state ne 'Z' && $state ne 'X';
}

# The parent's pid if the pid file names a live process, else undef.
sub httpd_pid {
    open my $fh, '<', _pid_file() or return undef;
    my $pid = <$fh> // '';
    chomp $pid;
    return proc_alive($pid) ? $pid + 0 : undef;
}

# Children of the httpd parent (live ones), from /proc.
sub httpd_children {
    my ($ppid) = @_;
    $ppid //= httpd_pid();
    return () unless $ppid;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $s, '<', $stat or next;
        my $line = <$s> // '';
        my ($pid, $state, $pp) = $line =~ /^(\d+) \(.*\) (\S) (\d+)/ or next;
        push @kids, $pid + 0 if $pp == $ppid && $state ne 'Z' && $state ne 'X';
    }
    return @kids;
}

sub _read_nul {
    my ($path) = @_;
    open my $fh, '<:raw', $path or return ();
    local $/;
    my $d = <$fh> // '';
    return grep { length } split /\0/, $d;
}

# What it takes to start the running httpd again: its pid, argv and
# environment.  Dies when no httpd runs.
sub server_snapshot {
    my $pid = httpd_pid() or die "no httpd: " . _pid_file() . " names no live process\n";
    my @argv = _read_nul("/proc/$pid/cmdline");
    my %env = map { /^([^=]*)=(.*)$/s ? ($1, $2) : () } _read_nul("/proc/$pid/environ");
    die "cannot read /proc/$pid/cmdline\n" unless @argv;
    return { pid => $pid, argv => \@argv, env => \%env };
}

# One short request: does the server answer /health on both ports?
sub server_answers {
    my $c = PTMTest::Client->new(timeout => 3);
    for my $m ('prefix', 'root') {
        my $r = $c->request('GET', '/health', undef, mount => $m);
        return 0 unless $r->{code} == 200;
    }
    return 1;
}

# Wait until the pid file names a live parent other than $old_pid that
# answers on both ports.  Returns its pid, or undef after $timeout s.
sub wait_server_up {
    my ($timeout, $old_pid) = @_;
    my $end = Time::HiRes::time() + ($timeout || 60);
    while (Time::HiRes::time() < $end) {
        my $pid = httpd_pid();
        if ($pid && (!$old_pid || $pid != $old_pid) && server_answers()) {
            return $pid;
        }
        Time::HiRes::sleep(0.1);
    }
    return undef;
}

# Run httpd as the snapshot says and wait for the command (httpd forks
# its daemon and exits): its exit status.
sub _launch {
    my ($snap) = @_;
    my $out = Apache::Test::vars('t_logs') . '/ptm-start.log';
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        %ENV = %{ $snap->{env} };
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $out;
        open STDERR, '>&', \*STDOUT;
        { no warnings 'exec'; exec { $snap->{argv}[0] } @{ $snap->{argv} }; }
        POSIX::_exit(127);
    }
    waitpid $pid, 0;
    return $?;
}

# Start httpd from a snapshot (it daemonises, as under Apache::Test).
# Returns the new parent's pid once it answers, or undef.
sub start_server {
    my ($snap, $timeout) = @_;
    return undef if _launch($snap);
    return wait_server_up($timeout || 60, $snap->{pid});
}

# Live processes running the snapshot's command line (the parent and its
# children, or a daemon that has not yet given up).
sub httpd_procs {
    my ($snap) = @_;
    my $want = join "\0", @{ $snap->{argv} };
    my @pids;
    for my $cmd (glob '/proc/[0-9]*/cmdline') {
        my ($pid) = $cmd =~ m{^/proc/(\d+)/};
        next if $pid == $$;
        push @pids, $pid + 0 if join("\0", _read_nul($cmd)) eq $want && proc_alive($pid);
    }
    return @pids;
}

# Start httpd from a snapshot when it must refuse to start: 1 once every
# process it made has exited and nothing answers; 0 if it answers (it
# started: stop it with stop_server) or is still there after $timeout s.
sub start_refused {
    my ($snap, $timeout) = @_;
    _launch($snap);
    my $end = Time::HiRes::time() + ($timeout || 30);
    while (Time::HiRes::time() < $end) {
        return 0 if httpd_pid() || server_answers();
        return 1 unless httpd_procs($snap);
        Time::HiRes::sleep(0.1);
    }
    return 0;
}

sub _wait_dead {
    my ($timeout, @pids) = @_;
    my $end = Time::HiRes::time() + $timeout;
    while (Time::HiRes::time() < $end) {
        return 1 unless grep { proc_alive($_) } @pids;
        Time::HiRes::sleep(0.05);
    }
    return 0;
}

# apachectl stop: SIGTERM to the parent, wait until it and its children
# are gone.  Returns 1, or 0 if they are still there after $timeout s.
# The module's server-status?auto lines as { PanoptesXxx => value }, on
# a connection of its own.
sub status_auto {
    my %v;
    my $r = LWP::UserAgent->new(timeout => 10, keep_alive => 0)
        ->get('http://' . hostport() . '/server-status?auto');
    for (split /\n/, $r->decoded_content // '') {
        $v{$1} = $2 if /^(Panoptes\w+): (.*)$/;
    }
    return \%v;
}

# For a test file that stops, reconfigures or starves the server: call it
# from the file's END block.  With the server stopped, `$undo` (if given)
# puts back what the file changed (mounts, plants, ownership); then the
# usual server must answer, for the files after this one.
sub restore_server {
    my ($orig, $undo) = @_;
    return unless $orig && $$ == $orig->{test_pid};
    if ($undo) {
        stop_server(30);
        $undo->();
    }
    return if httpd_pid() && server_answers();
    my ($me) = (caller)[1] =~ m{([^/]+)$};
    print STDERR "# $me: httpd is down at exit, starting it again\n";
    stop_server(30);
    start_server($orig, 60) or print STDERR "# $me: could not start httpd again\n";
}

# httpd's event MPM (2.4.71) can crash a child that SIGTERM finds with a
# connection still in a worker thread: close_worker_sockets() closes sockets
# that the worker may be freeing at that moment (the race t/20 notes for
# SIGHUP; it needs no module at all).  Tests stop httpd right after their
# last answer, while the worker may still be logging it or closing the
# connection: under event, give it a moment first.
sub stop_server {
    my ($timeout) = @_;
    my $pid = httpd_pid() or return 1;
    my @kids = httpd_children($pid);
    Time::HiRes::sleep(0.3) if ($ENV{PTM_MPM} // 'event') eq 'event';
    kill TERM => $pid;
    return _wait_dead($timeout || 60, $pid, @kids);
}

# A crash of everything: stop the parent and every child first (so none
# can log or fork), then SIGKILL them all.  Returns 1 once all are gone.
sub kill_server {
    my $pid = httpd_pid() or return 1;
    kill STOP => $pid;
    my @kids = httpd_children($pid);
    kill STOP => @kids if @kids;
    kill KILL => $pid, @kids;
    return 0 unless _wait_dead(30, $pid, @kids);
    # httpd refuses to start while the pid file names a process that
    # kill(pid, 0) finds, and a zombie counts: give init a moment to reap
    # the parent, then drop the stale pid file as a service manager would.
    my $end = Time::HiRes::time() + 5;
    Time::HiRes::sleep(0.05) while -e "/proc/$pid" && Time::HiRes::time() < $end;
    unlink _pid_file() if -e "/proc/$pid";
    return 1;
}

# ---------------------------------------------------------------------------
# The error log

sub error_log_path { return Apache::Test::vars('t_logs') . '/error_log' }
sub error_log_size { return -s error_log_path() || 0 }

# Lines written to the error log after byte $offset.
sub error_log_since {
    my ($offset) = @_;
    open my $fh, '<:raw', error_log_path() or return ();
    seek $fh, $offset || 0, 0;
    my @l = <$fh>;
    chomp @l;
    return @l;
}

# Lines at level crit (any module) after $offset.
sub crit_lines {
    my ($offset) = @_;
    return grep { /^\[[^\]]*\] \[[^\]]*:crit\]/ } error_log_since($offset);
}

# Lines after $offset that say a process crashed (the ones
# t/run-httpd-tests.sh fails on, and a bus error: SIGBUS).
sub crash_lines {
    my ($offset) = @_;
    return grep { /Segmentation fault|Bus error|AH00052|exit signal|AH00060|still did not exit/ }
        error_log_since($offset);
}

# Wait until a line matching $re appears after $offset; the line or undef.
sub wait_for_log {
    my ($offset, $re, $timeout) = @_;
    my $end = Time::HiRes::time() + ($timeout || 60);
    while (1) {
        my ($l) = grep { $_ =~ $re } error_log_since($offset);
        return $l if defined $l;
        return undef if Time::HiRes::time() > $end;
        Time::HiRes::sleep(0.1);
    }
}

# ---------------------------------------------------------------------------
# Load: forked clients, events that identify themselves, and outcomes.

# start_clients($n, $work): fork $n clients running $work->($i, $ctl).
# $ctl->tick counts one acknowledged event (progress()); $ctl->flag says
# whether raise_flag() was called.  $work returns hashes (outcomes), which
# wait_clients() collects: a list per client.
sub start_clients {
    my ($n, $work) = @_;
    my $dir = File::Temp::tempdir('ptm-clients-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $h = { dir => $dir, n => $n, pids => [] };
    open my $pf, '>', "$dir/progress" or die "$dir/progress: $!";
    close $pf;
    for my $i (0 .. $n - 1) {
        my $pid = fork;
        die "fork: $!" unless defined $pid;
        if (!$pid) {
            $SIG{PIPE} = 'IGNORE';
            my $ctl = PTMTest::Ctl->new($dir);
            my @out = eval { $work->($i, $ctl) };
            my $js = JSON::PP->new->canonical;
            open my $fh, '>', "$dir/c$i.tmp" or POSIX::_exit(1);
            print {$fh} $js->encode($_), "\n" for @out;
            print {$fh} $js->encode({ outcome => 'client_died', id => "client$i", error => "$@" }), "\n" if $@;
            close $fh or POSIX::_exit(1);
            rename "$dir/c$i.tmp", "$dir/c$i" or POSIX::_exit(1);
            POSIX::_exit(0);
        }
        push @{ $h->{pids} }, $pid;
    }
    return $h;
}

sub progress { my ($h) = @_; return -s "$h->{dir}/progress" || 0 }

sub raise_flag {
    my ($h) = @_;
    open my $fh, '>', "$h->{dir}/flag" or die "$h->{dir}/flag: $!";
    close $fh;
}

# Wait until progress() reaches $count (or $timeout s pass): 1 or 0.
sub wait_progress {
    my ($h, $count, $timeout) = @_;
    my $end = Time::HiRes::time() + ($timeout || 60);
    while (progress($h) < $count) {
        return 0 if Time::HiRes::time() > $end;
        return 0 unless grep { !-e "$h->{dir}/c$_" } 0 .. $h->{n} - 1;
        Time::HiRes::sleep(0.02);
    }
    return 1;
}

# Stop the clients between two requests (they call $ctl->pause_point):
# returns 1 once none has a request in flight, 0 after $timeout s.
sub hold_clients {
    my ($h, $timeout) = @_;
    open my $fh, '>', "$h->{dir}/hold" or die "$h->{dir}/hold: $!";
    close $fh;
    my $end = Time::HiRes::time() + ($timeout || 30);
    while (Time::HiRes::time() < $end) {
        return 1 unless grep { !-e "$h->{dir}/idle$_" && !-e "$h->{dir}/c$_" } 0 .. $h->{n} - 1;
        Time::HiRes::sleep(0.01);
    }
    return 0;
}

sub release_clients { my ($h) = @_; unlink "$h->{dir}/hold" }

sub wait_clients {
    my ($h) = @_;
    waitpid $_, 0 for @{ $h->{pids} };
    my @res;
    for my $i (0 .. $h->{n} - 1) {
        my @l;
        if (open my $fh, '<', "$h->{dir}/c$i") {
            @l = map { JSON::PP->new->decode($_) } <$fh>;
        }
        else {
            @l = ({ outcome => 'client_died', id => "client$i", error => 'no result file' });
        }
        push @res, \@l;
    }
    return @res;
}

# An event of a load test: its body, and what the checks need to know.
# data is {"id":ID,"c":C,"n":N[,"pad":...]}, meta {"c":C}; ID and type are
# plain ASCII.
sub load_event {
    my (%a) = @_;
    my $c = $a{c} // 0;
    my $data = '{"id":"' . $a{id} . '","c":' . $c . ',"n":' . ($a{n} // 0)
        . (defined $a{pad} ? ',"pad":"' . $a{pad} . '"' : '') . '}';
    my $meta = '{"c":' . $c . '}';
    my $mc = exists $a{mc} ? ($a{mc} ? 1 : 0) : 1;
    my $sp = exists $a{sp} ? ($a{sp} ? 1 : 0) : 1;
    my $body = '{"type":"' . $a{type} . '","data":' . $data . ',"meta":' . $meta
        . ($mc ? '' : ',"make_current":false')
        . ($sp ? '' : ',"store_permanently":false') . '}';
    return { id => $a{id}, type => $a{type}, mc => $mc, sp => $sp,
             data => $data, meta => $meta, body => $body };
}

# What became of a load event, from a PTMTest::Client answer:
# outcome ack (200 + envelope), err (another answer), noans (sent, no
# answer: may or may not have been stored) or nosend (never reached httpd).
sub load_outcome {
    my ($ev, $res) = @_;
    my %r = map { $_ => $ev->{$_} } qw(id type mc sp data meta);
    if ($res->{code} == 200) {
        my $j = eval { jd($res->{body}) };
        if (ref $j eq 'HASH' && defined $j->{seq} && ref $j->{meta} eq 'HASH') {
            my $rid = $j->{meta}{run_id};
            @r{qw(outcome code rbody seq ts stream rid)} = ('ack', 200, $res->{body}, $j->{seq}, $j->{ts},
                defined $rid ? 'run' : 'site', $rid);
            return \%r;
        }
    }
    if ($res->{code}) {
        @r{qw(outcome code rbody)} = ('err', $res->{code}, substr($res->{body} // '', 0, 400));
    }
    else {
        @r{qw(outcome error reused)} = ($res->{sent} ? 'noans' : 'nosend', $res->{error}, $res->{reused});
    }
    return \%r;
}

# The file line of an outcome stored with this seq, ts and stream (the
# response when $stream is undef), as the module must write it.
sub load_line {
    my ($r, $stream, $seq, $ts, $rid) = @_;
    my $meta = $r->{meta};
    if (defined $rid && (!defined $stream || $stream eq 'run')) {
        $meta = $meta eq '{}' ? '{"run_id":' . js($rid) . '}'
              : substr($meta, 0, -1) . ',"run_id":' . js($rid) . '}';
    }
    return '{"seq":' . $seq . ',"ts":' . js($ts)
        . (defined $stream ? ',"stream":"' . $stream . '"' : '')
        . ',"type":"' . $r->{type} . '","data":' . $r->{data} . ',"meta":' . $meta . '}';
}

sub _some {
    my (@l) = @_;
    my $more = @l > 12 ? "\n... and " . (@l - 12) . ' more' : '';
    return join("\n", @l[0 .. ($#l < 11 ? $#l : 11)]) . $more;
}

sub _check {
    my ($ok, $name, @problems) = @_;
    $TB->ok($ok, $name) or $TB->diag(_some(@problems));
    return $ok;
}

# What a load left in the files, against what the clients were told.
#   attempts  => [outcomes]  every event sent (clients and the test itself)
#   site_lo   => N           site lines above seq N are this test's (undef:
#                            no site events expected)
#   run_files => [{path, run_id}]  run files; all their lines are the test's
#   run_lo    => N           run seqs above N are the test's (default: the
#                            smallest one seen, minus 1)
#   strict    => 1           seqs must be contiguous; otherwise each
#                            unanswered request that is in no file may
#                            explain one gap
#   answered  => 1           every request must have been answered
# Checks: every file ends with a whole line, its lines are whole and in
# seq order, site seqs unique across day files; every line in range is one
# of the test's events; every acknowledged stored event is in its stream's
# file exactly once with its seq, byte for byte; ephemeral, refused and
# failed events are in no file, unanswered ones at most once and whole; no
# seq is used twice; the answers are the envelope minus "stream"; seqs are
# contiguous.  Returns {hi => {stream => highest seq}, unexplained => n,
# found => {id => [lines]}}.
sub check_events {
    my (%a) = @_;
    my $name = $a{name} || 'load';
    my @att = @{ $a{attempts} };
    my (%by_id, @dup_ids);
    for my $r (@att) {
        push @dup_ids, $r->{id} if $by_id{ $r->{id} };
        $by_id{ $r->{id} } = $r;
    }
    die "check_events: duplicate ids in the test: @dup_ids[0 .. 4]\n" if @dup_ids;

    my @files;
    if (defined $a{site_lo}) {
        my $site = site_dir();
        opendir my $dh, $site or die "$site: $!";
        push @files, map { { path => "$site/$_", stream => 'site', lo => $a{site_lo} } }
            sort grep { /^site_\d{8}\.ndjson$/ } readdir $dh;
    }
    for my $rf (@{ $a{run_files} || [] }) {
        push @files, { path => $rf->{path}, stream => 'run', rid => $rf->{run_id}, lo => 0 };
    }

    my (@torn, @foreign, %found, %site_seen, %owner, @dupseq);
    my %lo = (site => $a{site_lo}, run => $a{run_lo});
    my $in_range = 0;
    for my $f (@files) {
        my ($ls, $complete) = file_lines($f->{path});
        push @torn, "$f->{path}: the last line has no newline" unless $complete;
        my $prev = 0;
        for my $l (@$ls) {
            my ($seq) = $l =~ /^\{"seq":([1-9][0-9]*),"ts":"[^"\\]*","stream":"(?:site|run)","type":.*\}\z/s;
            if (!$seq) { push @torn, "$f->{path}: torn line: " . substr($l, 0, 160); next }
            push @torn, "$f->{path}: seq $seq after $prev (file order is not seq order)" if $seq <= $prev;
            $prev = $seq;
            push @torn, "site seq $seq is in two day files" if $f->{stream} eq 'site' && $site_seen{$seq}++;
            next if $seq <= $f->{lo};
            $in_range++;
            my ($id) = $l =~ /,"data":\{"id":"([^"]+)"/;
            if (!defined $id || !$by_id{$id}) {
                push @foreign, "$f->{path}: seq $seq is none of this test's events: " . substr($l, 0, 160);
                next;
            }
            my ($ts) = $l =~ /^\{"seq":\d+,"ts":"([^"]*)"/;
            push @{ $found{$id} }, { seq => $seq, ts => $ts, line => $l, stream => $f->{stream},
                                    rid => $f->{rid}, path => $f->{path} };
            if (my $o = $owner{ $f->{stream} }{$seq}) { push @dupseq, "$f->{stream} seq $seq: $o and $id" }
            $owner{ $f->{stream} }{$seq} = $id;
        }
    }

    my (@miss, @badline, @badresp, @ghost, @twice, @errs);
    my $unexplained = 0;
    my %count = (ack => 0, ack_stored => 0, noans => 0, noans_stored => 0, nosend => 0, err => 0);
    for my $r (@att) {
        my $f = $found{ $r->{id} } || [];
        push @twice, "$r->{id} is stored " . scalar(@$f) . ' times: seqs ' . join(',', map { $_->{seq} } @$f)
            if @$f > 1;
        my $o = $r->{outcome};
        $count{$o}++;
        if ($o eq 'ack') {
            my $exp = load_line($r, undef, $r->{seq}, $r->{ts}, $r->{rid});
            my $got = eval { py_dumps(oparse($r->{rbody})) } // "unparsable: $r->{rbody}";
            push @badresp, "$r->{id}: answer $got\n  expected $exp" unless $got eq $exp;
            if (my $ow = $owner{ $r->{stream} }{ $r->{seq} } and !$r->{sp}) {
                push @dupseq, "$r->{stream} seq $r->{seq}: ephemeral $r->{id} and stored $ow";
            }
            if ($r->{sp}) {
                $count{ack_stored}++;
                if (!@$f) {
                    push @miss, "acknowledged $r->{id} ($r->{stream} seq $r->{seq}) is in no file";
                    next;
                }
                my $want = load_line($r, $r->{stream}, $r->{seq}, $r->{ts}, $r->{rid});
                my $x = $f->[0];
                if ($x->{stream} ne $r->{stream} || $x->{seq} != $r->{seq}) {
                    push @badline, "$r->{id}: acknowledged as $r->{stream} seq $r->{seq}, stored as $x->{stream} seq $x->{seq}";
                }
                elsif ($x->{stream} eq 'run' && ($x->{rid} // '') ne ($r->{rid} // '')) {
                    push @badline, "$r->{id}: acknowledged in run $r->{rid}, stored in the file of run $x->{rid}";
                }
                elsif ($x->{line} ne $want) {
                    push @badline, "$r->{id}: line differs\n  got  " . substr($x->{line}, 0, 300)
                        . "\n  want " . substr($want, 0, 300);
                }
            }
            else {
                $owner{ $r->{stream} }{ $r->{seq} } //= $r->{id};
                push @ghost, "ephemeral $r->{id} is in $f->[0]{path}" if @$f;
            }
        }
        elsif ($o eq 'noans') {
            if (!@$f) { $unexplained++; next }
            $count{noans_stored}++;
            my $x = $f->[0];
            push @ghost, "unanswered ephemeral $r->{id} is in $x->{path}" unless $r->{sp};
            my $want = load_line($r, $x->{stream}, $x->{seq}, $x->{ts}, $x->{rid});
            push @badline, "unanswered $r->{id}: line differs\n  got  " . substr($x->{line}, 0, 300)
                . "\n  want " . substr($want, 0, 300) if $x->{line} ne $want;
        }
        else {
            push @errs, "$r->{id}: $o " . ($r->{code} // '') . ' ' . ($r->{rbody} // $r->{error} // '') if $o ne 'nosend';
            push @ghost, "$r->{id} ($o) is in $f->[0]{path}" if @$f;
        }
    }

    my $n = scalar @att;
    _check(!@errs, "$name: every answer was 200 ($count{ack} acknowledged, $count{noans} unanswered, "
        . "$count{nosend} refused, of $n)", @errs);
    _check(!@torn, "$name: files end with a whole line, no torn line, file order is seq order, "
        . 'site seqs unique across day files', @torn);
    _check(!@foreign, "$name: every line in range is one of the test's events", @foreign);
    _check(!@miss && !@badline, "$name: every acknowledged stored event ($count{ack_stored}) is in its stream's file "
        . 'once, with its seq, byte for byte', @miss, @badline);
    _check(!@badresp, "$name: every 200 answer is the envelope minus stream", @badresp);
    _check(!@ghost && !@twice, "$name: nothing stored twice; no ephemeral, refused or failed event in a file",
        @ghost, @twice);
    _check(!@dupseq, "$name: no seq given out twice", @dupseq);
    $TB->is_num($in_range, $count{ack_stored} + $count{noans_stored},
        "$name: lines in range = acknowledged stored events + unanswered ones that were stored");

    # Contiguity, per stream.
    my %hi;
    for my $s (sort keys %owner) {
        my @seqs = sort { $a <=> $b } keys %{ $owner{$s} };
        next unless @seqs;
        $hi{$s} = $seqs[-1];
        my $lo = defined $lo{$s} ? $lo{$s} : $seqs[0] - 1;
        my @below = grep { $_ <= $lo } @seqs;
        my @gaps;
        for my $q ($lo + 1 .. $seqs[-1]) {
            push @gaps, $q unless exists $owner{$s}{$q};
        }
        my $what = "$name: $s seqs " . ($lo + 1) . "..$seqs[-1] contiguous";
        if ($a{strict}) {
            _check(!@gaps && !@below, $what, @below ? ("seqs at or below $lo: @below[0 .. ($#below < 9 ? $#below : 9)]") : (),
                @gaps ? ('missing: ' . join(' ', @gaps[0 .. ($#gaps < 19 ? $#gaps : 19)])) : ());
        }
        else {
            _check(@gaps <= $unexplained && !@below,
                "$what but for gaps left by unanswered requests (" . scalar(@gaps) . " gaps, $unexplained unanswered and not stored)",
                @gaps ? ('missing: ' . join(' ', @gaps[0 .. ($#gaps < 19 ? $#gaps : 19)])) : ());
        }
    }
    if ($a{answered}) {
        my @un = grep { $_->{outcome} eq 'noans' || $_->{outcome} eq 'nosend' } @att;
        _check(!@un, "$name: every request was answered",
            map { "$_->{id}: $_->{outcome}" . ($_->{reused} ? ' (on a kept-alive connection)' : '')
                  . ': ' . ($_->{error} // '') } @un);
    }
    return { hi => \%hi, unexplained => $unexplained, found => \%found, count => \%count };
}

# /current against the outcomes, per type of @types: the acknowledged
# make_current event with the highest seq of its stream (the active run's
# stream first, then site), or a later unanswered one (which, if stored,
# must be in its file with that seq).  GET /current/{type} agrees.
#   attempts => [...], types => [...], run_id => active run id or undef,
#   found => check_events()->{found}
sub check_current {
    my (%a) = @_;
    my $name = $a{name} || 'load';
    my %by_id = map { $_->{id} => $_ } @{ $a{attempts} };
    my %best;
    for my $r (@{ $a{attempts} }) {
        next unless $r->{outcome} eq 'ack' && $r->{mc};
        next if $r->{stream} eq 'run' && (!defined $a{run_id} || $r->{rid} ne $a{run_id});
        my $old = $best{ $r->{type} }{ $r->{stream} };
        $best{ $r->{type} }{ $r->{stream} } = $r if !$old || $r->{seq} > $old->{seq};
    }
    my $cur = get('/current');
    my $tree = eval { oparse($cur->{body}) };
    my (@problems, @single);
    if (!$tree || $cur->{code} != 200) {
        $TB->ok(0, "$name: GET /current answers") or $TB->diag("$cur->{code} $cur->{body}");
        return;
    }
    for my $t (@{ $a{types} }) {
        my $got = onode($tree, 'current', $t);
        my $bt = $best{$t} || {};
        if (!$got) {
            push @problems, "$t: not current, expected seq " . ($bt->{run} || $bt->{site})->{seq}
                if $bt->{run} || $bt->{site};
        }
        else {
            my $gid = node_value(onode($got, 'data', 'id')) // '?';
            my $gseq = node_value(onode($got, 'seq')) // 0;
            my $grid = node_value(onode($got, 'meta', 'run_id'));
            my $gs = defined $grid ? 'run' : 'site';
            my $r = $by_id{$gid};
            my $want = $bt->{$gs};
            if ($gs eq 'site' && $bt->{run}) {
                push @problems, "$t: the site value $gid shows although the run has $bt->{run}{id}";
            }
            elsif ($gs eq 'run' && (!defined $a{run_id} || $grid ne $a{run_id})) {
                push @problems, "$t: a value of run $grid shows, the active run is " . ($a{run_id} // 'none');
            }
            elsif (!$r) {
                push @problems, "$t: current is $gid, none of this test's events";
            }
            elsif ($r->{outcome} eq 'ack') {
                if (!$want || $want->{id} ne $gid) {
                    push @problems, "$t: current is $gid ($gs seq $gseq), expected "
                        . ($want ? "$want->{id} ($gs seq $want->{seq})" : 'nothing');
                }
                elsif (py_dumps($got) ne py_dumps(oparse($r->{rbody}))) {
                    push @problems, "$t: current " . py_dumps($got) . "\n  differs from the answer $r->{rbody}";
                }
            }
            elsif ($r->{outcome} eq 'noans') {
                my $x = ($a{found}{$gid} || [])->[0];
                if (!$r->{mc} || $r->{type} ne $t) {
                    push @problems, "$t: current is $gid, which was not make_current of this type";
                }
                elsif ($want && $gseq <= $want->{seq}) {
                    push @problems, "$t: current is unanswered $gid (seq $gseq), older than acknowledged $want->{id} (seq $want->{seq})";
                }
                elsif ($r->{sp} && (!$x || $x->{seq} != $gseq || $x->{stream} ne $gs)) {
                    push @problems, "$t: current is unanswered stored $gid ($gs seq $gseq) but the file "
                        . ($x ? "has it as $x->{stream} seq $x->{seq}" : 'does not have it');
                }
            }
            else {
                push @problems, "$t: current is $gid, a request that was $r->{outcome}";
            }
        }
        my $one = get('/current/' . $t);
        if ($got) {
            push @single, "/current/$t: $one->{code} $one->{body}"
                unless $one->{code} == 200 && (eval { py_dumps(oparse($one->{body})) } // '') eq py_dumps($got);
        }
        else {
            push @single, "/current/$t: $one->{code} (expected 404)" unless $one->{code} == 404;
        }
    }
    _check(!@problems, "$name: /current holds the latest make_current event of each of "
        . scalar(@{ $a{types} }) . ' types', @problems);
    _check(!@single, "$name: GET /current/{type} agrees with GET /current", @single);
}

# ---------------------------------------------------------------------------
# GET /events (SPEC §12.2; t/5x_events_*.t), imported with the :events tag.

# A query string from name => value pairs, in order (a name may repeat).
# Names and values are UTF-8 bytes, percent-encoded but for unreserved
# characters and ':' ('+' is sent as %2B).
sub qenc {
    my (@pairs) = @_;
    my @out;
    while (@pairs) {
        my ($k, $v) = splice @pairs, 0, 2;
        push @out, _pct($k) . '=' . _pct($v);
    }
    return join '&', @out;
}

sub _pct {
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9._~:-])/sprintf '%%%02X', ord $1/ge;
    return $s;
}

# GET (or HEAD: method => 'HEAD') /events?<pairs> on a mount, with optional
# headers: the req() hash, plus what the answer holds.  A 200 JSON answer:
#   top => [its keys, in order], evs => [event nodes], lines => [py_dumps
#   of each: its file form], ids => [data.id of each], next, recent_since
#   (undef for null; has_next / has_recent say the key was there).
# A 200 NDJSON answer (application/x-ndjson): lines => [raw lines],
#   complete => the body ends with a newline (or is empty), evs, ids,
#   next => the Panoptes-Next-Cursor header.
# Both: skipped => the Panoptes-Skipped header.
sub events_get {
    my ($pairs, %a) = @_;
    my $q = qenc(@{ $pairs || [] });
    my $method = delete $a{method} || 'GET';
    my $r = req(%a, method => $method, path => '/events' . (length $q ? "?$q" : ''));
    $r->{query} = $q;
    _events_parse($r);
    return $r;
}

sub _events_parse {
    my ($r) = @_;
    $r->{skipped} = scalar $r->{h}->header('Panoptes-Skipped');
    return unless $r->{code} == 200 && length $r->{body};
    my $ct = $r->{ct} // '';
    if ($ct =~ m{^application/x-ndjson\s*(;|$)}i) {
        my $b = $r->{body};
        $r->{complete} = substr($b, -1) eq "\n";
        my @l = split /\n/, $b, -1;
        pop @l if $r->{complete};
        $r->{lines} = \@l;
        $r->{evs} = [ map { my $n = eval { oparse($_) }; $n || ['bad', $_] } @l ];
        $r->{next} = scalar $r->{h}->header('Panoptes-Next-Cursor');
    }
    else {
        my $t = eval { oparse($r->{body}) } or return;
        $r->{tree} = $t;
        $r->{top} = [ okeys($t) ];
        my $e = onode($t, 'events');
        $r->{evs} = $e && $e->[0] eq 'a' ? $e->[1] : [];
        $r->{lines} = [ map { py_dumps($_) } @{ $r->{evs} } ];
        my $n = onode($t, 'next');
        $r->{has_next} = defined $n;
        $r->{next} = $n && $n->[0] eq 's' ? node_value($n) : undef;
        my $rs = onode($t, 'recent_since');
        $r->{has_recent} = defined $rs;
        $r->{recent_since} = $rs && $rs->[0] eq 's' ? node_value($rs) : undef;
    }
    $r->{ids} = [ map { $_->[0] eq 'o' ? node_value(onode($_, 'data', 'id')) : undef } @{ $r->{evs} } ];
    return;
}

# A one-line description of an /events answer for diagnostics.
sub events_desc {
    my ($r) = @_;
    my $b = $r->{body} // '';
    $b = substr($b, 0, 400) . '...' if length $b > 400;
    return "GET /events?$r->{query} -> $r->{code} [" . ($r->{ct} // '') . "] $b";
}

# Follow next (or Panoptes-Next-Cursor) from the first page of $pairs
# until it is null.  Returns {pages, lines, ids, evs, error}; error says
# why it stopped early (a non-200, a loop, more than $a{max_pages}).
sub events_follow {
    my ($pairs, %a) = @_;
    my $max = delete $a{max_pages} || 1000;
    my $each = delete $a{each};
    my %out = (pages => 0, lines => [], ids => [], evs => []);
    my ($cursor, %seen);
    while (1) {
        my $r = events_get([ @$pairs, defined $cursor ? (cursor => $cursor) : () ], %a);
        $out{pages}++;
        if ($r->{code} != 200) {
            $out{error} = 'page ' . $out{pages} . ': ' . events_desc($r);
            last;
        }
        push @{ $out{lines} }, @{ $r->{lines} || [] };
        push @{ $out{ids} }, @{ $r->{ids} || [] };
        push @{ $out{evs} }, @{ $r->{evs} || [] };
        $each->($r) if $each;
        last unless defined $r->{next};
        if ($seen{ $r->{next} }++) {
            $out{error} = "page $out{pages}: the same cursor again: $r->{next}";
            last;
        }
        if ($out{pages} >= $max) {
            $out{error} = "still a next cursor after $max pages";
            last;
        }
        $cursor = $r->{next};
    }
    return \%out;
}

# UTC stamps: iso_ms(milliseconds since the epoch) is
# YYYY-MM-DDTHH:MM:SS.mmmZ; now_ms() the test's clock in ms.
sub iso_ms {
    my ($ms) = @_;
    my $s = POSIX::floor($ms / 1000);
    return POSIX::strftime('%Y-%m-%dT%H:%M:%S', gmtime $s) . sprintf('.%03dZ', $ms - $s * 1000);
}

sub now_ms { return int(Time::HiRes::time() * 1000) }

# Milliseconds since the epoch (truncated) of an RFC 3339 time,
# YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM); undef if it is not one.
sub ms_of {
    my ($ts) = @_;
    my ($Y, $M, $D, $h, $m, $s, $f, $z, $sg, $oh, $om) = ($ts // '')
        =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:(Z)|([-+])(\d\d):(\d\d))$/
        or return undef;
    $f = substr(($f // '') . '000', 0, 3);
    my $off = $z ? 0 : ($sg eq '-' ? -1 : 1) * ($oh * 60 + $om) * 60_000;
    return timegm($s, $m, $h, $D, $M - 1, $Y) * 1000 + $f - $off;
}

# POST /event for a history test.  type (bytes), data (JSON text; default
# {"id":<id>}), id, meta (JSON text without run_id, default {}), ts (a
# client ts, or undef for the server's), sp => 0 (ephemeral), mc => 0 (not
# current), run => the active run's id (undef: none), mount, client (a
# PTMTest::Client: keep-alive, no LWP).  Returns {code, body, seq, ts,
# stream, type, id, line}: line is the file form the module stores and
# holds in its ring, as Python writes it.
sub hist_post {
    my (%a) = @_;
    my $data = $a{data} // '{"id":' . js($a{id}) . '}';
    my $meta = $a{meta} // '{}';
    my $body = '{"type":' . js($a{type}) . ',"data":' . $data . ',"meta":' . $meta
        . (defined $a{ts} ? ',"ts":' . js($a{ts}) : '')
        . ((exists $a{sp} && !$a{sp}) ? ',"store_permanently":false' : '')
        . ((exists $a{mc} && !$a{mc}) ? ',"make_current":false' : '') . '}';
    my ($code, $rb);
    if ($a{client}) {
        my $res = $a{client}->request('POST', '/event', $body, mount => $a{mount} || 'prefix');
        ($code, $rb) = ($res->{code}, $res->{body});
    }
    else {
        my $res = post_event($body, $a{mount} ? (mount => $a{mount}) : ());
        ($code, $rb) = ($res->{code}, $res->{body});
    }
    my %o = (code => $code, body => $rb, type => $a{type}, id => $a{id},
             stream => defined $a{run} ? 'run' : 'site', sp => (exists $a{sp} ? $a{sp} : 1));
    my $j = $code == 200 ? eval { jd($rb) } : undef;
    return \%o unless ref $j eq 'HASH';
    @o{qw(seq ts)} = ($j->{seq}, $j->{ts});
    if (defined $a{run}) {
        $meta = $meta eq '{}' ? '{"run_id":' . js($a{run}) . '}'
              : substr($meta, 0, -1) . ',"run_id":' . js($a{run}) . '}';
    }
    my $line = '{"seq":' . $j->{seq} . ',"ts":' . js(Encode::encode('UTF-8', $j->{ts}))
        . ',"stream":"' . $o{stream} . '","type":' . js($a{type}) . ',"data":' . $data
        . ',"meta":' . $meta . '}';
    $o{line} = py_dumps(oparse($line));
    return \%o;
}

# Follow next from the first page of `pairs` (events_follow, with `opts`)
# and check what came: every page 200 and next ending null; no event twice
# (by stream, seq and run, and by data.id); every id of `first` (a hash)
# there; nothing but `type`, and ids of `first` or matching `more`;
# strictly in the order of SPEC §12.2, descending when `desc`.  Returns
# the events_follow result.
sub events_follow_check {
    my (%a) = @_;
    my $name = $a{name};
    my $first = $a{first};
    my $f = events_follow($a{pairs}, %{ $a{opts} || {} });
    _check(!$f->{error}, "$name: every page answered, next ends null ($f->{pages} pages)", $f->{error} // '');
    my (%seen, @twice, @foreign, @unsorted, $prev);
    my $key_of = sub {
        my ($n) = @_;
        return [ ms_of(node_value(onode($n, 'ts'))) // -1,
                 (node_value(onode($n, 'stream')) // '') eq 'run' ? 1 : 0, node_value(onode($n, 'seq')) // -1 ];
    };
    for my $i (0 .. $#{ $f->{evs} }) {
        my $n = $f->{evs}[$i];
        my $id = $f->{ids}[$i] // '?';
        my $k = $key_of->($n);
        my $key = join '/', node_value(onode($n, 'stream')) // '?', $k->[2],
            node_value(onode($n, 'meta', 'run_id')) // '';
        push @twice, "$id ($key)" if $seen{$key}++ || $seen{"id $id"}++;
        push @foreign, "$id: type " . (node_value(onode($n, 'type')) // '?')
            unless (node_value(onode($n, 'type')) // '') eq $a{type};
        push @foreign, "$id: none of this test's events" unless $first->{$id} || ($a{more} && $id =~ $a{more});
        if ($prev) {
            my $c = $prev->[0] <=> $k->[0] || $prev->[1] <=> $k->[1] || $prev->[2] <=> $k->[2];
            push @unsorted, "[$i] $id after " . ($f->{ids}[$i - 1] // '?') if $a{desc} ? $c <= 0 : $c >= 0;
        }
        $prev = $k;
    }
    my %got = map { ($_ // '') => 1 } @{ $f->{ids} };
    my @missing = grep { !$got{$_} } sort keys %$first;
    _check(!@twice, "$name: no event twice", @twice);
    _check(!@missing, "$name: every one of the " . scalar(keys %$first) . ' events of the first set',
        scalar(@missing) . ' missing: ' . join ' ', @missing[0 .. ($#missing < 19 ? $#missing : 19)]);
    _check(!@foreign, "$name: nothing else", @foreign);
    _check(!@unsorted, "$name: in " . ($a{desc} ? 'descending' : 'ascending') . ' order of (ts, stream, seq)',
        @unsorted);
    my $firsts = grep { $first->{ $_ // '' } } @{ $f->{ids} };
    $TB->diag("$name: $f->{pages} pages, " . scalar(@{ $f->{ids} }) . " events ($firsts of the first set)");
    return $f;
}

# hist_post results in the order of SPEC §12.2: by ts (as an instant; a
# UTC stamp with milliseconds here), then site before run, then seq.
sub hist_sort {
    my (@e) = @_;
    return sort { (ms_of($a->{ts}) // 0) <=> (ms_of($b->{ts}) // 0)
                  || ($a->{stream} eq 'run') <=> ($b->{stream} eq 'run')
                  || $a->{seq} <=> $b->{seq} } @e;
}

# Compare what an answer (or events_follow) gave, as lines, with the
# expected lines, in order: ok() with a diff of the first differences.
sub lines_are {
    my ($got, $want, $name) = @_;
    $got ||= [];
    my @d;
    my $n = @$got > @$want ? scalar @$got : scalar @$want;
    for my $i (0 .. $n - 1) {
        my ($g, $w) = ($got->[$i], $want->[$i]);
        next if defined $g && defined $w && $g eq $w;
        push @d, "[$i]\n     got: " . (defined $g ? substr($g, 0, 300) : '(none)')
            . "\n    want: " . (defined $w ? substr($w, 0, 300) : '(none)');
    }
    return _check(!@d, $name, scalar(@$got) . ' events, expected ' . scalar(@$want), @d);
}

# 422 items of an answer as [[type, loc-name, msg, input-canon], ...]
# (loc must be ["query", name]; anything else shows as loc text).
sub q422_items {
    my ($r) = @_;
    my $t = eval { oparse($r->{body}) } or return undef;
    my $d = onode($t, 'detail');
    return undef unless $d && $d->[0] eq 'a';
    my @out;
    for my $it (@{ $d->[1] }) {
        my $loc = onode($it, 'loc');
        my $ln = canon($loc // ['z']);
        my $name = $ln =~ /^\["query","([^"\\]*)"\]$/ ? $1 : $ln;
        push @out, [ node_value(onode($it, 'type')) // '?', $name, node_value(onode($it, 'msg')) // '?',
                     onode($it, 'input') ? canon(onode($it, 'input')) : '(no input)' ];
    }
    return \@out;
}

# ---------------------------------------------------------------------------

package PTMTest::Ctl;

sub new {
    my ($class, $dir) = @_;
    open my $fh, '>>', "$dir/progress" or die "$dir/progress: $!";
    return bless { dir => $dir, fh => $fh }, $class;
}

sub tick { my ($self) = @_; syswrite $self->{fh}, '.' }
sub flag { my ($self) = @_; return -e "$self->{dir}/flag" }

# Call between requests: while hold_clients() is in force, say so and wait.
sub pause_point {
    my ($self, $i) = @_;
    return unless -e "$self->{dir}/hold";
    if (open my $fh, '>', "$self->{dir}/idle$i") {
        close $fh;
    }
    Time::HiRes::sleep(0.005) while -e "$self->{dir}/hold";
    unlink "$self->{dir}/idle$i";
}

# A small HTTP/1.1 client for load tests (forked clients, many requests),
# optionally keep-alive (one connection per port).  Unlike req(), it tells
# what became of a request that got no answer: sent => 0 when the
# connection failed (nothing reached httpd), sent => 1 when httpd may or
# may not have acted on it.  Returns {code, body, h, sent, error, reused}.
package PTMTest::Client;

use IO::Socket::INET ();
use Time::HiRes ();

sub new {
    my ($class, %o) = @_;
    return bless { ka => $o{keep_alive} ? 1 : 0, timeout => $o{timeout} || 30, socks => {},
                   retried => 0 }, $class;
}

# A kept-alive connection that httpd closes as the next request goes out
# (the event MPM closes idle ones when busy) ends without a byte of
# answer: httpd never read that request, so it is sent again on a new
# connection, once, as browsers do (RFC 9112 §9.3.1).  The load checks
# would see the event twice if it had in fact been acted on.
sub request {
    my ($self, @args) = @_;
    my $r = $self->_request(@args);
    if (!$r->{code} && $r->{reused} && $r->{nothing}) {
        $self->{retried}++;
        $r = $self->_request(@args);
    }
    return $r;
}

sub retried { return $_[0]{retried} }

sub _request {
    my ($self, $method, $path, $body, %a) = @_;
    my $mount = $a{mount} || 'prefix';
    my $hp = PTMTest::hostport($mount eq 'root' ? 'root' : 'prefix');
    my $url = PTMTest::mount_prefix($mount) . $path;
    my $sock = delete $self->{socks}{$hp};
    my $reused = $sock ? 1 : 0;
    unless ($sock) {
        my ($host, $port) = split /:/, $hp;
        $sock = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Proto => 'tcp',
                                      Timeout => $self->{timeout});
        return { code => 0, sent => 0, error => "connect $hp: $!", reused => 0 } unless $sock;
        binmode $sock;
    }
    my $msg = "$method $url HTTP/1.1\r\nHost: $hp\r\n"
        . (defined $body ? "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n" : '')
        . ($self->{ka} ? '' : "Connection: close\r\n") . "\r\n" . ($body // '');
    my $off = 0;
    while ($off < length $msg) {
        my $n = syswrite($sock, $msg, length($msg) - $off, $off);
        if (!defined $n) {
            next if $!{EINTR};
            my $e = "$!";
            close $sock;
            return { code => 0, sent => 1, error => "write: $e", reused => $reused, nothing => 1 };
        }
        $off += $n;
    }
    my ($buf, $head, $code, $minor, %h, $need) = ('');
    my $end = Time::HiRes::time() + $self->{timeout};
    while (1) {
        if (!defined $head && (my $i = index($buf, "\r\n\r\n")) >= 0) {
            $head = substr($buf, 0, $i);
            substr($buf, 0, $i + 4, '');
            my ($sl, @hl) = split /\r\n/, $head;
            ($minor, $code) = ($sl // '') =~ m{^HTTP/1\.(\d) (\d{3})};
            for (@hl) {
                my ($k, $v) = split /:\s*/, $_, 2;
                $h{ lc $k } = $v;
            }
            $need = $h{'content-length'};
            $need = 0 if $method eq 'HEAD';
        }
        last if defined $head && defined $need && length($buf) >= $need;
        my $left = $end - Time::HiRes::time();
        my $rin = '';
        vec($rin, fileno($sock), 1) = 1;
        my $nf = $left > 0 ? select(my $rout = $rin, undef, undef, $left) : 0;
        if ($nf < 0) {
            next if $!{EINTR};
        }
        if ($nf <= 0) {
            close $sock;
            return { code => 0, sent => 1, error => 'no answer within the timeout', reused => $reused };
        }
        my $n = sysread($sock, $buf, 65536, length $buf);
        if (!defined $n) {
            next if $!{EINTR};
            my $e = "$!";
            close $sock;
            return { code => 0, sent => 1, error => "read: $e", reused => $reused,
                     nothing => !length $buf && !defined $head };
        }
        if ($n == 0) {
            last if defined $head && !defined $need;    # body up to EOF
            close $sock;
            return { code => 0, sent => 1, reused => $reused, nothing => !length $buf && !defined $head,
                     error => 'connection closed ' . (length $buf || defined $head ? 'mid-answer' : 'without an answer') };
        }
    }
    if (!$code) {
        close $sock;
        return { code => 0, sent => 1, error => "not HTTP: $head", reused => $reused };
    }
    my $rbody = defined $need ? substr($buf, 0, $need) : $buf;
    if ($self->{ka} && defined $need && $minor && lc($h{connection} // '') ne 'close') {
        $self->{socks}{$hp} = $sock;
    }
    else {
        close $sock;
    }
    return { code => $code + 0, body => $rbody, h => \%h, sent => 1, reused => $reused };
}

package PTMTest;

1;
