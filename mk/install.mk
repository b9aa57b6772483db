# Installing into an Apache site, the Debian package, and the tests that go
# with them.  Included by the Makefile (MODULE, APXS, SO, SUDO, PYTHON come
# from there).
#
#   make install      the module and its a2enmod files, honouring DESTDIR:
#                       $(DESTDIR)<apxs LIBEXECDIR>/mod_panoptes_telemetry.so
#                       $(DESTDIR)/etc/apache2/mods-available/panoptes_telemetry.{load,conf}
#                     then: a2enmod panoptes_telemetry && apachectl graceful
#   make uninstall    the reverse (a2dismod first when it is enabled)
#   make deb          build/deb/libapache2-mod-panoptes-telemetry_<ver>_<arch>.deb
#                     (dpkg-buildpackage on a copy of the tree in build/deb/)
#   make test-deb     build the package, install it into this machine's Apache,
#                     exercise it over HTTP, purge it (t/deb/test-deb.sh; root)
#   make test-client  a Python client written to upstream's TelemetryClient
#                     interface against a standalone httpd (t/client/)

.PHONY: install uninstall deb test-deb test-client

INSTALL_LIBEXECDIR = $(shell $(APXS) -q LIBEXECDIR)
INSTALL_MODS_DIR   := /etc/apache2/mods-available
INSTALL_CONF       := conf/panoptes_telemetry.load conf/panoptes_telemetry.conf
# Installing into a staging tree needs no privileges.
INSTALL_SUDO        = $(if $(DESTDIR),,$(SUDO))

# An edited panoptes_telemetry.conf is kept next to the new one as .conf.old.
install: build
	@[ -n "$(INSTALL_LIBEXECDIR)" ] || { echo "error: apxs -q LIBEXECDIR gave nothing" >&2; exit 1; }
	$(INSTALL_SUDO) install -d -m 0755 $(DESTDIR)$(INSTALL_LIBEXECDIR) $(DESTDIR)$(INSTALL_MODS_DIR)
	$(INSTALL_SUDO) install -m 0644 $(SO) $(DESTDIR)$(INSTALL_LIBEXECDIR)/$(MODULE).so
	@old=$(DESTDIR)$(INSTALL_MODS_DIR)/panoptes_telemetry.conf; \
	if [ -f "$$old" ] && ! cmp -s "$$old" conf/panoptes_telemetry.conf; then \
	    echo "keeping your edited $$old as $$old.old"; \
	    $(INSTALL_SUDO) cp -p "$$old" "$$old.old" || exit 1; fi
	$(INSTALL_SUDO) install -m 0644 $(INSTALL_CONF) $(DESTDIR)$(INSTALL_MODS_DIR)/
	@if [ -z "$(DESTDIR)" ]; then \
	    echo "installed; enable with: a2enmod panoptes_telemetry && apachectl graceful"; fi

# a2dismod -p also forgets the module in a2enmod's state database, so a
# later package install enables it again as on a fresh machine.
uninstall:
	@if [ -z "$(DESTDIR)" ] && command -v a2dismod >/dev/null; then \
	    enabled=; [ -e /etc/apache2/mods-enabled/panoptes_telemetry.load ] && enabled=1; \
	    $(INSTALL_SUDO) a2dismod -q -p panoptes_telemetry || exit 1; \
	    [ -z "$$enabled" ] || echo "module disabled; apply with: apachectl graceful"; fi
	$(INSTALL_SUDO) rm -f $(DESTDIR)$(INSTALL_LIBEXECDIR)/$(MODULE).so \
	    $(addprefix $(DESTDIR)$(INSTALL_MODS_DIR)/,$(notdir $(INSTALL_CONF)))

# --- make deb ----------------------------------------------------------------
DEBPKG_NAME     := libapache2-mod-panoptes-telemetry
DEBPKG_VERSION   = $(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog)
DEBPKG_ARCH      = $(shell dpkg --print-architecture)
DEBPKG_DEB       = build/deb/$(DEBPKG_NAME)_$(DEBPKG_VERSION)_$(DEBPKG_ARCH).deb
DEBPKG_SRCDIR    = build/deb/$(DEBPKG_NAME)-$(DEBPKG_VERSION)
# What dpkg-buildpackage needs here: the tools and debian/control's
# Build-Depends (dpkg-checkbuilddeps below catches anything forgotten).
DEBPKG_TOOLS    := dpkg-dev debhelper build-essential apache2-dev \
                   libapr1-dev libaprutil1-dev libjansson-dev

# dpkg-buildpackage writes next to the tree it builds, so it builds a copy
# made in build/deb/: the artifacts land in build/deb/ and nothing is ever
# written outside the repository.  The copy holds the files git knows
# (tracked or not ignored), or, without git, the tree minus build outputs.
deb:
	@sh mk/ensure-packages $(DEBPKG_TOOLS)
	@v=$$(sed -n 's/^#define PTM_VERSION "\(.*\)"$$/\1/p' $(MODULE).c); \
	[ -n "$(DEBPKG_VERSION)" ] || { echo "error: no version in debian/changelog" >&2; exit 1; }; \
	[ "$$v" = "$(DEBPKG_VERSION)" ] || { echo "error: debian/changelog is at $(DEBPKG_VERSION), PTM_VERSION in $(MODULE).c is '$$v'" >&2; exit 1; }
	rm -rf build/deb
	@mkdir -p $(DEBPKG_SRCDIR)
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	    git ls-files -z --cached --others --exclude-standard \
	        | xargs -0 -r sh -c 'for f; do [ -e "$$f" ] && printf "%s\0" "$$f"; done' sh \
	        | tar --null -T - -cf - | tar -xf - -C $(DEBPKG_SRCDIR); \
	else \
	    tar --exclude=./build --exclude=./.git --exclude=./.libs --exclude='*.lo' \
	        --exclude='*.la' --exclude='*.slo' --exclude='*.o' --exclude=./t/site \
	        --exclude=./t/logs -cf - . | tar -xf - -C $(DEBPKG_SRCDIR); \
	fi
	@[ -f $(DEBPKG_SRCDIR)/debian/rules ] && [ -f $(DEBPKG_SRCDIR)/$(MODULE).c ] \
	    || { echo "error: the copy in $(DEBPKG_SRCDIR) is incomplete" >&2; exit 1; }
	cd $(DEBPKG_SRCDIR) && dpkg-checkbuilddeps && dpkg-buildpackage -us -uc -b
	rm -rf $(DEBPKG_SRCDIR)
	@[ -f $(DEBPKG_DEB) ] || { echo "error: $(DEBPKG_DEB) was not built" >&2; exit 1; }
	@echo "built $(DEBPKG_DEB):"; ls -l build/deb

# --- the package in this machine's Apache -------------------------------------
test-deb:
	sh t/deb/test-deb.sh

# --- a real client -----------------------------------------------------------
# Debian's interpreter, the one python3-requests is installed for (a python3
# earlier in PATH, e.g. pyenv's, may have no requests or another version).
CLIENT_PYTHON ?= $(if $(wildcard /usr/bin/python3),/usr/bin/python3,$(PYTHON))

test-client: build
	@sh mk/ensure-packages python3-requests
	PTM_MODULE=$(CURDIR)/$(SO) $(CLIENT_PYTHON) t/client/test_client.py
