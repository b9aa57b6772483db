#!/usr/bin/env python3
"""make bench, history part: GET /events (SPEC 12.2) against its targets.

Two generated httpds (bench.py's Server), one over a 2-day and one over a
365-day fixture (bench/history_fixture.py, same seed and end, so their
last days hold the same events), and three ratios, each computed within a
repetition (the scenarios interleaved) and shown as the median:

  mean latency of GET /events?type=weather&since=24h, 365 days / 2 days
      <= 2: the cost follows the window, not the archive;
  its p50 / the p50 of Apache serving a static file of the same answer
      <= 3;
  req/s of the NDJSON export of one day (stream=site, since/until the
      noon-to-noon window of a day file, Accept: application/x-ndjson) /
      req/s of Apache's static GET of the same bytes
      >= 0.5.

As on a unit that has run for a while, each server's recent-events ring
is first filled (POSTed with their ts and store_permanently=false): with
the ephemeral events of the last 24 h, after copies of them moved back by
1 to 8 days, oldest first, so that the ring (8 MiB, the default) is about
nine tenths full and holds nine days, as on a unit running for longer
(BENCH_HISTORY_RING=day: the last 24 h only; 0: empty rings).  They are
in no file, so the answers hold them too: the static ceilings are the
answers themselves, and with an empty ring the export is the day file.

Before timing, it checks the answers against the fixture's files
(bench/history_expect.py): the weather of the last 24 h and the run events
of the last 3 days, exactly, on both servers (plus the ring's events), the
same 24 h answer from both, and an export that holds every line of the day
file, byte for byte, in order, plus the ring's events of its window. Non-2xx answers, socket errors and
those checks fail the run; a missed target is only reported (machines here
are shared and noisy: a benchmark, never a test).

Environment: BENCH_SECONDS, BENCH_REPS and BENCH_PORT as bench.py (the
servers listen on BENCH_PORT+1 and BENCH_PORT+2), BENCH_HISTORY_CONC
(default "1"), BENCH_HISTORY_SEED (default 1), BENCH_HISTORY_RING
("full", the default; "day"; "0").
"""

import datetime
import http.client
import json
import os
import pwd
import shutil
import statistics
import sys
import time

import bench
import history_expect
import history_fixture as fixture

WORK = os.path.join(bench.TOP, "build", "bench-history")
CONC = [int(c) for c in os.environ.get("BENCH_HISTORY_CONC", "1").split()]
SEED = os.environ.get("BENCH_HISTORY_SEED", "1")
RING = os.environ.get("BENCH_HISTORY_RING", "full")
RING_DAYS_BACK = 8          # the copies moved back, "full"
NDJSON = "application/x-ndjson"
Q_24H = "/api/events?type=weather&since=24h"

# name, server ("2d"/"365d"), path (None: the export's), Accept
SCENARIOS = [
    ("static, 24 h answer", "365d", "/events-24h.json", None),
    ("GET /events 24 h, 2 days", "2d", Q_24H, None),
    ("GET /events 24 h, 365 days", "365d", Q_24H, None),
    ("static, day export", "365d", "/day-export.ndjson", None),
    ("NDJSON export, one day", "365d", None, NDJSON),
]

# label, numerator, denominator, field, comparison, target
TARGETS = [
    ("mean latency, 365 days / 2 days", "GET /events 24 h, 365 days",
     "GET /events 24 h, 2 days", "mean_us", "<=", 2.0),
    ("p50, GET /events 24 h / static same size",
     "GET /events 24 h, 365 days", "static, 24 h answer", "p50_us", "<=",
     3.0),
    ("req/s, NDJSON day export / static same bytes",
     "NDJSON export, one day", "static, day export", "rps", ">=", 0.5),
]


def give_to_server_user(top):
    """Under root httpd's children run as www-data, and a unit's site
    directory is theirs."""
    if os.geteuid() != 0:
        return
    pw = pwd.getpwnam("www-data")
    for root, dirs, files in os.walk(top):
        for name in [root] + [os.path.join(root, n) for n in dirs + files]:
            os.lchown(name, pw.pw_uid, pw.pw_gid)


def make_fixtures(now_ms):
    """Both fixtures at the same `now`, so their last days agree (and so
    do their ephemeral events: the ring's, taken from the 2-day one)."""
    sites = {}
    eph = os.path.join(WORK, "ephemeral.ndjson")
    for days in (365, 2):
        out = os.path.join(WORK, "fixture-%dd" % days)
        if os.path.isdir(out):
            shutil.rmtree(out)
        fixture.main(["--days", str(days), "--out", out, "--seed", SEED,
                      "--now", fixture.utc_iso(now_ms)]
                     + (["--ephemeral", eph] if days == 2 else []))
        give_to_server_user(out)
        sites["%dd" % days] = out
    with open(eph, "rb") as f:
        bodies = f.read().splitlines()
    if RING == "0":
        return sites, []
    if RING == "day":
        return sites, bodies
    return sites, older_copies(bodies, RING_DAYS_BACK) + bodies


