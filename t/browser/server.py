"""The httpd the browser tests load their pages from: the standalone
config of `make run` (conf/httpd-standalone.conf, the API at /), in
build/browser/<name>/ (wiped at start), with

  * a directory of pages served as static files at /<prefix>/ (mod_alias,
    mod_mime for the types an ES module needs),
  * any further directives the test passes (`extra`, one per line),
  * a log of every request with its Last-Event-ID header
    (build/browser/<name>/requests_log, read by `requests()`),
  * the dashboard (SPEC 12.4) at /ui/ as `make run` serves it: the staged
    files of build/ui (`make ui`), Debian's libjs-dygraphs at /javascript/,
  * optionally, a site directory filled before httpd starts
    (`prepare(site_dir)`, e.g. the history fixture), and
  * optionally (`mount="/telemetry"`), not the standalone config but the
    shipped one of the system Apache (conf/panoptes_telemetry.conf, its
    paths moved into build/browser/<name>/) with javascript-common's, in a
    minimal httpd: the API at /telemetry, the dashboard at /telemetry/ui/.

    with Server("stream", pages={"/browser/": "t/browser/pages"},
                extra=["PanoptesTelemetryStreamTimeout 2"]) as s:
        s.url + "/browser/stream.html"

Environment: PTM_MODULE (default .libs/mod_panoptes_telemetry.so),
APACHE2 (default /usr/sbin/apache2), PTM_BROWSER_PORT (default: a free
port), PTM_UI_DIR (default build/ui).
"""

