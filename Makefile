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

# Extra flags, e.g. make SAN_CFLAGS="-fsanitize=address,undefined"
SAN_CFLAGS  ?=
WARN        := -Wall -Wextra -Wno-unused-parameter -Wshadow -Wpointer-arith
APR_INC     = $(shell apr-1-config --includes --cppflags) $(shell apu-1-config --includes)
APR_LIBS    = $(shell apr-1-config --link-ld --libs) $(shell apu-1-config --link-ld --libs)

UNIT_SRC    := $(wildcard t/unit/test_ptm_*.c)
UNIT_BIN    := $(patsubst t/unit/%.c,build/unit/%,$(UNIT_SRC))

.PHONY: all build deps test test-unit test-httpd run clean install

all: build

# --- dependencies -----------------------------------------------------------
deps: build/.deps-ok
build/.deps-ok:
	@missing=""; for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' \
	        || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	    echo "Installing missing Debian packages:$$missing"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing \
	        || { echo "error: could not install:$$missing" >&2; exit 1; }; \
	fi
	@mkdir -p build && touch $@

# --- the module -------------------------------------------------------------
build: deps $(SO)

$(SO): $(MODULE).c $(CORE_SRC) $(CORE_HDR) build/.deps-ok
	$(APXS) -c -Isrc $(addprefix -Wc$(comma),$(WARN) $(SAN_CFLAGS)) \
	    $(if $(SAN_CFLAGS),-Wl$(comma)$(subst $(space),$(comma),$(SAN_CFLAGS))) \
	    -ljansson $(MODULE).c $(CORE_SRC)

comma := ,
space := $(empty) $(empty)

# --- unit tests (cmocka; built without the httpd include path on purpose) ---
build/unit/%: t/unit/%.c $(CORE_SRC) $(CORE_HDR) build/.deps-ok
	@mkdir -p build/unit
	$(CC) -g -O1 -std=gnu99 $(WARN) $(SAN_CFLAGS) -Isrc $(APR_INC) -o $@ $< $(CORE_SRC) \
	    $(APR_LIBS) -ljansson -lcmocka

test-unit: $(UNIT_BIN)
	@[ -n "$(UNIT_BIN)" ] || { echo "FAIL: no unit tests found in t/unit" >&2; exit 1; }
	@rc=0; for t in $(UNIT_BIN); do echo "== $$t"; $$t || rc=1; done; \
	if [ $$rc -ne 0 ]; then echo "FAIL: unit tests" >&2; fi; exit $$rc

# --- Apache::Test, once per MPM (several children each) ---------------------
MPMS ?= prefork worker event

test-httpd: build
	@rc=0; for m in $(MPMS); do sh t/run-httpd-tests.sh $$m || rc=1; done; \
	if [ $$rc -ne 0 ]; then echo "FAIL: Apache::Test suite" >&2; fi; exit $$rc

# --- everything -------------------------------------------------------------
test: build test-unit test-httpd
	@echo "make test: all unit and Apache::Test suites passed"

clean:
	rm -rf build .libs *.la *.lo *.slo *.o src/*.lo src/*.slo src/*.o src/.libs

# --- make run: a self-contained httpd in the foreground ----------------------
PANOPTES_TELEMETRY_HOST     ?= 127.0.0.1
PANOPTES_TELEMETRY_PORT     ?= 6562
PANOPTES_TELEMETRY_SITE_DIR ?= telemetry
APACHE2     ?= /usr/sbin/apache2
RUN_ROOT    := $(CURDIR)/build/run
RUN_USER    := $(if $(filter 0,$(shell id -u)),www-data,$(shell id -un))
RUN_GROUP   := $(if $(filter 0,$(shell id -u)),www-data,$(shell id -gn))

run: build
	@mkdir -p $(RUN_ROOT)
	@host='$(PANOPTES_TELEMETRY_HOST)'; case "$$host" in *:*) host="[$$host]";; esac; \
	site='$(PANOPTES_TELEMETRY_SITE_DIR)'; case "$$site" in /*) ;; ~*) site="$$HOME$${site#\~}";; *) site="$(CURDIR)/$$site";; esac; \
	echo "Serving the PANOPTES telemetry API on http://$$host:$(PANOPTES_TELEMETRY_PORT)/ (site dir $$site); Ctrl-C stops it."; \
	PTM_SERVER_ROOT='$(RUN_ROOT)' PTM_MODULE='$(CURDIR)/$(SO)' \
	PTM_LISTEN="$$host:$(PANOPTES_TELEMETRY_PORT)" \
	PTM_USER='$(RUN_USER)' PTM_GROUP='$(RUN_GROUP)' \
	PANOPTES_TELEMETRY_SITE_DIR="$$site" \
	exec $(APACHE2) -f $(CURDIR)/conf/httpd-standalone.conf -DFOREGROUND

# --- install into the system Apache (Debian layout) --------------------------
install: build
	$(APXS) -i -n panoptes_telemetry $(MODULE).la
