# magiclinkd: build, install and uninstall (GNU make).
#
#   make                          swift build -c release --static-swift-stdlib
#   make test                     ./scripts/test (the whole suite)
#   sudo make install             binary, systemd units, example configuration (see below);
#                                 after `make`, `sudo make install BINARY=.build/release/magiclinkd`
#                                 installs without building (sudo's PATH often lacks swift)
#   sudo make uninstall           removes what install put in place, keeps configuration and data
#
# Variables (on the command line):
#   PREFIX=/usr/local             the binary goes to $(PREFIX)/bin
#   DESTDIR=                      staging root for packaging (prepended to every path)
#   UNITDIR=$(PREFIX)/lib/systemd/system
#                                 systemd reads /usr/local/lib/systemd/system and
#                                 /usr/lib/systemd/system; for any other PREFIX use
#                                 UNITDIR=/etc/systemd/system
#   SYSCONFDIR=/etc               the example configuration goes to $(SYSCONFDIR)/magiclinkd
#   DOCDIR=$(PREFIX)/share/doc/magiclinkd
#   BINARY=.build/release/magiclinkd
#                                 the binary to install; built first (make build) only when
#                                 BINARY is not given

SHELL := /bin/sh
.SUFFIXES:

# The source tree (this file's directory), so that `make -C` and `make -f` work from anywhere.
SRCDIR := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))

SWIFT ?= swift
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
DOCDIR ?= $(PREFIX)/share/doc/magiclinkd
INSTALL ?= install

ifeq ($(origin BINARY),undefined)
BINARY := $(SRCDIR)/.build/release/magiclinkd
INSTALL_BINARY_DEPS := build
else
INSTALL_BINARY_DEPS :=
endif

CONFDIR := $(SYSCONFDIR)/magiclinkd
UNITS := magiclinkd.socket magiclinkd.service

# The units name the paths of a /usr/local install with /etc; rewritten to this install's.
UNIT_SED := -e 's|/usr/local/bin/magiclinkd|$(BINDIR)/magiclinkd|g' \
            -e 's|/usr/local/share/doc/magiclinkd|$(DOCDIR)|g' \
            -e 's|/etc/magiclinkd/magiclinkd.yaml|$(CONFDIR)/magiclinkd.yaml|g'

.PHONY: all build test install install-binary install-units install-config install-doc uninstall

all: build

build:
	$(SWIFT) build -c release --static-swift-stdlib --package-path "$(SRCDIR)"

test:
	"$(SRCDIR)/scripts/test"

install: install-binary install-units install-config install-doc
	@echo "installed. Next (as root, without DESTDIR):"
	@echo "  cp $(CONFDIR)/magiclinkd.yaml.example $(CONFDIR)/magiclinkd.yaml   # once, then edit it"
	@echo "  systemctl daemon-reload && systemctl enable --now magiclinkd.socket"
	@echo "  (see $(DOCDIR)/README.systemd.md)"

install-binary: $(INSTALL_BINARY_DEPS)
	@$(INSTALL) -D -m 0755 "$(BINARY)" "$(DESTDIR)$(BINDIR)/magiclinkd"
	@echo "install: $(DESTDIR)$(BINDIR)/magiclinkd (0755, from $(BINARY))"

install-units:
	@for unit in $(UNITS); do \
	  dest="$(DESTDIR)$(UNITDIR)/$$unit"; \
	  $(INSTALL) -D -m 0644 "$(SRCDIR)/systemd/$$unit" "$$dest" && \
	  sed -i $(UNIT_SED) "$$dest" || exit 1; \
	  echo "install: $$dest (0644)"; \
	done

# The example is ours and always refreshed; magiclinkd.yaml is the admin's and never written.
install-config:
	@$(INSTALL) -D -m 0644 "$(SRCDIR)/systemd/magiclinkd.yaml.example" "$(DESTDIR)$(CONFDIR)/magiclinkd.yaml.example"
	@echo "install: $(DESTDIR)$(CONFDIR)/magiclinkd.yaml.example (0644)"
	@if [ -e "$(DESTDIR)$(CONFDIR)/magiclinkd.yaml" ]; then \
	  echo "keep:    $(DESTDIR)$(CONFDIR)/magiclinkd.yaml (existing configuration, not touched)"; \
	else \
	  echo "note:    no $(DESTDIR)$(CONFDIR)/magiclinkd.yaml yet: copy the example and edit it"; \
	fi

install-doc:
	@$(INSTALL) -D -m 0644 "$(SRCDIR)/README.md" "$(DESTDIR)$(DOCDIR)/README.md"
	@echo "install: $(DESTDIR)$(DOCDIR)/README.md (0644)"
	@$(INSTALL) -D -m 0644 "$(SRCDIR)/systemd/README.md" "$(DESTDIR)$(DOCDIR)/README.systemd.md"
	@echo "install: $(DESTDIR)$(DOCDIR)/README.systemd.md (0644)"

# Mirrors install (stop the units first: systemctl disable --now magiclinkd.socket
# magiclinkd.service). Keeps magiclinkd.yaml, the credentials in /etc/credstore and the state in
# /var/lib/magiclinkd: remove those by hand if you mean to.
uninstall:
	@for f in "$(DESTDIR)$(BINDIR)/magiclinkd" \
	          $(foreach u,$(UNITS),"$(DESTDIR)$(UNITDIR)/$(u)") \
	          "$(DESTDIR)$(CONFDIR)/magiclinkd.yaml.example" \
	          "$(DESTDIR)$(DOCDIR)/README.md" "$(DESTDIR)$(DOCDIR)/README.systemd.md"; do \
	  if [ -e "$$f" ] || [ -L "$$f" ]; then rm -f "$$f" && echo "remove:  $$f"; fi; \
	done
	@rmdir "$(DESTDIR)$(DOCDIR)" 2>/dev/null || true
	@rmdir "$(DESTDIR)$(CONFDIR)" 2>/dev/null || true
	@if [ -e "$(DESTDIR)$(CONFDIR)/magiclinkd.yaml" ]; then \
	  echo "keep:    $(DESTDIR)$(CONFDIR)/magiclinkd.yaml"; \
	fi
	@if [ -z "$(DESTDIR)" ]; then echo "run: systemctl daemon-reload"; fi