def older_copies(bodies, days):
    """The events of `bodies` again, moved back by days..1 days (the
    oldest first, as a ring holds them)."""
    out = []
    for back in range(days, 0, -1):
        for b in bodies:
            e = json.loads(b)
            d = datetime.datetime.fromisoformat(e["ts"].replace("Z",
                                                                "+00:00"))
            e["ts"] = fixture.utc_iso(round(d.timestamp() * 1000)
                                      - back * 86400000)
            out.append(json.dumps(e, separators=(",", ":")).encode())
    return out


def fill_ring(server, bodies, problems):
    """POST the ephemeral events over one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    bad = 0
    for body in bodies:
        conn.request("POST", "/api/event", body,
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        bad += r.status != 200
    conn.close()
    if bad:
        problems.append("%d of %d ephemeral POSTs failed"
                        % (bad, len(bodies)))


def day_window(now_ms):
    """The last day file that is complete: its key and noon-to-noon
    window as RFC 3339 (UTC) bounds."""
    day = fixture.now_day(now_ms) - datetime.timedelta(days=1)
    since = fixture.local_ms(day, 12)
    until = fixture.local_ms(day + datetime.timedelta(days=1), 12)
    return (day.strftime("%Y%m%d"), fixture.utc_iso(since),
            fixture.utc_iso(until))


def get(server, path, accept=None):
    code, body = bench.http("GET", path, base=server.base,
                            headers={"Accept": accept} if accept else None)
    if code != 200:
        sys.exit("bench history: GET %s answered %d: %s"
                 % (path, code, body[:300].decode(errors="replace")))
    return body


def answer_24h(server):
    body = get(server, Q_24H)
    a = json.loads(body)
    # seq and run ids differ between the fixtures; the events do not.
    return body, a, [(e["ts"], e["stream"], e["type"], e["data"])
                     for e in a["events"]]


def is_subsequence(small, big):
    it = iter(big)
    return all(x in it for x in small)


def check_window(server, site, ring, query, lo, hi, problems):
    """An answer of [lo, hi) (ms) is exactly what the files hold there,
    byte for byte in the file form, plus the ring's events."""
    since, until = fixture.utc_iso(lo), fixture.utc_iso(hi)
    a = json.loads(get(server, "/api/events?%s&since=%s&until=%s"
                       "&limit=10000&order=asc" % (query, since, until)))
    got = [history_expect.file_form(e) for e in a["events"]]
    types = {"weather"} if "type=weather" in query else None
    stream = "run" if "stream=run" in query else None
    want = history_expect.expect(site, lo, hi, types, stream)
    extra = 0
    if stream != "run":
        # The ring's events were POSTed with no run active: site events.
        extra = sum(1 for b in ring for x in [json.loads(b)]
                    if (not types or x["type"] in types)
                    and since <= x["ts"] < until)
    if (len(got) != len(want) + extra or not is_subsequence(want, got)
            or a["next"] is not None):
        problems.append("%s: GET /events?%s over [%s, %s) gave %d events, "
                        "the files hold %d and the ring %d"
                        % (os.path.basename(site), query, since, until,
                           len(got), len(want), extra))
    return len(want)


def prepare(servers, sites, now_ms, ring, problems):
    """Check the answers, then put the ceilings' files in place."""
    for which in ("2d", "365d"):
        check_window(servers[which], sites[which], ring, "type=weather",
                     now_ms - 86400000, now_ms + 1, problems)
        if not check_window(servers[which], sites[which], ring,
                            "stream=run", now_ms - 3 * 86400000, now_ms + 1,
                            problems):
            problems.append("no run events in the last 3 days")
    # The window moves with the clock: ask again if an event crossed its
    # edge between the two questions.
    for _ in range(3):
        body, a365, k365 = answer_24h(servers["365d"])
        _, _, k2 = answer_24h(servers["2d"])
        if k365 == k2:
            break
    else:
        problems.append("the 24 h answers of the 2-day and 365-day "
                        "servers differ (%d and %d events)"
                        % (len(k2), len(k365)))
    if not k365 or any(t != "weather" for _, _, t, _ in k365):
        problems.append("the 24 h answer has no events or other types")
    htdocs = os.path.join(servers["365d"].work, "htdocs")
    with open(os.path.join(htdocs, "events-24h.json"), "wb") as f:
        f.write(body)

    key, since, until = day_window(now_ms)
    path = "/api/events?stream=site&since=%s&until=%s" % (since, until)
    with open(os.path.join(sites["365d"], "site_%s.ndjson" % key),
              "rb") as f:
        day = f.read().splitlines(keepends=True)
    export = get(servers["365d"], path, NDJSON)
    lines = export.splitlines(keepends=True)
    # The ring's events of the window come in between the file's lines.
    lo, hi = fixture.parse_now(since), fixture.parse_now(until)
    extra = sum(1 for b in ring
                if lo <= fixture.parse_now(json.loads(b)["ts"]) < hi)
    if len(lines) != len(day) + extra or not is_subsequence(day, lines):
        problems.append("the NDJSON export of %s..%s is not site_%s.ndjson "
                        "(%d lines) and %d ring events: %d lines"
                        % (since, until, key, len(day), extra, len(lines)))
    with open(os.path.join(htdocs, "day-export.ndjson"), "wb") as f:
        f.write(export)
    return path, {"answer": len(body), "events": len(k365),
                  "next": a365.get("next") is not None,
                  "export": len(export), "export_lines": len(lines),
                  "day_key": key, "ring": len(ring),
                  "ring_state": ring_state(servers["365d"])}


