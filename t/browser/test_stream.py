#!/usr/bin/env python3
"""GET /stream (SPEC 12.3) in a real browser: Debian's chromium, headless
(t/browser/browser.py), loads t/browser/pages/stream.html from an httpd of
its own (t/browser/server.py: the standalone config of `make run`, with
PanoptesTelemetryStreamTimeout 2 so that the server ends each stream with
`retry: 1000` after 2 s).

The page's EventSource must get the snapshot holding the event this test
posted first, then the events the page posts, in order; when the server
ends the stream, the browser reconnects by itself with Last-Event-ID, and
the events posted in the gap arrive exactly once (the page's checks are in
stream.js).  Twice: the server ends the stream at its StreamTimeout, and
httpd restarts gracefully (SIGUSR1) while the page listens.  Here: the page's verdict, no console error or failed request,
the reconnect's Last-Event-ID as the server saw it, no crash in the log.

    python3 t/browser/test_stream.py        (make test-browser)

Environment: as server.py and browser.py; PTM_BROWSER_SCREENSHOTS (default
build/browser) is where the page's screenshot is written.
The output ends with "test-browser: N passed, M failed".
"""

import os
import signal
import sys
import time
import unittest
import uuid

sys.dont_write_bytecode = True          # no __pycache__ in t/browser/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from browser import Browser  # noqa: E402
from server import TOP, Server  # noqa: E402
import suite  # noqa: E402

SHOTS = os.environ.get("PTM_BROWSER_SCREENSHOTS",
                       os.path.join(TOP, "build", "browser"))
TIMEOUT = 40


class StreamInBrowser(unittest.TestCase):
    """The server ends the stream itself: PanoptesTelemetryStreamTimeout."""

    name = "stream"
    extra = ["PanoptesTelemetryStreamTimeout 2"]

    @classmethod
    def end_stream(cls, browser):
        """Make the server end the page's stream (here: it does by itself)."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server(cls.name, pages={"/browser/": "t/browser/pages"},
                            extra=cls.extra)
        cls.server.start()
        try:
            cls.token = uuid.uuid4().hex
            code, ev = cls.server.http("POST", "/event", {
                "type": "browser_before", "data": {"token": cls.token},
                "store_permanently": False})
            assert code == 200, (code, ev)
            url = "%s/browser/stream.html?token=%s" % (cls.server.url,
                                                        cls.token)
            t0 = time.monotonic()
            with Browser() as b:
                b.navigate(url)
                cls.end_stream(b)
                cls.verdict = b.verdict(TIMEOUT)
                cls.seconds = time.monotonic() - t0
                b.screenshot(os.path.join(SHOTS, cls.name + ".png"))
                cls.problems = b.problems()
                cls.console = b.console
        finally:
            # Stopping ends the streams, so their log lines are written.
            cls.status = cls.server.stop()
        print("%s: page verdict after %.1f s: %s" % (cls.name, cls.seconds,
                                                     cls.verdict))

    def test_1_the_page_saw_snapshot_live_and_resumed_events(self):
        self.assertIsNotNone(self.verdict, "no verdict within %d s; "
                             "console: %s" % (TIMEOUT, self.console))
        self.assertEqual(self.verdict["failures"], [], self.verdict)
        self.assertTrue(self.verdict["ok"], self.verdict)

    def test_2_no_console_error_nor_failed_request(self):
        self.assertEqual(self.problems, [])

    def test_3_the_browser_resumed_with_last_event_id(self):
        self.assertIsNotNone(self.verdict)
        streams = [r for r in self.server.requests()
                   if r[1].split("?")[0] == "/stream"]
        self.assertGreaterEqual(len(streams), 2, streams)
        self.assertEqual([r for r in streams if r[2] != 200], [], streams)
        self.assertIsNone(streams[0][3], "the first request has no id")
        # Each reconnect carries the id of the last message received.
        self.assertTrue(all(r[3] for r in streams[1:]), streams)
        self.assertIn(self.verdict["idAtGap"], [r[3] for r in streams[1:]],
                      streams)

    def test_4_httpd_stopped_cleanly(self):
        self.assertEqual(self.server.crash_lines(), [])
        self.assertEqual(self.status, 0, self.server.output()[-2000:])


class StreamAcrossGracefulRestart(StreamInBrowser):
    """httpd restarts gracefully under the page: the old generation's
    stream ends within 2 s, the browser resumes on the new one."""

    name = "stream-graceful"
    extra = []

    @classmethod
    def end_stream(cls, browser):
        browser.wait_for("window.ptmPhase === 'live-done'", timeout=15)
        cls.restarted_at = time.monotonic()
        os.kill(cls.server.proc.pid, signal.SIGUSR1)

    def test_5_the_restart_happened(self):
        self.assertEqual(self.server.output().count("resuming normal "
                                                    "operations"), 2,
                         self.server.output()[-2000:])


if __name__ == "__main__":
    suite.main(__name__, "test-browser")
