# The operator's dashboard (SPEC 12.4): static files in ui/, served by httpd
# itself at <mount>/ui/ (Alias in conf/panoptes_telemetry.conf and in the
# standalone config of make run).  Included by the Makefile (INSTALL_SUDO
# comes from mk/install.mk).
#
#   make ui           stage ui/ into build/ui (mk/stage-ui: the assets'
#                     URLs carry a hash of their content) and install the
#                     plotting library, Debian's libjs-dygraphs, and
#                     javascript-common (its /javascript/ alias)
#   make install      also installs build/ui into $(DESTDIR)/usr/share/panoptes-telemetry/ui
#                     (without DESTDIR: and the two packages, as the .deb
#                     depends on them)
#   make uninstall    also removes it

UI_FILES       := ui/index.html ui/dashboard.js ui/dashboard.css ui/icon.svg
UI_STAGE       := build/ui
UI_INSTALL_DIR := /usr/share/panoptes-telemetry/ui
UI_DEB_PKGS    := libjs-dygraphs javascript-common

.PHONY: ui ui-stage install-ui uninstall-ui

ui: ui-stage build/.ui-deps-ok

ui-stage: $(UI_STAGE)/index.html

$(UI_STAGE)/index.html: $(UI_FILES) mk/stage-ui
	@sh mk/stage-ui ui $(UI_STAGE)

build/.ui-deps-ok:
	@sh mk/ensure-packages $(UI_DEB_PKGS)
	@mkdir -p build && touch $@

run: ui

install: install-ui

# Staging into DESTDIR needs neither root nor the library; installing
# into this machine needs the library and javascript-common's alias (the
# README's next step is a2enconf javascript-common), as the .deb's Depends.
install-ui: ui-stage $(if $(DESTDIR),,build/.ui-deps-ok)
	$(INSTALL_SUDO) install -d -m 0755 $(DESTDIR)$(UI_INSTALL_DIR)
	$(INSTALL_SUDO) install -m 0644 $(addprefix $(UI_STAGE)/,$(notdir $(UI_FILES))) \
	    $(DESTDIR)$(UI_INSTALL_DIR)/

uninstall: uninstall-ui

uninstall-ui:
	$(INSTALL_SUDO) rm -f $(addprefix $(DESTDIR)$(UI_INSTALL_DIR)/,$(notdir $(UI_FILES)))
	-@$(INSTALL_SUDO) rmdir $(DESTDIR)$(UI_INSTALL_DIR) $(DESTDIR)$(dir $(UI_INSTALL_DIR)) 2>/dev/null
