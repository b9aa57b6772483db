#!/usr/bin/env python3
"""make bench, scaling part (issue 14, 4): how cost grows.

Each row is measured beside its baselines in the same run, and every
ratio is taken within a repetition (BENCH_REPS of them, interleaved: the
order of the rows, and of a row and its static twin, turns round from
one repetition to the next); the tables print the medians.

  GET /current with 20, 200 and 2,000 current types, at c=BENCH_SCALING_CONC
      (default 8): against 20 types, and against Apache's static GET of a
      file of the same answer (that /current saved), so that the cost per
      byte of each is visible;
  POST /event with bodies of 200 B, 5 kB and 64 kB (a reading with a
      series of numbers: bench/wrk.lua, BENCH_BODY), same concurrency:
      against 200 B, and against a static POST of the same body (Apache
      reads and drops it and answers with a small file: bench.py's
      ceiling);
  POST /event (200 B) with 1, 8 and 64 connections over 1, 4 and 16
      children, under the event MPM (64 threads a child, 128 for one
      child) and prefork (100 requests per kept-alive connection, so that
      connections beyond the children take turns; wrk waits up to 10 s
      for an answer): each against a static POST on the same server.

Ten httpds (bench.Server, no access log), all up at once so that rows can
be interleaved: BENCH_PORT + 0..2 hold 20, 200 and 2,000 types, + 3 takes
the bodies, + 4..6 event and + 7..9 prefork with 1, 4, 16 children.

For the first two tables, the marginal CPU per added type (or kB) between
two sizes shows whether cost is linear: equal margins are linear, a
growing one is worse.  Checks: no non-2xx answer, no socket error, every
answered POST one line in the site files.

Environment: BENCH_SECONDS (per wrk run, default 2), BENCH_REPS (default
3), BENCH_SCALING_CONC (default 8), BENCH_PORT (default bench.py's),
BENCH_SO (the module to load).
"""

import os
import statistics
import sys
import time

import bench

