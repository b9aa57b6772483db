# GET /stream across a graceful restart and a graceful stop (SPEC §12.3:
# streams end within 2 s, never hold httpd up, and resume without loss):
#   * graceful restart (SIGUSR1) with three streams open (both mounts, one
#     with a type filter) while two clients keep posting: every stream
#     ends within 2 s of the signal, its last block `retry: 1000`; httpd
#     logs "resuming normal operations" with the same parent, and every
#     child of the old generation exits; each stream, resumed with the
#     last id it got, gets every event posted before, during and after
#     the restart exactly once, in id order (no reset: same epoch);
#   * graceful stop (SIGWINCH) with two streams open: they end within 2 s
#     with `retry: 1000`, and httpd exits (a stream would hold it up for
#     ever: no GracefulShutdownTimeout); started again, 20 events later,
#     the streams resume with exactly those.
# The 2 s are measured from the signal to the end of the stream as the
# client reads it (both on this machine, select() on the sockets): no
# slack is added.
use strict;
use warnings;
use Test::More;
use Apache::Test ();
use Time::HiRes ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use PTMTest qw(:DEFAULT :events httpd_pid httpd_children proc_alive server_snapshot
    start_server stop_server server_answers restore_server error_log_size wait_for_log);
use PTMStream qw(id_parts wait_subscribers start_posters stop_posters pump check_feed telemetry_of);

my $MPM = $ENV{PTM_MPM} // 'event';
my $orig = server_snapshot();
$orig->{test_pid} = $$;
END { restore_server($orig) }

ensure_no_run();
my $T = "st63-$$";
is(wait_subscribers(0, 20), 0, 'no stream open at the start') or BAIL_OUT('streams still counted');

# A stream record: {name, s, open (args), filter (type or undef), blocks}.
sub subscribe {
    my ($name, %a) = @_;
    my $f = delete $a{filter};
    my $s = PTMStream->open(%a, defined $f ? (query => qenc(type => $f)) : ());
    my $b = $s->next_block(10);
    is($b && $b->{event}, 'current', "$name: event: current first") or diag PTMStream::describe($b);
    return { name => $name, s => $s, open => \%a, filter => $f, blocks => [], snap => $b };
}

sub collect {
    my ($subs) = @_;
    for my $x (@$subs) {
        push @{ $x->{blocks} }, splice @{ $x->{s}{queue} };
    }
}

sub last_id {
    my ($x) = @_;
    for my $b (reverse @{ $x->{blocks} }) {
        return $b->{id} if defined $b->{id};
    }
    return $x->{snap}{id};
}

