#!/usr/bin/env python3
"""make bench, forwarding part: PanoptesTelemetryForward (SPEC 12.5).

Generated httpds as bench.py's Server (event MPM, 2 x 64 threads,
keep-alive), two measures:

  throughput: POST /event with wrk at c=8 (bench/wrk.lua, as bench.py and
      stream.py) against an httpd forwarding to `cat > /dev/null` and one
      that does not forward, both running, interleaved within each of
      BENCH_REPS repetitions; the median of the ratios with / without must
      be >= 0.8.  After each run with forwarding, it must catch up
      (PanoptesForwardPending 0) with every accepted event forwarded and
      none dropped.
  lag: BENCH_FORWARD_RATE events/s (default 1000) POSTed round-robin over
      8 keep-alive connections for BENCH_FORWARD_SECONDS (default 10) to an
      httpd forwarding to bench/forward_consumer.py, which timestamps each
      line as it reads it (CLOCK_MONOTONIC, the client's clock too); for
      each event the time from its POST's answer (last byte read) to its
      line's arrival: p50, p99 and max (reported; an event that arrives
      before its answer is read counts as 0).  Every event must arrive
      once, in id order.  An event due while all 8 connections still wait
      for answers is sent when one is free (its lag is still measured from
      its own answer), and so are those that fall due behind it; more
      than 1% of them so late means the rate was not held, a problem.

The exit status is 1 when a must bound or a check fails.

Environment: BENCH_SECONDS and BENCH_REPS as bench.py (each wrk run),
BENCH_FORWARD_SECONDS, BENCH_FORWARD_RATE, BENCH_PORT (the httpds listen
there and on the port after it).
"""

import collections
import json
import os
import pwd
import selectors
import statistics
import sys
import time
import uuid

import bench
import stream

WORK = os.path.join(bench.TOP, "build", "bench-forward")
CONSUMER = os.path.join(bench.TOP, "bench", "forward_consumer.py")
# The consumer runs as the children's User: Debian's python3, not one
# under root's home.
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") \
    else sys.executable
PORT = bench.PORT
RATE = float(os.environ.get("BENCH_FORWARD_RATE", "1000"))
LAG_SECONDS = float(os.environ.get("BENCH_FORWARD_SECONDS", "10"))
POSTERS = 8
TYPE = "bench_forward"
MUST_RATIO = 0.8


def now():
    return time.monotonic_ns()


def status(server):
    return stream.status_values(server)


def next_n(st):
    return int(st["PanoptesEventIdNext"].split("-")[1])


def forward_conf(program):
    return 'PanoptesTelemetryForward "%s"\n' % program


def caught_up(server, timeout=60):
    """Wait until nothing is pending; the status then, and the seconds it
    took."""
    t0 = time.monotonic()
    while True:
        st = status(server)
        if int(st.get("PanoptesForwardPending", 1)) == 0 or \
                time.monotonic() - t0 > timeout:
            return st, time.monotonic() - t0
        time.sleep(0.02)


def wrk(server):
    """POST /event at c=8, with the server's CPU time per request."""
    return bench.wrk_cpu(server, "event", "/api/event", 8)


def throughput(problems):
    none = bench.Server(sync=False, work=os.path.join(WORK, "none"),
                        port=PORT)
    with_ = bench.Server(sync=False, work=os.path.join(WORK, "cat"),
                         port=PORT + 1,
                         extra=forward_conf("|$cat > /dev/null"))
    runs = []
    none.start()
    try:
        with_.start()
        try:
            for rep in range(bench.REPS):
                pair = {}
                for which in (("none", "with") if rep % 2 == 0
                              else ("with", "none")):
                    if which == "none":
                        pair["none"] = r = wrk(none)
                    else:
                        st0, _ = caught_up(with_)
                        pair["with"] = r = wrk(with_)
                        st, r["catch_up_s"] = caught_up(with_)
                        accepted = next_n(st) - next_n(st0)
                        fwd = (int(st["PanoptesForwarded"])
                               - int(st0["PanoptesForwarded"]))
                        dropped = (int(st["PanoptesForwardDropped"])
                                   - int(st0["PanoptesForwardDropped"]))
                        if int(st["PanoptesForwardPending"]):
                            problems.append("rep %d: %s events still pending"
                                            " after 60 s" % (
                                                rep,
                                                st["PanoptesForwardPending"]))
                        if fwd != accepted or dropped:
                            problems.append("rep %d: %d events accepted, %d "
                                            "forwarded, %d dropped"
                                            % (rep, accepted, fwd, dropped))
                    if r["status"] or r["errors"]:
                        problems.append("rep %d %s: %d non-2xx, %d socket "
                                        "errors" % (rep, which, r["status"],
                                                    r["errors"]))
                runs.append(pair)
            final = status(with_)
        finally:
            with_.stop()
    finally:
        none.stop()
    return runs, final


