# mod_panoptes_telemetry: build with apxs, test with cmocka + Apache::Test.
#
#   make run     install what is missing, build, serve on 127.0.0.1:6562
#   make test    install what is missing, build, run every test
#
# Everything here must work on a fresh Debian machine as root (or with sudo).

MODULE      := mod_panoptes_telemetry
APXS        ?= apxs
CC          ?= cc
CORE_SRC    := $(wildcard src/ptm_*.c)
CORE_HDR    := $(wildcard src/ptm_*.h)
SO          := .libs/$(MODULE).so
PYTHON      ?= python3

# Debian packages this project needs (see README "Dependencies").
DEB_PKGS    := apache2 apache2-dev libapr1-dev libaprutil1-dev libjansson-dev \
               libcmocka-dev libapache2-mod-perl2 python3
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

WARN        := -Wall -Wextra -Wno-unused-parameter -Wshadow -Wpointer-arith
APR_INC     = $(shell apr-1-config --includes --cppflags) $(shell apu-1-config --includes)
APR_LIBS    = $(shell apr-1-config --link-ld --libs) $(shell apu-1-config --link-ld --libs)

UNIT_SRC    := $(wildcard t/unit/test_ptm_*.c)
UNIT_BIN    := $(patsubst t/unit/%.c,build/unit/%,$(UNIT_SRC))

# Some tests replace a function with their own: test_ptm_api two of the
# store's (link-time wraps reach only calls from other files: the store's
# own calls are untouched), test_ptm_fs mkdirat, to stage races.
UNIT_LDFLAGS :=
build/unit/test_ptm_api build/asan/unit/test_ptm_api: \
    UNIT_LDFLAGS := -Wl,--wrap=ptm_store_run_peek -Wl,--wrap=ptm_store_event
build/unit/test_ptm_fs build/asan/unit/test_ptm_fs: \
    UNIT_LDFLAGS := -Wl,--wrap=mkdirat

.PHONY: all build deps test test-unit test-httpd test-asan test-valgrind bench bench-sync bench-contended bench-stream bench-stream-check bench-forward bench-readers bench-scaling profile run clean install

all: build

# --- dependencies -----------------------------------------------------------
deps: build/.deps-ok
build/.deps-ok:
	@sh mk/ensure-packages $(DEB_PKGS)
	@mkdir -p build && touch $@

# --- the module -------------------------------------------------------------
build: deps $(SO)

# The glue: the main file, and forwarding's (SPEC §12.5) of its own.
GLUE_SRC    := $(MODULE).c $(MODULE)_forward.c
GLUE_HDR    := $(MODULE)_forward.h

$(SO): $(GLUE_SRC) $(GLUE_HDR) $(CORE_SRC) $(CORE_HDR) build/.deps-ok
	$(APXS) -c -Isrc $(addprefix -Wc$(comma),$(WARN)) -ljansson $(GLUE_SRC) $(CORE_SRC)

comma := ,

# --- unit tests (cmocka; built without the httpd include path on purpose) ---
# PTM_TEST_HOOKS (src/ptm_test_hook.h) lets a test stop a writer at a
# chosen point inside an update; only these builds have it, never the .so.
TEST_HOOKS  := -DPTM_TEST_HOOKS

build/unit/%: t/unit/%.c t/unit/ptm_unit.h $(CORE_SRC) $(CORE_HDR) build/.deps-ok
	@mkdir -p build/unit
	$(CC) -g -O1 -std=gnu99 $(WARN) $(TEST_HOOKS) -Isrc $(APR_INC) -o $@ $< \
	    $(CORE_SRC) $(UNIT_LDFLAGS) $(APR_LIBS) -ljansson -lcmocka

test-unit: $(UNIT_BIN)
	@[ -n "$(UNIT_BIN)" ] || { echo "FAIL: no unit tests found in t/unit" >&2; exit 1; }
	@rc=0; for t in $(UNIT_BIN); do echo "== $$t"; $$t || rc=1; done; \
	if [ $$rc -ne 0 ]; then echo "FAIL: unit tests" >&2; fi; exit $$rc

# --- Apache::Test, once per MPM (several children each) ---------------------
MPMS ?= prefork worker event

# t/70_forward.t drives a real MQTT broker (SPEC §12.5).
test-httpd: build
	@sh mk/ensure-packages mosquitto mosquitto-clients
	@rc=0; for m in $(MPMS); do sh t/run-httpd-tests.sh $$m || rc=1; done; \
	if [ $$rc -ne 0 ]; then echo "FAIL: Apache::Test suite" >&2; fi; exit $$rc

