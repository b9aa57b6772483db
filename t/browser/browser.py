#!/usr/bin/env python3
"""A real browser for the tests: Debian's chromium, headless, driven over
the DevTools protocol on a pipe (--remote-debugging-pipe), with nothing but
the standard library: no port to pick, no websocket, no npm.

As a program, it loads one page and prints the page's verdict:

    python3 t/browser/browser.py URL [--timeout S] [--screenshot FILE]

A page under test reports by setting `window.ptmVerdict` to an object
with at least `ok` (true or false) and, when it fails, `failures` (a list
of strings); anything else it holds is passed on.  The runner waits for it
up to the timeout, and also collects what a page must not have: console
errors, uncaught exceptions, failed requests and answers of 400 or more.
Exit status: 0 when the verdict is ok and nothing of the sort was seen
(`--allow-errors` ignores them), 1 otherwise, 2 when the browser could
not be driven at all.

As a module (the tests of the live feed and the dashboard), `Browser`:

    with Browser() as b:
        b.navigate(url)
        b.wait_for("window.ptmState === 'live'", timeout=5)
        b.evaluate("document.title")
        b.screenshot("build/browser/page.png")
        v = b.verdict(timeout=30)
        b.problems()            # console errors, exceptions, failed requests

Environment: CHROMIUM (default: chromium, chromium-headless-shell or
google-chrome in PATH), PTM_BROWSER_ARGS (more command-line flags).
"""

import argparse
import base64
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time


class BrowserError(Exception):
    pass


