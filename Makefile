# SPDX-License-Identifier: ISC
# smtpgate — build, test, install.
#
#   make              build/smtpgate-handler, build/smtpgate-flush, build/smtpgate-queue,
#                     build/smtpgate-sendmail
#   make check        every test (installs missing Debian packages first when root)
#   make run          the demo gate on 127.0.0.1:2525
#   make sanitize     the same programs with ASan+UBSan in build-sanitize/
#   make install      PREFIX=/usr/local DESTDIR=
#   make deb          the Debian package in build-deb/, checked by lintian
#   make bench        benchmarks (bench/results.md)
#   make fuzz         libFuzzer targets, FUZZ_SECONDS each
#   make coverage     unit + integration tests on a --coverage build in
#                     build-coverage/; line and function coverage per file
#
# Every .c file of common/ dkim/ queue/ handler/ goes into one static
# library, except the programs' main files; a program or test links only
# the objects it uses.

BUILD ?= build
PREFIX ?= /usr/local
DESTDIR ?=
CC ?= cc

PROGRAMS := smtpgate-handler smtpgate-flush smtpgate-queue smtpgate-sendmail
MAINS := handler/smtpgate-handler.c queue/smtpgate-flush.c queue/smtpgate-queue.c \
	handler/smtpgate-sendmail.c
MODULES := common dkim queue handler

PKGS := openssl inih libcrypt libcurl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# Debian ships no lmdb.pc: fall back to -llmdb.
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) \
	$(shell pkg-config --libs lmdb 2>/dev/null || echo -llmdb)

OPT ?= -O2
WARNINGS := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral \
	-Wstrict-prototypes -Wmissing-prototypes -Wvla -Wpointer-arith
HARDENING := -D_FORTIFY_SOURCE=3 -fstack-protector-strong -fPIE
SANITIZE_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer

ifeq ($(SANITIZE),1)
HARDENING := -fstack-protector-strong -fPIE $(SANITIZE_FLAGS)
OPT := -O1
endif
# make coverage: gcov counters in every object; unoptimised, so that each
# line counts where it stands (and without _FORTIFY_SOURCE, which needs -O).
# Atomic counters: smtpgate-flush's relay threads run queue/relay.c at
# once, and plain counters lose increments between them, so that gcov
# derives negative branch counts ("branch 1 taken -1") which gcovr
# refuses: make coverage then printed no table at all. SMTPGATE_COVERAGE:
# a child that ends with _exit writes its counters first.
ifeq ($(COVERAGE),1)
HARDENING := -fstack-protector-strong -fPIE --coverage -fprofile-update=atomic -DSMTPGATE_COVERAGE
OPT := -O0
endif

CFLAGS := -std=c17 $(OPT) -g $(WARNINGS) $(HARDENING) $(EXTRA_CFLAGS)
CPPFLAGS := -D_GNU_SOURCE -Icommon -I. $(PKG_CFLAGS) -MMD -MP
LDFLAGS := -pie -Wl,-z,relro,-z,now -Wl,--as-needed $(EXTRA_LDFLAGS)
ifeq ($(SANITIZE),1)
LDFLAGS += $(SANITIZE_FLAGS)
endif
ifeq ($(COVERAGE),1)
LDFLAGS += --coverage
endif
# -lresolv: the ns_* DNS parser of dkim/dns.c (smtpgate-queue dkim-check);
# --as-needed drops it from the programs that do not use it.
LDLIBS := $(PKG_LIBS) -lresolv

# The handler is exec'd once per connection. Linking OpenSSL, LMDB, inih
# and libcrypt into it statically spares the dynamic loader their ~4,000
# symbol relocations on every connection: one 10 KB session goes from
# 26.2 M to 22.8 M instructions (bench/breakdown.sh). STATIC_HANDLER=0
# links them dynamically (for a package that wants OpenSSL fixes without
# a rebuild); sanitizer builds link dynamically.
STATIC_HANDLER ?= 1
ifeq ($(SANITIZE),1)
STATIC_HANDLER := 0
endif
ifeq ($(STATIC_HANDLER),1)
HANDLER_LIBS := -Wl,-Bstatic -lssl -lcrypto -llmdb -linih -lcrypt -Wl,-Bdynamic
endif