# --- sanitizers: ASan+UBSan and valgrind ------------------------------------
ASAN_FLAGS  := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
               -fno-omit-frame-pointer
ASAN_SO     := build/asan/$(MODULE).so
ASAN_UNIT   := $(patsubst t/unit/%.c,build/asan/unit/%,$(UNIT_SRC))

build/asan/unit/%: t/unit/%.c t/unit/ptm_unit.h $(CORE_SRC) $(CORE_HDR) build/.deps-ok
	@mkdir -p build/asan/unit
	$(CC) -g -O1 -std=gnu99 $(WARN) $(ASAN_FLAGS) $(TEST_HOOKS) -Isrc $(APR_INC) -o $@ $< \
	    $(CORE_SRC) $(UNIT_LDFLAGS) $(APR_LIBS) -ljansson -lcmocka

# The module with the sanitizers, built without libtool so it does not
# share objects with the normal build.  httpd itself is not instrumented:
# t/TEST.PL runs it through a wrapper that preloads the runtime, and
# t/run-httpd-tests.sh fails on any sanitizer report in the error log.
$(ASAN_SO): $(GLUE_SRC) $(GLUE_HDR) $(CORE_SRC) $(CORE_HDR) build/.deps-ok
	@mkdir -p build/asan
	$(CC) -shared -fPIC -g -O1 $(WARN) $(ASAN_FLAGS) $(shell $(APXS) -q CFLAGS) \
	    -I$(shell $(APXS) -q INCLUDEDIR) $(APR_INC) -Isrc -o $@ $(GLUE_SRC) $(CORE_SRC) -ljansson

test-asan: $(ASAN_UNIT) $(ASAN_SO)
	@rc=0; for t in $(ASAN_UNIT); do echo "== $$t (ASan+UBSan)"; $$t || rc=1; done; \
	[ $$rc -eq 0 ] || { echo "FAIL: unit tests under ASan+UBSan" >&2; exit 1; }
	@rc=0; for m in $(MPMS); do \
	    PTM_MODULE=$(CURDIR)/$(ASAN_SO) sh t/run-httpd-tests.sh $$m || rc=1; done; \
	[ $$rc -eq 0 ] || { echo "FAIL: Apache::Test suite under ASan+UBSan" >&2; exit 1; }
	@echo "test-asan: clean"

test-valgrind: $(UNIT_BIN)
	@sh mk/ensure-packages valgrind
	@rc=0; for t in $(UNIT_BIN); do echo "== $$t (valgrind)"; \
	    PTM_UNDER_VALGRIND=1 valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
	        --error-exitcode=1 $$t || rc=1; done; \
	[ $$rc -eq 0 ] || { echo "FAIL: unit tests under valgrind" >&2; exit 1; }
	@echo "test-valgrind: clean"

# --- make bench: the module against Apache's own ceiling (not a test) -------
# bench/history.py: GET /events over 2- and 365-day fixtures (mk/history.mk).
# bench/stream.py: GET /stream, latency to 8 subscribers and POST throughput
# with them attached (make bench-stream alone).
# bench/forward.py: PanoptesTelemetryForward, POST throughput forwarding to
# cat > /dev/null against none, and the lag at 1,000 events/s (make
# bench-forward alone).
# bench/readers.py: GET /current by 56 readers alone and beside 8 writers
# posting as fast as they can (make bench-readers alone).
# bench/scaling.py: how cost grows, GET /current with 20 to 2,000 types,
# POST /event with 200 B to 64 kB bodies, and with 1 to 64 connections
# over 1 to 16 children under event and prefork (make bench-scaling alone).
# Every part runs even when one before it reports a problem (a must bound
# missed on this machine must not hide the tables after it); make bench
# fails at the end, naming the parts that did.
BENCH_PARTS = bench history stream forward readers scaling
bench: build
	@sh mk/ensure-packages wrk apache2-utils
	@failed=; for b in $(BENCH_PARTS); do \
	    echo "== bench/$$b.py"; $(PYTHON) bench/$$b.py || failed="$$failed $$b"; \
	done; \
	[ -z "$$failed" ] || { echo "make bench: problems in:$$failed (see above)" >&2; exit 1; }

bench-readers: build
	@sh mk/ensure-packages wrk
	$(PYTHON) bench/readers.py

# bench/bench.py sync: only PanoptesTelemetrySync On against Off.
bench-scaling: build
	@sh mk/ensure-packages wrk
	$(PYTHON) bench/scaling.py

bench-sync: build
	@sh mk/ensure-packages wrk
	$(PYTHON) bench/bench.py sync