def lag(problems):
    out = os.path.join(WORK, "lag-out", "lines")
    server = bench.Server(sync=False, work=os.path.join(WORK, "lag"),
                          port=PORT + 1, extra=forward_conf(
                              "|%s -u %s %s" % (PYTHON, CONSUMER, out)))
    # The program runs as the children's User when httpd starts as root.
    os.makedirs(os.path.dirname(out), exist_ok=True)
    open(out, "wb").close()
    if os.geteuid() == 0:
        pw = pwd.getpwnam("www-data")
        os.chown(out, pw.pw_uid, pw.pw_gid)
    server.start()
    run = uuid.uuid4().hex[:8]
    n_events = int(LAG_SECONDS * RATE)
    sel = selectors.DefaultSelector()
    try:
        posters = [stream.Poster(server.port) for _ in range(POSTERS)]
        for p in posters:
            sel.register(p.sock, selectors.EVENT_READ, p)
        # blocked: the events held back because all connections were busy
        # when they fell due (sent more than a period late, due within a
        # stretch of time when none was free).  stalls: those stretches,
        # [start, end or None], oldest first.
        answered, blocked, stalls = {}, set(), collections.deque()
        period = int(1e9 / RATE)
        t0 = now() + 50 * 1000 * 1000
        k = 0
        while len(answered) < n_events:
            t = now()
            free = [p for p in posters if p.busy is None]
            if free and stalls and stalls[-1][1] is None:
                stalls[-1][1] = t
            if k < n_events and t >= t0 + k * period and free:
                due = t0 + k * period
                while stalls and stalls[0][1] is not None \
                        and stalls[0][1] < due:
                    stalls.popleft()
                if t - due > period and stalls and stalls[0][0] <= due:
                    blocked.add(k)
                p = posters[k % POSTERS] \
                    if posters[k % POSTERS].busy is None else free[0]
                p.send(k, json.dumps({
                    "type": TYPE, "data": {"run": run, "k": k},
                    "store_permanently": False}).encode())
                k += 1
                free.remove(p)
            if not free and not (stalls and stalls[-1][1] is None):
                stalls.append([now(), None])
            # All busy: only an answer frees one.
            wait = 0.5 if k >= n_events else 0.05 if not free else max(
                0, (t0 + k * period - now()) / 1e9)
            for key, _ in sel.select(wait):
                got = key.data.readable()
                if got:
                    answered[got[0]] = got[1]
                    if got[2] != 200:
                        problems.append("POST %d answered %d"
                                        % (got[0], got[2]))
        for p in posters:
            sel.unregister(p.sock)
            p.close()
        st, _ = caught_up(server)
        # The consumer writes what it read at once: give it a moment.
        deadline = time.monotonic() + 10
        while True:
            arrivals = read_arrivals(out, run, problems)
            if len(arrivals[0]) >= n_events or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        server.stop()
    seen, ids, twice = arrivals
    # A stall of a few ms on a shared machine holds back an event or two;
    # the rate is lost only when more do.
    if len(blocked) > n_events // 100:
        problems.append("%d events waited for a connection (all %d busy: the "
                        "rate was not held)" % (len(blocked), POSTERS))
    if twice:
        problems.append("%d events arrived twice" % twice)
    if any(b <= a for a, b in zip(ids, ids[1:])):
        problems.append("lines out of id order")
    missing = n_events - len(seen)
    if missing:
        problems.append("%d of %d events never arrived" % (missing, n_events))
    lags, early = [], 0
    for kk, t in seen.items():
        d = t - answered[kk]
        early += d < 0
        lags.append(max(0, d))
    lags.sort()
    return {"events": n_events, "arrived": len(seen), "lags": lags,
            "early": early, "late": len(blocked), "status": st}


