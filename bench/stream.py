#!/usr/bin/env python3
"""make bench, live-feed part: GET /stream (SPEC 12.3) under load.

One generated httpd (bench.py's Server: event MPM, 2 x 64 threads,
keep-alive), 8 subscribers on /api/stream (the default
PanoptesTelemetryStreamMax), its recent-events ring first filled as on a
unit that has run for a while (BENCH_STREAM_RING=0 leaves it as it is),
and two measures:

  latency: 100 events/s POSTed round-robin over 8 keep-alive connections
      for BENCH_STREAM_SECONDS; for every event and every subscriber, the
      time from the POST's answer (its last byte read) to the event's
      arrival at the subscriber.  p50 and p99 over all of them: goal
      p99 <= 5 ms, must <= 50 ms.  An event may reach a subscriber before
      its POST's answer is read (the module wakes the subscribers before it
      answers): that counts as 0.  Every subscriber must get every event
      once, in id order.
  throughput: POST /event with wrk at c=8 (bench/wrk.lua, as bench.py),
      with no subscriber and with 8 attached, interleaved within each of
      BENCH_REPS repetitions; the median of the ratios with / none must be
      >= 0.8.  Each subscriber must receive every event posted meanwhile,
      no reset, no gap.

The measuring client is one thread over non-blocking sockets (select),
timestamps from time.monotonic_ns(); while wrk runs the subscribers only
count bytes (its CPU use is printed, to show it is not the bottleneck).
The exit status is 1 when a MUST bound or a correctness check fails.

Environment: BENCH_SECONDS and BENCH_REPS as bench.py (each wrk run),
BENCH_STREAM_SECONDS (latency run, default 10), BENCH_STREAM_RATE (events
per second, default 100), BENCH_STREAM_RING (0: the ring is not filled
first), BENCH_STREAM_RECENT (PanoptesTelemetryRecent, default the
module's), BENCH_PORT (the server listens there, after bench.py is done
with it).
"""

import json
import math
import os
import re
import selectors
import socket
import statistics
import sys
import threading
import time
import uuid

import bench

WORK = os.path.join(bench.TOP, "build", "bench-stream")
PORT = bench.PORT
SUBSCRIBERS = 8
POSTERS = 8
RATE = float(os.environ.get("BENCH_STREAM_RATE", "100"))
LAT_SECONDS = float(os.environ.get("BENCH_STREAM_SECONDS", "10"))
FILL = os.environ.get("BENCH_STREAM_RING", "1") != "0"
RECENT = os.environ.get("BENCH_STREAM_RECENT")   # PanoptesTelemetryRecent
TYPE = "bench_stream"
GOAL_P99_MS, MUST_P99_MS, MUST_RATIO = 5.0, 50.0, 0.8
TELEMETRY = b"event: telemetry\n"
DRAIN_PAUSE = 0.01


def now():
    return time.monotonic_ns()