# bench/bench.py contended: only the POST scenarios, without and with a
# busy loop per core beside the server (BENCH_CONTEND loops).
bench-contended: build
	@sh mk/ensure-packages wrk
	$(PYTHON) bench/bench.py contended

bench-stream: build
	@sh mk/ensure-packages wrk
	$(PYTHON) bench/stream.py

# bench/stream.py's counting client against bytes as the server sends them
# (part of make test: a miscount fails the benchmark for nothing).
bench-stream-check:
	$(PYTHON) bench/test_stream_client.py

bench-forward: build
	@sh mk/ensure-packages wrk
	$(PYTHON) bench/forward.py

# make profile: instructions per request in the core (callgrind counts are
# stable on a shared machine; wall-clock numbers come from make bench).
# Each kind (bench/core_profile.c) with its count of requests: the costly
# ones of bench/scaling.py (2,000 types, 64 kB bodies) with fewer.
PROFILE_BIN := build/profile/core_profile
PROFILE_N   ?= 20000
PROFILE_KINDS ?= event:$(PROFILE_N) event-5k:$(PROFILE_N) run:$(PROFILE_N) \
                 current:$(PROFILE_N) current-one:$(PROFILE_N) \
                 current-200:2000 current-2000:500 event-2000:$(PROFILE_N) \
                 current-one-2000:$(PROFILE_N) event-64k:200

$(PROFILE_BIN): bench/core_profile.c $(CORE_SRC) $(CORE_HDR) build/.deps-ok
	@mkdir -p build/profile
	$(CC) -g -O2 -std=gnu99 $(WARN) -Isrc $(APR_INC) -o $@ $< $(CORE_SRC) \
	    $(APR_LIBS) -ljansson

