#!/usr/bin/env python3
"""Checks the counting client of bench/stream.py (make bench-stream).

Its throughput run counts, per subscriber, the `event: telemetry` lines
from a start marker to a stop marker and requires exactly `stop id -
start id` of them.  Events that arrive after the stop marker (a POST wrk
had sent before it stopped, answered after the marker was) are outside
that window and must not be counted.  Here a subscriber is fed bytes
over a real socket, as the server would send them.  Run with
`make bench-stream-check` or `python3 bench/test_stream_client.py`.
"""

import os
import select
import socket
import sys
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stream  # noqa: E402

START, STOP = b"start-0123", b"stop-4567"
HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Cache-Control: no-cache\r\n\r\n")


def event(n, data=None):
    return (b"id: 7-%d\nevent: telemetry\ndata: %s\n\n"
            % (n, data or b'{"seq":%d,"type":"bench_stream"}' % n))


class Feed:
    """A listening socket; the subscriber connects to it."""

    def __enter__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.first = None

        def on_message(sub, kind, mid, data, t):
            if kind == "telemetry" and START in data:
                self.first = mid
                sub.count_from_here(STOP)

        self.sub = stream.Subscriber(self.ls.getsockname()[1], on_message)
        self.peer, _ = self.ls.accept()
        return self

    def send(self, data):
        """Send `data` and let the subscriber read all of it (as one read
        or several: each send is read apart from the next)."""
        self.peer.sendall(data)
        while select.select([self.sub.sock], [], [], 0.2)[0]:
            self.sub.readable()

    def __exit__(self, *exc):
        self.sub.close()
        self.peer.close()
        self.ls.close()


class CountUpToTheStopMarker(unittest.TestCase):
    def window(self, feed):
        first = int(feed.first.split("-")[1])
        last = int(feed.sub.stop_id.split(b"-")[1])
        return last - first

    def test_events_after_the_stop_marker_are_not_counted(self):
        with Feed() as f:
            f.send(HEAD + event(10, b'{"marker":"%s"}' % START))
            self.assertEqual(f.first, "7-10")
            f.send(b"".join(event(n) for n in range(11, 20)))
            # The marker, then three stragglers, in one read and the next.
            f.send(event(20, b'{"marker":"%s"}' % STOP) + event(21)
                   + event(22))
            f.send(event(23))
            self.assertEqual(f.sub.stop_id, b"7-20")
            self.assertEqual(f.sub.count, self.window(f))
            self.assertEqual(f.sub.resets, 0)

    def test_marker_and_lines_cut_between_reads(self):
        with Feed() as f:
            f.send(HEAD + event(40, b'{"marker":"%s"}' % START))
            body = (b"".join(event(n) for n in range(41, 60))
                    + event(60, b'{"marker":"%s"}' % STOP)
                    + b"".join(event(n) for n in range(61, 70)))
            cut = body.index(STOP) + 3
            # Cut inside an `event: telemetry` line, then inside the marker.
            mid = body.index(b"event: telemetry", 200) + 5
            for a, b in ((0, mid), (mid, cut), (cut, len(body))):
                f.send(body[a:b])
            self.assertEqual(f.sub.stop_id, b"7-60")
            self.assertEqual(f.sub.count, self.window(f))


if __name__ == "__main__":
    unittest.main(verbosity=2)
