#!/usr/bin/env python3
"""The forwarding program of bench/forward.py's lag run.

httpd runs it (PanoptesTelemetryForward "|python3 forward_consumer.py OUT")
and writes every event to its standard input; it writes each line to OUT
prefixed with the time it was read, from CLOCK_MONOTONIC (the clock the
bench's client reads too: one clock for every process of the machine):
"<ns> <line>".  Every read is timestamped once, so lines that came in one
read share a time: that is when they reached the consumer.
"""

import os
import sys
import time


def main():
    out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    rest = b""
    while True:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            break
        t = b"%d " % time.monotonic_ns()
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        if lines:
            os.write(out, b"".join(t + line + b"\n" for line in lines))
    os.close(out)


if __name__ == "__main__":
    main()