profile: $(PROFILE_BIN)
	@sh mk/ensure-packages valgrind
	@for kn in $(PROFILE_KINDS); do m=$${kn%%:*}; n=$${kn##*:}; \
	    valgrind --tool=callgrind --callgrind-out-file=build/profile/callgrind.$$m \
	        $(PROFILE_BIN) $$m 1 >/dev/null 2>&1 || exit 1; \
	    base=$$(callgrind_annotate build/profile/callgrind.$$m | awk '/PROGRAM TOTALS/ {gsub(",","",$$1); print $$1}'); \
	    valgrind --tool=callgrind --callgrind-out-file=build/profile/callgrind.$$m \
	        $(PROFILE_BIN) $$m $$n >/dev/null 2>&1 || exit 1; \
	    all=$$(callgrind_annotate build/profile/callgrind.$$m | awk '/PROGRAM TOTALS/ {gsub(",","",$$1); print $$1}'); \
	    echo "$$m: $$(( (all - base) / (n - 1) )) instructions per request (build/profile/callgrind.$$m)"; \
	done

# --- everything -------------------------------------------------------------
test: build test-unit fuzz-replay history-fixture-check bench-stream-check test-httpd test-client test-browser
	@echo "make test: unit, Apache::Test, client and browser suites passed"

clean:
	rm -rf build .libs *.la *.lo *.slo *.o src/*.lo src/*.slo src/*.o src/.libs

# --- make run: a self-contained httpd in the foreground ----------------------
PANOPTES_TELEMETRY_HOST     ?= 127.0.0.1
PANOPTES_TELEMETRY_PORT     ?= 6562
PANOPTES_TELEMETRY_SITE_DIR ?= telemetry
APACHE2     ?= /usr/sbin/apache2
LOGLEVEL    ?= info
RUN_ROOT    := $(CURDIR)/build/run
RUN_USER    := $(if $(filter 0,$(shell id -u)),www-data,$(shell id -un))
RUN_GROUP   := $(if $(filter 0,$(shell id -u)),www-data,$(shell id -gn))

run: build
	@mkdir -p $(RUN_ROOT)
	@host='$(PANOPTES_TELEMETRY_HOST)'; case "$$host" in *:*) host="[$$host]";; esac; \
	site='$(PANOPTES_TELEMETRY_SITE_DIR)'; case "$$site" in /*) ;; ~*) site="$$HOME$${site#\~}";; *) site="$(CURDIR)/$$site";; esac; \
	echo "Serving the PANOPTES telemetry API on http://$$host:$(PANOPTES_TELEMETRY_PORT)/ (site dir $$site),"; \
	echo "the dashboard on http://$$host:$(PANOPTES_TELEMETRY_PORT)/ui/; Ctrl-C stops it."; \
	PTM_SERVER_ROOT='$(RUN_ROOT)' PTM_MODULE='$(CURDIR)/$(SO)' \
	PTM_LISTEN="$$host:$(PANOPTES_TELEMETRY_PORT)" \
	PTM_USER='$(RUN_USER)' PTM_GROUP='$(RUN_GROUP)' PTM_LOGLEVEL='$(LOGLEVEL)' \
	PTM_UI_DIR='$(CURDIR)/$(UI_STAGE)' PANOPTES_TELEMETRY_SITE_DIR="$$site" \
	exec $(APACHE2) -f $(CURDIR)/conf/httpd-standalone.conf -DFOREGROUND

# === fuzzing (t/fuzz) =======================================================
# A libFuzzer target over the request -> envelope path (t/fuzz/fuzz_request.c).
#   make fuzz          build, then fuzz for FUZZ_SECONDS on build/fuzz/corpus
#                      (the seeds of t/fuzz/corpus copied in, so the repo's
#                      corpus stays as it is; what a run finds is kept there
#                      for the next run).  Fails on any crash, leak, timeout
#                      or broken invariant; the input is in build/fuzz/artifacts.
#   make fuzz-build    only build build/fuzz/fuzz_request and fuzz_state
#   make fuzz-replay   the same sources without libFuzzer (gcc, ASan+UBSan):
#                      every file of t/fuzz/corpus once, and every state of
#                      t/fuzz/state-corpus and of a freshly made seed set,
#                      as a regression test
# A second target over the state file httpd's parent finds at start
# (t/fuzz/fuzz_state.c: crafted, torn, stale or older states):
#   make fuzz-state    like make fuzz, on build/fuzz/state-corpus (seeds made
#                      by the store itself, plus t/fuzz/state-corpus);
#                      crashes go to build/fuzz/state-artifacts
FUZZ_CC       ?= clang
FUZZ_SECONDS  ?= 300
FUZZ_JOBS     ?= 1
FUZZ_MAX_LEN  ?= 8192
FUZZ_ARGS     ?=
FUZZ_DEB_PKGS := clang libclang-rt-14-dev
FUZZ_SRC      := t/fuzz/fuzz_request.c
FUZZ_BIN      := build/fuzz/fuzz_request
FUZZ_REPLAY   := build/fuzz/fuzz_replay
FUZZ_CFLAGS   := -g -O1 -std=gnu99 $(WARN) -fno-omit-frame-pointer \
                 -fno-sanitize-recover=all
FUZZ_STATE_SRC    := t/fuzz/fuzz_state.c
FUZZ_STATE_BIN    := build/fuzz/fuzz_state
FUZZ_STATE_REPLAY := build/fuzz/fuzz_state_replay
FUZZ_STATE_MAX_LEN ?= 16384
# The state file's mapping between guard pages (see fuzz_state.c).
FUZZ_STATE_LDFLAGS := -Wl,--wrap=mmap

.PHONY: fuzz fuzz-build fuzz-replay fuzz-state

# clang and its libFuzzer runtime, installed like `deps` does.
build/.fuzz-deps-ok: build/.deps-ok
	@sh mk/ensure-packages $(FUZZ_DEB_PKGS)
	@command -v $(FUZZ_CC) >/dev/null || { echo "error: no $(FUZZ_CC)" >&2; exit 1; }
	@mkdir -p build && touch $@

$(FUZZ_BIN): $(FUZZ_SRC) $(CORE_SRC) $(CORE_HDR) build/.fuzz-deps-ok
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -Isrc $(APR_INC) \
	    -o $@ $(FUZZ_SRC) $(CORE_SRC) $(APR_LIBS) -ljansson -ldl

$(FUZZ_REPLAY): $(FUZZ_SRC) t/fuzz/fuzz_replay.h $(CORE_SRC) $(CORE_HDR) build/.deps-ok
	@mkdir -p build/fuzz
	$(CC) $(FUZZ_CFLAGS) -fsanitize=address,undefined -DPTM_FUZZ_REPLAY -Isrc $(APR_INC) \
	    -o $@ $(FUZZ_SRC) $(CORE_SRC) $(APR_LIBS) -ljansson -ldl

$(FUZZ_STATE_BIN): $(FUZZ_STATE_SRC) $(CORE_SRC) $(CORE_HDR) build/.fuzz-deps-ok
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -Isrc $(APR_INC) \
	    $(FUZZ_STATE_LDFLAGS) -o $@ $(FUZZ_STATE_SRC) $(CORE_SRC) $(APR_LIBS) -ljansson

$(FUZZ_STATE_REPLAY): $(FUZZ_STATE_SRC) t/fuzz/fuzz_replay.h $(CORE_SRC) $(CORE_HDR) build/.deps-ok
	@mkdir -p build/fuzz
	$(CC) $(FUZZ_CFLAGS) -fsanitize=address,undefined -DPTM_FUZZ_REPLAY -Isrc $(APR_INC) \
	    $(FUZZ_STATE_LDFLAGS) -o $@ $(FUZZ_STATE_SRC) $(CORE_SRC) $(APR_LIBS) -ljansson

fuzz-build: $(FUZZ_BIN) $(FUZZ_STATE_BIN)

fuzz: $(FUZZ_BIN)
	@mkdir -p build/fuzz/corpus build/fuzz/artifacts
	@rm -rf build/fuzz/tmp && mkdir -p build/fuzz/tmp
	@cp t/fuzz/corpus/* build/fuzz/corpus/
	@echo "fuzzing for $(FUZZ_SECONDS)s x $(FUZZ_JOBS) job(s) on build/fuzz/corpus"
	@cd build/fuzz && rc=0; \
	TMPDIR=$(CURDIR)/build/fuzz/tmp ./fuzz_request -dict=$(CURDIR)/t/fuzz/json.dict \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) -timeout=10 \
	    -print_final_stats=1 -artifact_prefix=artifacts/ \
	    $(if $(filter-out 1,$(FUZZ_JOBS)),-jobs=$(FUZZ_JOBS) -workers=$(FUZZ_JOBS)) \
	    $(FUZZ_ARGS) corpus || rc=$$?; \
	rm -rf tmp; \
	if [ $$rc -ne 0 ]; then echo "FAIL: the fuzzer found a problem (see build/fuzz/artifacts$(if $(filter-out 1,$(FUZZ_JOBS)), and build/fuzz/fuzz-*.log))" >&2; fi; \
	exit $$rc

fuzz-replay: $(FUZZ_REPLAY) $(FUZZ_STATE_REPLAY)
	@rm -rf build/fuzz/tmp-replay && mkdir -p build/fuzz/tmp-replay
	@rc=0; TMPDIR=$(CURDIR)/build/fuzz/tmp-replay ./$(FUZZ_REPLAY) t/fuzz/corpus/* || rc=1; \
	TMPDIR=$(CURDIR)/build/fuzz/tmp-replay ./$(FUZZ_STATE_REPLAY) \
	    --seeds build/fuzz/tmp-replay/state-seeds || rc=1; \
	TMPDIR=$(CURDIR)/build/fuzz/tmp-replay ./$(FUZZ_STATE_REPLAY) \
	    build/fuzz/tmp-replay/state-seeds $(wildcard t/fuzz/state-corpus/*) || rc=1; \
	rm -rf build/fuzz/tmp-replay; \
	[ $$rc -eq 0 ] || echo "FAIL: fuzz corpus replay" >&2; exit $$rc

# The seeds are made by the store itself at each run (--seeds), so that
# they follow its layout; t/fuzz/state-corpus keeps what a run found.
fuzz-state: $(FUZZ_STATE_BIN) $(FUZZ_STATE_REPLAY)
	@mkdir -p build/fuzz/state-corpus build/fuzz/state-artifacts
	@rm -rf build/fuzz/tmp-state && mkdir -p build/fuzz/tmp-state
	@TMPDIR=$(CURDIR)/build/fuzz/tmp-state ./$(FUZZ_STATE_REPLAY) --seeds build/fuzz/state-corpus
	@$(if $(wildcard t/fuzz/state-corpus/*),cp t/fuzz/state-corpus/* build/fuzz/state-corpus/)
	@echo "fuzzing the state file for $(FUZZ_SECONDS)s x $(FUZZ_JOBS) job(s) on build/fuzz/state-corpus"
	@cd build/fuzz && rc=0; \
	TMPDIR=$(CURDIR)/build/fuzz/tmp-state ./fuzz_state -dict=$(CURDIR)/t/fuzz/json.dict \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_STATE_MAX_LEN) -timeout=10 \
	    -print_final_stats=1 -artifact_prefix=state-artifacts/ \
	    $(if $(filter-out 1,$(FUZZ_JOBS)),-jobs=$(FUZZ_JOBS) -workers=$(FUZZ_JOBS)) \
	    $(FUZZ_ARGS) state-corpus || rc=$$?; \
	rm -rf tmp-state; \
	if [ $$rc -ne 0 ]; then echo "FAIL: the fuzzer found a problem (see build/fuzz/state-artifacts)" >&2; fi; \
	exit $$rc
# === end of fuzzing =========================================================

# Further targets, one file per concern (packaging, ...).
-include mk/*.mk
