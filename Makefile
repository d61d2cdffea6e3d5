# Zero-Mesh. `make test` and `make demo` install what they need (make deps).
VERSION    := 0.1.0
.DEFAULT_GOAL := all
PREFIX     ?= /usr/local
DESTDIR    ?=
BUILD      ?= build
PKG_CONFIG ?= pkg-config
CC         ?= cc

# Debian packages to build, test and run; --no-install-recommends keeps
# wireguard-tools from pulling in a kernel image.
DEB_PKGS := build-essential pkg-config lua5.4 liblua5.4-dev libmnl-dev libnftnl-dev \
	libsodium-dev lua-busted lua-cjson wireguard-go wireguard-tools \
	nftables iproute2 iputils-ping iperf3 util-linux procps python3 \
	libmicrohttpd-dev libcurl4-openssl-dev lua-luv curl \
	libnats-dev nats-server udhcpc ndisc6 dnsmasq-base

include tests/vm/vm.mk

LIBPKGS := libmnl libnftnl libsodium \
	libmicrohttpd libcurl libnats

ifeq ($(V),1)
Q :=
else
Q := @
endif

ifeq ($(SAN),1)
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	-fno-omit-frame-pointer
endif

# Recursive on purpose: pkg-config runs only once deps are installed.
CFLAGS   ?= -O2 -g
ZM_CFLAGS = -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -fPIC -MMD -MP $(SANFLAGS) \
	$(shell $(PKG_CONFIG) --cflags lua5.4 $(LIBPKGS)) \
	-DZM_VERSION='"$(VERSION)"' \
	-DZM_LUADIR='"$(PREFIX)/share/zmesh/lua"'
ZM_LIBS  = $(shell $(PKG_CONFIG) --libs $(LIBPKGS))
LUA_LIBS = $(shell $(PKG_CONFIG) --libs lua5.4)

