"""A small PANOPTES telemetry client, written for the tests of this module.

It has the method names and arguments of upstream's
``panoptes.utils.telemetry.TelemetryClient`` (the interface POCS programs
against), and speaks the HTTP API of SPEC.md section 3.  It is our own code:
the point is to drive mod_panoptes_telemetry the way a real client does,
with ``requests``, JSON bodies and a client-side ``ts`` on every event.

    client = TelemetryClient()                  # $PANOPTES_TELEMETRY_HOST:PORT
    client = TelemetryClient(base_url="http://localhost/telemetry")
    client.post_event("weather", {"sky": "clear"})
    client.start_run(run_dir="runs/20260317T201500")
    client.current()["current"]["weather"]["data"]
    client.stop_run()

Any answer >= 400 raises TelemetryClientError (a requests.HTTPError) that
carries the status and the server's ``detail``.  Connection failures raise
requests' own exceptions.
"""

import os
from datetime import datetime, timezone

import requests

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 6562
DEFAULT_TIMEOUT = 10.0


class TelemetryClientError(requests.HTTPError):
    """The server answered >= 400; ``status_code`` and ``detail`` say why."""

    def __init__(self, method, url, status_code, detail, response=None):
        super().__init__(f"{method} {url} answered {status_code}: {detail!r}",
                         response=response)
        self.status_code = status_code
        self.detail = detail


def utc_timestamp(when=None):
    """``when`` (default now) as YYYY-MM-DDTHH:MM:SS.mmmZ in UTC, ms truncated."""
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


class TelemetryClient:
    """Client of the telemetry API mounted at ``base_url``.

    Without ``base_url`` the server is ``http://<host>:<port>`` with host and
    port from the arguments, else $PANOPTES_TELEMETRY_HOST and
    $PANOPTES_TELEMETRY_PORT, else localhost:6562.
    """

    def __init__(self, base_url=None, host=None, port=None,
                 timeout=DEFAULT_TIMEOUT, session=None):
        if base_url is None:
            host = host or os.environ.get("PANOPTES_TELEMETRY_HOST") or DEFAULT_HOST
            port = int(port or os.environ.get("PANOPTES_TELEMETRY_PORT") or DEFAULT_PORT)
            if ":" in host and not host.startswith("["):
                host = f"[{host}]"              # an IPv6 literal
            base_url = f"http://{host}:{port}"
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()

    def __repr__(self):
        return f"TelemetryClient(base_url={self.base_url!r})"

    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- plumbing -------------------------------------------------------------
    def _request(self, method, path, body=None):
        url = self.base_url + path
        kwargs = {"timeout": self.timeout}
        if body is not None:
            kwargs["json"] = body               # also sets the Content-Type
        response = self.session.request(method, url, **kwargs)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400:
            detail = payload.get("detail") if isinstance(payload, dict) else response.text
            raise TelemetryClientError(method, url, response.status_code, detail,
                                       response=response)
        if payload is None:
            raise TelemetryClientError(method, url, response.status_code,
                                       f"not JSON: {response.text[:200]!r}",
                                       response=response)
        return payload

    # --- service --------------------------------------------------------------
    def health(self):
        """GET /health: ``{"ok": true}``."""
        return self._request("GET", "/health")

    def ready(self):
        """GET /ready: ``{"ready", "run_active", "version"}``."""
        return self._request("GET", "/ready")

    # --- runs -----------------------------------------------------------------
    def start_run(self, run_dir=None, run_id=None, meta=None):
        """POST /run/start; returns the run ``{run_dir, run_id, meta, started_at}``.

        Without ``run_id`` the server derives the next numbered id; a relative
        ``run_dir`` is resolved under the server's site directory.  ``meta``
        is sent with ``run_id`` set (null when none is given), as upstream's
        client does.
        """
        body_meta = dict(meta or {})
        body_meta["run_id"] = run_id
        return self._request("POST", "/run/start",
                             {"run_dir": run_dir, "run_id": run_id, "meta": body_meta})

    def get_run(self):
        """GET /run: the active run; 404 ``No run is active`` raises."""
        return self._request("GET", "/run")

    def stop_run(self):
        """POST /run/stop: the run that was active; 404 when none was."""
        return self._request("POST", "/run/stop")

    # --- events ---------------------------------------------------------------
    def post_event(self, event_type, data, make_current=True, store_permanently=True,
                   meta=None, ts=None):
        """POST /event; returns the stored ``{seq, ts, type, data, meta}``.

        ``ts`` defaults to this machine's clock (UTC, milliseconds), so the
        event carries the time it was observed, not the time it arrived.
        """
        return self._request("POST", "/event", {
            "type": event_type,
            "data": data,
            "make_current": make_current,
            "store_permanently": store_permanently,
            "meta": {} if meta is None else meta,
            "ts": utc_timestamp() if ts is None else ts,
        })

    def current(self):
        """GET /current: ``{"current": {type: envelope, ...}}``."""
        return self._request("GET", "/current")

    def current_event(self, event_type):
        """GET /current/{type}: one envelope; an unknown type raises (404)."""
        return self._request("GET", "/current/" + requests.utils.quote(event_type, safe=""))

    # --- the PanDB-style calls POCS used before the telemetry server ------------
    def insert_current(self, event_type, data, store_permanently=True):
        """Record ``data`` and make it the current ``event_type``."""
        return self.post_event(event_type, data, make_current=True,
                               store_permanently=store_permanently)

    def insert(self, event_type, data):
        """Record ``data`` without making it current."""
        return self.post_event(event_type, data, make_current=False)

    def get_current(self, event_type):
        """The current ``event_type`` envelope, or None when there is none."""
        try:
            return self.current_event(event_type)
        except TelemetryClientError as err:
            if err.status_code == 404:
                return None
            raise