def ring_state(server):
    """What server-status says of the ring: events held, MiB of MiB."""
    _, body = bench.http("GET", "/server-status?auto", base=server.base)
    st = dict(l.split(": ", 1) for l in body.decode().splitlines()
              if l.startswith("PanoptesRecent") and ": " in l)
    try:
        return "%s held, %.1f of %.1f MiB" % (
            st["PanoptesRecentEvents"],
            int(st["PanoptesRecentBytes"]) / 1048576,
            int(st["PanoptesRecentSize"]) / 1048576)
    except (KeyError, ValueError):
        return "server-status says nothing of it"


def measure(servers, export_path, results, problems):
    for conc in CONC:
        for name, which, path, accept in SCENARIOS:
            server = servers[which]
            r = bench.wrk_cpu(server, "get", path or export_path, conc,
                              accept=accept)
            if r["status"] or r["errors"]:
                problems.append("%s c=%d: %d non-2xx, %d socket errors"
                                % (name, conc, r["status"], r["errors"]))
            results.setdefault((name, conc), []).append(r)


def report(results, sizes):
    med = statistics.median
    print()
    print("make bench (history): %d repetitions x %d s per run, wrk, "
          "event MPM; %d ephemeral events in each ring (%s)"
          % (bench.REPS, bench.SECONDS, sizes["ring"], sizes["ring_state"]))
    print("24 h weather answer: %d events%s, %.1f KB; export of day %s: "
          "%d lines, %.1f KB"
          % (sizes["events"], " (limit reached)" if sizes["next"] else "",
             sizes["answer"] / 1024, sizes["day_key"],
             sizes["export_lines"], sizes["export"] / 1024))
    print("%-28s %4s %9s %10s %10s %10s %8s %12s" % (
        "scenario", "c", "req/s", "p50", "mean", "p99", "MB/s", "CPU/req"))
    for conc in CONC:
        for name, _, _, _ in SCENARIOS:
            rs = results[(name, conc)]
            print("%-28s %4d %9.0f %10s %10s %10s %8.1f %9.1f us" % (
                name, conc, med(r["rps"] for r in rs),
                bench.fmt_us(med(r["p50_us"] for r in rs)),
                bench.fmt_us(med(r["mean_us"] for r in rs)),
                bench.fmt_us(med(r["p99_us"] for r in rs)),
                med(r["bytes"] / r["duration_us"] for r in rs),
                med(r["cpu_per_req_us"] for r in rs)))
    print()
    print("SPEC 12.2 targets (medians of the per-repetition ratios):")
    for conc in CONC:
        for label, num, den, field, how, target in TARGETS:
            ratio = med(n[field] / max(d[field], 1e-9) for n, d in
                        zip(results[(num, conc)], results[(den, conc)]))
            ok = ratio <= target if how == "<=" else ratio >= target
            print("  %-46s c=%-3d %6.2f  %s %-4g %s" % (
                label, conc, ratio, how, target, "ok" if ok else "MISSED"))


def main():
    if not os.path.exists(bench.SO):
        sys.exit("bench history: build the module first (make build)")
    os.makedirs(WORK, exist_ok=True)
    now_ms = int(time.time() * 1000)
    sites, ring = make_fixtures(now_ms)
    servers = {}
    problems = []
    results = {}
    try:
        for i, which in enumerate(("2d", "365d")):
            servers[which] = bench.Server(
                sync=False, work=os.path.join(WORK, "httpd-" + which),
                port=bench.PORT + 1 + i, site=sites[which])
            servers[which].start()
            fill_ring(servers[which], ring, problems)
        export_path, sizes = prepare(servers, sites, now_ms, ring,
                                     problems)
        for _ in range(bench.REPS):
            measure(servers, export_path, results, problems)
    finally:
        for server in servers.values():
            server.stop()
    report(results, sizes)
    bench.finish(problems, "no non-2xx answers, no socket errors; the "
                 "answers hold exactly the fixtures' lines, byte for byte")


if __name__ == "__main__":
    main()
