package PTMStream;

# A Server-Sent Events client for the live-feed tests (t/60-65, SPEC
# §12.3), over a raw socket so that a test can hold several streams open
# while it posts, see exactly what the server framed (fields, comments,
# blank lines), and time when each block and the end of the stream came.
#
#   my $s = PTMStream->open(query => 'type=a&type=b', last_event_id => $id);
#   $s->{code}, $s->header('Content-Type')
#   my $b = $s->next_block(10);    # {id, event, data, retry, comments, t}
#   my @b = $s->drain(5);          # every block until EOF (or 5 s)
#   $s->{eof}, $s->{eof_at}
#
# A block is what a blank line ends: its fields (`id`, `event`, `data`
# (several data lines joined with "\n"), `retry`), its comments (`: ping`
# gives comments => ['ping']), its raw text and `t`, the time
# (Time::HiRes) it was read.  Chunked transfer coding is decoded.
#
# Also: ids (`<epoch>-<n>`), the subscriber count of server-status,
# forked posters that report what they posted, and the httpd child that
# serves a given connection (from /proc, as root).

use strict;
use warnings;

use Exporter 'import';
use IO::Socket::INET ();
use Socket ();
use Time::HiRes ();
use File::Temp ();
use JSON::PP ();
use POSIX ();
use Apache::Test ();
use Test::More ();
use PTMTest ();

our @EXPORT_OK = qw(
    id_parts stream_hostport stream_prefix wait_subscribers live_status
    post_burst start_posters stop_posters child_of_connection pump
    median check_feed telemetry_of send_queue_of_connection
);

# ---------------------------------------------------------------------------
# Mounts: the PTMTest ones, and "short" (/ in the panoptes_stream_short
# virtual host, PanoptesTelemetryStreamTimeout 3).

my %HP;

sub stream_hostport {
    my ($which) = @_;
    $which ||= 'prefix';
    return PTMTest::hostport($which eq 'root' ? 'root' : 'prefix') unless $which eq 'short';
    return $HP{$which} if $HP{$which};
    my $cfg = Apache::Test::config();
    my $port = $cfg->{vars}{panoptes_stream_short_port};
    unless ($port) {
        my $hp = $cfg->{vhosts}{panoptes_stream_short}{hostport} || '';
        ($port) = $hp =~ /:(\d+)$/;
    }
    die "no port for the panoptes_stream_short virtual host\n" unless $port;
    return $HP{$which} = "127.0.0.1:$port";
}

