#!/usr/bin/env python3
"""make bench: the module against Apache's own ceiling, in one run.

One generated httpd (event MPM, keep-alive, enough threads for c=64, no
access log) serves both a static file (the ceiling) and the API. Each
repetition runs every scenario at every concurrency with wrk, interleaved,
and the ratio module / ceiling is computed within the repetition; the table
shows the medians. Machines here are shared and noisy, so only the ratios
mean much. This is a benchmark, never part of make test.

PanoptesTelemetrySync On is measured against Sync Off: two more httpds of
the same configuration (ports BENCH_PORT+1 and +2), POST /event at c=8 and
c=64 on each in turn, the order swapped every repetition; the ratio is
On / Off within the repetition. `bench/bench.py sync` (make bench-sync)
runs only that part.

Under competing CPU load (issue 14, 3): the POST scenarios once more, at
c=8 and c=64 (those of BENCH_CONC), with one busy loop per core running
beside the server (a plain Python loop, pinned to its core, at the nice
level of the bench, as the server's). The ceiling is measured under the
same load in the same repetition, so the ratio says what the load costs
the module beyond what it costs Apache: a thread preempted while it holds
the store lock stalls every other writer. `bench/bench.py contended`
(make bench-contended) runs only the POST scenarios, without and with the
load, interleaved.

Environment: BENCH_SECONDS (per wrk run, default 3), BENCH_REPS (default 3),
BENCH_CONC (default "1 8 64"), BENCH_MEMORY_EVENTS (default 1000000; 0 skips
the memory check), BENCH_PORT (default 6590), BENCH_SO (the module to load;
default the build's), BENCH_CONTEND (busy loops for the run under load;
default one per core; 0 skips that run).
"""

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(TOP, "build", "bench")
SO = os.environ.get("BENCH_SO") or os.path.join(TOP, ".libs",
                                                "mod_panoptes_telemetry.so")
