# Browser tests: Debian's chromium, headless, driven over the DevTools
# protocol on a pipe by t/browser/browser.py (standard library only), loads
# pages from an httpd of the test's own (t/browser/server.py: the
# standalone config of `make run`, in build/browser/).  Included by the
# Makefile (PYTHON, SO come from there); part of `make test`.
#
#   make test-browser     GET /stream in a real browser's EventSource:
#                         snapshot, live events, resume after the server
#                         ends the stream, at its StreamTimeout and in a
#                         graceful restart (t/browser/test_stream.py);
#                         the dashboard (SPEC 12.4) over the history
#                         fixture, at / and at /telemetry with the shipped
#                         config, and with 5,000 current types
#                         (t/browser/test_dashboard.py); screenshots
#                         in build/browser/
#
# One page alone, its verdict printed (window.ptmVerdict, see browser.py):
#   python3 t/browser/browser.py URL [--timeout S] [--screenshot FILE]

BROWSER_DEB_PKGS := chromium

.PHONY: test-browser

test-browser: build ui
	@sh mk/ensure-packages $(BROWSER_DEB_PKGS)
	@rc=0; for t in test_stream test_dashboard; do \
	    PTM_MODULE=$(CURDIR)/$(SO) $(PYTHON) t/browser/$$t.py || rc=1; done; \
	[ $$rc -eq 0 ] || echo "FAIL: browser tests" >&2; exit $$rc