# After the signal: each stream ends within 2 s, `retry: 1000` last.
sub check_end {
    my ($what, $subs, $t0) = @_;
    pump(10, [ map { $_->{s} } @$subs ], sub { !grep { !$_->{s}->ended } @$subs });
    collect($subs);
    for my $x (@$subs) {
        my $s = $x->{s};
        my $at = $s->ended_at;
        my $dt = defined $at ? $at - $t0 : undef;
        ok(defined $dt && $dt <= 2.0, sprintf '%s, %s: the stream ended %s after the signal (at most 2 s)',
            $what, $x->{name}, defined $dt ? sprintf('%.3f s', $dt) : 'not within 10 s');
        my $last = $x->{blocks}[-1];
        ok($last && ($last->{retry} // '') eq '1000' && @{ $last->{fields} } == 1,
            "$what, $x->{name}: its last block is retry: 1000") or diag PTMStream::describe($last);
        my @odd = grep { ($_->{event} // '') ne 'telemetry' && !defined $_->{retry} } @{ $x->{blocks} };
        ok(!@odd, "$what, $x->{name}: nothing but events and the retry") or diag PTMStream::describe($odd[0]);
        $s->close;
    }
}

# Resume each stream from its last id and check it got everything.
sub resume_all {
    my ($what, $subs, $epoch, $acked, $maybe) = @_;
    for my $x (@$subs) {
        my $want = [ grep { !defined $x->{filter} || $_->{type} eq $x->{filter} } @$acked ];
        my $mb = [ grep { !defined $x->{filter} || ($_->{type} // '') eq $x->{filter} } @$maybe ];
        my $from = last_id($x);
        my $s = PTMStream->open(%{ $x->{open} }, last_event_id => $from,
                                defined $x->{filter} ? (query => qenc(type => $x->{filter})) : ());
        is($s->{code}, 200, "$what, $x->{name}: resumed from $from: 200");
        my $before = telemetry_of(@{ $x->{blocks} });
        my @after;
        pump(30, [$s], sub {
            push @after, splice @{ $s->{queue} };
            return $before + @after >= @$want;
        });
        pump(0.3, [$s]);
        push @after, splice @{ $s->{queue} };
        my @odd = grep { ($_->{event} // '') ne 'telemetry' } @after;
        ok(!@odd, "$what, $x->{name}: the resumed stream has only event: telemetry (no reset, no snapshot)")
            or diag join "\n", map { PTMStream::describe($_) } @odd[0 .. ($#odd < 2 ? $#odd : 2)];
        check_feed(name => "$what, $x->{name}: before + after", epoch => $epoch,
                   blocks => [ telemetry_of(@{ $x->{blocks} }, @after) ], want => $want, maybe => $mb,
                   contiguous => !defined $x->{filter});
        $s->close;
    }
}

# --- graceful restart ------------------------------------------------------------------------------
{
    my $what = 'graceful restart';
    my @subs = (subscribe('prefix', mount => 'prefix'), subscribe('root', mount => 'root'),
                subscribe('prefix type=c0', mount => 'prefix', filter => "$T-c0"));
    my ($epoch) = id_parts($subs[0]{snap}{id});
    my $h = start_posters(2, undef, sub {
        my ($i, $k) = @_;
        return { type => "$T-c" . ($k % 2 ? $i : 0), id => "g$i-$k", mount => ($k + $i) % 2 ? 'root' : 'prefix',
                 ($k % 4 == 3 ? (sp => 0) : ()) };
    }, pause => 0.01);
    pump(1.5, [ map { $_->{s} } @subs ]);
    collect(\@subs);
    cmp_ok(scalar(telemetry_of(@{ $subs[0]{blocks} })), '>', 0, "$what: events flow before the signal");
    my $pid0 = httpd_pid();
    my @old = httpd_children($pid0);
    my $off = error_log_size();
    my $t0 = Time::HiRes::time();
    kill USR1 => $pid0;
    check_end($what, \@subs, $t0);
    ok(wait_for_log($off, qr/resuming normal operations/, 30), "$what: httpd logged 'resuming normal operations'");
    is(httpd_pid(), $pid0, "$what: same parent");
    my $end = Time::HiRes::time() + 10;
    Time::HiRes::sleep(0.05) while grep({ proc_alive($_) } @old) && Time::HiRes::time() < $end;
    my @left = grep { proc_alive($_) } @old;
    ok(!@left, sprintf "%s: every child of the old generation exited (%.2f s after the signal)", $what,
        Time::HiRes::time() - $t0) or diag "still there: @left";
    Time::HiRes::sleep(1);    # more events on the new generation
    my @res = stop_posters($h);
    my @acked = grep { $_->{code} == 200 } @res;
    my @maybe = grep { $_->{code} != 200 } @res;
    diag sprintf "%s: %d events posted, %d without an answer", $what, scalar(@res), scalar(@maybe);
    is(scalar(@maybe), 0, "$what: every post was answered");
    cmp_ok(scalar(@acked), '>', 20, "$what: events were posted throughout");
    my ($e2) = id_parts(status_auto()->{PanoptesEventIdNext});
    is($e2, $epoch, "$what: the epoch is unchanged");
    resume_all($what, \@subs, $epoch, \@acked, \@maybe);
    is(wait_subscribers(0, 15), 0, "$what: PanoptesStreamSubscribers: 0 afterwards");
}

# --- graceful stop ----------------------------------------------------------------------------------
{
    my $what = 'graceful stop';
    my @subs = (subscribe('prefix', mount => 'prefix'), subscribe('root type=s1', mount => 'root', filter => "$T-s1"));
    my ($epoch) = id_parts($subs[0]{snap}{id});
    my @pre = map { hist_post(type => "$T-s" . ($_ % 2), id => "s-pre$_") } 1 .. 6;
    pump(10, [ map { $_->{s} } @subs ], sub { collect(\@subs); telemetry_of(@{ $subs[0]{blocks} }) >= 6 });
    my $pid0 = httpd_pid();
    my @procs = ($pid0, httpd_children($pid0));
    my $t0 = Time::HiRes::time();
    kill WINCH => $pid0;
    check_end($what, \@subs, $t0);
    my $end = Time::HiRes::time() + 15;
    Time::HiRes::sleep(0.05) while grep({ proc_alive($_) } @procs) && Time::HiRes::time() < $end;
    my @left = grep { proc_alive($_) } @procs;
    ok(!@left, sprintf '%s: httpd exited (%.2f s after the signal)', $what, Time::HiRes::time() - $t0)
        or diag "still there: @left";
    stop_server(30) if @left;
    ok(start_server($orig, 60), "$what: httpd started again");
    my @post = map { hist_post(type => "$T-s" . ($_ % 2), id => "s-post$_", mount => $_ % 3 ? 'prefix' : 'root') } 1 .. 20;
    is(scalar(grep { $_->{code} == 200 } @post), 20, "$what: 20 events after the start");
    my ($e2) = id_parts(status_auto()->{PanoptesEventIdNext});
    is($e2, $epoch, "$what: the epoch is unchanged (the state survives a stop)");
    resume_all($what, \@subs, $epoch, [ @pre, @post ], []);
    is(wait_subscribers(0, 15), 0, "$what: PanoptesStreamSubscribers: 0 afterwards");
}

ok(httpd_pid() && server_answers(), 'httpd runs and answers at the end');

done_testing();