def find_chromium():
    for name in (os.environ.get("CHROMIUM"), "chromium",
                 "chromium-headless-shell", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise BrowserError("no chromium: install Debian's chromium "
                       "(sh mk/ensure-packages chromium)")


class Browser:
    """One headless chromium with one page, driven over a DevTools pipe."""

    def __init__(self, width=1280, height=900, args=()):
        self.profile = tempfile.mkdtemp(prefix="ptm-chromium-")
        # The browser reads commands from fd 3 and writes to fd 4.
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def fds():
            a, b = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        cmd = [find_chromium(), "--headless", "--remote-debugging-pipe",
               "--user-data-dir=" + self.profile, "--no-first-run",
               "--no-default-browser-check", "--disable-gpu",
               "--disable-extensions", "--disable-background-networking",
               "--disable-sync", "--disable-component-update",
               "--metrics-recording-only", "--mute-audio",
               # Containers often have a tiny /dev/shm.
               "--disable-dev-shm-usage",
               "--window-size=%d,%d" % (width, height)]
        if os.geteuid() == 0:
            # chromium's sandbox refuses to run as root.
            cmd.append("--no-sandbox")
        cmd += list(args) + os.environ.get("PTM_BROWSER_ARGS", "").split()
        cmd.append("about:blank")
        self.log = open(os.path.join(self.profile, "chromium.log"), "wb")
        # Its own process group, so that close() ends its helpers too.
        self.proc = subprocess.Popen(cmd, preexec_fn=fds, close_fds=False,
                                     start_new_session=True,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        os.close(to_child_r)
        os.close(from_child_w)
        self._next = 0
        self._lock = threading.Lock()
        self._waiting = {}
        self.events = queue.Queue()
        self._requests = {}
        self._problems = []
        self.console = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session = None
        try:
            targets = self.call("Target.getTargets", timeout=30)
            page = [t for t in targets["targetInfos"] if t["type"] == "page"]
            if not page:
                page = [self.call("Target.createTarget", url="about:blank")]
            self.session = self.call("Target.attachToTarget",
                                     targetId=page[0]["targetId"],
                                     flatten=True)["sessionId"]
            for domain in ("Runtime", "Page", "Network", "Log"):
                self.call(domain + ".enable")
        except BaseException:
            self.close()
            raise

    # --- the protocol -------------------------------------------------------
    def _read(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                self._dispatch(json.loads(raw))
        with self._lock:
            for q in self._waiting.values():
                q.put({"error": {"message": "the browser went away"}})

    def _dispatch(self, msg):
        if "id" in msg:
            with self._lock:
                q = self._waiting.pop(msg["id"], None)
            if q:
                q.put(msg)
            return
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Network.requestWillBeSent":
            self._requests[p["requestId"]] = p["request"]["url"]
        elif method == "Network.responseReceived":
            r = p["response"]
            if r["status"] >= 400:
                self._problems.append("HTTP %d for %s" % (r["status"],
                                                           r["url"]))
        elif method == "Network.loadingFailed":
            if not p.get("canceled"):
                self._problems.append("request failed (%s): %s" % (
                    p.get("errorText"), self._requests.get(p["requestId"])))
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            self._problems.append("uncaught: %s" % (
                d.get("exception", {}).get("description") or d.get("text")))
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", "")))
                            for a in p.get("args", []))
            self.console.append("%s: %s" % (p["type"], text))
            if p["type"] in ("error", "assert"):
                self._problems.append("console.%s: %s" % (p["type"], text))
        elif method == "Log.entryAdded":
            e = p["entry"]
            self.console.append("%s: %s" % (e["level"], e["text"]))
            if e["level"] == "error":
                self._problems.append("console: %s (%s)" % (
                    e["text"], e.get("url", "")))
        self.events.put(msg)

    def call(self, method, timeout=10, **params):
        """Send one command; its result, or BrowserError."""
        with self._lock:
            self._next += 1
            n = self._next
            q = self._waiting[n] = queue.Queue()
        msg = {"id": n, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        try:
            os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        except OSError as e:
            raise BrowserError("%s: the browser went away (%s)"
                               % (method, e)) from None
        try:
            answer = q.get(timeout=timeout)
        except queue.Empty:
            raise BrowserError("%s: no answer in %g s" % (method, timeout)) \
                from None
        if "error" in answer:
            raise BrowserError("%s: %s" % (method, answer["error"]))
        return answer.get("result", {})

    # --- what tests use ------------------------------------------------------
    def navigate(self, url):
        r = self.call("Page.navigate", url=url)
        if r.get("errorText"):
            raise BrowserError("cannot load %s: %s" % (url, r["errorText"]))

    def evaluate(self, expression, timeout=10):
        """The value of a JavaScript expression (promises awaited)."""
        r = self.call("Runtime.evaluate", timeout=timeout,
                      expression=expression, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            raise BrowserError("%s: %s" % (expression, r["exceptionDetails"]
                                           .get("text")))
        return r["result"].get("value")

    def wait_for(self, expression, timeout=10, interval=0.05):
        """Poll until the expression is truthy; its value, or BrowserError."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.evaluate(expression)
            if v:
                return v
            if time.monotonic() > deadline:
                raise BrowserError("timed out after %g s waiting for %s"
                                   % (timeout, expression))
            time.sleep(interval)

    def verdict(self, timeout=30):
        """window.ptmVerdict once the page has set it (None on timeout)."""
        try:
            raw = self.wait_for("window.ptmVerdict === undefined ? null : "
                                "JSON.stringify(window.ptmVerdict)",
                                timeout=timeout, interval=0.1)
        except BrowserError:
            return None
        return json.loads(raw)

    def screenshot(self, path, full_page=False):
        params = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", timeout=30, **params)
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data["data"]))

    def problems(self):
        """Console errors, uncaught exceptions, failed requests so far."""
        return list(self._problems)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.call("Browser.close", timeout=5)
            except BrowserError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_page(url, timeout=30, screenshot=None, allow_errors=False):
    """Load `url`, wait for its verdict: (ok, verdict, problems)."""
    with Browser() as b:
        b.navigate(url)
        v = b.verdict(timeout)
        if screenshot:
            b.screenshot(screenshot)
        problems = b.problems()
    if v is None:
        v = {"ok": False,
             "failures": ["no verdict within %g s" % timeout]}
    ok = bool(v.get("ok")) and (allow_errors or not problems)
    return ok, v, problems


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url")
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--screenshot")
    ap.add_argument("--allow-errors", action="store_true")
    a = ap.parse_args(argv)
    try:
        ok, v, problems = run_page(a.url, a.timeout, a.screenshot,
                                   a.allow_errors)
    except BrowserError as e:
        print("browser: %s" % e, file=sys.stderr)
        return 2
    print(json.dumps(v, indent=1))
    for p in problems:
        print("browser problem: " + p, file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
