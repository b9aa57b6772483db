"""What GET /events should answer over a fixture, worked out from its files.

bench/history.py checks the module's answers against this before it times
them, so that a fast wrong answer is never a result. It reads a site
directory the way SPEC 12.2 describes the selection: every line of the
day files and of the runs' files (found through the journal) whose ts is
in [since, until), in (ts, stream, seq) order. The ring's events are not
in any file: the caller accounts for them.
"""

import json
import os

import history_fixture as fixture

STREAM_ORDER = {"site": 0, "run": 1}


def file_lines(site):
    """(path, line) of every stored event in `site`."""
    paths = sorted(os.path.join(site, n) for n in os.listdir(site)
                   if n.startswith("site_") and n.endswith(".ndjson"))
    journal = os.path.join(site, fixture.RUNS_FILE)
    if os.path.exists(journal):
        with open(journal) as f:
            for line in f:
                run_dir = json.loads(line)["run_dir"]
                path = os.path.join(run_dir, "telemetry.ndjson")
                if path not in paths and os.path.exists(path):
                    paths.append(path)
    for path in paths:
        with open(path, "rb") as f:
            for line in f:
                yield path, line


def expect(site, since_ms, until_ms, types=None, stream=None):
    """The file lines (bytes, no newline) an ascending answer holds."""
    # Stamps of one fixed width compare as bytes as they do as times, so
    # a year of lines is tested without parsing one outside the window.
    lo = fixture.utc_iso(since_ms).encode()
    hi = fixture.utc_iso(until_ms).encode()
    out = []
    for _, line in file_lines(site):
        at = line.index(b'"ts":"') + 6
        ts = line[at:at + 24]
        if not lo <= ts < hi:
            continue
        e = json.loads(line)
        if types and e["type"] not in types:
            continue
        if stream and e["stream"] != stream:
            continue
        out.append(((ts, STREAM_ORDER[e["stream"]], e["seq"]),
                    line.rstrip(b"\n")))
    out.sort()
    return [line for _, line in out]


def file_form(event):
    """An answer's envelope as its file line (SPEC 12.2: byte-identical)."""
    return json.dumps(event, separators=(",", ":")).encode()