WORK = os.path.join(bench.TOP, "build", "bench-scaling")
PORT = bench.PORT
SECONDS = int(os.environ.get("BENCH_SECONDS", "2"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
CONC = int(os.environ.get("BENCH_SCALING_CONC", "8"))
TYPES = (20, 200, 2000)
BODIES = (200, 5000, 65536)
GRID_CONC = (1, 8, 64)
GRID_CHILDREN = (1, 4, 16)
MPMS = ("event", "prefork")


def kb(n):
    return "%.1f KB" % (n / 1024.0) if n < 1024 * 1024 else \
        "%.2f MB" % (n / 1048576.0)


class Job:
    """One wrk run: `mode` (bench/wrk.lua's) on `path` of `server`."""

    def __init__(self, server, mode, path, conc, body=None, timeout=None):
        self.server, self.mode, self.path = server, mode, path
        self.conc, self.body, self.timeout = conc, body, timeout

    def run(self, what, problems):
        srv = self.server
        if self.mode == "event":
            bench.settle(srv.site)
            before = bench.site_lines(srv.site)
        r = bench.wrk_cpu(srv, self.mode, self.path, self.conc,
                          seconds=SECONDS, body=self.body,
                          timeout=self.timeout)
        if self.mode == "event":
            # Every answered POST is one line; wrk stops with up to
            # `conc` requests in flight, answered after it counted.
            got = bench.site_lines(srv.site) - before
            ok = r["requests"] - r["status"]
            if not ok <= got <= ok + self.conc:
                problems.append("%s: %d lines for %d answers"
                                % (what, got, ok))
        if r["status"] or r["errors"]:
            problems.append("%s: %d non-2xx, %d socket errors (%s)" % (
                what, r["status"], r["errors"],
                " ".join("%s=%d" % (k, r[k]) for k in
                         ("connect", "read", "write", "timeout"))))
        return r


def start_servers():
    servers = {}

    def add(key, k, **kw):
        servers[key] = bench.Server(
            sync=False, work=os.path.join(WORK, "%d" % k),
            port=PORT + k, **kw)

    for k, n in enumerate(TYPES):
        add(("types", n), k)
    add("bodies", 3)
    for i, mpm in enumerate(MPMS):
        for j, ch in enumerate(GRID_CHILDREN):
            # One event child of 64 threads would close kept-alive
            # connections at c=64 (bench.MPM_EVENT): 128 for it.
            add((mpm, ch), 4 + 3 * i + j,
                mpm=bench.mpm_conf(mpm, ch, 128 if ch == 1 else 64))
    try:
        for srv in servers.values():
            srv.start()
            with open(os.path.join(srv.work, "htdocs", "ok.json"), "w") as f:
                f.write('{"ok":true}\n')
        sizes = {}
        for n in TYPES:
            srv = servers[("types", n)]
            bench.seed_types(n, base=srv.base)
            code, cur = bench.http("GET", "/api/current", base=srv.base)
            if code != 200 or cur.count(b'"seq":') != n:
                sys.exit("bench scaling: /current of %d types: %d" % (n, code))
            with open(os.path.join(srv.work, "htdocs", "current.json"),
                      "wb") as f:
                f.write(cur)
            sizes[n] = len(cur)
    except BaseException:
        stop_servers(servers)
        raise
    return servers, sizes


def stop_servers(servers):
    for srv in servers.values():
        srv.stop()


def rows(servers):
    """[(key, module Job, static Job)] in the order of a repetition."""
    out = []
    for n in TYPES:
        srv = servers[("types", n)]
        out.append((("types", n), Job(srv, "get", "/api/current", CONC),
                    Job(srv, "get", "/current.json", CONC)))
    srv = servers["bodies"]
    for b in BODIES:
        body = None if b == BODIES[0] else b    # wrk.lua's own ~200 B
        out.append((("bodies", b), Job(srv, "event", "/api/event", CONC,
                                       body),
                    Job(srv, "post", "/ok.json", CONC, body)))
    for mpm in MPMS:
        # Under prefork, connections beyond the children wait in the
        # listen queue for their turn (100 requests each): longer than
        # wrk's 2 s at 64 over 1 on a loaded machine.
        timeout = 10 if mpm == "prefork" else None
        for ch in GRID_CHILDREN:
            srv = servers[(mpm, ch)]
            for c in GRID_CONC:
                out.append(((mpm, ch, c),
                            Job(srv, "event", "/api/event", c,
                                timeout=timeout),
                            Job(srv, "post", "/ok.json", c,
                                timeout=timeout)))
    return out


def measure(servers, problems):
    """{key: [(module run, static run)] one per repetition}."""
    res = {}
    plan = rows(servers)
    for rep in range(REPS):
        t0 = time.time()
        order = plan if rep % 2 == 0 else plan[::-1]
        for key, mod, static in order:
            pair = {}
            jobs = (("m", mod), ("s", static))
            for which, job in (jobs if rep % 2 == 0 else jobs[::-1]):
                what = "rep %d %s %s" % (rep, "/".join(map(str, key)),
                                         "module" if which == "m"
                                         else "static")
                pair[which] = job.run(what, problems)
            res.setdefault(key, []).append((pair["m"], pair["s"]))
        print("bench scaling: repetition %d of %d took %.0f s"
              % (rep + 1, REPS, time.time() - t0), file=sys.stderr)
    return res


def med(xs):
    return statistics.median(list(xs))


def ratio(runs, base_runs, k="rps", side=0, base_side=0):
    """Median over repetitions of runs[rep][side][k] / base[rep][...][k]."""
    return med(r[side][k] / max(b[base_side][k], 1e-9)
               for r, b in zip(runs, base_runs))


def margins(res, keys, sizes, unit):
    """Marginal CPU per `unit` between consecutive keys, module and
    static: medians of the per-repetition differences."""
    out = []
    for a, b in zip(keys, keys[1:]):
        d = (sizes[b] - sizes[a]) / unit
        m = med((rb[0]["cpu_per_req_us"] - ra[0]["cpu_per_req_us"]) / d
                for ra, rb in zip(res[a], res[b]))
        s = med((rb[1]["cpu_per_req_us"] - ra[1]["cpu_per_req_us"]) / d
                for ra, rb in zip(res[a], res[b]))
        out.append((a, b, m, s))
    return out


def per_rep(runs, base_runs, k="cpu_per_req_us", side=0, base_side=0):
    return " ".join("%.2f" % (r[side][k] / max(b[base_side][k], 1e-9))
                    for r, b in zip(runs, base_runs))


def size_table(res, kind, keys, head, first, label, size, unit, margin):
    """One table of cost against size (GET /current against its number of
    types, POST /event against its body): each row against the first
    one, and against the static request of the same bytes; then the
    marginal CPU per `unit` of size between rows, module and static."""
    print(head + " req/s | CPU/req | req/s vs %s | CPU vs %s (per rep) | "
          "static CPU vs %s | req/s vs static | CPU vs static |"
          % (first, first, first))
    print("|" + " --- |" * (head.count("|") - 1 + 7))
    base = res[(kind, keys[0])]
    for k in keys:
        r = res[(kind, k)]
        print("| %s | %.0f | %.1f us | %.2f | %.2f (%s) | %.2f | %.2f | "
              "%.2f |" % (
                  label(k), med(x[0]["rps"] for x in r),
                  med(x[0]["cpu_per_req_us"] for x in r),
                  ratio(r, base), ratio(r, base, "cpu_per_req_us"),
                  per_rep(r, base),
                  ratio(r, base, "cpu_per_req_us", 1, 1),
                  ratio(r, r, "rps", 0, 1),
                  ratio(r, r, "cpu_per_req_us", 0, 1)))
    rows_ = [(kind, k) for k in keys]
    for a, b, m, s in margins(res, rows_, {(kind, k): size(k) for k in keys},
                              unit):
        print(margin % (a[1], b[1], m, s))


def report(res, sizes):
    print()
    print("make bench-scaling: %d interleaved repetitions x %d s per run, "
          "wrk; ratios are medians of per-repetition ratios" % (REPS,
                                                                SECONDS))
    print()
    print("GET /current, c=%d, event MPM 2 x 64 threads: against 20 types, "
          "and against a static GET of the same answer" % CONC)
    size_table(res, "types", TYPES, "| types | answer |", "20",
               lambda n: "%d | %s" % (n, kb(sizes[n])), lambda n: n, 1,
               "  marginal CPU per type, %d -> %d types: module %.3f us, "
               "static GET of the same bytes %.3f us")
    print()
    print("POST /event, c=%d, event MPM 2 x 64 threads: against 200 B, and "
          "against a static POST of the same body" % CONC)
    size_table(res, "bodies", BODIES, "| body |", "200 B",
               lambda b: "%d B" % b if b < 1000 else kb(b), lambda b: b,
               1024, "  marginal CPU per kB, %d -> %d B: module %.2f us, "
               "static POST %.2f us")
    print()
    print("POST /event (200 B) against a static POST on the same server: "
          "connections over children")
    print("| MPM | children | c | req/s | CPU/req | req/s vs static "
          "(per rep) | CPU vs static | p99 vs static |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for mpm in MPMS:
        for ch in GRID_CHILDREN:
            for c in GRID_CONC:
                r = res[(mpm, ch, c)]
                print("| %s | %d | %d | %.0f | %.1f us | %.2f (%s) | %.2f | "
                      "%.2f |" % (
                          mpm, ch, c, med(x[0]["rps"] for x in r),
                          med(x[0]["cpu_per_req_us"] for x in r),
                          ratio(r, r, "rps", 0, 1),
                          per_rep(r, r, "rps", 0, 1),
                          ratio(r, r, "cpu_per_req_us", 0, 1),
                          ratio(r, r, "p99_us", 0, 1)))


def main():
    if not os.path.exists(bench.SO):
        sys.exit("bench scaling: build the module first (make build)")
    problems = []
    servers, sizes = start_servers()
    try:
        res = measure(servers, problems)
    finally:
        stop_servers(servers)
    report(res, sizes)
    bench.finish(problems, "no non-2xx answers, no socket errors, every "
                 "answered event is one line")


if __name__ == "__main__":
    main()
