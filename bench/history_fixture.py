#!/usr/bin/env python3
"""A site directory of realistic telemetry history, as the module writes it.

For GET /events (SPEC 12.2) tests and benchmarks: DAYS day files ending
with the day key END, written exactly as mod_panoptes_telemetry would have
written them had a POCS unit posted to it all that time:

  <out>/site_YYYYMMDD.ndjson      site events, one file per day key
  <out>/<run_id>/telemetry.ndjson run events (runs of the night)
  <out>/.runs.ndjson              the runs journal (src/ptm_runs.h)

Lines are json.dumps(envelope, separators=(",", ":")) + "\\n" with the
keys seq, ts, stream, type, data, meta (SPEC 4). Each stream has its own
seq, used by every accepted event, ephemeral ones too, which are not
written: a file shows gaps (SPEC 5). The day key is the local date (this
process's TZ) of the acceptance time, the day before when that is before
12:00 (SPEC 4, ptm_time_day_key); ts is the acceptance time, as when the
server stamps it.

Traffic, as POCS posts it: weather and power every 60 s, status every ~3
min, safety every ~5 min, environment every 5 min; weather, status and
safety mostly with store_permanently=false. 1-3 runs a night between 20:00
and 05:00 local, during which every event goes to the run (SPEC 3.6).

Each day's traffic comes from its own PRNG, seeded by SEED and the day key,
so a day holds the same events whatever DAYS is (only seq numbers and run
ids, counted from the first day, differ). Nothing is written after NOW
(default: the clock), as the module could not have; with an END in the
past the output depends only on the arguments and TZ.

  history_fixture.py --days 365 --out DIR [--seed S] [--end YYYY-MM-DD]
                     [--now RFC3339] [--torn] [--force] [--quiet]
"""

import argparse
import datetime
import json
import math
import os
import random
import re
import sys
import time

DAY_MS = 86400 * 1000
RUNS_FILE = ".runs.ndjson"

# The module's line: compact, ASCII only, keys in insertion order.
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