def read_arrivals(path, run, problems):
    """{k: arrival ns} of this run's events, their ids in arrival order,
    and how many arrived more than once."""
    seen, ids, twice = {}, [], 0
    with open(path, "rb") as f:
        for line in f:
            t, _, text = line.rstrip(b"\n").partition(b" ")
            try:
                ev = json.loads(text)
            except ValueError:
                problems.append("not JSON: %r" % text[:200])
                continue
            d = ev.get("data")
            if not isinstance(d, dict) or d.get("run") != run:
                continue
            ids.append(int(ev["id"].split("-")[1]))
            if d["k"] in seen:
                twice += 1
                continue
            seen[d["k"]] = int(t)
    return seen, ids, twice


def ms(ns):
    return "%.2f ms" % (ns / 1e6)


def main():
    if not os.path.exists(bench.SO):
        sys.exit("bench forward: build the module first (make build)")
    problems = []
    runs, final = throughput(problems)
    lg = lag(problems)
    ratios = [p["with"]["rps"] / p["none"]["rps"] for p in runs]
    ratio = statistics.median(ratios)
    lags = lg["lags"]
    print()
    print("make bench-forward: event MPM, 2 x 64 threads; throughput: %d "
          "repetitions x %d s, wrk c=8; lag over %d events at %g/s on %d "
          "connections" % (bench.REPS, bench.SECONDS, lg["events"], RATE,
                           POSTERS))
    print("%-50s %12s %10s" % ("measure", "value", "must"))
    rps_none = statistics.median(p["none"]["rps"] for p in runs)
    rps_with = statistics.median(p["with"]["rps"] for p in runs)
    print("%-50s %12.0f" % ("POST /event req/s, no forwarding", rps_none))
    print("%-50s %12.0f" % ("POST /event req/s, forwarding to cat > /dev/null",
                            rps_with))
    print("%-50s %12.2f %10s" % ("  ratio forwarding / none", ratio,
                                 ">= %g" % MUST_RATIO))
    print("%-50s %12s" % ("  ratios per repetition",
                          " ".join("%.2f" % x for x in ratios)))
    for which, label in (("none", "no forwarding"), ("with", "forwarding")):
        print("%-50s %9.1f us" % ("server CPU per POST, " + label,
                                  statistics.median(p[which]["cpu_per_req_us"]
                                                    for p in runs)))
    print("%-50s %10.2f s" % ("forwarder catching up after a wrk run, max",
                              max(p["with"]["catch_up_s"] for p in runs)))
    print("%-50s %12s" % ("lag POST answer -> consumer, p50",
                          ms(stream.percentile(lags, 0.5))))
    print("%-50s %12s" % ("lag POST answer -> consumer, p99",
                          ms(stream.percentile(lags, 0.99))))
    print("%-50s %12s" % ("lag POST answer -> consumer, max",
                          ms(lags[-1] if lags else float("nan"))))
    print("%-50s %12s" % ("events arrived (once each, in id order)",
                          "%d/%d" % (lg["arrived"], lg["events"])))
    print("%-50s %12d" % ("  of which before the POST's answer was read",
                          lg["early"]))
    print("%-50s %12d %10s" % ("events sent late (all %d connections busy)"
                               % POSTERS, lg["late"], "<= 1%"))
    for k in ("PanoptesForwarded", "PanoptesForwardDropped",
              "PanoptesForwardRepeats", "PanoptesForwardLastError"):
        print("  %s (cat, at the end): %s" % (k, final.get(k)))
    if not ratio >= MUST_RATIO:
        problems.append("throughput ratio %.2f < %g" % (ratio, MUST_RATIO))
    bench.finish(problems, "every event forwarded, none dropped, the lag "
                 "run's once each and in id order; the must bound holds")


if __name__ == "__main__":
    main()
