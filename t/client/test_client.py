#!/usr/bin/env python3
"""The module driven by a real client: t/client/telemetry_client.py, written
to upstream's TelemetryClient interface, used the way POCS uses it.

Starts its own httpd from conf/httpd-standalone.conf (as `make run` does) on
a free port (6599 if it is free) with a temporary site directory, plus a
second mount of the API at /telemetry, and runs the tests against it.

    python3 t/client/test_client.py        (make test-client)

Environment: PTM_MODULE (default .libs/mod_panoptes_telemetry.so),
APACHE2 (default /usr/sbin/apache2), PTM_CLIENT_PORT (default 6599).
The output ends with unittest's OK/FAILED and "test-client: N passed, M failed".
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True          # no __pycache__ in t/client/

import requests  # noqa: E402

from telemetry_client import TelemetryClient, TelemetryClientError, utc_timestamp  # noqa: E402

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ENV_KEYS = ("PANOPTES_TELEMETRY_HOST", "PANOPTES_TELEMETRY_PORT")


class Server:
    """One httpd in the foreground, from the standalone config."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="ptm-client-")
        os.chmod(self.tmp, 0o755)           # the children (www-data) reach site/
        self.root = os.path.join(self.tmp, "root")
        self.site = os.path.join(self.tmp, "site")
        os.mkdir(self.root)
        self.log = os.path.join(self.tmp, "httpd.log")
        self.port = self._pick_port(int(os.environ.get("PTM_CLIENT_PORT", "6599")))
        self.proc = None

    @staticmethod
    def _free(port):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

    def _pick_port(self, wanted):
        if self._free(wanted):
            return wanted
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def start(self):
        module = os.environ.get("PTM_MODULE",
                                os.path.join(TOP, ".libs", "mod_panoptes_telemetry.so"))
        if not os.path.isfile(module):
            raise RuntimeError(f"{module} is missing: run 'make build' first")
        if os.geteuid() == 0:
            user = group = "www-data"
        else:
            import grp
            import pwd
            user = pwd.getpwuid(os.getuid()).pw_name
            group = grp.getgrgid(os.getgid()).gr_name
        env = dict(os.environ,
                   PTM_SERVER_ROOT=self.root, PTM_MODULE=module,
                   PTM_LISTEN=f"127.0.0.1:{self.port}",
                   PTM_USER=user, PTM_GROUP=group, PTM_LOGLEVEL="info",
                   PANOPTES_TELEMETRY_SITE_DIR=self.site)
        httpd = os.environ.get("APACHE2", "/usr/sbin/apache2")
        # The same API mounted a second time at /telemetry, as in the system
        # Apache's panoptes_telemetry.conf: routes are relative to it.
        mount = ["-c", "<Location /telemetry>", "-c", "SetHandler panoptes-telemetry",
                 "-c", "Require all granted", "-c", "</Location>"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [httpd, "-f", os.path.join(TOP, "conf", "httpd-standalone.conf"),
                 "-DFOREGROUND"] + mount,
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"httpd exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"httpd did not answer on {self.url} within 10 s:\n{self.output()}")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def output(self):
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            # httpd's event MPM can crash a child that SIGTERM finds with a
            # connection in a worker (close_worker_sockets; see
            # t/lib/PTMTest.pm, stop_server): let the last one end first.
            time.sleep(0.3)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


SERVER = None


def setUpModule():
    global SERVER
    SERVER = Server()
    try:
        SERVER.start()
    except Exception:
        SERVER.stop()
        SERVER.cleanup()
        raise


def tearDownModule():
    SERVER.stop()
    out, rc = SERVER.output(), SERVER.proc.returncode
    SERVER.cleanup()
    # A crash while stopping shows only here.
    bad = crash_lines(out)
    if rc != 0 or bad:
        raise AssertionError(f"httpd stopped with status {rc}: {bad or out[-2000:]}")


def crash_lines(out):
    return [line for line in out.splitlines()
            if re.search(r"segfault|AH00052|exit signal|:crit\]|:alert\]|:emerg\]", line)]


def lines(path):
    with open(path, encoding="ascii") as f:
        return [json.loads(line) for line in f]


def site_lines():
    out = []
    for name in sorted(os.listdir(SERVER.site)):
        if name.startswith("site_") and name.endswith(".ndjson"):
            out += lines(os.path.join(SERVER.site, name))
    return out


class Base(unittest.TestCase):
    def setUp(self):
        self.client = TelemetryClient(base_url=SERVER.url)
        # Every test starts and ends with no run active.
        self.assertFalse(self.client.ready()["run_active"], "a run was left active")

    def tearDown(self):
        try:
            self.client.stop_run()
        except TelemetryClientError:
            pass
        self.client.close()

    def assertRaisesStatus(self, status, func, *args, **kwargs):
        with self.assertRaises(TelemetryClientError) as cm:
            func(*args, **kwargs)
        self.assertEqual(cm.exception.status_code, status, cm.exception)
        self.assertIsInstance(cm.exception, requests.HTTPError)
        return cm.exception.detail


class T1Service(Base):
    def test_health(self):
        self.assertEqual(self.client.health(), {"ok": True})

    def test_ready(self):
        self.assertEqual(self.client.ready(),
                         {"ready": True, "run_active": False, "version": "0.1.0"})

    def test_client_with_no_arguments_follows_the_environment(self):
        saved = {k: os.environ.get(k) for k in ENV_KEYS}
        try:
            os.environ.pop("PANOPTES_TELEMETRY_HOST", None)
            os.environ["PANOPTES_TELEMETRY_PORT"] = str(SERVER.port)
            with TelemetryClient() as client:
                self.assertEqual(client.base_url, f"http://localhost:{SERVER.port}")
                self.assertEqual(client.health(), {"ok": True})
                ev = client.post_event("env_client", {"via": "localhost"})
                self.assertEqual(client.current_event("env_client"), ev)
            os.environ["PANOPTES_TELEMETRY_HOST"] = "127.0.0.1"
            with TelemetryClient() as client:
                self.assertEqual(client.base_url, f"http://127.0.0.1:{SERVER.port}")
                self.assertTrue(client.ready()["ready"])
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def test_defaults_without_environment(self):
        saved = {k: os.environ.pop(k, None) for k in ENV_KEYS}
        try:
            self.assertEqual(TelemetryClient().base_url, "http://localhost:6562")
            self.assertEqual(TelemetryClient(host="::1", port=7000).base_url,
                             "http://[::1]:7000")
        finally:
            for k, v in saved.items():
                if v is not None:
                    os.environ[k] = v

    def test_api_mounted_at_a_path(self):
        with TelemetryClient(base_url=SERVER.url + "/telemetry/") as sub:
            self.assertEqual(sub.health(), {"ok": True})
            ev = sub.post_event("mounted", {"at": "/telemetry"})
            # One state behind both mounts.
            self.assertEqual(self.client.current_event("mounted"), ev)
            self.assertEqual(sub.current()["current"]["mounted"], ev)

    def test_shutdown_is_refused(self):
        r = requests.post(SERVER.url + "/shutdown", timeout=5)
        self.assertEqual((r.status_code, r.json()),
                         (409, {"detail": "Server shutdown not available"}))


class T2SiteEvents(Base):
    def test_post_event_sends_its_own_ts(self):
        before = datetime.now(timezone.utc)
        ev = self.client.post_event("weather", {"sky": "clear", "wind_mps": 2.1})
        self.assertEqual(list(ev), ["seq", "ts", "type", "data", "meta"])
        self.assertRegex(ev["ts"], TS_RE)
        sent = datetime.strptime(ev["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        self.assertLessEqual(abs((sent - before).total_seconds()), 5)
        self.assertEqual(ev["type"], "weather")
        self.assertEqual(ev["data"], {"sky": "clear", "wind_mps": 2.1})
        self.assertEqual(ev["meta"], {})
        # The line on disk is the same event, on the site stream.
        line = [x for x in site_lines() if x["seq"] == ev["seq"]]
        self.assertEqual(len(line), 1)
        self.assertEqual(line[0], dict(ev, stream="site"))

    def test_explicit_ts_and_meta_are_kept(self):
        ts = utc_timestamp(datetime(2026, 3, 17, 20, 15, 0, 123999, tzinfo=timezone.utc))
        self.assertEqual(ts, "2026-03-17T20:15:00.123Z")
        ev = self.client.post_event("power", {"mains": True}, meta={"source": "arduino"}, ts=ts)
        self.assertEqual(ev["ts"], ts)
        self.assertEqual(ev["meta"], {"source": "arduino"})

    def test_seq_increments(self):
        a = self.client.post_event("counter", {"n": 1})
        b = self.client.post_event("counter", {"n": 2})
        self.assertEqual(b["seq"], a["seq"] + 1)

    def test_current_and_current_event(self):
        ev = self.client.post_event("camera", {"temp_c": -10.5})
        cur = self.client.current()
        self.assertEqual(list(cur), ["current"])
        self.assertEqual(cur["current"]["camera"], ev)
        self.assertEqual(self.client.current_event("camera"), ev)
        self.assertEqual(self.client.get_current("camera"), ev)

    def test_unknown_type(self):
        detail = self.assertRaisesStatus(404, self.client.current_event, "no-such-type")
        self.assertEqual(detail, "No current event for type 'no-such-type'")
        self.assertIsNone(self.client.get_current("no-such-type"))
        detail = self.assertRaisesStatus(404, self.client.current_event, "it's")
        self.assertEqual(detail, "No current event for type \"it's\"")

    def test_type_with_spaces_and_unicode(self):
        ev = self.client.post_event("dome état", {"open": False})
        self.assertEqual(self.client.current_event("dome état"), ev)

    def test_insert_current_and_insert(self):
        cur = self.client.insert_current("mount", {"state": "parked"})
        self.assertEqual(self.client.get_current("mount"), cur)
        later = self.client.insert("mount", {"state": "slewing"})
        self.assertEqual(later["seq"], cur["seq"] + 1)
        self.assertEqual(self.client.get_current("mount"), cur)     # not current
        self.assertIn(dict(later, stream="site"), site_lines())     # but stored
        fresh = self.client.insert("only_stored", {"x": 1})
        self.assertIsNone(self.client.get_current("only_stored"))
        self.assertIn(dict(fresh, stream="site"), site_lines())

    def test_ephemeral_event(self):
        ev = self.client.insert_current("live", {"v": 1}, store_permanently=False)
        self.assertEqual(self.client.current_event("live"), ev)
        self.assertNotIn(ev["seq"], [x["seq"] for x in site_lines()])

    def test_non_object_data(self):
        for data in ([1, 2], 3.5, None, "text"):
            ev = self.client.post_event("odd", data)
            self.assertEqual(ev["data"], data)
            self.assertEqual(self.client.current_event("odd")["data"], data)

    def test_validation_errors_raise_with_the_detail(self):
        detail = self.assertRaisesStatus(422, self.client.post_event, "x", {}, meta=[1])
        self.assertEqual(detail[0]["type"], "dict_type")
        self.assertEqual(detail[0]["loc"], ["body", "meta"])
        detail = self.assertRaisesStatus(422, self.client.post_event, "x", {},
                                         make_current="maybe")
        self.assertEqual(detail[0]["type"], "bool_parsing")
        detail = self.assertRaisesStatus(422, self.client.post_event, "x", {}, ts=5)
        self.assertEqual(detail[0]["type"], "string_type")
        self.assertEqual(detail[0]["loc"], ["body", "ts"])

    def test_concurrent_clients(self):
        seqs, errors = [], []

        def worker(n):
            with TelemetryClient(base_url=SERVER.url) as c:
                for i in range(25):
                    try:
                        seqs.append(c.post_event("burst", {"w": n, "i": i})["seq"])
                    except Exception as e:      # noqa: BLE001 - reported below
                        errors.append(e)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(sorted(seqs), list(range(min(seqs), min(seqs) + 100)))
        on_disk = [x["seq"] for x in site_lines()]
        self.assertEqual(on_disk, sorted(on_disk))
        self.assertTrue(set(seqs) <= set(on_disk))


class T3Runs(Base):
    """The POCS way: a run directory named after the time, no run id."""

    def test_1_no_run(self):
        self.assertEqual(self.assertRaisesStatus(404, self.client.get_run), "No run is active")
        self.assertEqual(self.assertRaisesStatus(404, self.client.stop_run), "No run is active")

    def test_2_pocs_run(self):
        c = self.client
        site = c.post_event("weather", {"sky": "clear"})
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        run = c.start_run(run_dir=f"runs/{stamp}")
        self.assertEqual(list(run), ["run_dir", "run_id", "meta", "started_at"])
        self.assertEqual(run["run_id"], "001")          # no numbered directory yet
        self.assertEqual(run["run_dir"], os.path.join(SERVER.site, "runs", stamp))
        self.assertEqual(run["meta"], {"run_id": "001"})
        self.assertRegex(run["started_at"], TS_RE)
        self.assertTrue(os.path.isdir(run["run_dir"]))
        self.assertTrue(c.ready()["run_active"])
        self.assertEqual(c.get_run(), run)
        self.assertEqual(self.assertRaisesStatus(409, c.start_run), "A run is already active")

        ev = c.post_event("status", {"state": "observing"}, meta={"field": "M42"})
        self.assertEqual(ev["meta"], {"field": "M42", "run_id": "001"})
        weather = c.post_event("weather", {"sky": "cloudy"})
        self.assertEqual(weather["seq"], ev["seq"] + 1)
        self.assertEqual(c.current_event("weather"), weather)       # run wins
        self.assertEqual(c.current()["current"]["status"], ev)
        self.assertEqual(lines(os.path.join(run["run_dir"], "telemetry.ndjson")),
                         [dict(ev, stream="run"), dict(weather, stream="run")])

        self.assertEqual(c.stop_run(), run)
        self.assertEqual(self.assertRaisesStatus(404, c.get_run), "No run is active")
        self.assertFalse(c.ready()["run_active"])
        self.assertEqual(c.current_event("weather"), site)          # site again
        self.assertIsNone(c.get_current("status"))
        self.assertNotIn("status", c.current()["current"])
        # Nothing of the run reached the site stream.
        self.assertFalse([x for x in site_lines() if x["meta"].get("run_id") == "001"])

    def test_3_derived_run_and_seq_continuity(self):
        c = self.client
        run = c.start_run()
        self.assertEqual(run["run_dir"], os.path.join(SERVER.site, run["run_id"]))
        self.assertRegex(run["run_id"], r"^\d{3,}$")
        ev = c.post_event("status", {"state": "focusing"})
        self.assertGreater(ev["seq"], 1)       # the run counter is never reset
        self.assertEqual(c.stop_run()["run_id"], run["run_id"])
        nxt = c.start_run()
        self.assertEqual(int(nxt["run_id"]), int(run["run_id"]) + 1)
        c.stop_run()

    def test_4_explicit_run_id_and_meta(self):
        c = self.client
        run = c.start_run(run_id="042", meta={"observer": "pocs"})
        self.assertEqual(run["run_id"], "042")
        self.assertEqual(run["run_dir"], os.path.join(SERVER.site, "042"))
        self.assertEqual(run["meta"], {"observer": "pocs", "run_id": "042"})
        ev = c.post_event("status", {"state": "tracking"}, meta={"run_id": "spoofed"})
        self.assertEqual(ev["meta"], {"run_id": "042"})
        c.stop_run()

    def test_5_escaping_run_dir_is_refused(self):
        detail = self.assertRaisesStatus(422, self.client.start_run, run_dir="../escape")
        self.assertEqual(detail[0]["loc"], ["body", "run_dir"])
        self.assertFalse(self.client.ready()["run_active"])
        self.assertFalse(os.path.exists(os.path.join(SERVER.tmp, "escape")))


class T9ServerLog(unittest.TestCase):
    def test_no_crash_in_the_error_log(self):
        out = SERVER.output()
        self.assertEqual(crash_lines(out), [], out[-2000:])


def main():
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout)
    program = unittest.main(module=__name__, testRunner=runner, exit=False)
    r = program.result
    failed = len(r.failures) + len(r.errors) + len(r.unexpectedSuccesses)
    # Errors of setUpModule/setUpClass are not in testsRun.
    passed = max(0, r.testsRun - len(r.failures) - len(r.errors) - len(r.skipped)
                 - len(r.unexpectedSuccesses))
    if r.testsRun == 0 and failed == 0:
        failed = 1                              # nothing ran: that is a failure
    print(f"test-client: {passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 and r.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