LIB_SRCS := $(filter-out $(MAINS),$(foreach m,$(MODULES),$(wildcard $(m)/*.c)))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
MAIN_OBJS := $(MAINS:%.c=$(BUILD)/%.o)
LIB := $(BUILD)/libsmtpgate.a

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_TESTS := $(UNIT_SRCS:%.c=$(BUILD)/%)
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOLS := $(TOOL_SRCS:%.c=$(BUILD)/%)
BENCH_SRCS := $(wildcard bench/*.c)
BENCHES := $(BENCH_SRCS:%.c=$(BUILD)/%)

.PHONY: all deps check sanitize unit install uninstall run bench fuzz stress coverage clean deb

all: deps
	@$(MAKE) --no-print-directory programs

# Installing packages first keeps a fresh clone to one command.
deps:
	@sh tools/deps.sh

programs: $(PROGRAMS:%=$(BUILD)/%) $(UNIT_TESTS) $(TOOLS) $(BENCHES)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/smtpgate-handler: $(BUILD)/handler/smtpgate-handler.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(HANDLER_LIBS) $(LDLIBS)
$(BUILD)/smtpgate-flush: $(BUILD)/queue/smtpgate-flush.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/smtpgate-queue: $(BUILD)/queue/smtpgate-queue.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/smtpgate-sendmail: $(BUILD)/handler/smtpgate-sendmail.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# tests/unit/NAME.ldflags: extra link flags of one unit test, such as
# -Wl,--wrap=SYMBOL to make a library call fail where no real input can
# (a failing terminal or LMDB call).
$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell cat tests/unit/$*.ldflags 2>/dev/null)

# Test tools (independent verifiers and the like) may need libraries the
# product does not; tests/tools/NAME.libs lists them.
$(BUILD)/tests/tools/%: $(BUILD)/tests/tools/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell cat tests/tools/$*.libs 2>/dev/null)

# Benchmark drivers: bench/NAME.c is built to build/bench/NAME, with extra
# link flags from bench/NAME.libs.
$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell cat bench/$*.libs 2>/dev/null)

sanitize: deps
	@$(MAKE) --no-print-directory programs BUILD=build-sanitize SANITIZE=1

unit: programs
	@sh tests/run-unit.sh $(BUILD)

check: deps
	@bash tests/run-all.sh

run: deps
	@$(MAKE) --no-print-directory programs
	@BUILD=$(BUILD) bash tools/run-demo.sh

# ---- make install / make uninstall (SPEC section 7) ----
# Paths in the units are substituted here; with DESTDIR empty the user and
# folders are created at once (systemd-sysusers, systemd-tmpfiles) and a
# running systemd reloads, so that "systemctl enable --now smtpgate.socket
# smtpgate-flush.timer" (or smtpgate-listen.socket, the listener mode of
# smtpgate(8)) is the only step left. smtpgate-sendmail is installed 0755,
# with no set-ID bit and no /usr/sbin/sendmail link: smtpgate-sendmail(8),
# SECURITY and "As /usr/sbin/sendmail", says why.
LIBEXECDIR := $(PREFIX)/libexec/smtpgate
SBINDIR := $(PREFIX)/sbin
UNITDIR := $(PREFIX)/lib/systemd/system
SYSUSERSDIR := $(PREFIX)/lib/sysusers.d
TMPFILESDIR := $(PREFIX)/lib/tmpfiles.d
MANDIR := $(PREFIX)/share/man
DOCDIR := $(PREFIX)/share/doc/smtpgate
UNITS := smtpgate.socket smtpgate-tls.socket smtpgate@.service \
	smtpgate-listen.socket smtpgate-listen-tls.socket smtpgate-listen.service \
	smtpgate-flush.service smtpgate-flush.timer smtpgate-metrics.service \
	smtpgate-metrics.timer
MAN5 := smtpgate.conf.5
MAN8 := smtpgate.8 smtpgate-handler.8 smtpgate-flush.8 smtpgate-queue.8 \
	smtpgate-sendmail.8
SUBST := sed -e 's|@LIBEXECDIR@|$(LIBEXECDIR)|g' -e 's|@SBINDIR@|$(SBINDIR)|g'

install: $(PROGRAMS:%=$(BUILD)/%)
	install -d $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR)
	install -m 0755 $(BUILD)/smtpgate-handler $(BUILD)/smtpgate-flush $(DESTDIR)$(LIBEXECDIR)/
	install -m 0755 $(BUILD)/smtpgate-queue $(DESTDIR)$(SBINDIR)/
	install -m 0755 $(BUILD)/smtpgate-sendmail $(DESTDIR)$(SBINDIR)/
	for u in $(UNITS); do \
		$(SUBST) units/$$u > $(DESTDIR)$(UNITDIR)/$$u.tmp && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u.tmp && \
		mv $(DESTDIR)$(UNITDIR)/$$u.tmp $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	ln -sf smtpgate@.service $(DESTDIR)$(UNITDIR)/smtpgate-tls@.service
	install -m 0644 units/sysusers.d/smtpgate.conf $(DESTDIR)$(SYSUSERSDIR)/smtpgate.conf
	install -m 0644 units/tmpfiles.d/smtpgate.conf $(DESTDIR)$(TMPFILESDIR)/smtpgate.conf
	install -m 0644 $(MAN5:%=man/%) $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 $(MAN8:%=man/%) $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 man/smtpgate.conf.example $(DESTDIR)$(DOCDIR)/smtpgate.conf.example
	@if [ -z "$(DESTDIR)" ]; then \
		systemd-sysusers $(SYSUSERSDIR)/smtpgate.conf && \
		systemd-tmpfiles --create $(TMPFILESDIR)/smtpgate.conf || exit 1; \
		if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	fi

# Leaves the user, /etc/smtpgate and the queue in /var/lib/smtpgate alone.
uninstall:
	rm -f $(DESTDIR)$(LIBEXECDIR)/smtpgate-handler $(DESTDIR)$(LIBEXECDIR)/smtpgate-flush
	-rmdir $(DESTDIR)$(LIBEXECDIR)
	rm -f $(DESTDIR)$(SBINDIR)/smtpgate-queue $(DESTDIR)$(SBINDIR)/smtpgate-sendmail
	rm -f $(UNITS:%=$(DESTDIR)$(UNITDIR)/%) $(DESTDIR)$(UNITDIR)/smtpgate-tls@.service
	rm -f $(DESTDIR)$(SYSUSERSDIR)/smtpgate.conf $(DESTDIR)$(TMPFILESDIR)/smtpgate.conf
	rm -f $(MAN5:%=$(DESTDIR)$(MANDIR)/man5/%) $(MAN8:%=$(DESTDIR)$(MANDIR)/man8/%)
	rm -f $(DESTDIR)$(DOCDIR)/smtpgate.conf.example
	-rmdir $(DESTDIR)$(DOCDIR)
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
# ---- end of install / uninstall ----

# ---- make deb: the Debian package (debian/) built by dpkg-buildpackage in
# $(DEB_BUILD)/smtpgate-VERSION/, a copy of the files git knows in this tree
# (committed or not, nothing of build/ or run/), so that a local change is
# packaged as it is; then lintian, whose report is $(DEB_BUILD)/lintian.txt
# and whose errors fail the target. DEB_BUILD_OPTIONS=nocheck skips the
# unit tests of the package build.
DEB_BUILD := build-deb
DEB_BUILD_OPTIONS ?= parallel=2
DEB_VERSION = $(shell dpkg-parsechangelog -SVersion)

deb: deps
	rm -rf $(DEB_BUILD)
	mkdir -p $(DEB_BUILD)/smtpgate-$(DEB_VERSION)
	git ls-files -z --cached --others --exclude-standard \
		| tar --null -T - --ignore-failed-read -cf - \
		| tar -xf - -C $(DEB_BUILD)/smtpgate-$(DEB_VERSION)
	cd $(DEB_BUILD)/smtpgate-$(DEB_VERSION) && \
		DEB_BUILD_OPTIONS="$(DEB_BUILD_OPTIONS)" nice dpkg-buildpackage -b -us -uc
	lintian --fail-on error --display-info --show-overrides $(DEB_BUILD)/smtpgate_$(DEB_VERSION)_*.changes \
		> $(DEB_BUILD)/lintian.txt; rc=$$?; cat $(DEB_BUILD)/lintian.txt; exit $$rc
	@ls $(DEB_BUILD)/*.deb
# ---- end of deb ----

bench:
	@sh tools/deps.sh bench
	@$(MAKE) --no-print-directory programs
	@bash bench/run.sh

# ---- coverage: the unit and integration suites (or COVERAGE_TESTS, pytest
# arguments) against a --coverage build, then gcovr's line and function
# coverage for each file of handler/ dkim/ queue/ common/ (tools/coverage.sh).
COVERAGE_BUILD := build-coverage
COVERAGE_TESTS ?= tests/integration

coverage:
	@sh tools/deps.sh coverage
	@$(MAKE) -j2 --no-print-directory programs BUILD=$(COVERAGE_BUILD) COVERAGE=1
	@bash tools/coverage.sh $(COVERAGE_BUILD) $(COVERAGE_TESTS)

# ---- fuzz: libFuzzer targets tests/fuzz/fuzz_*.c, built with clang into
# build-fuzz/ (the library objects with coverage and ASan+UBSan), then each
# run for FUZZ_SECONDS (0: no limit) or FUZZ_RUNS executions by
# tests/fuzz/run.sh, which ends with "fuzz: N passed, N failed".
FUZZ_BUILD := build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?=
FUZZ_CC := clang
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer
FUZZ_CFLAGS := -std=c17 -O1 -g $(WARNINGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_TARGETS := $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_LIB := $(FUZZ_BUILD)/libsmtpgate-fuzz.a

fuzz: deps
	@$(MAKE) -j2 --no-print-directory fuzz-build
	@bash tests/fuzz/run.sh $(FUZZ_BUILD) "$(FUZZ_SECONDS)" "$(FUZZ_RUNS)"

fuzz-build: $(FUZZ_TARGETS)

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_LIB): $(FUZZ_LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

# tests/fuzz/NAME.ldflags: extra link flags of one target (-Wl,--wrap=...).
$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_%.o $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(LDLIBS) \
		$(shell cat tests/fuzz/$*.ldflags 2>/dev/null)

.PHONY: fuzz-build
-include $(FUZZ_LIB_OBJS:.o=.d) $(FUZZ_TARGETS:$(FUZZ_BUILD)/%=$(FUZZ_BUILD)/obj/tests/fuzz/%.d)

# ---- stress: the reliability and abuse suites of issue 8
# (tests/integration/test_reliability_*.py, test_abuse_*.py) with the long
# sizes; `make check` runs the same tests short. Each prints "STRESS name:
# figures" lines, collected in $(BUILD)/stress.log. Other sizes:
# make stress STRESS_SIZES="STRESS_SESSIONS=2000 ...".
STRESS_SIZES ?= STRESS_SESSIONS=500 STRESS_CLIENTS=8 STRESS_FLUSH_MESSAGES=2000 \
	STRESS_FLUSH_KILLS=40 STRESS_DISK_MESSAGES=2000 STRESS_LOAD_SESSIONS=200 \
	STRESS_LOAD_MESSAGES=5 STRESS_SLOW_CLIENTS=50 STRESS_STRIDE=1 \
	STRESS_RCPTS=100000 STRESS_BRUTE_ATTACKERS=50 \
	STRESS_ROOM_MAP=16M STRESS_ROOM_RCPTS=1000 STRESS_ROOM_MAPS=1M,4M,16M,64M \
	STRESS_ROOM_MESSAGES=400 STRESS_ROOM_OUTAGE=10

stress: deps
	@$(MAKE) --no-print-directory programs
	@{ env $(STRESS_SIZES) SMTPGATE_BUILD=$(BUILD) /usr/bin/python3 -m pytest \
		-p no:cacheprovider -q -s -rfEs tests/integration/test_reliability_*.py \
		tests/integration/test_abuse_*.py; echo $$? > $(BUILD)/stress.rc; } 2>&1 \
		| tee $(BUILD)/stress.log; echo "== figures"; \
		grep '^STRESS ' $(BUILD)/stress.log; exit $$(cat $(BUILD)/stress.rc)
# ---- end of stress

clean:
	rm -rf build build-sanitize build-fuzz build-coverage build-deb

.SECONDARY:

-include $(LIB_OBJS:.o=.d) $(MAIN_OBJS:.o=.d) $(UNIT_TESTS:=.d) $(TOOLS:=.d) $(BENCHES:=.d)
