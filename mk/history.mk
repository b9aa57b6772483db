# History (SPEC 12.2) fixtures: site directories of realistic POCS-like
# telemetry, written as the module writes them, for GET /events tests and
# benchmarks.  Included by the Makefile (PYTHON comes from there).
#
#   make history-fixture DAYS=n [OUT=dir] [SEED=s] [END=YYYY-MM-DD]
#                         DAYS day files ending with the day key END
#                         (default: the file the module would be writing
#                         now), in OUT (default build/history-fixture-<n>d);
#                         uses this shell's TZ for the day keys
#   make history-fixture-check
#                         the generator's lines against the module's form
#   make bench-history    only the history part of make bench (GET /events
#                         over 2- and 365-day fixtures; bench/history.py)

.PHONY: history-fixture history-fixture-check bench-history

SEED ?= 1
OUT  ?= build/history-fixture-$(DAYS)d

history-fixture:
	@[ -n "$(DAYS)" ] || { echo "usage: make history-fixture DAYS=n [OUT=dir] [SEED=s] [END=YYYY-MM-DD]" >&2; exit 1; }
	$(PYTHON) bench/history_fixture.py --days $(DAYS) --out $(OUT) --seed $(SEED) \
	    $(if $(END),--end $(END)) $(if $(filter build/%,$(OUT)),--force)

history-fixture-check:
	$(PYTHON) bench/test_history_fixture.py

bench-history: build
	@sh mk/ensure-packages wrk
	$(PYTHON) bench/history.py
