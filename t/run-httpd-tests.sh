#!/bin/sh
# Run the Apache::Test suite (t/*.t) against the freshly built module under
# one MPM, and fail loudly unless tests really ran and all passed.
#
#   t/run-httpd-tests.sh prefork|worker|event
#
# Exit status: 0 only if the harness reported "All tests successful" /
# "Result: PASS" with a non-zero test count covering every t/*.t file, and
# t/logs/error_log has no crash (segfault, AH00052, "exit signal").
#
# Environment:
#   PTM_MODULE   module to load (default .libs/mod_panoptes_telemetry.so)
#   PTM_TEST_TZ  TZ for httpd and the tests (default: one per MPM, so the
#                noon day-key rule is checked at three UTC offsets)
#   PTM_TESTS    test files to run (default: t/*.t)
#   PTM_HTTPD    httpd binary or wrapper to run (e.g. one preloading libasan)

set -u

mpm=${1:-}
case "$mpm" in
    prefork|worker|event) ;;
    *) echo "usage: $0 prefork|worker|event" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.." || exit 2
top=$(pwd)
so=${PTM_MODULE:-$top/.libs/mod_panoptes_telemetry.so}

fail() {
    echo "FAIL [httpd tests, $mpm MPM]: $*" >&2
    exit 1
}

[ -f "$so" ] || fail "$so is missing; run 'make build' first"
command -v perl >/dev/null || fail "perl is missing"
perl -MApache::TestRun -e1 2>/dev/null ||
    fail "Apache::Test is missing (Debian package libapache2-mod-perl2)"

# One time zone per MPM (POSIX TZ strings, no tzdata needed): UTC, UTC+14,
# UTC-11.  Whatever the hour, the three runs sit on different sides of local
# noon most of the day.
if [ -n "${PTM_TEST_TZ:-}" ]; then
    TZ=$PTM_TEST_TZ
else
    case "$mpm" in
        prefork) TZ='UTC0' ;;
        worker)  TZ='<+14>-14' ;;
        event)   TZ='<-11>11' ;;
    esac
fi
export TZ
export PTM_MPM="$mpm" PTM_MODULE="$so"

# Stop a server left over from an interrupted run, forget the previous
# configuration (it names the previous MPM), and start from empty state:
# counters start at 1 and no run is active (the module may persist both
# in the site directory).
perl t/TEST.PL -clean >/dev/null 2>&1
rm -rf t/site t/state t/runroot t/logs t/htdocs t/conf/httpd-minimal.conf
[ -e t/site ] || [ -e t/state ] && fail "could not remove t/site or t/state"

out=$(mktemp "${TMPDIR:-/tmp}/ptm-httpd-tests.XXXXXX") || exit 2
trap 'rm -f "$out"' EXIT

echo "== Apache::Test suite, $mpm MPM, TZ=$TZ, module $so"
# Name the files: Apache::Test would also pick up *.t in any subdirectory.
tests=${PTM_TESTS:-$(ls t/*.t)}
# shellcheck disable=SC2086
perl t/TEST.PL -verbose=0 $tests 2>&1 | tee "$out"

# Make sure the server is down even if the harness died half-way.
perl t/TEST.PL -stop-httpd >/dev/null 2>&1

# --- did tests run, and did they pass? ------------------------------------
ntests=$(sed -n 's/^Files=\([0-9]*\), Tests=\([0-9]*\),.*/\2/p' "$out" | tail -n 1)
nfiles=$(sed -n 's/^Files=\([0-9]*\), Tests=\([0-9]*\),.*/\1/p' "$out" | tail -n 1)
ntests=${ntests:-0}
nfiles=${nfiles:-0}
# shellcheck disable=SC2086
want_files=$(echo $tests | wc -w)

failed=$(sed -n 's/^Failed \([0-9]*\)\/[0-9]* subtests.*/\1/p' "$out" |
    awk '{s += $1} END {print s + 0}')
problems=""
if ! grep -q '^All tests successful' "$out"; then
    problems="$problems; no 'All tests successful' line"
fi
if ! grep -q '^Result: PASS' "$out"; then
    problems="$problems; no 'Result: PASS' line"
fi
if [ "$ntests" -eq 0 ]; then
    problems="$problems; no test ran"
fi
if [ "$nfiles" -ne "$want_files" ]; then
    problems="$problems; $nfiles test files ran, expected $want_files"
fi
if grep -q 'Apache cannot spawn child processes as root' "$out"; then
    problems="$problems; Apache::Test refused to run as root"
fi

# --- did httpd crash? --------------------------------------------------------
if [ -f t/logs/error_log ]; then
    crashes=$(grep -E 'Segmentation fault|AH00052|exit signal|AH00060|still did not exit|double free|stack smashing|AddressSanitizer|LeakSanitizer|runtime error:' \
        t/logs/error_log)
    if [ -n "$crashes" ]; then
        echo "--- crash lines in t/logs/error_log:" >&2
        echo "$crashes" | head -n 20 >&2
        problems="$problems; httpd children crashed (see t/logs/error_log)"
    fi
else
    problems="$problems; no t/logs/error_log (did httpd start?)"
fi

if [ -n "$problems" ]; then
    [ "$failed" -eq 0 ] && failed=1
    passed=$((ntests > failed ? ntests - failed : 0))
    echo "httpd-$mpm: $passed passed, $failed failed"
    fail "${problems#; }"
fi
echo "httpd-$mpm: $ntests passed, 0 failed"
exit 0
