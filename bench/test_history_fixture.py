#!/usr/bin/env python3
"""Checks that bench/history_fixture.py writes what the module writes.

Every line must be the module's exact form (re-parsed and re-dumped it
gives the same bytes, keys in the module's order), seq must increase per
stream across files, each line must sit in the day file its ts names (the
noon rule, in several time zones, across DST changes), and run events in
their run's file within the journal's start and stop. Run with
`make history-fixture-check` or `python3 bench/test_history_fixture.py`.
"""

import datetime
import json
import os
import re
import shutil
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import history_fixture  # noqa: E402

KEYS = ["seq", "ts", "stream", "type", "data", "meta"]
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def dump(obj):
    return json.dumps(obj, separators=(",", ":")) + "\n"


def ts_ms(ts):
    d = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
    return int(d.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


def expected_key(ts):
    """The noon-boundary day key, worked out apart from the generator."""
    local = datetime.datetime.fromtimestamp(ts_ms(ts) / 1000)
    if local.hour < 12:
        local -= datetime.timedelta(days=1)
    return local.strftime("%Y%m%d")


class Zone:
    """Run a block in another TZ (the generator uses the process's)."""

    def __init__(self, tz):
        self.tz = tz

    def __enter__(self):
        self.old = os.environ.get("TZ")
        os.environ["TZ"] = self.tz
        time.tzset()

    def __exit__(self, *exc):
        if self.old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = self.old
        time.tzset()


class FixtureTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="history-fixture-")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def generate(self, name, *args):
        out = os.path.join(self.tmp, name)
        history_fixture.main(["--out", out, "--quiet"] + list(args))
        return out

    def read_lines(self, path):
        with open(path, "rb") as f:
            data = f.read()
        self.assertTrue(data.endswith(b"\n"), path)
        return data.decode("ascii").splitlines(keepends=True)

    def check_line(self, line, stream, meta):
        env = json.loads(line)
        self.assertEqual(list(env), KEYS)
        self.assertEqual(dump(env), line)       # byte-identical form
        self.assertIsInstance(env["seq"], int)
        self.assertRegex(env["ts"], TS)
        self.assertEqual(env["stream"], stream)
        self.assertEqual(env["meta"], meta)
        self.assertIsInstance(env["data"], dict)
        return env

    def check_site(self, out):
        """All checks of one fixture; returns (site lines, run lines)."""
        names = sorted(os.listdir(out))
        days = [n for n in names if n.startswith("site_")]
        self.assertTrue(days)
        last = 0
        gaps = 0
        for name in days:
            self.assertRegex(name, r"^site_\d{8}\.ndjson$")
            for line in self.read_lines(os.path.join(out, name)):
                env = self.check_line(line, "site", {})
                self.assertEqual("site_%s.ndjson" % expected_key(env["ts"]),
                                 name, line)
                self.assertGreater(env["seq"], last)
                gaps += env["seq"] > last + 1
                last = env["seq"]
        self.assertGreater(gaps, 0, "no ephemeral gaps")
        nsite = sum(len(self.read_lines(os.path.join(out, n))) for n in days)
        return nsite, self.check_runs(out, names)

    def check_runs(self, out, names):
        raw = self.read_lines(os.path.join(out, ".runs.ndjson"))
        journal = [json.loads(x) for x in raw]
        for x, line in zip(journal, raw):
            self.assertEqual(dump(x), line)
        starts = journal[0::2]
        stops = journal[1::2]
        self.assertEqual(len(starts), len(stops))
        last = 0
        nrun = 0
        for i, (a, b) in enumerate(zip(starts, stops)):
            self.assertEqual(list(a), ["run_id", "run_dir", "start"])
            self.assertEqual(list(b), ["run_dir", "stop"])
            self.assertEqual(a["run_id"], "%03d" % (i + 1))
            self.assertEqual(a["run_dir"],
                             os.path.realpath(os.path.join(out, a["run_id"])))
            self.assertEqual(b["run_dir"], a["run_dir"])
            t0, t1 = ts_ms(a["start"]), ts_ms(b["stop"])
            self.assertLess(t0, t1)
            # Runs are at night: one day key for start and stop.
            self.assertEqual(expected_key(a["start"]),
                             expected_key(b["stop"]))
            path = os.path.join(a["run_dir"], "telemetry.ndjson")
            if not os.path.exists(path):
                continue
            for line in self.read_lines(path):
                env = self.check_line(line, "run", {"run_id": a["run_id"]})
                self.assertTrue(t0 <= ts_ms(env["ts"]) < t1, line)
                self.assertGreater(env["seq"], last)
                last = env["seq"]
                nrun += 1
        runs = {n for n in names if re.fullmatch(r"\d{3,}", n)}
        self.assertEqual(runs, {a["run_id"] for a in starts})
        return nrun

    def test_form_seq_and_day_key(self):
        out = self.generate("a", "--days", "4", "--end", "2026-03-10",
                            "--seed", "7")
        nsite, nrun = self.check_site(out)
        self.assertGreater(nsite, 4 * 1000)
        self.assertGreater(nrun, 100)

    def test_time_zones_and_dst(self):
        # Europe/Berlin and America/Santiago change their clocks inside
        # these windows; Asia/Kolkata has a half-hour offset.
        for tz, end in (("Europe/Berlin", "2026-03-30"),
                        ("America/Santiago", "2026-04-06"),
                        ("Asia/Kolkata", "2026-06-01"),
                        ("UTC", "2026-01-01")):
            with self.subTest(tz=tz), Zone(tz):
                self.check_site(self.generate(tz.replace("/", "_"),
                                              "--days", "3", "--end", end))

    def test_deterministic(self):
        args = ["--days", "3", "--end", "2026-05-01", "--seed", "x"]
        a, b = self.generate("a", *args), self.generate("b", *args)
        c = self.generate("c", "--days", "3", "--end", "2026-05-01",
                          "--seed", "y")
        key = "site_20260430.ndjson"
        with open(os.path.join(a, key), "rb") as f1, \
                open(os.path.join(b, key), "rb") as f2, \
                open(os.path.join(c, key), "rb") as f3:
            x, y, z = f1.read(), f2.read(), f3.read()
        self.assertEqual(x, y)
        self.assertNotEqual(x, z)

    def test_nothing_after_now(self):
        out = self.generate("a", "--days", "2", "--end", "2026-05-01",
                            "--now", "2026-05-01T23:30:00Z")
        self.check_site(out)
        limit = ts_ms("2026-05-01T23:30:00.000Z")
        for root, _, files in os.walk(out):
            for name in files:
                for line in self.read_lines(os.path.join(root, name)):
                    x = json.loads(line)
                    t = x.get("ts") or x.get("start") or x.get("stop")
                    self.assertLessEqual(ts_ms(t), limit)

    def test_ephemeral(self):
        args = ["--days", "2", "--end", "2026-05-01",
                "--now", "2026-05-02T11:00:00Z"]
        plain = self.generate("a", *args)
        eph = os.path.join(self.tmp, "eph.ndjson")
        out = self.generate("b", *(args + ["--ephemeral", eph,
                                           "--ephemeral-hours", "6"]))
        stored = set()
        for name in os.listdir(out):
            if name.startswith("site_"):
                with open(os.path.join(plain, name), "rb") as f1, \
                        open(os.path.join(out, name), "rb") as f2:
                    self.assertEqual(f1.read(), f2.read())
                for line in self.read_lines(os.path.join(out, name)):
                    x = json.loads(line)
                    stored.add((x["ts"], x["type"]))
        lines = self.read_lines(eph)
        self.assertGreater(len(lines), 6 * 60)
        lo = ts_ms("2026-05-02T05:00:00.000Z")
        hi = ts_ms("2026-05-02T11:00:00.000Z")
        for line in lines:
            x = json.loads(line)
            self.assertEqual(dump(x), line)
            self.assertEqual(list(x), ["type", "data", "ts",
                                       "store_permanently"])
            self.assertIs(x["store_permanently"], False)
            self.assertTrue(lo <= ts_ms(x["ts"]) <= hi)
            self.assertNotIn((x["ts"], x["type"]), stored)

    def test_torn(self):
        out = self.generate("a", "--days", "2", "--end", "2026-05-01",
                            "--torn")
        last = sorted(n for n in os.listdir(out) if n.startswith("site_"))[-1]
        with open(os.path.join(out, last), "rb") as f:
            data = f.read()
        self.assertFalse(data.endswith(b"\n"))
        head, tail = data.rsplit(b"\n", 1)
        self.assertTrue(tail.startswith(b'{"seq":'))
        self.assertRaises(ValueError, json.loads, tail)
        for line in (head + b"\n").decode().splitlines(keepends=True):
            self.check_line(line, "site", {})

    def test_force_replaces_only_a_fixture(self):
        out = self.generate("a", "--days", "2", "--end", "2026-05-01")
        self.assertRaises(SystemExit, history_fixture.main,
                          ["--out", out, "--days", "1", "--quiet"])
        keep = os.path.join(out, "notes.txt")
        open(keep, "w").close()
        history_fixture.main(["--out", out, "--days", "1", "--end",
                              "2026-05-01", "--force", "--quiet"])
        self.assertTrue(os.path.exists(keep))
        self.assertEqual(sorted(n for n in os.listdir(out)
                                if n.startswith("site_")),
                         ["site_20260501.ndjson"])


if __name__ == "__main__":
    unittest.main()