import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
MODULES = "/usr/lib/apache2/modules"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name, pages=None, extra=(), port=None, prepare=None,
                 mount="/"):
        self.work = os.path.join(TOP, "build", "browser", name)
        self.site = os.path.join(self.work, "site")
        self.pages = dict(pages or {})
        self.extra = list(extra)
        self.port = port or int(os.environ.get("PTM_BROWSER_PORT", "0")) \
            or free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log = os.path.join(self.work, "httpd.log")
        self.requests_log = os.path.join(self.work, "requests_log")
        self.prepare = prepare
        self.mount = mount.rstrip("/")
        self.ui_dir = os.environ.get("PTM_UI_DIR",
                                     os.path.join(TOP, "build", "ui"))
        self.proc = None

    def _directives(self):
        # mod_alias and mod_mime come with the standalone config.
        d = ['LogFormat "%m %U%q %>s \\"%{Last-Event-ID}i\\"" ptm_lei',
             'CustomLog "%s" ptm_lei' % self.requests_log]
        for prefix, path in self.pages.items():
            path = os.path.join(TOP, path)
            d += ['Alias "%s" "%s/"' % (prefix, path.rstrip("/")),
                  '<Directory "%s">' % path, "Require all granted",
                  "</Directory>",
                  # Later than the standalone config's <Location />.
                  '<Location "%s">' % prefix, "SetHandler none",
                  "</Location>"]
        return d + self.extra

    def _mounted_config(self, user, group):
        """A minimal httpd with the shipped conf/panoptes_telemetry.conf
        (its paths moved here) and javascript-common's alias."""
        with open(os.path.join(TOP, "conf", "panoptes_telemetry.conf")) as f:
            shipped = f.read()
        state = os.path.join(self.work, "state")
        os.makedirs(state, mode=0o700)
        for old, new in (("/var/lib/panoptes-telemetry", self.site),
                         ("/var/lib/apache2/panoptes-telemetry", state),
                         ("/usr/share/panoptes-telemetry/ui", self.ui_dir),
                         ("/telemetry", self.mount)):
            shipped = shipped.replace(old, new)
        conf = os.path.join(self.work, "panoptes_telemetry.conf")
        with open(conf, "w") as f:
            f.write(shipped)
        main = os.path.join(self.work, "httpd.conf")
        mods = ["mpm_event", "authz_core", "authz_host", "alias", "dir",
                "mime", "headers"]
        with open(main, "w") as f:
            f.write("\n".join(
                ['ServerRoot "%s"' % self.work, "ServerName localhost",
                 'DefaultRuntimeDir "%s"' % self.work,
                 'PidFile "%s/httpd.pid"' % self.work,
                 "Listen 127.0.0.1:%d" % self.port]
                + ["LoadModule %s_module %s/mod_%s.so" % (m, MODULES, m)
                   for m in mods]
                + ['LoadModule panoptes_telemetry_module "${PTM_MODULE}"',
                   "User %s" % user, "Group %s" % group,
                   "ErrorLog /dev/stderr", "LogLevel warn",
                   "TypesConfig /etc/mime.types",
                   # As Debian's apache2.conf: /usr/share is readable.
                   "<Directory /usr/share>", "Require all granted",
                   "</Directory>",
                   "Include /etc/apache2/conf-available/javascript-common.conf",
                   'Include "%s"' % conf]) + "\n")
        return main

    def start(self, timeout=10, fresh=True):
        """Start httpd; `fresh=False` starts it again after stop() on
        what it left (its state, site directory and logs)."""
        module = os.environ.get("PTM_MODULE", os.path.join(
            TOP, ".libs", "mod_panoptes_telemetry.so"))
        if not os.path.isfile(module):
            raise RuntimeError("%s is missing: run 'make build' first"
                               % module)
        if fresh:
            if os.path.isdir(self.work):
                shutil.rmtree(self.work)
            os.makedirs(self.work)
        if os.geteuid() == 0:
            user = group = "www-data"
        else:
            user = pwd.getpwuid(os.getuid()).pw_name
            group = grp.getgrgid(os.getgid()).gr_name
        if self.prepare and fresh:
            os.makedirs(self.site)
            self.prepare(self.site)
            if os.geteuid() == 0:
                # httpd's children write there as www-data.
                uid = pwd.getpwnam(user).pw_uid
                gid = grp.getgrnam(group).gr_gid
                for root, dirs, files in os.walk(self.site):
                    for n in [root] + [os.path.join(root, x)
                                       for x in dirs + files]:
                        os.lchown(n, uid, gid)
        env = dict(os.environ, PTM_SERVER_ROOT=self.work, PTM_MODULE=module,
                   PTM_LISTEN="127.0.0.1:%d" % self.port, PTM_USER=user,
                   PTM_GROUP=group, PTM_LOGLEVEL="info",
                   PTM_UI_DIR=self.ui_dir,
                   PANOPTES_TELEMETRY_SITE_DIR=self.site)
        if self.mount and fresh:
            conf = self._mounted_config(user, group)
        elif self.mount:
            conf = os.path.join(self.work, "httpd.conf")
        else:
            conf = os.path.join(TOP, "conf", "httpd-standalone.conf")
        cmd = [os.environ.get("APACHE2", "/usr/sbin/apache2"), "-f", conf,
               "-DFOREGROUND"]
        for line in self._directives():
            cmd += ["-c", line]
        with open(self.log, "wb" if fresh else "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log,
                                         stderr=subprocess.STDOUT,
                                         cwd=self.work)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("httpd exited with %d:\n%s"
                                   % (self.proc.returncode, self.output()))
            try:
                if self.http("GET", "/health")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("httpd did not answer on %s within %g s:\n%s"
                           % (self.url, timeout, self.output()))

    def http(self, method, path, body=None, headers=None):
        """(status, parsed JSON or raw bytes); `path` is under the mount."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + self.mount + path, data=data,
                                     method=method, headers=headers or {})
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                code, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            code, raw = e.code, e.read()
        try:
            return code, json.loads(raw)
        except ValueError:
            return code, raw

    def requests(self):
        """[(method, path and query, status, Last-Event-ID or None)]."""
        out = []
        try:
            with open(self.requests_log) as f:
                for line in f:
                    m = re.match(r'(\S+) (\S+) (\d+) "(.*)"$', line.rstrip())
                    if m:
                        lei = m.group(4)
                        out.append((m.group(1), m.group(2), int(m.group(3)),
                                    None if lei == "-" else lei))
        except OSError:
            pass
        return out

    def output(self):
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def crash_lines(self):
        return [line for line in self.output().splitlines()
                if re.search(r"segfault|AH00052|exit signal|:crit\]|"
                             r":alert\]|:emerg\]", line)]

    def stop(self):
        """Stop httpd; its exit status (None if it was not running)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            # As t/client/test_client.py: the event MPM's workers first
            # finish the last connections (t/lib/PTMTest.pm, stop_server).
            time.sleep(0.3)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
