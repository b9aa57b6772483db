package PTMForward;

# Helpers of the forwarding tests (t/70, t/71): a real MQTT broker and
# subscriber on loopback, httpd started again with a forwarding program,
# and what the consumers received.
#
# The broker is told to queue without limit: mosquitto's default
# (max_queued_messages 1000) drops messages for a subscriber that falls
# behind, and a forwarder that writes its last 1 MiB again after a restart
# sends thousands of lines at once.  What the broker drops is not the
# module's loss; broker_dropped() counts the broker's own reports of it so
# a test can tell the two apart.

use strict;
use warnings;

use Exporter 'import';
use POSIX ();
use Time::HiRes ();
use PTMTest qw(start_server stop_server);

our @EXPORT_OK = qw(
    spawn kill_spawned start_broker broker_dropped restart_with lines_of
);

my @SPAWNED;

# Run @cmd in the background, stdout appended to $out, stderr to
# $dir/spawn.err.  Killed by kill_spawned().
sub spawn {
    my ($dir, $out, @cmd) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $out or POSIX::_exit(126);
        open STDERR, '>>', "$dir/spawn.err";
        exec @cmd or POSIX::_exit(127);
    }
    push @SPAWNED, $pid;
    return $pid;
}

sub kill_spawned { kill TERM => @SPAWNED if @SPAWNED }

# mosquitto on 127.0.0.1:$port and a mosquitto_sub of $topic writing each
# message as one line to $got.
sub start_broker {
    my ($dir, $port, $topic, $got) = @_;
    open my $cf, '>', "$dir/mosquitto.conf" or die "$dir/mosquitto.conf: $!";
    print $cf "listener $port 127.0.0.1\nallow_anonymous true\npersistence false\n",
        "max_queued_messages 0\nlog_dest file $dir/mosquitto.log\n";
    print $cf "user root\n" if $> == 0;
    close $cf;
    spawn($dir, "$dir/mosquitto.out", '/usr/sbin/mosquitto', '-c', "$dir/mosquitto.conf");
    Time::HiRes::sleep(0.5);
    spawn($dir, $got, 'stdbuf', '-oL', '/usr/bin/mosquitto_sub', '-h', '127.0.0.1', '-p', $port,
          '-t', $topic, '-q', '1');
    Time::HiRes::sleep(0.5);
}

# How many times the broker said it dropped messages for a client.
sub broker_dropped {
    my ($dir) = @_;
    open my $fh, '<', "$dir/mosquitto.log" or return 0;
    return scalar grep { /messages are being dropped/ } <$fh>;
}

# Stop httpd and start it again from the snapshot $orig, with
# `PanoptesTelemetryForward "$forward"` (none when undef) and the
# directives of @more.
sub restart_with {
    my ($orig, $forward, @more) = @_;
    stop_server(30) or die "httpd did not stop";
    my $snap = { %$orig, argv => [ @{ $orig->{argv} },
        defined $forward ? ('-c', "PanoptesTelemetryForward \"$forward\"") : (),
        map { ('-c', $_) } @more ] };
    return start_server($snap, 60);
}

# The lines a consumer wrote: [ [n of the id, line], ... ] in arrival order.
sub lines_of {
    my ($file) = @_;
    open my $fh, '<', $file or return [];
    my @l;
    while (my $line = <$fh>) {
        chomp $line;
        push @l, [ $line =~ /^\{"id":"\d+-(\d+)",/ ? $1 : -1, $line ];
    }
    return \@l;
}

1;