sub stream_prefix {
    my ($which) = @_;
    return '' if ($which // '') eq 'short';
    return PTMTest::mount_prefix($which);
}

# ---------------------------------------------------------------------------
# The client

# open(%a): mount ('prefix', 'root', 'short'), path ('/stream'), query
# (without '?'), last_event_id (the header), accept (default
# text/event-stream; undef: no Accept header), headers ([name, value,
# ...]), method (GET), timeout (for the status line and headers, 30 s),
# rcvbuf (SO_RCVBUF in bytes, set before connecting).
# Dies when it cannot connect; returns with {code} 0 when no answer came.
sub open {
    my ($class, %a) = @_;
    my $mount = $a{mount} || 'prefix';
    my $hp = stream_hostport($mount);
    my ($host, $port) = split /:/, $hp;
    my $sock;
    if ($a{rcvbuf}) {
        # A small receive buffer, set before connecting (the window is
        # agreed then): a client that stops reading stalls its stream soon.
        $sock = IO::Socket::INET->new(Proto => 'tcp') or die "socket: $!\n";
        setsockopt($sock, Socket::SOL_SOCKET(), Socket::SO_RCVBUF(), $a{rcvbuf}) or die "SO_RCVBUF: $!\n";
        $sock->connect(Socket::pack_sockaddr_in($port, Socket::inet_aton($host))) or die "connect $hp: $!\n";
    }
    else {
        $sock = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Proto => 'tcp',
                                      Timeout => 30)
            or die "connect $hp: $!\n";
    }
    binmode $sock;
    my $method = $a{method} || 'GET';
    my $path = stream_prefix($mount) . ($a{path} // '/stream')
        . (defined $a{query} && length $a{query} ? "?$a{query}" : '');
    my $accept = exists $a{accept} ? $a{accept} : 'text/event-stream';
    my @h = @{ $a{headers} || [] };
    my $msg = "$method $path HTTP/1.1\r\nHost: $hp\r\n"
        . (defined $accept ? "Accept: $accept\r\n" : '')
        . (defined $a{last_event_id} ? "Last-Event-ID: $a{last_event_id}\r\n" : '')
        . join('', map { "$h[2 * $_]: $h[2 * $_ + 1]\r\n" } 0 .. @h / 2 - 1)
        . "Connection: close\r\n\r\n";
    my $self = bless {
        sock => $sock, raw => '', body => '', lines => '', queue => [], blocks => [],
        cur => undef, code => 0, h => {}, method => $method, mount => $mount,
        path => $path, t_open => Time::HiRes::time(), eof => 0, chunked => 0,
        chunk_left => undef, local_port => $sock->sockport, all => '',
    }, $class;
    syswrite($sock, $msg) == length $msg or die "write $hp: $!\n";
    my $end = Time::HiRes::time() + ($a{timeout} || 30);
    while (index($self->{raw}, "\r\n\r\n") < 0) {
        my $r = $self->_read_some($end);
        last if $r <= 0;
    }
    my $i = index($self->{raw}, "\r\n\r\n");
    return $self if $i < 0;
    my $head = substr($self->{raw}, 0, $i);
    substr($self->{raw}, 0, $i + 4, '');
    $self->{head} = $head;
    my ($sl, @hl) = split /\r\n/, $head;
    ($self->{code}) = ($sl // '') =~ m{^HTTP/\d\.\d (\d{3})};
    $self->{code} //= 0;
    for (@hl) {
        my ($k, $v) = split /:\s*/, $_, 2;
        $self->{h}{ lc $k } = defined $self->{h}{ lc $k } ? "$self->{h}{lc $k}, $v" : $v;
    }
    $self->{t_head} = Time::HiRes::time();
    $self->{chunked} = lc($self->{h}{'transfer-encoding'} // '') eq 'chunked';
    $self->{length} = $self->{h}{'content-length'};
    $self->{length} = 0 if $method eq 'HEAD' || $self->{code} == 304 || $self->{code} == 204;
    $self->_decode;
    return $self;
}

sub header { my ($self, $k) = @_; return $self->{h}{ lc $k } }

sub sock_port { return $_[0]{local_port} }

sub close {
    my ($self) = @_;
    CORE::close($self->{sock}) if $self->{sock};
    $self->{sock} = undef;
    $self->{eof} ||= 1;
    $self->{closed} = 1;
}

sub DESTROY { my ($self) = @_; CORE::close($self->{sock}) if $self->{sock} }

# Read what the socket has (waiting until $end): 1 data, 0 timeout, -1 EOF.
sub _read_some {
    my ($self, $end) = @_;
    return -1 unless $self->{sock};
    while (1) {
        my $left = $end - Time::HiRes::time();
        $left = 0 if $left < 0;
        my $rin = '';
        vec($rin, fileno($self->{sock}), 1) = 1;
        my $n = select(my $rout = $rin, undef, undef, $left);
        if ($n < 0) {
            next if $!{EINTR};
            return -1;
        }
        return 0 if $n == 0;
        my $got = sysread($self->{sock}, my $buf, 65536);
        if (!defined $got) {
            next if $!{EINTR};
            $self->{error} = "read: $!";
            $self->_at_eof;
            return -1;
        }
        if ($got == 0) {
            $self->_at_eof;
            return -1;
        }
        $self->{raw} .= $buf;
        $self->{bytes} += $got;
        return 1;
    }
}

sub _at_eof {
    my ($self) = @_;
    return if $self->{eof};
    $self->{eof} = 1;
    $self->{eof_at} = Time::HiRes::time();
}

# Move what arrived (after the headers) into body bytes, then blocks.
sub _decode {
    my ($self) = @_;
    return unless defined $self->{head};
    if ($self->{chunked}) {
        while (length $self->{raw}) {
            if ($self->{chunk_done}) {
                $self->{raw} = '';    # trailers: ignored
                last;
            }
            if (defined $self->{chunk_left} && $self->{chunk_left} > 0) {
                my $take = substr($self->{raw}, 0, $self->{chunk_left}, '');
                $self->{chunk_left} -= length $take;
                $self->_body($take);
                next;
            }
            if (defined $self->{chunk_left} && $self->{chunk_left} == 0) {
                last if length $self->{raw} < 2;
                $self->{bad_chunking} = 'no CRLF after a chunk' unless substr($self->{raw}, 0, 2) eq "\r\n";
                substr($self->{raw}, 0, 2, '');
                $self->{chunk_left} = undef;
                next;
            }
            my $i = index($self->{raw}, "\r\n");
            last if $i < 0;
            my $line = substr($self->{raw}, 0, $i + 2, '');
            my ($hex) = $line =~ /^([0-9a-fA-F]+)/;
            if (!defined $hex) {
                $self->{bad_chunking} = "bad chunk size line: $line";
                $self->{raw} = '';
                last;
            }
            my $len = hex $hex;
            if ($len == 0) {
                $self->{chunk_done} = 1;
                $self->{body_done_at} //= Time::HiRes::time();
                next;
            }
            $self->{chunks}++;
            $self->{chunk_left} = $len;
        }
    }
    else {
        $self->_body($self->{raw});
        $self->{raw} = '';
    }
    $self->_parse;
}

sub _body {
    my ($self, $bytes) = @_;
    $self->{all} .= $bytes;
    $self->{lines} .= $bytes;
}

# Lines into blocks (the event-stream grammar: "field: value", ": comment",
# a blank line ends a block; CRLF, LF or CR end a line).
sub _parse {
    my ($self) = @_;
    while ($self->{lines} =~ s/^([^\r\n]*)(\r\n|\n|\r(?=.))//s) {
        my $line = $1;
        my $cur = $self->{cur} //= { fields => [], comments => [], raw => '' };
        $cur->{raw} .= "$line\n";
        if ($line eq '') {
            $self->{cur} = undef;
            next if !@{ $cur->{fields} } && !@{ $cur->{comments} };
            $cur->{t} = Time::HiRes::time();
            push @{ $self->{queue} }, $cur;
            push @{ $self->{blocks} }, $cur;
            next;
        }
        if ($line =~ /^:(.*)$/s) {
            (my $c = $1) =~ s/^ //;
            push @{ $cur->{comments} }, $c;
            next;
        }
        my ($name, $value) = $line =~ /^([^:]*)(?::(.*))?$/s;
        $value //= '';
        $value =~ s/^ //;
        push @{ $cur->{fields} }, [ $name, $value ];
        if ($name eq 'data') {
            $cur->{data} = defined $cur->{data} ? "$cur->{data}\n$value" : $value;
            $cur->{data_lines}++;
        }
        elsif ($name eq 'id' || $name eq 'event' || $name eq 'retry') {
            $cur->{ $name . '_twice' } = 1 if defined $cur->{$name};
            $cur->{$name} = $value;
        }
        else {
            push @{ $cur->{unknown} }, $name;
        }
    }
}

# Whether the body is complete: EOF, the last chunk, or Content-Length.
sub ended {
    my ($self) = @_;
    return 1 if $self->{eof} || $self->{chunk_done};
    return 1 if defined $self->{length} && length $self->{all} >= $self->{length};
    return 0;
}

# When the body ended (the last chunk or EOF), or undef.
sub ended_at {
    my ($self) = @_;
    return $self->{body_done_at} // $self->{eof_at};
}

# Read once (up to $end); 1 when something came, 0 on timeout, -1 at the
# end of the body.
sub pump_once {
    my ($self, $end) = @_;
    return -1 if $self->ended && !@{ $self->{queue} };
    my $r = $self->_read_some($end);
    $self->_decode;
    if (defined $self->{length} && !$self->{body_done_at} && length $self->{all} >= $self->{length}) {
        $self->{body_done_at} = Time::HiRes::time();
    }
    return $r;
}

# The next block, waiting up to $timeout s; undef on timeout or at the end
# (then $self->ended).
sub next_block {
    my ($self, $timeout) = @_;
    my $end = Time::HiRes::time() + ($timeout // 10);
    while (!@{ $self->{queue} }) {
        return undef if $self->ended;
        my $r = $self->pump_once($end);
        return undef if $r == 0 && !@{ $self->{queue} };
        return undef if $r < 0 && !@{ $self->{queue} } && $self->ended;
    }
    return shift @{ $self->{queue} };
}

# The next block that is not only a comment (`: ping`).
sub next_event {
    my ($self, $timeout) = @_;
    my $end = Time::HiRes::time() + ($timeout // 10);
    while (1) {
        my $b = $self->next_block($end - Time::HiRes::time());
        return $b if !$b || @{ $b->{fields} };
    }
}

# Every block until the end of the body (or $timeout s).
sub drain {
    my ($self, $timeout) = @_;
    my $end = Time::HiRes::time() + ($timeout // 10);
    my @b;
    while (1) {
        my $b = $self->next_block($end - Time::HiRes::time());
        last unless $b;
        push @b, $b;
    }
    return @b;
}

# The whole body (for refusals: JSON), waiting until it ended.
sub body {
    my ($self, $timeout) = @_;
    my $end = Time::HiRes::time() + ($timeout // 10);
    $self->pump_once($end) while !$self->ended && Time::HiRes::time() < $end;
    return $self->{all};
}

# Blocks that are events with an id (telemetry, current), as [epoch, n].
sub describe {
    my ($b) = @_;
    return '(none)' unless $b;
    (my $r = $b->{raw}) =~ s/\n/\\n/g;
    return length $r > 300 ? substr($r, 0, 300) . '...' : $r;
}

# ---------------------------------------------------------------------------
# Several streams at once: read whatever comes on any of them until
# $until->() is true or $timeout s pass.  Returns whether $until held.
sub pump {
    my ($timeout, $streams, $until) = @_;
    my $end = Time::HiRes::time() + $timeout;
    while (1) {
        return 1 if $until && $until->();
        my @open = grep { $_->{sock} && !$_->ended } @$streams;
        return ($until ? $until->() : 1) unless @open;
        my $left = $end - Time::HiRes::time();
        return ($until ? $until->() : 0) if $left <= 0;
        my $rin = '';
        vec($rin, fileno($_->{sock}), 1) = 1 for @open;
        my $n = select(my $rout = $rin, undef, undef, $left > 0.2 ? 0.2 : $left);
        next if $n <= 0;
        for my $s (@open) {
            next unless vec($rout, fileno($s->{sock}), 1);
            $s->pump_once(Time::HiRes::time());
        }
    }
}

# ---------------------------------------------------------------------------
# Ids and server-status

# (epoch, n) of an id `<epoch>-<n>`, or () when it is not one.
sub id_parts {
    my ($id) = @_;
    return () unless defined $id && $id =~ /^(\d+)-(\d+)$/;
    return ($1, $2 + 0);
}

# The PanoptesStream* lines of server-status ?auto (all Panoptes* lines).
sub live_status { return PTMTest::status_auto() }

# Wait until PanoptesStreamSubscribers is $n (0 when every stream of the
# files before has been noticed closed).  Returns the last value seen.
sub wait_subscribers {
    my ($n, $timeout) = @_;
    my $end = Time::HiRes::time() + ($timeout || 15);
    my $v;
    while (1) {
        $v = PTMTest::status_auto()->{PanoptesStreamSubscribers};
        return $v if defined $v && $v == $n;
        return $v if Time::HiRes::time() > $end;
        Time::HiRes::sleep(0.1);
    }
}

sub median {
    my @v = sort { $a <=> $b } @_;
    return undef unless @v;
    return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

# ---------------------------------------------------------------------------
# What a feed delivered

my $TB = Test::More->builder;

# The `event: telemetry` blocks of a list of blocks.
sub telemetry_of {
    return grep { ($_->{event} // '') eq 'telemetry' } @_;
}

# check_feed(name => N, blocks => [telemetry blocks, as received],
#            want => [hist_post results], epoch => E,
#            from => n (the first id's n, when known), contiguous => 1
#            (no id skipped: no filter and nobody else posting),
#            maybe => [hist_post results that may or may not be there,
#            once at most: posts that got no answer])
# Checks, each an ok(): every wanted event exactly once, nothing else,
# ids `<E>-<n>` strictly increasing (and contiguous from `from` when
# asked), each data the event's file-form line, and within a stream (site
# or run) seqs in id order.  Returns a summary hash {ids, last_id, n}.
sub check_feed {
    my (%a) = @_;
    my $name = $a{name};
    my @b = @{ $a{blocks} };
    my (%want, %maybe, %seen, @twice, @foreign, @badid, @order, %last_seq, @seqorder);
    $want{ $_->{line} } = $_ for grep { $_->{code} == 200 } @{ $a{want} };
    # A post that got no answer has no line (no seq, no ts): known by its
    # data {"id": ...} (hist_post's default data).
    my %maybe_id;
    for (@{ $a{maybe} || [] }) {
        if (defined $_->{line}) { $maybe{ $_->{line} } = 1 }
        elsif (defined $_->{id}) { $maybe_id{ ',"data":{"id":' . PTMTest::js($_->{id}) . '},' } = 1 }
    }
    my $prev;
    my @ids;
    for my $i (0 .. $#b) {
        my $b = $b[$i];
        my ($e, $n) = id_parts($b->{id});
        if (!defined $n || (defined $a{epoch} && $e ne $a{epoch})) {
            push @badid, "[$i] id " . ($b->{id} // '(none)');
        }
        elsif (defined $prev && $n <= $prev) {
            push @order, "[$i] id $b->{id} after n=$prev";
        }
        elsif ($a{contiguous} && defined $prev && $n != $prev + 1) {
            push @order, "[$i] id $b->{id} after n=$prev: a gap";
        }
        $prev = $n if defined $n;
        push @ids, $n // -1;
        my $d = $b->{data} // '';
        push @twice, "[$i] $b->{id}: " . substr($d, 0, 120) if $seen{$d}++;
        my $mid = $d =~ /(,"data":\{"id":"(?:[^"\\]|\\.)*"\},)/ ? $1 : '';
        if ($want{$d} || $maybe{$d} || $maybe_id{$mid}) {
            my $src = $want{$d};
            if ($src && defined $src->{seq} && defined $n) {
                my $st = $src->{stream} // '';
                push @seqorder, "[$i] $st seq $src->{seq} after seq $last_seq{$st}"
                    if defined $last_seq{$st} && $src->{seq} <= $last_seq{$st};
                $last_seq{$st} = $src->{seq};
            }
        }
        else {
            push @foreign, "[$i] " . ($b->{id} // '?') . ': ' . substr($d, 0, 160);
        }
    }
    my @missing = grep { !$seen{$_} } sort keys %want;
    _ok(!@missing, "$name: every one of the " . scalar(keys %want) . ' events arrived',
        scalar(@missing) . ' missing (of ' . scalar(@b) . ' received), e.g.', @missing);
    _ok(!@twice, "$name: none twice", @twice);
    _ok(!@foreign, "$name: nothing else", @foreign);
    _ok(!@badid && !@order, "$name: ids <epoch>-<n> strictly increasing"
        . ($a{contiguous} ? ', none skipped' : ''), @badid, @order);
    if (defined $a{from}) {
        _ok(@ids && $ids[0] == $a{from}, "$name: the first id is $a{epoch}-$a{from}",
            'first: ' . ($b[0] ? $b[0]{id} // '(none)' : '(no event)'));
    }
    _ok(!@seqorder, "$name: seqs of a stream in id order", @seqorder) if %last_seq;
    return { ids => \@ids, n => scalar(@b), last_id => @b ? $b[-1]{id} : undef };
}

sub _ok {
    my ($ok, $name, @problems) = @_;
    $TB->ok($ok, $name) or $TB->diag(join "\n", map { length $_ > 300 ? substr($_, 0, 300) . '...' : $_ }
        @problems[0 .. ($#problems < 9 ? $#problems : 9)]);
    return $ok;
}

# ---------------------------------------------------------------------------
# Posters

# post_burst($w, $n, $args): $w forked clients, each posting $n events
# with PTMTest::hist_post(%{ $args->($i, $k) }) (one connection per
# request, so the kernel spreads them over the children).  Returns the
# hist_post results (code, seq, ts, line, type, id, ...) of all, in no
# particular order; a client that died gives {code => 0, error}.
sub post_burst {
    my ($w, $n, $args) = @_;
    my $h = start_posters($w, $n, $args);
    return stop_posters($h);
}

# The same, in the background: start_posters returns a handle;
# stop_posters waits for the clients (raising the flag first, so that
# clients posting "until the flag" stop) and returns the results.  With
# $n undef a client posts until the flag is raised.  $h->{done}->() says
# whether every client has finished.
sub start_posters {
    my ($w, $n, $args, %o) = @_;
    my $dir = File::Temp::tempdir('ptm-posters-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my @pids;
    for my $i (0 .. $w - 1) {
        my $pid = fork;
        die "fork: $!" unless defined $pid;
        if (!$pid) {
            $SIG{PIPE} = 'IGNORE';
            my @out;
            eval {
                for (my $k = 0; !defined $n || $k < $n; $k++) {
                    last if !defined $n && -e "$dir/flag";
                    my $r = PTMTest::hist_post(%{ $args->($i, $k) });
                    delete $r->{body} if $r->{code} == 200;
                    $r->{t_answer} = Time::HiRes::time();
                    push @out, $r;
                    Time::HiRes::sleep($o{pause}) if $o{pause};
                }
                1;
            } or push @out, { code => 0, error => "client $i died: $@" };
            my $js = JSON::PP->new->canonical;
            CORE::open(my $fh, '>', "$dir/c$i.tmp") or POSIX::_exit(1);
            print {$fh} $js->encode($_), "\n" for @out;
            CORE::close($fh) or POSIX::_exit(1);
            rename "$dir/c$i.tmp", "$dir/c$i" or POSIX::_exit(1);
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    my $h = { dir => $dir, pids => \@pids, n => $w };
    $h->{done} = sub { !grep { !-e "$dir/c$_" } 0 .. $w - 1 };
    return $h;
}

sub stop_posters {
    my ($h) = @_;
    if (CORE::open(my $fh, '>', "$h->{dir}/flag")) { CORE::close($fh) }
    waitpid $_, 0 for @{ $h->{pids} };
    my @res;
    my $js = JSON::PP->new;
    for my $i (0 .. $h->{n} - 1) {
        CORE::open(my $fh, '<', "$h->{dir}/c$i") or do {
            push @res, { code => 0, error => "client $i left no result" };
            next;
        };
        while (my $l = <$fh>) {
            push @res, $js->decode($l);
        }
    }
    return @res;
}

# ---------------------------------------------------------------------------
# Which httpd child serves a connection: the process holding the server
# end of the TCP connection whose client port is $port (/proc/net/tcp for
# the socket inode, then /proc/<pid>/fd).  Root only.  undef if not found.
sub child_of_connection {
    my ($client_port) = @_;
    my $c = _server_end($client_port) or return undef;
    my $inode = $c->[9];
    for my $pid (PTMTest::httpd_children()) {
        for my $fd (glob "/proc/$pid/fd/*") {
            my $l = readlink $fd;
            return $pid if defined $l && $l eq "socket:[$inode]";
        }
    }
    return undef;
}

# Bytes the server has written to that connection that the client has not
# yet taken (the server end's tx_queue), or undef.
sub send_queue_of_connection {
    my ($client_port) = @_;
    my $c = _server_end($client_port) or return undef;
    my ($tx) = $c->[4] =~ /^([0-9A-F]+):/i;
    return defined $tx ? hex $tx : undef;
}

# The /proc/net/tcp fields of the server end of the established
# connection whose client port is $client_port.
sub _server_end {
    my ($client_port) = @_;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        CORE::open(my $fh, '<', $f) or next;
        <$fh>;
        while (my $l = <$fh>) {
            my @c = split ' ', $l;
            # sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            my ($rem_port) = $c[2] =~ /:([0-9A-F]{4})$/;
            next unless defined $rem_port && hex($rem_port) == $client_port;
            next unless $c[3] eq '01';    # ESTABLISHED
            return \@c;
        }
    }
    return undef;
}

1;
