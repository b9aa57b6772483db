#!/bin/sh
# The Debian package in this machine's own Apache, end to end:
#
#   build it (make deb), install it (dpkg -i), make sure apache2 runs with
#   the module, drive the API at http://127.0.0.1/telemetry/, check where the
#   files land and who owns them, purge the package, and check the module is
#   gone and Apache is back in the state it was found in.
#
#   sh t/deb/test-deb.sh          (make test-deb; as root, or with sudo)
#
# It refuses to start (and changes nothing) when the package or a
# `make install` copy of the module is already there.  An existing
# /var/lib/panoptes-telemetry is moved aside for the test and put back.
# Exit status 0 only if every check passed; the last line is
# "test-deb: N passed, M failed".

set -u

cd "$(dirname "$0")/../.." || exit 2

PKG=libapache2-mod-panoptes-telemetry
SITE=/var/lib/panoptes-telemetry
STATE=/var/lib/apache2/panoptes-telemetry
MODS=/etc/apache2/mods-available
ENMODS=/etc/apache2/mods-enabled
SO=/usr/lib/apache2/modules/mod_panoptes_telemetry.so
BASE=http://127.0.0.1/telemetry
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

pass=0
fail=0
was_running=no
backup=
installed=no
log_mark=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-deb.XXXXXX") || exit 2

ok() { pass=$((pass + 1)); echo "ok $((pass + fail)) - $*"; }
not_ok() { fail=$((fail + 1)); echo "not ok $((pass + fail)) - $*" >&2; }
check() { desc=$1; shift; if "$@"; then ok "$desc"; else not_ok "$desc"; fi; }
summary() { echo "test-deb: $pass passed, $fail failed"; }

# Apache's own notion of its pid file, as apache2ctl uses it.
apache_pidfile() {
    (set +u; . /etc/apache2/envvars 2>/dev/null; echo "${APACHE_PID_FILE:-/var/run/apache2/apache2.pid}")
}
apache_running() {
    pf=$(apache_pidfile)
    [ -s "$pf" ] && $SUDO kill -0 "$(cat "$pf" 2>/dev/null)" 2>/dev/null
}
wait_stopped() {
    i=0
    while apache_running && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
    ! apache_running
}
error_log() {
    (set +u; . /etc/apache2/envvars 2>/dev/null; echo "${APACHE_LOG_DIR:-/var/log/apache2}/error.log")
}

# Put the machine back: purge the package if still installed, Apache as it
# was, the site directory as it was.  Runs on every exit.
cleanup() {
    trap - EXIT INT TERM HUP PIPE
    if [ "$installed" = yes ] && dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q 'installed'; then
        echo "test-deb: purging $PKG left by a failed run" >&2
        DEBIAN_FRONTEND=noninteractive $SUDO dpkg --purge "$PKG" >&2 || true
    fi
    if [ "$was_running" = yes ]; then
        if apache_running; then $SUDO apachectl graceful >/dev/null 2>&1
        else $SUDO apachectl start >/dev/null 2>&1; fi
    elif apache_running; then
        $SUDO apachectl stop >/dev/null 2>&1; wait_stopped
    fi
    if [ -n "$backup" ]; then
        $SUDO rm -rf "$SITE" && $SUDO mv "$backup" "$SITE" &&
            echo "test-deb: restored the earlier $SITE"
    else
        $SUDO rm -rf "$SITE"
    fi
    rm -rf "$tmp"
}
die() {
    echo "test-deb: FATAL: $*" >&2
    fail=$((fail + 1))
    cleanup
    summary
    exit 1
}
trap 'die "interrupted"' INT TERM HUP PIPE
trap cleanup EXIT

# HTTP through python3 (a project dependency; curl may be missing):
# req METHOD PATH [JSON-BODY] sets $status and $body.
req() {
    python3 - "$1" "$BASE$2" "${3-}" >"$tmp/resp" 2>&1 <<'EOF'
import sys, urllib.request, urllib.error
method, url, body = sys.argv[1:4]
data = body.encode() if body else None
r = urllib.request.Request(url, data=data, method=method)
if data is not None:
    r.add_header("Content-Type", "application/json")
try:
    with urllib.request.urlopen(r, timeout=10) as resp:
        code, text = resp.status, resp.read()
except urllib.error.HTTPError as e:
    code, text = e.code, e.read()
except Exception as e:
    code, text = 0, str(e).encode()
sys.stdout.write("%d\n" % code)
sys.stdout.write(text.decode("utf-8", "replace"))
EOF
    status=$(head -n 1 "$tmp/resp")
    body=$(tail -n +2 "$tmp/resp")
}
# json EXPR: EXPR (Python, over j = the last response body) is true.
json() {
    python3 -c 'import json, sys; j = json.loads(sys.argv[1]); sys.exit(0 if eval(sys.argv[2]) else 1)' \
        "$body" "$1" 2>/dev/null
}
# expect DESC STATUS EXPR: the last response had STATUS and EXPR holds.
expect() {
    if [ "$status" = "$2" ] && json "$3"; then ok "$1"
    else not_ok "$1 (got $status: $body)"; fi
}
owner() { stat -c %U:%G "$1" 2>/dev/null; }