class Subscriber:
    """One GET /api/stream over HTTP/1.0 (no chunked framing to undo).

    In `parse` mode every message is split out and handed to `on_message`
    (kind, id, data); in `count` mode the bytes are only scanned for
    `event: telemetry` lines (cheap enough to keep up with wrk) until
    `stop_token` shows up, whose message's id is kept."""

    def __init__(self, port, on_message=None):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(b"GET /api/stream HTTP/1.0\r\nHost: localhost\r\n"
                          b"Accept: text/event-stream\r\n\r\n")
        self.sock.setblocking(False)
        self.head = None
        self.buf = b""
        self.on_message = on_message
        self.mode = "parse"
        self.count = 0
        self.resets = 0
        self.tail = b""
        self.stop_token = None
        self.stop_id = None
        self.after = 0          # counted events after the stop marker
        self.closed = False

    def readable(self):
        try:
            chunk = self.sock.recv(1 << 18)
        except BlockingIOError:
            return
        self.feed(chunk, now())

    def feed(self, chunk, t):
        """Take the bytes `chunk` read at `t` (b"": the end)."""
        if not chunk:
            self.closed = True
            return
        if self.head is None:
            self.buf += chunk
            if b"\r\n\r\n" not in self.buf:
                return
            self.head, chunk = self.buf.split(b"\r\n\r\n", 1)
            self.buf = b""
            status = self.head.split(b"\r\n", 1)[0]
            if (b" 200 " not in status + b" "
                    or b"text/event-stream" not in self.head):
                raise RuntimeError("GET /stream answered: %r"
                                   % self.head[:300])
        if self.mode == "parse":
            self.buf += chunk
            while b"\n\n" in self.buf:
                msg, self.buf = self.buf.split(b"\n\n", 1)
                kind, mid, data = "message", None, None
                for line in msg.split(b"\n"):
                    if line.startswith(b"event: "):
                        kind = line[7:].decode()
                    elif line.startswith(b"id: "):
                        mid = line[4:].decode()
                    elif line.startswith(b"data: "):
                        data = line[6:]
                if data is not None or kind != "message":
                    self.on_message(self, kind, mid, data, t)
        elif self.stop_id is None:
            # Up to the stop marker only: what comes after it (a POST
            # wrk had sent before it stopped, answered after the marker)
            # is not of the count's window (ids first..stop).
            window = self.tail + chunk
            end = len(window)
            if self.stop_token:
                p = window.find(self.stop_token)
                if p >= 0:
                    i = window.rfind(b"id: ", 0, p)
                    self.stop_id = window[i + 4:window.index(b"\n", i)]
                    end = p
            self.count += (window.count(TELEMETRY, 0, end)
                           - self.tail.count(TELEMETRY))
            self.resets += (window.count(b"event: reset\n", 0, end)
                            - self.tail.count(b"event: reset\n"))
            if end < len(window):
                self.after = window.count(TELEMETRY, end)
            # Longer than any message: an id line is never cut off.
            self.tail = window[-8192:]
        else:
            # After the marker (a pattern cut between two reads is lost:
            # this count is for the record only).
            self.after += chunk.count(TELEMETRY)

    def count_from_here(self, stop_token):
        """Switch to counting; what was buffered is counted too."""
        self.mode = "count"
        self.stop_token = stop_token
        left, self.buf = self.buf, b""
        self.count += left.count(TELEMETRY)
        self.tail = left[-8192:]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Poster:
    """One keep-alive connection POSTing /api/event, one at a time."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.busy = None        # the k awaiting its answer
        self.buf = b""

    def send(self, k, body):
        req = (b"POST /api/event HTTP/1.1\r\nHost: localhost\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % len(body)) + body
        self.sock.sendall(req)      # small: the socket buffer takes it
        self.busy = k

    def close(self):
        self.sock.close()

    def readable(self):
        """(k, answer time, status) once a whole answer is in, else None."""
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return None
        t = now()
        if not chunk:
            raise RuntimeError("a POST connection was closed")
        self.buf += chunk
        if b"\r\n\r\n" not in self.buf:
            return None
        head, body = self.buf.split(b"\r\n\r\n", 1)
        m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        if not m:
            raise RuntimeError("POST answer without Content-Length: %r"
                               % head)
        if len(body) < int(m.group(1)):
            return None
        self.buf = body[int(m.group(1)):]
        k, self.busy = self.busy, None
        return k, t, int(head.split(b" ", 2)[1])


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def status_values(server):
    code, body = bench.http("GET", "/server-status?auto", base=server.base)
    if code != 200:
        return {}
    return {k: v.strip() for k, _, v in (line.partition(":") for line in
                                          body.decode().splitlines())}


def fill_ring(server, problems):
    """As on a unit that has run for a while: the recent-events ring full
    (every catch-up of a subscriber looks into it)."""
    st = status_values(server)
    if "PanoptesRecentSize" not in st:
        problems.append("server-status reports no PanoptesRecentSize")
        return st
    size = int(st["PanoptesRecentSize"])
    for _ in range(30):
        if int(st.get("PanoptesRecentBytes", 0)) >= 0.9 * size:
            break
        bench.wrk("event", "/api/event", 8, 1, base=server.base)
        st = status_values(server)
    else:
        problems.append("the ring did not fill: %s of %d bytes"
                        % (st.get("PanoptesRecentBytes"), size))
    return st


def wait_subscribers(server, want, timeout=15):
    """Until server-status says `want` subscribers (or it says nothing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, body = bench.http("GET", "/server-status?auto",
                                base=server.base)
        m = re.search(rb"PanoptesStreamSubscribers: (\d+)", body or b"")
        if code != 200 or not m:
            time.sleep(2)       # not reported: give the server time
            return None
        if int(m.group(1)) == want:
            return want
        time.sleep(0.05)
    return int(m.group(1))


def open_subscribers(port, on_message, sel):
    subs = [Subscriber(port, on_message) for _ in range(SUBSCRIBERS)]
    for s in subs:
        sel.register(s.sock, selectors.EVENT_READ, s)
    return subs


def latency_run(server, problems):
    """100 events/s over 8 connections to 8 subscribers: latencies (ns)."""
    sel = selectors.DefaultSelector()
    run = uuid.uuid4().hex[:8]
    n_events = int(LAT_SECONDS * RATE)
    snapshots = {}
    arrivals = {}               # (subscriber index, k) -> ns
    last_n = {}
    order_errors = []
    index = {}

    def on_message(sub, kind, mid, data, t):
        i = index[sub]
        if kind == "current":
            snapshots[i] = snapshots.get(i, 0) + 1
        elif kind == "telemetry":
            n = int(mid.split("-")[1])
            if i in last_n and n <= last_n[i]:
                order_errors.append((i, mid))
            last_n[i] = n
            d = json.loads(data)["data"]
            if isinstance(d, dict) and d.get("run") == run:
                if (i, d["k"]) in arrivals:
                    problems.append("subscriber %d got event %d twice"
                                    % (i, d["k"]))
                arrivals[(i, d["k"])] = t
        else:
            problems.append("subscriber %d got event: %s" % (i, kind))

    subs = open_subscribers(server.port, on_message, sel)
    for i, s in enumerate(subs):
        index[s] = i
    deadline = time.monotonic() + 10
    while len(snapshots) < SUBSCRIBERS and time.monotonic() < deadline:
        for key, _ in sel.select(0.5):
            key.data.readable()
    if len(snapshots) < SUBSCRIBERS:
        problems.append("only %d of %d subscribers got the snapshot"
                        % (len(snapshots), SUBSCRIBERS))
    posters = [Poster(server.port) for _ in range(POSTERS)]
    for p in posters:
        sel.register(p.sock, selectors.EVENT_READ, p)
    sent, answered = {}, {}
    period = int(1e9 / RATE)
    t0 = now() + 50 * 1000 * 1000
    k = 0
    late = 0
    end_by = None
    while True:
        t = now()
        if k < n_events and t >= t0 + k * period:
            free = [p for p in posters if p.busy is None]
            if free:
                p = posters[k % POSTERS] if posters[k % POSTERS].busy is None \
                    else free[0]
                body = json.dumps({"type": TYPE, "data": {"run": run, "k": k},
                                   "store_permanently": False}).encode()
                sent[k] = now()
                p.send(k, body)
                k += 1
            else:
                late += 1
        if k == n_events and end_by is None:
            end_by = time.monotonic() + 2
        if end_by is not None and (
                (len(answered) == n_events
                 and len(arrivals) == n_events * SUBSCRIBERS)
                or time.monotonic() > end_by):
            break
        wait = 0.5 if k >= n_events else max(
            0, (t0 + k * period - now()) / 1e9)
        for key, _ in sel.select(wait):
            obj = key.data
            if isinstance(obj, Poster):
                got = obj.readable()
                if got:
                    answered[got[0]] = got[1]
                    if got[2] != 200:
                        problems.append("POST %d answered %d"
                                        % (got[0], got[2]))
            else:
                obj.readable()
    for s in subs + posters:
        sel.unregister(s.sock)
        s.close()
    if late:
        problems.append("the client fell behind its schedule %d times "
                        "(all 8 connections busy)" % late)
    if order_errors:
        problems.append("ids out of order: %s" % order_errors[:5])
    missing = n_events * SUBSCRIBERS - len(arrivals)
    if missing:
        problems.append("%d of %d deliveries missing" % (
            missing, n_events * SUBSCRIBERS))
    from_answer, from_send, early = [], [], 0
    for (i, kk), t in arrivals.items():
        if kk not in answered:
            continue
        d = t - answered[kk]
        early += d < 0
        from_answer.append(max(0, d))
        from_send.append(t - sent[kk])
    from_answer.sort()
    from_send.sort()
    return {"events": n_events, "deliveries": len(arrivals),
            "from_answer": from_answer, "from_send": from_send,
            "early": early}


class Drain(threading.Thread):
    """8 subscribers that only count, in a thread of their own."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.sel = selectors.DefaultSelector()
        self.ready = {}
        self.first_id = {}
        self.start_token = ("start-%s" % uuid.uuid4().hex).encode()
        self.stop_token = ("stop-%s" % uuid.uuid4().hex).encode()
        self.subs = open_subscribers(port, self.on_message, self.sel)
        self.stopping = False
        self.cpu = 0.0
        self.error = None

    def on_message(self, sub, kind, mid, data, t):
        if kind == "telemetry" and self.start_token in data:
            self.first_id[sub] = mid
            sub.count_from_here(self.stop_token)
        elif kind not in ("current", "telemetry"):
            self.error = "got event: %s" % kind

    def run(self):
        c0 = time.thread_time()
        try:
            while not self.stopping:
                for key, _ in self.sel.select(0.2):
                    key.data.readable()
                # Let the bytes pile up: one recv then takes many events
                # (a recv per event would cost this client more CPU than
                # the server spends on them).
                time.sleep(DRAIN_PAUSE)
        except Exception as e:      # reported by the main thread
            self.error = repr(e)
        self.cpu = time.thread_time() - c0

    def done(self):
        return all(s.stop_id is not None for s in self.subs)

    def stop(self):
        self.stopping = True
        self.join()
        for s in self.subs:
            self.sel.unregister(s.sock)
            s.close()


def post_marker(server, token):
    code, _ = bench.http("POST", "/api/event", {
        "type": TYPE, "data": {"marker": token.decode()},
        "store_permanently": False}, base=server.base)
    if code != 200:
        sys.exit("bench stream: a marker POST answered %d" % code)


def throughput_with(server, problems, rep):
    drain = Drain(server.port)
    drain.start()
    # Every subscriber attached and counting before wrk starts.
    post_marker(server, drain.start_token)
    deadline = time.monotonic() + 10
    while len(drain.first_id) < SUBSCRIBERS and time.monotonic() < deadline:
        time.sleep(0.02)
    if len(drain.first_id) < SUBSCRIBERS:
        drain.stop()
        sys.exit("bench stream: only %d subscribers started (%s)"
                 % (len(drain.first_id), drain.error))
    r = wrk(server)
    wall = r["duration_us"] / 1e6
    post_marker(server, drain.stop_token)
    deadline = time.monotonic() + 30
    while not drain.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    drain.stop()
    r["client_cpu"] = drain.cpu / max(wall, 1e-9)
    if drain.error:
        problems.append("rep %d: subscriber: %s" % (rep, drain.error))
    for s in drain.subs:
        if s.stop_id is None:
            problems.append("rep %d: a subscriber did not catch up within "
                            "30 s" % rep)
            continue
        first = int(drain.first_id[s].split("-")[1])
        last = int(s.stop_id.split(b"-")[1])
        if s.count != last - first or s.resets:
            problems.append("rep %d: a subscriber got %d events between "
                            "ids %d and %d (%d expected), %d resets"
                            % (rep, s.count, first, last, last - first,
                               s.resets))
    r["events_per_sub"] = statistics.median(s.count for s in drain.subs)
    r["after_stop"] = max(s.after for s in drain.subs)
    return r


def wrk(server):
    """POST /event at c=8, with the server's CPU time per request."""
    return bench.wrk_cpu(server, "event", "/api/event", 8)


def fmt_ms(ns):
    return "%.2f ms" % (ns / 1e6)


def main():
    if not os.path.exists(bench.SO):
        sys.exit("bench stream: build the module first (make build)")
    problems = []
    server = bench.Server(sync=False, work=WORK, port=PORT, extra=(
        "PanoptesTelemetryRecent %s\n" % RECENT if RECENT else ""))
    server.start()
    runs = []
    try:
        if bench.http("HEAD", "/api/stream", base=server.base)[0] == 404:
            sys.exit("bench stream: GET /stream answers 404 (no live feed "
                     "in this build)")
        ring = fill_ring(server, problems) if FILL else {}
        lat = latency_run(server, problems)
        if wait_subscribers(server, 0) not in (0, None):
            problems.append("subscribers still counted after they left")
        for rep in range(bench.REPS):
            # Alternate which goes first, so drift favours neither.
            pair = {}
            for which in (("none", "with") if rep % 2 == 0
                          else ("with", "none")):
                if which == "none":
                    pair["none"] = wrk(server)
                else:
                    pair["with"] = throughput_with(server, problems, rep)
                    if wait_subscribers(server, 0) not in (0, None):
                        problems.append("rep %d: subscribers still "
                                        "counted after they left" % rep)
                for r in (pair[which],):
                    if r["status"] or r["errors"]:
                        problems.append("rep %d %s: %d non-2xx, %d socket "
                                        "errors" % (rep, which, r["status"],
                                                    r["errors"]))
            runs.append(pair)
        _, status = bench.http("GET", "/server-status?auto",
                               base=server.base)
    finally:
        server.stop()

    ratios = [p["with"]["rps"] / p["none"]["rps"] for p in runs]
    ratio = statistics.median(ratios)
    fa, fs = lat["from_answer"], lat["from_send"]
    p50, p99 = percentile(fa, 0.50), percentile(fa, 0.99)
    print()
    print("make bench-stream: %d subscribers, event MPM, 2 x 64 threads; "
          "latency over %d events at %g/s on %d connections; throughput: "
          "%d repetitions x %d s, wrk c=8" % (
              SUBSCRIBERS, lat["events"], RATE, POSTERS, bench.REPS,
              bench.SECONDS))
    if ring:
        print("recent-events ring before the latency run: %s events, %.1f "
              "of %.1f MiB" % (ring.get("PanoptesRecentEvents"),
                               int(ring["PanoptesRecentBytes"]) / 2**20,
                               int(ring["PanoptesRecentSize"]) / 2**20))
    print("%-44s %12s %10s %10s" % ("measure", "value", "goal", "must"))
    print("%-44s %12s" % ("latency POST answer -> subscriber, p50",
                          fmt_ms(p50)))
    print("%-44s %12s %10s %10s" % ("latency POST answer -> subscriber, p99",
                                    fmt_ms(p99), "<= %g ms" % GOAL_P99_MS,
                                    "<= %g ms" % MUST_P99_MS))
    print("%-44s %12s" % ("latency POST answer -> subscriber, max",
                          fmt_ms(fa[-1] if fa else float("nan"))))
    print("%-44s %12s" % ("latency POST sent -> subscriber, p50",
                          fmt_ms(percentile(fs, 0.5))))
    print("%-44s %12s" % ("latency POST sent -> subscriber, p99",
                          fmt_ms(percentile(fs, 0.99))))
    print("%-44s %12s" % ("deliveries (events x subscribers)",
                          "%d/%d" % (lat["deliveries"],
                                     lat["events"] * SUBSCRIBERS)))
    print("%-44s %12s" % ("  of which before the POST's answer was read",
                          "%d" % lat["early"]))
    none_rps = statistics.median(p["none"]["rps"] for p in runs)
    with_rps = statistics.median(p["with"]["rps"] for p in runs)
    print("%-44s %12.0f" % ("POST /event req/s, no subscriber", none_rps))
    print("%-44s %12.0f" % ("POST /event req/s, 8 subscribers", with_rps))
    print("%-44s %12.2f %10s %10s" % ("  ratio 8 subscribers / none", ratio,
                                      "", ">= %g" % MUST_RATIO))
    print("%-44s %12s" % ("  ratios per repetition",
                          " ".join("%.2f" % x for x in ratios)))
    for which, label in (("none", "no subscriber"),
                         ("with", "8 subscribers")):
        print("%-44s %9.1f us" % ("server CPU per POST, " + label,
                                  statistics.median(p[which]["cpu_per_req_us"]
                                                    for p in runs)))
    print("%-44s %12s" % ("  events after the stop marker (not counted)",
                          " ".join("%d" % p["with"]["after_stop"]
                                   for p in runs)))
    print("%-44s %11.0f%%" % ("subscriber client CPU (of one core)",
                              100 * statistics.median(
                                  p["with"]["client_cpu"] for p in runs)))
    for line in (status or b"").decode().splitlines():
        if line.startswith("PanoptesStream"):
            print("  " + line)
    if not p99 <= MUST_P99_MS * 1e6:
        problems.append("latency p99 %s > %g ms" % (fmt_ms(p99),
                                                    MUST_P99_MS))
    if not ratio >= MUST_RATIO:
        problems.append("throughput ratio %.2f < %g" % (ratio, MUST_RATIO))
    bench.finish(problems, "every subscriber got every event once, in id "
                 "order; the MUST bounds hold%s"
                 % ("" if p99 <= GOAL_P99_MS * 1e6
                    else " (the p99 goal does not)"))


if __name__ == "__main__":
    main()