def utc_iso(ms):
    """ts as the module prints it: UTC, milliseconds, Z (SPEC 6)."""
    return "%s.%03dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S",
                                       time.gmtime(ms // 1000)), ms % 1000)


def local_ms(day, hour, minute=0):
    """Epoch ms of a local wall-clock time on `day` (this process's TZ).
    mktime with isdst=-1 picks the offset in force then, so a window's
    length follows DST changes as the module's clock does."""
    return int(time.mktime((day.year, day.month, day.day, hour, minute, 0,
                            0, 0, -1))) * 1000


def day_key(ms):
    """The noon-boundary day key of an instant (as ptm_time_day_key)."""
    t = time.localtime(ms // 1000)
    d = datetime.date(t.tm_year, t.tm_mon, t.tm_mday)
    if t.tm_hour < 12:
        d -= datetime.timedelta(days=1)
    return d.strftime("%Y%m%d")


def now_day(now_ms):
    """The date whose day file the module is writing at `now_ms`."""
    return datetime.datetime.strptime(day_key(now_ms), "%Y%m%d").date()


class Sky:
    """One day's weather: slow random walks of cloud and wind over a
    seasonal, diurnal temperature, so that plots look like a site's."""

    def __init__(self, rng, day):
        self.rng = rng
        doy = day.timetuple().tm_yday
        self.mean_c = 11.0 + 7.0 * math.cos(2 * math.pi * (doy - 200) / 365)
        # Clouds and wind wander around the day's own level.
        self.cloud_base = rng.random() ** 2     # most days are clearer
        self.cloud = self.cloud_base
        self.wind_base = rng.uniform(2.0, 15.0)
        self.wind = self.wind_base
        self.rain = rng.random() < 0.05
        self.free_root = rng.uniform(40.0, 120.0)
        self.free_images = rng.uniform(300.0, 1800.0)

    def step(self):
        """Advance one sample (every weather event, stored or not)."""
        r = self.rng
        self.cloud += 0.01 * (self.cloud_base - self.cloud) + \
            r.gauss(0.0, 0.02)
        self.cloud = min(1.0, max(0.0, self.cloud))
        self.wind += 0.05 * (self.wind_base - self.wind) + r.gauss(0.0, 0.8)
        self.wind = min(60.0, max(0.0, self.wind))
        if r.random() < 0.002:
            self.rain = not self.rain and self.cloud > 0.6

    def ambient(self, hour):
        # Warmest at 15:00 local, coldest before dawn.
        return self.mean_c + 6.0 * math.cos(2 * math.pi * (hour - 15) / 24)

    # The samples below draw from `r`, not from the day's PRNG, so that
    # the data of ephemeral events (--ephemeral) can be made from a PRNG
    # of their own without changing what the files hold.

    def weather(self, r, hour):
        amb = self.ambient(hour) + r.gauss(0.0, 0.15)
        sky = amb - 38.0 * (1.0 - self.cloud) - 4.0 + r.gauss(0.0, 0.4)
        gust = self.wind + abs(r.gauss(0.0, 2.0))
        rain_f = int(2500 + r.gauss(0.0, 15)) if not self.rain else \
            int(1700 + r.gauss(0.0, 80))
        diff = sky - amb
        cloud = "clear" if diff < -25 else "cloudy" if diff < -15 else \
            "very cloudy"
        wind = "calm" if gust < 20 else "windy" if gust < 40 else \
            "very windy"
        rain = "wet" if self.rain else "dry"
        return {
            "station": "aag-cloudwatcher",
            "ambient_temp_C": round(amb, 2),
            "sky_temp_C": round(sky, 2),
            "wind_speed_KPH": round(gust, 1),
            "rain_frequency": rain_f,
            "pwm_value": round(max(0.0, 30.0 - amb) * 2.5, 1),
            "cloud_condition": cloud,
            "wind_condition": wind,
            "rain_condition": rain,
            "cloud_safe": cloud == "clear",
            "wind_safe": wind != "very windy",
            "rain_safe": not self.rain,
            "safe": cloud == "clear" and wind != "very windy"
            and not self.rain,
        }

    def power(self, r, in_run):
        return {
            "ac_ok": r.random() > 0.0005,
            "battery_low": False,
            "mount": round((1.8 if in_run else 0.3) + r.gauss(0, 0.05), 2),
            "camera_box": round((2.4 if in_run else 0.6) + r.gauss(0, 0.05),
                                2),
            "fans": round(0.35 + r.gauss(0, 0.02), 2),
            "weather_station": round(0.12 + r.gauss(0, 0.005), 3),
            "computer": round(1.1 + r.gauss(0, 0.04), 2),
        }

    def status(self, r, hour, in_run, dark):
        if in_run:
            state, nxt = r.choice((("observing", "analyzing"),
                                   ("tracking", "observing"),
                                   ("analyzing", "scheduling"),
                                   ("scheduling", "slewing")))
        elif dark:
            state, nxt = "parked", "ready"
        else:
            state, nxt = "sleeping", "ready"
        return {
            "state": state,
            "next_state": nxt,
            "system": {"free_space_root": round(self.free_root, 1),
                       "free_space_images": round(self.free_images, 1)},
            "observatory": {
                "can_observe": dark,
                "mount": {"tracking": in_run,
                          "ra_deg": round(r.uniform(0, 360), 4),
                          "dec_deg": round(r.uniform(-60, 30), 4)},
                "observation": ("field_%03d" % r.randrange(200))
                if in_run else None,
            },
        }

    def safety(self, r, hour, dark):
        return {
            "ac_power": True,
            "is_dark": dark,
            "good_weather": self.cloud < 0.45 and not self.rain,
            "free_space_root": self.free_root > 10,
            "free_space_images": self.free_images > 100,
        }

    def environment(self, r, hour):
        amb = self.ambient(hour)
        return {
            "camera_box": {"temp_C": round(amb + 4.0 + r.gauss(0, 0.2), 1),
                           "humidity": round(45 + r.gauss(0, 2), 1)},
            "control_box": {"temp_C": round(amb + 9.0 + r.gauss(0, 0.2), 1),
                            "humidity": round(30 + r.gauss(0, 2), 1)},
            "dewpoint_C": round(amb - 8.0 + r.gauss(0, 0.3), 1),
        }


# type, mean period (s), jitter (s, uniform around it), share stored.
SOURCES = (
    ("weather", 60.0, 1.0, 0.10),
    ("power", 60.0, 0.3, 1.0),
    ("status", 180.0, 60.0, 0.05),
    ("safety", 300.0, 90.0, 0.05),
    ("environment", 300.0, 0.2, 1.0),
)


def sample(sky, r, src, t, in_run):
    """The `data` of an event of SOURCES[src] at t."""
    lt = time.localtime(t // 1000)
    hour = lt.tm_hour + lt.tm_min / 60.0
    dark = hour >= 19.5 or hour < 5.5
    if src == 0:
        return sky.weather(r, hour)
    if src == 1:
        return sky.power(r, in_run)
    if src == 2:
        return sky.status(r, hour, in_run, dark)
    if src == 3:
        return sky.safety(r, hour, dark)
    return sky.environment(r, hour)


def night_runs(rng, day, start_ms, end_ms):
    """1-3 non-overlapping runs between 20:00 on `day` and 05:00 next."""
    n0 = local_ms(day, 20)
    n1 = local_ms(day + datetime.timedelta(days=1), 5)
    n = rng.choice((1, 2, 2, 3))
    slot = (n1 - n0) // n
    runs = []
    for i in range(n):
        lo = n0 + i * slot
        start = lo + rng.randrange(slot // 4)
        stop = start + rng.randrange(slot // 4, (lo + slot) - start)
        runs.append((start, stop))
    return runs


def day_events(rng, sky, start_ms, end_ms):
    """(t_ms, source index, stored) of one day window, in time order."""
    events = []
    for i, (_, period, jitter, share) in enumerate(SOURCES):
        t = start_ms + rng.randrange(int(period * 1000))
        while t < end_ms:
            events.append((t, i, rng.random() < share))
            t += int((period + rng.uniform(-jitter / 2, jitter / 2)) * 1000)
    events.sort()
    return events


class Fixture:
    def __init__(self, out, seed, now_ms, eph_since=None):
        self.out = out
        # --ephemeral: the POST bodies of the ephemeral events accepted
        # since eph_since (ms), which no file holds, to replay into a
        # server's recent-events ring.
        self.eph_since = eph_since
        self.eph_out = [] if eph_since is not None else None
        self.real = os.path.realpath(out)
        self.seed = seed
        self.now_ms = now_ms
        self.seq = {"site": 0, "run": 0}
        self.nrun = 0
        self.journal = []
        self.stats = {"files": 0, "lines": 0, "bytes": 0, "ephemeral": 0,
                      "runs": 0, "site": 0, "run": 0}
        self.last_file = None

    def write(self, path, lines):
        data = "".join(lines).encode("ascii")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        self.stats["files"] += 1
        self.stats["lines"] += len(lines)
        self.stats["bytes"] += len(data)

    def day(self, day):
        key = day.strftime("%Y%m%d")
        rng = random.Random("%s-%s" % (self.seed, key))
        erng = random.Random("%s-%s-ephemeral" % (self.seed, key))
        start = local_ms(day, 12)
        end = min(local_ms(day + datetime.timedelta(days=1), 12),
                  self.now_ms + 1)
        if end <= start:
            return
        sky = Sky(rng, day)
        runs = [(a, min(b, self.now_ms))
                for a, b in night_runs(rng, day, start, end)
                if a <= self.now_ms]
        events = day_events(rng, sky, start, end)
        site = []
        ri = 0
        run_lines = None
        for t, src, stored in events:
            # Runs start and stop between events: close a finished run,
            # open the next one that has begun.
            while ri < len(runs) and t >= runs[ri][1]:
                if run_lines is not None:
                    self.stop_run(runs[ri][1], run_lines)
                    run_lines = None
                ri += 1
            if run_lines is None and ri < len(runs) and t >= runs[ri][0]:
                run_lines = self.start_run(runs[ri][0])
            in_run = run_lines is not None
            if src == 0:
                sky.step()
            stream = "run" if in_run else "site"
            self.seq[stream] += 1
            self.stats[stream] += 1
            typ = SOURCES[src][0]
            if not stored:
                self.stats["ephemeral"] += 1
                if self.eph_out is not None and t >= self.eph_since:
                    self.eph_out.append(_dumps({
                        "type": typ, "data": sample(sky, erng, src, t,
                                                    in_run),
                        "ts": utc_iso(t), "store_permanently": False})
                        + "\n")
                continue
            data = sample(sky, rng, src, t, in_run)
            meta = {"run_id": self.run_id} if in_run else {}
            line = _dumps({"seq": self.seq[stream], "ts": utc_iso(t),
                           "stream": stream, "type": typ, "data": data,
                           "meta": meta}) + "\n"
            (run_lines if in_run else site).append(line)
        # A run still open at the window's last event: its stop (or NOW).
        if run_lines is not None:
            self.stop_run(runs[ri][1], run_lines)
        if site:
            self.last_file = os.path.join(self.out, "site_%s.ndjson" % key)
            self.write(self.last_file, site)

    def start_run(self, ms):
        self.nrun += 1
        self.run_id = "%03d" % self.nrun
        self.run_dir = os.path.join(self.real, self.run_id)
        self.journal.append(_dumps({"run_id": self.run_id,
                                    "run_dir": self.run_dir,
                                    "start": utc_iso(ms)}) + "\n")
        self.stats["runs"] += 1
        return []

    def stop_run(self, ms, lines):
        self.journal.append(_dumps({"run_dir": self.run_dir,
                                    "stop": utc_iso(ms)}) + "\n")
        # A run with no stored event still has its directory: run start
        # creates it.
        path = os.path.join(self.out, self.run_id, "telemetry.ndjson")
        if lines:
            self.write(path, lines)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)

    def torn(self):
        """A line cut short by a crash: a prefix, no newline."""
        if self.last_file is None:
            return
        seq = self.seq["site"] + 1
        line = _dumps({"seq": seq, "ts": utc_iso(self.now_ms),
                       "stream": "site", "type": "weather",
                       "data": {"ambient_temp_C": 1.5}, "meta": {}})
        with open(self.last_file, "ab") as f:
            f.write(line[:len(line) // 2].encode("ascii"))


def clear(out):
    """Remove what an earlier run wrote (only names this script writes)."""
    for name in os.listdir(out):
        path = os.path.join(out, name)
        if re.fullmatch(r"site_\d{8}\.ndjson", name) or name == RUNS_FILE:
            os.unlink(path)
        elif re.fullmatch(r"\d{3,}", name) and os.path.isdir(path):
            tel = os.path.join(path, "telemetry.ndjson")
            if os.path.exists(tel):
                os.unlink(tel)
            if not os.listdir(path):
                os.rmdir(path)


def parse_now(s):
    d = datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    if d.tzinfo is None:
        sys.exit("history_fixture: --now needs an offset or Z")
    return int(d.timestamp() * 1000)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", default="1")
    ap.add_argument("--end", help="last day key, YYYY-MM-DD (default: the "
                    "day file being written now)")
    ap.add_argument("--now", help="RFC 3339: nothing is written after it "
                    "(default: the clock)")
    ap.add_argument("--torn", action="store_true",
                    help="append a torn line to the last day file")
    ap.add_argument("--force", action="store_true",
                    help="replace an earlier fixture in OUT")
    ap.add_argument("--ephemeral", metavar="FILE",
                    help="also write, one a line, the POST /event bodies "
                    "of the ephemeral events (store_permanently=false, in "
                    "no file) of the last --ephemeral-hours")
    ap.add_argument("--ephemeral-hours", type=float, default=24.0)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    if a.days < 1:
        sys.exit("history_fixture: --days must be at least 1")
    began = time.monotonic()
    now_ms = parse_now(a.now) if a.now else int(time.time() * 1000)
    end = (datetime.date.fromisoformat(a.end) if a.end
           else now_day(now_ms))
    if os.path.isdir(a.out) and os.listdir(a.out):
        if not a.force:
            sys.exit("history_fixture: %s is not empty (--force replaces "
                     "an earlier fixture)" % a.out)
        clear(a.out)
    os.makedirs(a.out, exist_ok=True)
    eph_since = None
    if a.ephemeral:
        eph_since = now_ms - int(a.ephemeral_hours * 3600 * 1000)
    fx = Fixture(a.out, a.seed, now_ms, eph_since)
    first = end - datetime.timedelta(days=a.days - 1)
    for i in range(a.days):
        fx.day(first + datetime.timedelta(days=i))
    if fx.journal:
        fx.write(os.path.join(a.out, RUNS_FILE), fx.journal)
    if a.torn:
        fx.torn()
    if a.ephemeral:
        with open(a.ephemeral, "w") as f:
            f.writelines(fx.eph_out)
    s = fx.stats
    if not a.quiet:
        print("history-fixture: %s: %d days %s..%s, %d files, %d lines, "
              "%.1f MB; %d site and %d run events accepted, %d ephemeral "
              "(not written); %d runs; %.1f s"
              % (a.out, a.days, first.strftime("%Y%m%d"),
                 end.strftime("%Y%m%d"), s["files"], s["lines"],
                 s["bytes"] / 1e6, s["site"], s["run"], s["ephemeral"],
                 s["runs"], time.monotonic() - began))
    return fx


if __name__ == "__main__":
    main()