CORE_SRC     := $(wildcard core/*.c)
BINDINGS_SRC := $(filter-out bindings/host.c,$(wildcard bindings/*.c))
LIB_OBJ      := $(patsubst %.c,$(BUILD)/obj/%.o,$(CORE_SRC) $(BINDINGS_SRC))
HOST_OBJ     := $(BUILD)/obj/bindings/host.o
MODULE       := $(BUILD)/lua/zmesh/core.so
HOST         := $(BUILD)/zmesh

# Test suites in order; each a directory of busted specs.
SUITES  ?= unit bindings integration e2e
# BUSTED_RUN: how busted runs; `make asan` runs it inside the ASan-built
# host, so only our code carries the sanitizers (not every tool it starts).
BUSTED_RUN ?= busted
BUSTED   = ZMESH_BIN=$(CURDIR)/$(HOST) ZMESH_ROOT=$(CURDIR) \
	$(BUSTED_RUN) --cpath='$(CURDIR)/$(BUILD)/lua/?.so' --lpath='$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/tests/lib/?.lua'

.PHONY: all deps test check asan demo bench install clean

all: $(HOST) $(MODULE)

deps:
	$(Q)missing=; for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
			grep -q '^install ok installed$$' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && \
		apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ZM_CFLAGS) $(CFLAGS) -c -o $@ $<

# The module leaves Lua's symbols to the interpreter that loads it.
$(MODULE): $(LIB_OBJ)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared $(SANFLAGS) $(LDFLAGS) -o $@ $^ $(ZM_LIBS)

# -Wl,-E: C modules loaded by the host (cjson) need Lua's symbols.
$(HOST): $(HOST_OBJ) $(LIB_OBJ)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -Wl,-E $(SANFLAGS) $(LDFLAGS) -o $@ $^ $(ZM_LIBS) $(LUA_LIBS)

test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory check

# Runs the suites against an existing build. Each suite's output is kept
# in $(BUILD)/test-SUITE.log; the failures of every failed suite are
# printed again at the end, where a CI log's tail shows them. A suite that
# runs past SUITE_TIMEOUT seconds is stopped (with what it started) and
# fails, naming the test it was in; the namespaces of its run
# (ZMESH_TEST_RUN, see tests/lib/testns.lua) are then deleted.
SUITE_TIMEOUT ?= 1200
check:
	$(Q)mkdir -p $(BUILD); failed=; for s in $(SUITES); do \
		echo "== tests/$$s"; \
		run=$$(od -An -N2 -tx2 /dev/urandom | tr -d ' '); now=$(BUILD)/test-$$s.now; rm -f $$now; \
		{ ZMESH_TEST_RUN=$$run ZMESH_TEST_PROGRESS=$$now timeout -k 30 $(SUITE_TIMEOUT) \
			env $(BUSTED) -o $(CURDIR)/tests/lib/progress_output.lua $(BUSTED_FLAGS) tests/$$s 2>&1; \
			echo $$? >$(BUILD)/test-$$s.rc; } | tee $(BUILD)/test-$$s.log; \
		case "$$(cat $(BUILD)/test-$$s.rc)" in \
		0) ;; \
		124|137) printf '\nError → tests/%s stopped after %s s, in: %s\n' $$s $(SUITE_TIMEOUT) "$$(cat $$now 2>/dev/null)" \
				| tee -a $(BUILD)/test-$$s.log; \
			for n in $$(ip netns list 2>/dev/null | awk '{print $$1}' | grep "^zt$$run"); do \
				ip netns pids $$n | xargs -r kill -9; ip netns delete $$n; done; \
			rm -f /run/wireguard/zt$$run*.sock; \
			failed="$$failed $$s" ;; \
		*) failed="$$failed $$s" ;; \
		esac; \
	done; \
	[ -z "$$failed" ] && exit 0; \
	for s in $$failed; do \
		echo "== FAILED: tests/$$s (all of it in $(BUILD)/test-$$s.log)"; \
		grep -a -A12 -E '^(Failure|Error) ' $(BUILD)/test-$$s.log || tail -20 $(BUILD)/test-$$s.log; \
	done; exit 1

# ASan/UBSan: busted runs inside the sanitized zmesh host (zmesh.core is
# linked in), so no LD_PRELOAD reaches the tools the tests start.
asan: deps
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan SAN=1 CFLAGS='-O1 -g' all
	$(Q)ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(MAKE) --no-print-directory BUILD=build-asan \
		BUSTED_RUN="$(CURDIR)/build-asan/zmesh run $$(command -v busted)" check

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(HOST) demo

# Each tests/bench/*.lua prints ratios against a baseline of the same run.
LUA_ENV = ZMESH_BIN=$(CURDIR)/$(HOST) ZMESH_ROOT=$(CURDIR) \
	LUA_CPATH='$(CURDIR)/$(BUILD)/lua/?.so;;' \
	LUA_PATH='$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/tests/lib/?.lua;;'
bench: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)for b in tests/bench/*.lua; do echo "== $$b"; $(LUA_ENV) lua5.4 $$b || exit 1; done

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/zmesh/lua/zmesh \
		$(DESTDIR)$(PREFIX)/share/zmesh/policies $(DESTDIR)$(PREFIX)/lib/systemd/system \
		$(DESTDIR)$(PREFIX)/share/doc/zmesh
	install -m 0755 $(HOST) $(DESTDIR)$(PREFIX)/bin/zmesh
	cp -R lua/zmesh/. $(DESTDIR)$(PREFIX)/share/zmesh/lua/zmesh/
	install -m 0644 policies/*.lua $(DESTDIR)$(PREFIX)/share/zmesh/policies/
	install -d $(DESTDIR)$(PREFIX)/lib/lua/5.4/zmesh
	install -m 0755 $(MODULE) $(DESTDIR)$(PREFIX)/lib/lua/5.4/zmesh/core.so
	install -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/zmesh/README.md
	sed -e 's|@BINDIR@|$(PREFIX)/bin|g' -e 's|@DOCDIR@|$(PREFIX)/share/doc/zmesh|g' \
		examples/systemd/zmesh.service.in > $(DESTDIR)$(PREFIX)/lib/systemd/system/zmesh.service
	chmod 0644 $(DESTDIR)$(PREFIX)/lib/systemd/system/zmesh.service
	install -d $(DESTDIR)$(PREFIX)/lib/sysctl.d
	install -m 0644 examples/sysctl/90-zmesh.conf $(DESTDIR)$(PREFIX)/lib/sysctl.d/90-zmesh.conf

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