# --- preconditions: change nothing unless the machine is in a known state ---
[ "$(id -u)" = 0 ] || command -v sudo >/dev/null || die "needs root (dpkg -i into the system)"
command -v apache2ctl >/dev/null || die "apache2 is not installed"
command -v python3 >/dev/null || die "python3 is missing"
if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -qv 'not-installed'; then
    die "$PKG is already on this machine ($(dpkg-query -W -f='${Status}' "$PKG")); purge it first"
fi
for f in "$SO" "$MODS/panoptes_telemetry.load" "$MODS/panoptes_telemetry.conf" \
         "$ENMODS/panoptes_telemetry.load"; do
    [ -e "$f" ] || [ -L "$f" ] && die "$f exists (a 'make install' copy?): run 'make uninstall' first"
done
# a2enmod's state database: a module "disabled by the admin" is not enabled
# again by the package (that is the point of it), so the test could not run.
for f in /var/lib/apache2/module/*/panoptes_telemetry; do
    [ -e "$f" ] && die "$f exists (a2dismod'ed by hand?): 'a2dismod -p panoptes_telemetry' forgets it"
done
$SUDO apachectl configtest >"$tmp/ct" 2>&1 || die "the system Apache's configuration is broken before the test: $(cat "$tmp/ct")"
apache_running && was_running=yes
echo "test-deb: system apache2 running before the test: $was_running"
if [ -e "$SITE" ]; then
    backup="$SITE.test-deb-backup.$$"
    $SUDO mv "$SITE" "$backup" || die "cannot move $SITE aside"
    echo "test-deb: moved the existing $SITE to $backup for the test"
fi
elog=$(error_log)
[ -f "$elog" ] && log_mark=$($SUDO stat -c %s "$elog")

# --- build -------------------------------------------------------------------
ver=$(sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog)
arch=$(dpkg --print-architecture)
deb=build/deb/${PKG}_${ver}_${arch}.deb
echo "test-deb: make deb"
make deb >"$tmp/build.log" 2>&1 || { tail -n 40 "$tmp/build.log" >&2; die "make deb failed"; }
[ -f "$deb" ] || die "$deb was not built"
ok "make deb built $deb"

dpkg-deb -c "$deb" >"$tmp/contents"
for f in ./usr/lib/apache2/modules/mod_panoptes_telemetry.so \
         ./etc/apache2/mods-available/panoptes_telemetry.load \
         ./etc/apache2/mods-available/panoptes_telemetry.conf; do
    check "package ships $f" grep -q " $f\$" "$tmp/contents"
done
depends=$(dpkg-deb -f "$deb" Depends)
check "Depends has apache2-api ($depends)" sh -c 'echo "$1" | grep -q "apache2-api-[0-9]"' sh "$depends"
check "Depends has libjansson" sh -c 'echo "$1" | grep -q "libjansson"' sh "$depends"

# --- install -----------------------------------------------------------------
installed=yes
if ! DEBIAN_FRONTEND=noninteractive $SUDO dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1; then
    cat "$tmp/dpkg.log"
    echo "test-deb: dpkg -i failed, trying apt-get -f install"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -f install -y -qq >>"$tmp/dpkg.log" 2>&1 ||
        { cat "$tmp/dpkg.log" >&2; die "apt-get -f install failed"; }
fi
check "dpkg -i: $PKG is installed" sh -c \
    'dpkg-query -W -f="\${Status}" "$1" | grep -q "install ok installed"' sh "$PKG"
check "the maintainer scripts enabled the module" test -L "$ENMODS/panoptes_telemetry.load"
check "the .conf is enabled with it" test -L "$ENMODS/panoptes_telemetry.conf"
check "postinst created $SITE" test -d "$SITE"
check "$SITE belongs to www-data ($(owner "$SITE"))" test "$(owner "$SITE")" = www-data:www-data
check "apachectl configtest" sh -c '$1 apachectl configtest >/dev/null 2>&1' sh "$SUDO"

# policy-rc.d or a stopped server may have kept the maintainer scripts
# from restarting Apache: make the module live either way.
if apache_running; then
    $SUDO apachectl graceful >"$tmp/ctl" 2>&1 || { cat "$tmp/ctl" >&2; die "apachectl graceful failed"; }
else
    $SUDO apachectl start >"$tmp/ctl" 2>&1 || { cat "$tmp/ctl" >&2; die "apachectl start failed"; }
fi
i=0
while :; do
    req GET /health
    [ "$status" = 200 ] && break
    i=$((i + 1))
    [ $i -lt 50 ] || die "no answer from $BASE/health after 10 s (last: $status $body)"
    sleep 0.2
done
check "apache2 is running" apache_running
check "apache2ctl -M lists panoptes_telemetry_module" sh -c \
    '$1 apache2ctl -M 2>/dev/null | grep -q "panoptes_telemetry_module"' sh "$SUDO"

# --- the API at /telemetry -----------------------------------------------------
req GET /health
expect "GET /health" 200 'j == {"ok": True}'
req GET /ready
expect "GET /ready reports version $ver" 200 \
    "j == {'ready': True, 'run_active': False, 'version': '$ver'}"
req POST /event '{"type":"weather","data":{"sky":"clear","temp_c":11.5}}'
expect "POST /event weather" 200 \
    'j["seq"] == 1 and j["type"] == "weather" and j["data"] == {"sky": "clear", "temp_c": 11.5} and j["meta"] == {} and "stream" not in j'
req POST /event '{"type":"power","data":{"mains":true},"ts":"2026-03-17T20:15:00.000Z"}'
expect "POST /event power with a client ts" 200 \
    'j["seq"] == 2 and j["ts"] == "2026-03-17T20:15:00.000Z"'
req GET /current
expect "GET /current" 200 \
    'list(j["current"]) == ["weather", "power"] and j["current"]["weather"]["data"]["sky"] == "clear"'
req GET /current/weather
expect "GET /current/weather" 200 'j["seq"] == 1 and j["type"] == "weather"'
req GET /current/nothing
expect "GET /current/nothing is 404" 404 "j == {'detail': \"No current event for type 'nothing'\"}"
req GET /run
expect "GET /run with no run is 404" 404 'j == {"detail": "No run is active"}'
req POST /run/start '{}'
expect "POST /run/start derives run 001" 200 \
    "j['run_id'] == '001' and j['run_dir'] == '$SITE/001' and j['meta'] == {'run_id': '001'}"
req POST /run/start '{}'
expect "a second POST /run/start is 409" 409 'j == {"detail": "A run is already active"}'
req GET /ready
expect "GET /ready shows the run" 200 'j["run_active"] is True'
req POST /event '{"type":"status","data":{"state":"observing"}}'
expect "POST /event in the run" 200 'j["seq"] == 1 and j["meta"] == {"run_id": "001"}'
req POST /event '{"type":"weather","data":{"sky":"cloudy"},"store_permanently":false}'
expect "POST /event ephemeral in the run" 200 'j["seq"] == 2'
req GET /current/weather
expect "GET /current/weather: the run value wins" 200 'j["data"] == {"sky": "cloudy"}'
req GET /run
expect "GET /run" 200 'j["run_id"] == "001"'
req POST /run/stop
expect "POST /run/stop" 200 "j['run_id'] == '001' and j['run_dir'] == '$SITE/001'"
req GET /current/weather
expect "after the run the site value shows again" 200 'j["data"]["sky"] == "clear"'
req POST /run/stop
expect "POST /run/stop with no run is 404" 404 'j == {"detail": "No run is active"}'
req POST /shutdown
expect "POST /shutdown is 409" 409 'j == {"detail": "Server shutdown not available"}'

# --- the dashboard at /telemetry/ui/ and its plotting library ---------------------
# page URL [HEADER]: $status, $body, and the named header (lower case) in $hdr.
page() {
    python3 - "$1" "${2-}" >"$tmp/page" 2>&1 <<'EOF'
import sys, urllib.request, urllib.error
url, name = sys.argv[1], sys.argv[2]
try:
    with urllib.request.urlopen(url, timeout=10) as resp:
        code, text, h = resp.status, resp.read(), resp.headers
except urllib.error.HTTPError as e:
    code, text, h = e.code, e.read(), e.headers
except Exception as e:
    code, text, h = 0, str(e).encode(), {}
sys.stdout.write("%d\n%s\n" % (code, (h.get(name) or "") if name else ""))
sys.stdout.write(text.decode("utf-8", "replace"))
EOF
    status=$(sed -n 1p "$tmp/page")
    hdr=$(sed -n 2p "$tmp/page")
    body=$(tail -n +3 "$tmp/page")
}
page "$BASE/ui/" content-security-policy
check "GET /telemetry/ui/ is the dashboard (got $status)" sh -c \
    '[ "$1" = 200 ] && printf "%s" "$2" | grep -qi "panoptes"' sh "$status" "$body"
check "the dashboard has Content-Security-Policy: default-src 'self' ($hdr)" \
    sh -c 'printf "%s" "$1" | grep -q "default-src .self."' sh "$hdr"
js=$(printf '%s' "$body" | grep -o '/javascript/dygraphs/[^"]*\.js' | head -n 1)
page "http://127.0.0.1${js:-/javascript/dygraphs/dygraph.min.js}"
check "its plotting library is served from Debian's libjs-dygraphs (${js:-none}: $status)" \
    test "$status" = 200

# --- the files ------------------------------------------------------------------
site_file=$(ls "$SITE"/site_*.ndjson 2>/dev/null | head -n 1)
check "a site day file in $SITE (${site_file:-none})" test -n "$site_file"
if [ -n "$site_file" ]; then
    check "$(basename "$site_file") belongs to www-data ($(owner "$site_file"))" \
        test "$(owner "$site_file")" = www-data:www-data
    check "the site day file(s) hold the two site events" \
        test "$(cat "$SITE"/site_*.ndjson | grep -c '"stream":"site"')" = 2
fi
check "the run directory $SITE/001 belongs to www-data ($(owner "$SITE/001"))" \
    test "$(owner "$SITE/001")" = www-data:www-data
check "001/telemetry.ndjson belongs to www-data ($(owner "$SITE/001/telemetry.ndjson"))" \
    test "$(owner "$SITE/001/telemetry.ndjson")" = www-data:www-data
check "001/telemetry.ndjson holds the stored run event only" sh -c \
    'test "$(wc -l <"$1")" = 1 && grep -q "^{\"seq\":1,\"ts\":\"[^\"]*\",\"stream\":\"run\",\"type\":\"status\"" "$1"' \
    sh "$SITE/001/telemetry.ndjson"
check "no state file in the site directory (www-data's)" \
    test ! -e "$SITE/.panoptes-telemetry.state"
check "the state directory $STATE is root's, 0700 ($(owner "$STATE") $(stat -c %a "$STATE" 2>/dev/null))" \
    test "$(owner "$STATE") $(stat -c %a "$STATE" 2>/dev/null)" = "root:root 700"
check "the state file $STATE/state is root's, 0600" \
    test "$(owner "$STATE/state") $(stat -c %a "$STATE/state" 2>/dev/null)" = "root:root 600"

# --- purge ------------------------------------------------------------------------
if DEBIAN_FRONTEND=noninteractive $SUDO dpkg --purge "$PKG" >"$tmp/purge.log" 2>&1; then
    installed=no
    ok "dpkg --purge $PKG"
else
    cat "$tmp/purge.log" >&2
    not_ok "dpkg --purge $PKG"
fi
check "$PKG is gone from dpkg" sh -c \
    '! dpkg-query -W -f="\${Status}" "$1" 2>/dev/null | grep -q "installed"' sh "$PKG"
check "the module is disabled" sh -c '! test -e "$1" && ! test -L "$1"' sh "$ENMODS/panoptes_telemetry.load"
check "its .conf is disabled" sh -c '! test -e "$1" && ! test -L "$1"' sh "$ENMODS/panoptes_telemetry.conf"
check "mods-available and the .so are gone" sh -c \
    '! test -e "$1" && ! test -e "$2" && ! test -e "$3"' sh \
    "$MODS/panoptes_telemetry.load" "$MODS/panoptes_telemetry.conf" "$SO"
check "purge removed the state directory" test ! -e "$STATE"
check "purge kept the recorded telemetry" test -f "$SITE/001/telemetry.ndjson"
check "apachectl configtest after the purge" sh -c '$1 apachectl configtest >/dev/null 2>&1' sh "$SUDO"

# Apache as it was found: running without the module, or stopped.
if [ "$was_running" = yes ]; then
    $SUDO apachectl graceful >/dev/null 2>&1
    sleep 1
    check "apache2 still runs" apache_running
    check "apache2ctl -M no longer lists the module" sh -c \
        '! $1 apache2ctl -M 2>/dev/null | grep -q panoptes_telemetry_module' sh "$SUDO"
    req GET /health
    check "/telemetry/health is no longer the API ($status)" test "$status" != 200
else
    $SUDO apachectl stop >/dev/null 2>&1
    check "apache2 stopped again, as it was found" wait_stopped
fi
if [ -f "$elog" ]; then
    $SUDO tail -c +$((log_mark + 1)) "$elog" >"$tmp/elog"
    check "no crash in $elog during the test" sh -c \
        '! grep -E "segfault|AH00052|exit signal|panoptes_telemetry:(crit|alert|emerg)" "$1" >&2' sh "$tmp/elog"
fi

cleanup
summary
[ "$fail" -eq 0 ] || { echo "FAIL: test-deb" >&2; exit 1; }
exit 0