LUA = os.path.join(TOP, "bench", "wrk.lua")
MODULES = "/usr/lib/apache2/modules"
PORT = int(os.environ.get("BENCH_PORT", "6590"))
BASE = "http://127.0.0.1:%d" % PORT
SECONDS = int(os.environ.get("BENCH_SECONDS", "3"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
CONC = [int(c) for c in os.environ.get("BENCH_CONC", "1 8 64").split()]
MEMORY_EVENTS = int(os.environ.get("BENCH_MEMORY_EVENTS", "1000000"))
CONTEND = int(os.environ.get("BENCH_CONTEND", str(os.cpu_count() or 1)))

CONF = """\
ServerRoot "{work}"
ServerName localhost
DefaultRuntimeDir "{work}"
PidFile "{work}/httpd.pid"
Listen 127.0.0.1:{port}
{mpm}
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule authz_host_module {mods}/mod_authz_host.so
LoadModule mime_module {mods}/mod_mime.so
LoadModule status_module {mods}/mod_status.so
LoadModule panoptes_telemetry_module {so}
{user}
ErrorLog "{work}/error_log"
LogLevel warn
TypesConfig /etc/mime.types
# As Debian's apache2.conf: no .htaccess lookups, nothing served outside
# the document root.
<Directory />
    Options FollowSymLinks
    AllowOverride None
    Require all denied
</Directory>
DocumentRoot "{work}/htdocs"
<Directory "{work}/htdocs">
    AllowOverride None
    Require all granted
</Directory>
PanoptesTelemetrySiteDir "{site}"
PanoptesTelemetrySync {sync}
<Location /api>
    SetHandler panoptes-telemetry
    Require all granted
</Location>
<Location /server-status>
    SetHandler server-status
    Require local
</Location>
"""

# The MPM part of CONF (mpm_conf): `children` processes, never grown or
# shrunk mid-run, so that the CPU count is stable; under event, of 64
# threads each by default.  More threads in all than connections: a child
# whose workers are all busy closes its idle kept-alive connections (the
# client sees them reset), so 2 x 64 for c=64.
MPM_EVENT = """\
LoadModule mpm_event_module {mods}/mod_mpm_event.so
StartServers {n}
ServerLimit {n}
ThreadsPerChild {tpc}
ThreadLimit {tpc}
MaxRequestWorkers {threads}
MinSpareThreads {threads}
MaxSpareThreads {threads}
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 30
"""

# A prefork child serves one connection at a time and holds it while it
# is kept alive: with more connections than children, the others wait in
# the listen queue until it is closed.  Apache's default of 100 requests
# per connection lets every connection in turn.
MPM_PREFORK = """\
LoadModule mpm_prefork_module {mods}/mod_mpm_prefork.so
StartServers {n}
ServerLimit {n}
MinSpareServers {n}
MaxSpareServers {n}
MaxRequestWorkers {n}
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 100
KeepAliveTimeout 30
"""


def mpm_conf(mpm="event", children=2, threads=64):
    """The MPM lines of a Server's config: `mpm` "event" (`threads` a
    child) or "prefork", with `children` processes."""
    block = MPM_EVENT if mpm == "event" else MPM_PREFORK
    return block.format(mods=MODULES, n=children, tpc=threads,
                        threads=threads * children).rstrip("\n")


def http(method, path, body=None, base=BASE, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    """One generated httpd in `work` (wiped at start) on `port`; its site
    directory is work/site unless `site` names one (bench/history.py
    serves prepared fixtures); `extra` is appended to the config; `mpm`
    is its MPM part (mpm_conf; default event, 2 x 64 threads)."""

    def __init__(self, sync, work=WORK, port=PORT, site=None, extra="",
                 mpm=None):
        self.sync = sync
        self.extra = extra
        self.mpm = mpm or mpm_conf()
        self.work = work
        self.port = port
        self.base = "http://127.0.0.1:%d" % port
        self.site = site or os.path.join(work, "site")
        self.proc = None

    def start(self):
        if os.path.isdir(self.work):
            shutil.rmtree(self.work)
        os.makedirs(os.path.join(self.work, "htdocs"))
        user = ""
        if os.geteuid() == 0:
            user = "User www-data\nGroup www-data"
        conf = os.path.join(self.work, "httpd.conf")
        with open(conf, "w") as f:
            f.write(CONF.format(work=self.work, port=self.port,
                                mods=MODULES, so=SO, user=user,
                                mpm=self.mpm,
                                site=self.site,
                                sync="On" if self.sync else "Off"))
            f.write(self.extra)
        # A process group of its own: prefork's parent, stopping, signals
        # its whole group (which would be ours).
        self.proc = subprocess.Popen(["/usr/sbin/apache2", "-f", conf,
                                      "-DFOREGROUND"],
                                     start_new_session=True)
        for _ in range(100):
            try:
                if http("GET", "/api/health", base=self.base)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        sys.exit("bench: httpd did not start; see %s/error_log" % self.work)

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
            self.proc = None

    def pids(self):
        out = subprocess.run(["ps", "-o", "pid=", "--ppid",
                              str(self.proc.pid)], capture_output=True,
                             text=True).stdout.split()
        return [self.proc.pid] + [int(p) for p in out]

    def cpu_ticks(self):
        total = 0
        for pid in self.pids():
            try:
                with open("/proc/%d/stat" % pid) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except OSError:
                pass
        return total

    def child_rss_kb(self):
        rss = {}
        for pid in self.pids()[1:]:
            try:
                with open("/proc/%d/status" % pid) as f:
                    m = re.search(r"VmRSS:\s+(\d+)", f.read())
                rss[pid] = int(m.group(1))
            except (OSError, AttributeError):
                pass
        return rss


WEATHER = {"sky": "clear", "temp_c": 11.5, "humidity": 0.42,
           "wind_kph": [3.1, 4.7, 2.2], "safe": True,
           "station": "pan001-aag"}


def seed_types(n, base=BASE):
    """POST one event of each of `n` types weather00, weather01, ...: the
    20 first are the ones bench/wrk.lua's POSTs cycle over; /current then
    holds n values of about 265 bytes."""
    for i in range(n):
        code, _ = http("POST", "/api/event", {
            "type": "weather%02d" % i, "data": WEATHER,
            "meta": {"unit": "PAN001", "source": "bench"}}, base=base)
        if code != 200:
            sys.exit("bench: seeding type %d of %d answered %d" % (i, n, code))


def site_lines(site=None):
    n = 0
    site = site or os.path.join(WORK, "site")
    for root, _, files in os.walk(site):
        for name in files:
            if name.endswith(".ndjson"):
                with open(os.path.join(root, name), "rb") as f:
                    n += sum(1 for _ in f)
    return n


def wrk(mode, path, conc, seconds, base=BASE, accept=None, body=None,
        timeout=None):
    """wrk with bench/wrk.lua; `body`: POST bodies of about that many
    bytes (BENCH_BODY) instead of its ~200 B ones; `timeout` (s): how
    long an answer may take before wrk counts it as a timeout (its
    default: 2)."""
    env = dict(os.environ, BENCH_MODE=mode, BENCH_PATH=path)
    env.pop("BENCH_BODY", None)
    if accept:
        env["BENCH_ACCEPT"] = accept
    if body:
        env["BENCH_BODY"] = str(body)
    threads = min(conc, 2)
    out = subprocess.run(["wrk", "--latency", "-t%d" % threads,
                          "-c%d" % conc, "-d%ds" % seconds, "-s", LUA]
                         + (["--timeout", "%ds" % timeout] if timeout
                            else [])
                         + [base + path], capture_output=True, text=True,
                         env=env)
    m = re.search(r"^BENCH (.*)$", out.stdout, re.M)
    if not m:
        sys.exit("bench: wrk failed:\n" + out.stdout + out.stderr)
    r = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["timeout"]
    return r


def wrk_cpu(server, mode, path, conc, seconds=None, accept=None,
            body=None, timeout=None):
    """wrk against `server`, with its CPU time per request (all of its
    processes, user and system) in r["cpu_per_req_us"]."""
    cpu0 = server.cpu_ticks()
    r = wrk(mode, path, conc, SECONDS if seconds is None else seconds,
            base=server.base, accept=accept, body=body, timeout=timeout)
    r["cpu_per_req_us"] = ((server.cpu_ticks() - cpu0) * 1e6
                           / os.sysconf("SC_CLK_TCK") / max(r["requests"], 1))
    return r


SCENARIOS = [
    # name, mode, path, baseline (None: this is a ceiling)
    ("static POST", "post", "/ok.json", None),
    ("POST /event (site)", "event", "/api/event", "static POST"),
    ("static GET 5.3 KB", "get", "/current.json", None),
    ("GET /current (20 types)", "get", "/api/current", "static GET 5.3 KB"),
    ("GET /current/{type}", "get", "/api/current/weather07",
     "static GET 5.3 KB"),
    ("POST /event (run)", "event", "/api/event", "static POST"),
]


POST_SCENARIOS = [sc for sc in SCENARIOS if sc[1] in ("post", "event")]
CONTEND_CONC = [c for c in CONC if c >= 8]


class Load:
    """A competing CPU load: `n` busy loops, each pinned to one core (in
    turn), at the bench's nice level (the server's), from start() to
    stop()."""

    LOOP = ("import os, sys\n"
            "try:\n"
            "    os.sched_setaffinity(0, {int(sys.argv[1])})\n"
            "except OSError:\n"
            "    pass\n"
            "while True:\n"
            "    pass\n")

    def __init__(self, n):
        self.n = n
        self.procs = []

    def start(self):
        cpus = sorted(os.sched_getaffinity(0))
        for i in range(self.n):
            self.procs.append(subprocess.Popen(
                [sys.executable, "-c", self.LOOP, str(cpus[i % len(cpus)])]))
        time.sleep(0.2)

    def stop(self):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []


def measure(server, results, rep, problems, scenarios=SCENARIOS, conc_list=CONC,
            label=""):
    for conc in conc_list:
        for name, mode, path, _ in scenarios:
            if name == "POST /event (run)":
                http("POST", "/api/run/start", {})
            before_lines = site_lines()
            r = wrk_cpu(server, mode, path, conc)
            if mode == "event":
                # Every answered POST is one line; wrk stops with up to
                # `conc` requests in flight, answered after it counted.
                got = site_lines() - before_lines
                ok = r["requests"] - r["status"]
                if not ok <= got <= ok + conc:
                    problems.append("%s%s c=%d: %d lines for %d answers"
                                    % (name, label, conc, got, ok))
            if name == "POST /event (run)":
                http("POST", "/api/run/stop")
            if r["status"] or r["errors"]:
                problems.append("%s%s c=%d rep %d: %d non-2xx, %d socket "
                                "errors" % (name, label, conc, rep,
                                            r["status"], r["errors"]))
            results.setdefault((name, conc), []).append(r)


def measure_contended(server, results, rep, problems):
    """The POST scenarios at c >= 8 with CONTEND busy loops beside the
    server, into `results`."""
    load = Load(CONTEND)
    load.start()
    try:
        measure(server, results, rep, problems, POST_SCENARIOS,
                CONTEND_CONC, " (under load)")
    finally:
        load.stop()


def exact_check(problems):
    """ab -n N: exactly N more lines, every answer 2xx."""
    n = 5000
    body = os.path.join(WORK, "ab-body.json")
    with open(body, "w") as f:
        json.dump({"type": "ab", "data": {"x": 1}}, f)
    before = site_lines()
    out = subprocess.run(["ab", "-q", "-k", "-n", str(n), "-c", "8", "-p",
                          body, "-T", "application/json",
                          BASE + "/api/event"], capture_output=True,
                         text=True).stdout
    # ab counts an answer whose length differs from the first as failed;
    # seq numbers gain digits, so only the other kinds count here.
    kinds = re.search(r"Connect: (\d+), Receive: (\d+), Length: \d+, "
                      r"Exceptions: (\d+)", out)
    failed = sum(int(x) for x in kinds.groups()) if kinds else int(
        re.search(r"Failed requests:\s+(\d+)", out).group(1))
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    added = site_lines() - before
    line = "ab -n %d -c 8: %d lines added, %d failed, %s non-2xx" % (
        n, added, failed, non2xx.group(1) if non2xx else "0")
    if added != n or failed or non2xx:
        problems.append(line)
    return line


def status_auto():
    code, body = http("GET", "/server-status?auto")
    return body.decode() if code == 200 else ""


def memory_check(server, problems):
    """RSS per child and shared-state use stay flat over many events."""
    if MEMORY_EVENTS <= 0:
        return ["memory check skipped (BENCH_MEMORY_EVENTS=0)"]
    warm = min(100000, MEMORY_EVENTS // 10)
    env = dict(os.environ, BENCH_MODE="event", BENCH_PATH="/api/event")

    def post(count):
        # wrk has no request count; run it long enough, then count lines.
        start = site_lines()
        while site_lines() - start < count:
            subprocess.run(["wrk", "-t2", "-c16", "-d2s", "-s", LUA,
                            BASE + "/api/event"], capture_output=True,
                           env=env)

    post(warm)
    rss0, st0 = server.child_rss_kb(), status_auto()
    post(MEMORY_EVENTS)
    rss1, st1 = server.child_rss_kb(), status_auto()
    lines = ["memory: %d events after a %d-event warm-up" %
             (MEMORY_EVENTS, warm)]
    for pid in sorted(rss0):
        if pid in rss1:
            grew = rss1[pid] - rss0[pid]
            lines.append("  child %d RSS %d kB -> %d kB (%+d kB)"
                         % (pid, rss0[pid], rss1[pid], grew))
            if grew > 256:
                problems.append("child %d RSS grew by %d kB" % (pid, grew))
    used = [re.search(r"PanoptesStateBytesUsed: (\d+)", s) for s in (st0, st1)]
    if all(used):
        a, b = int(used[0].group(1)), int(used[1].group(1))
        lines.append("  shared state used %d -> %d bytes" % (a, b))
        # Seq numbers gain digits (a few bytes per type), nothing grows
        # per event.
        if b - a > 1024:
            problems.append("shared state use grew: %d -> %d" % (a, b))
    else:
        lines.append("  shared state use: not reported (no mod_status "
                     "section)")
    return lines


def fmt_us(us):
    return "%.2f ms" % (us / 1000.0)


def print_table(results, scenarios, conc_list):
    """Medians over the repetitions; a ratio is to the scenario's ceiling
    within each repetition, then the median of those."""
    print("%-26s %4s %10s %10s %10s %12s %8s %9s %8s" % (
        "scenario", "c", "req/s", "p50", "p99", "CPU/req", "ratio",
        "p99 ratio", "CPU ratio"))
    for conc in conc_list:
        for name, _, _, base in scenarios:
            rs = results[(name, conc)]
            rps = statistics.median(r["rps"] for r in rs)
            p50 = statistics.median(r["p50_us"] for r in rs)
            p99 = statistics.median(r["p99_us"] for r in rs)
            cpu = statistics.median(r["cpu_per_req_us"] for r in rs)
            ratio = p99r = cpur = each = ""
            if base:
                bs = results[(base, conc)]
                ratios = [r["rps"] / b["rps"] for r, b in zip(rs, bs)]
                ratio = "%.2f" % statistics.median(ratios)
                each = " ".join("%.2f" % x for x in ratios)
                p99r = "%.2f" % statistics.median(
                    r["p99_us"] / max(b["p99_us"], 1) for r, b in zip(rs, bs))
                cpur = "%.2f" % statistics.median(
                    r["cpu_per_req_us"] / max(b["cpu_per_req_us"], 1e-9)
                    for r, b in zip(rs, bs))
            print("%-26s %4d %10.0f %10s %10s %9.1f us %8s %9s %8s  %s" % (
                name, conc, rps, fmt_us(p50), fmt_us(p99), cpu, ratio, p99r,
                cpur, each))


SYNC_CONC = (8, 64)


def settle(site):
    """Wait until the answers of the last run (wrk stops with requests in
    flight) have all landed: the line count holds still for 100 ms."""
    last = site_lines(site)
    for _ in range(40):
        time.sleep(0.1)
        now = site_lines(site)
        if now == last:
            return
        last = now


def sync_compare(problems):
    """POST /event with PanoptesTelemetrySync On against Off, interleaved:
    {conc: [(on_run, off_run)]} per repetition."""
    servers = {
        False: Server(sync=False, work=WORK + "-sync-off", port=PORT + 1),
        True: Server(sync=True, work=WORK + "-sync-on", port=PORT + 2),
    }
    runs = {c: [] for c in SYNC_CONC}
    try:
        for srv in servers.values():
            srv.start()
        for rep in range(REPS):
            for conc in SYNC_CONC:
                got = {}
                # Off first in even repetitions, On first in odd ones: a
                # drift of the machine's load favours neither.
                for sync in ((False, True) if rep % 2 == 0 else (True, False)):
                    srv = servers[sync]
                    settle(srv.site)
                    before = site_lines(srv.site)
                    r = wrk_cpu(srv, "event", "/api/event", conc)
                    lines = site_lines(srv.site) - before
                    ok = r["requests"] - r["status"]
                    name = "Sync %s c=%d rep %d" % ("On" if sync else "Off",
                                                   conc, rep)
                    if not ok <= lines <= ok + conc:
                        problems.append("%s: %d lines for %d answers"
                                        % (name, lines, ok))
                    if r["status"] or r["errors"]:
                        problems.append("%s: %d non-2xx, %d socket errors"
                                        % (name, r["status"], r["errors"]))
                    got[sync] = r
                runs[conc].append((got[True], got[False]))
        _, st = http("GET", "/server-status?auto", base=servers[True].base)
        m = re.search(r"PanoptesSyncLines: (\d+)\nPanoptesSyncFlushes: (\d+)",
                      st.decode())
        flushes = (int(m.group(1)), int(m.group(2))) if m else None
    finally:
        for srv in servers.values():
            srv.stop()
    return runs, flushes


def print_sync(runs, flushes):
    print()
    print("PanoptesTelemetrySync On vs Off, POST /event (site), %d "
          "interleaved repetitions x %d s" % (REPS, SECONDS))
    print("%-26s %4s %10s %10s %10s %12s %8s %9s %8s" % (
        "scenario", "c", "req/s", "p50", "p99", "CPU/req", "ratio",
        "p99 ratio", "CPU ratio"))
    for conc in SYNC_CONC:
        pairs = runs[conc]
        for sync in (False, True):
            rs = [p[0] if sync else p[1] for p in pairs]
            ratio = p99r = cpur = ""
            if sync:
                ratio = "%.2f" % statistics.median(
                    on["rps"] / off["rps"] for on, off in pairs)
                p99r = "%.2f" % statistics.median(
                    on["p99_us"] / max(off["p99_us"], 1) for on, off in pairs)
                cpur = "%.2f" % statistics.median(
                    on["cpu_per_req_us"] / max(off["cpu_per_req_us"], 1e-9)
                    for on, off in pairs)
            print("%-26s %4d %10.0f %10s %10s %9.1f us %8s %9s %8s" % (
                "POST /event, Sync " + ("On" if sync else "Off"), conc,
                statistics.median(r["rps"] for r in rs),
                fmt_us(statistics.median(r["p50_us"] for r in rs)),
                fmt_us(statistics.median(r["p99_us"] for r in rs)),
                statistics.median(r["cpu_per_req_us"] for r in rs),
                ratio, p99r, cpur))
        print("  Sync On / Off per repetition at c=%d: %s" % (
            conc, " ".join("%.2f" % (on["rps"] / off["rps"])
                           for on, off in pairs)))
    if flushes:
        print("  Sync On: %d events waited for, %d flushes (%.1f events per "
              "flush)" % (flushes[0], flushes[1],
                          flushes[0] / max(flushes[1], 1)))


def main_sync():
    if not os.path.exists(SO):
        sys.exit("bench: build the module first (make build)")
    problems = []
    runs, flushes = sync_compare(problems)
    print_sync(runs, flushes)
    finish(problems)


def finish(problems, held=None):
    """The end of a benchmark: its problems, and exit status 1, if any;
    else the line saying what held."""
    if problems:
        print("\nPROBLEMS:")
        for p in problems:
            print("  " + p)
        sys.exit(1)
    if held:
        print("\n" + held)


def prepare():
    """The ceilings' files: the static POST's target, and for the static
    GET a /current of 20 types saved as a file."""
    seed_types(20)
    _, cur = http("GET", "/api/current")
    with open(os.path.join(WORK, "htdocs", "current.json"), "wb") as f:
        f.write(cur)
    with open(os.path.join(WORK, "htdocs", "ok.json"), "w") as f:
        f.write('{"ok":true}\n')


def main():
    if not os.path.exists(SO):
        sys.exit("bench: build the module first (make build)")
    problems = []
    results = {}
    server = Server(sync=False)
    server.start()
    try:
        prepare()
        contended = {}
        for rep in range(REPS):
            measure(server, results, rep, problems)
            if CONTEND > 0 and CONTEND_CONC:
                measure_contended(server, contended, rep, problems)
        exact = exact_check(problems)
        memory = memory_check(server, problems)
    finally:
        server.stop()

    # PanoptesTelemetrySync On against Off (two servers of their own).
    sync_runs, sync_flushes = sync_compare(problems)

    print()
    print("make bench: %d repetitions x %d s per run, wrk, event MPM, "
          "2 x 64 threads, keep-alive" % (REPS, SECONDS))
    print_table(results, SCENARIOS, CONC)
    if contended:
        print()
        print("Under load: the POST scenarios again, with %d busy loops "
              "beside the server" % CONTEND)
        print_table(contended, POST_SCENARIOS, CONTEND_CONC)
    print_sync(sync_runs, sync_flushes)
    print()
    print("correctness: " + exact)
    for line in memory:
        print(line)
    finish(problems, "no non-2xx answers, no socket errors, every answered "
           "event is one line")


def main_contended():
    """The POST scenarios only, without and with the competing load,
    interleaved in each repetition."""
    if not os.path.exists(SO):
        sys.exit("bench: build the module first (make build)")
    if CONTEND <= 0 or not CONTEND_CONC:
        sys.exit("bench: BENCH_CONTEND and a BENCH_CONC of 8 or more, please")
    problems = []
    results, contended = {}, {}
    server = Server(sync=False)
    server.start()
    try:
        prepare()
        for rep in range(REPS):
            measure(server, results, rep, problems, POST_SCENARIOS,
                    CONTEND_CONC)
            measure_contended(server, contended, rep, problems)
    finally:
        server.stop()
    print()
    print("make bench-contended: %d repetitions x %d s per run, wrk, event "
          "MPM, 2 x 64 threads, keep-alive" % (REPS, SECONDS))
    print_table(results, POST_SCENARIOS, CONTEND_CONC)
    print()
    print("Under load: %d busy loops beside the server" % CONTEND)
    print_table(contended, POST_SCENARIOS, CONTEND_CONC)
    finish(problems)


if __name__ == "__main__":
    if sys.argv[1:] == ["sync"]:
        main_sync()
    elif sys.argv[1:] == ["contended"]:
        main_contended()
    else:
        main()
