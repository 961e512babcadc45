# pollen - top-level Makefile.
#
# Targets
#   all (default)  build/libpollen.a, build/libpollen.so.$(VERSION) (+ soname
#                  and dev symlinks) and every examples/*.c -> build/examples/
#   test           tests/*.c -> one Criterion binary build/tests/pollen_tests,
#                  after check-cxx and compile-check (tests/compile/*.c must
#                  build or fail as each file says)
#   check-readme   the README's whole programs build and link
#   test-fiber-ucontext  the fiber suites on the ucontext switch
#   check-cxx      every public header compiled as C++17 (g++ and clang++,
#                  those present), linked with libpollen.a and run
#                  (tests/cxx/all_headers.cpp)
#   test-asan      the same suite under ASan+UBSan+LSan in build/asan/
#   test-tsan      the same suite under TSan in build/tsan/
#   test-chaos     the concurrent suites under seeded schedule perturbation
#                  (build/chaos*/; see "Chaos" below)
#   bench          bench/*.c -> build/bench/<name> (release), then bench/run.sh
#   bench-build    the same without running anything
#   install        headers, libraries, pollen.pc under $(DESTDIR)$(PREFIX)
#   check-install  only pn_* exported; the soname, src/pollen.map's node and
#                  version.h agree with VERSION_*; install into a scratch
#                  prefix, build a program via pkg-config (shared, linked
#                  to the soname, and -static), and the C++ header check
#                  against the installed headers
#   clean
#
# Every source is $(wildcard src/*/*.c): a new room (src/net/, src/sync/)
# needs no edit here.  Tests link the static library because they call
# internal pn__ symbols that the shared library hides.
#
# Knobs: CC, PREFIX, DESTDIR, V=1 (echo commands), CRITERION_ARGS (passed to
# the test binary, e.g. CRITERION_ARGS='--filter=timer_wheel/*'),
# WITH_URING=0|1 (default: 1 if liburing.h is installed; defines
# PN_WITH_URING=1 and links -luring when src/reactor/uring.c exists),
# CXX_CHECK (the C++ compilers check-cxx uses; default: g++ and clang++,
# those installed; empty: skip the check), WERROR=0|1 (below).
#
# Warnings.  pollen's own code compiles warning-free with -Wall -Wextra
# under gcc and clang, and its CI and developers keep it so with -Werror.
# A user building a release with another compiler version must not fail on
# a warning that version adds, so -Werror follows WERROR:
#   WERROR=1  default in a git checkout (a .git here): development and CI
#   WERROR=0  default elsewhere (a release archive, a distribution build)
# Every target uses the same flags (make, make test, make install), so the
# objects are built once whatever is run next.  .ci/run passes WERROR=1
# whatever the checkout; `make WERROR=0` relaxes a development tree.

VERSION_MAJOR := 0
VERSION_MINOR := 2
VERSION_PATCH := 0
VERSION       := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)

CC      ?= cc
AR      ?= ar
PREFIX  ?= /usr/local
DESTDIR ?=
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include

ifeq ($(V),1)
Q :=
else
Q := @
endif

# URING=0 leaves the io_uring backend out (alias of WITH_URING).
ifdef URING
WITH_URING := $(URING)
endif
WITH_URING ?= $(shell test -f /usr/include/liburing.h && echo 1 || echo 0)

# ---------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------
WERROR   ?= $(if $(wildcard .git),1,0)
ifeq ($(WERROR),1)
WERROR_FLAG := -Werror
else
WERROR_FLAG :=
endif
# -Wjump-misses-init (gcc; clang 14 does not know it): reports a local
# initialised before a PN_AWAIT and read after it (it holds garbage on resume).
JUMP_WARN := $(shell $(CC) -Werror -Wjump-misses-init -x c -E - </dev/null >/dev/null 2>&1 \
                 && echo -Wjump-misses-init)
WARN     := -Wall -Wextra $(WERROR_FLAG) $(JUMP_WARN)
BASE_CFLAGS := -std=c11 $(WARN) -g -D_GNU_SOURCE -fPIC -pthread \
               -fvisibility=hidden -Iinclude -Isrc -MMD -MP
OPT      ?= -O2
CFLAGS   ?=
LDFLAGS  ?=

# pollen.pc: a static link needs liburing too (the shared library carries
# it as DT_NEEDED): through Requires.private when liburing has a .pc file,
# else as -luring in Libs.private.
LIBS := -pthread
PC_REQUIRES_PRIVATE :=
PC_LIBS_PRIVATE := -pthread
ifeq ($(WITH_URING),1)
BASE_CFLAGS += -DPN_WITH_URING=1
ifneq ($(wildcard src/reactor/uring.c),)
LIBS += -luring
ifeq ($(shell pkg-config --exists liburing 2>/dev/null && echo y),y)
PC_REQUIRES_PRIVATE := liburing
else
PC_LIBS_PRIVATE := -luring -pthread
endif
endif
endif

ALL_CFLAGS := $(BASE_CFLAGS) $(OPT) $(CFLAGS)

ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=all
TSAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer

# ---------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------
B := build

LIB_SRCS   := $(sort $(wildcard src/*/*.c))
TEST_SRCS  := $(sort $(wildcard tests/*.c))
EX_SRCS    := $(sort $(wildcard examples/*.c))
BENCH_SRCS := $(sort $(wildcard bench/*.c))
PEER_SRCS  := $(sort $(wildcard bench/peers/*.c))

LIB_A      := $(B)/libpollen.a
LIB_SO     := $(B)/libpollen.so.$(VERSION)
# The soname carries the major version, and while it is 0 the minor too
# (libpollen.so.0.2): every 0.x release may break the ABI.
ABI_VERSION := $(if $(filter 0,$(VERSION_MAJOR)),$(VERSION_MAJOR).$(VERSION_MINOR),$(VERSION_MAJOR))
LIB_SONAME := libpollen.so.$(ABI_VERSION)

EXAMPLES := $(patsubst examples/%.c,$(B)/examples/%,$(EX_SRCS))
BENCHES  := $(patsubst bench/%.c,$(B)/bench/%,$(BENCH_SRCS))
PEERS    := $(patsubst bench/peers/%.c,$(B)/bench/peers/%,$(PEER_SRCS))

# Per-flavour object lists: $(call objs,<tree>,<sources>)
objs = $(patsubst %.c,$(1)/obj/%.o,$(2))

REL_LIB_OBJS  := $(call objs,$(B),$(LIB_SRCS))
REL_TEST_OBJS := $(call objs,$(B),$(TEST_SRCS))
ASAN_LIB_OBJS  := $(call objs,$(B)/asan,$(LIB_SRCS))
ASAN_TEST_OBJS := $(call objs,$(B)/asan,$(TEST_SRCS))
TSAN_LIB_OBJS  := $(call objs,$(B)/tsan,$(LIB_SRCS))
TSAN_TEST_OBJS := $(call objs,$(B)/tsan,$(TEST_SRCS))

TEST_BIN      := $(B)/tests/pollen_tests
ASAN_TEST_BIN := $(B)/asan/tests/pollen_tests
TSAN_TEST_BIN := $(B)/tsan/tests/pollen_tests

.PHONY: all lib examples compile-check test test-asan test-tsan bench bench-build install \
        uninstall check-install check-cxx check-readme test-fiber-ucontext clean deps-test deps-bench FORCE

# Keep intermediate objects (examples, benches) instead of deleting them.
.SECONDARY:

all: lib examples

lib: $(LIB_A) $(LIB_SO) $(B)/$(LIB_SONAME) $(B)/libpollen.so

examples: $(EXAMPLES)

# ---------------------------------------------------------------------------
# Compile rules (one pattern per tree so flags never mix)
# ---------------------------------------------------------------------------
# build/.toolchain records CC and flags; it is rewritten (and so every object
# rebuilt) only when they change, e.g. after `make CC=clang`.
TOOLCHAIN := $(B)/.toolchain
TOOLCHAIN_ID := $(CC) $(ALL_CFLAGS) $(LDFLAGS) $(LIBS)

$(TOOLCHAIN): FORCE
	@mkdir -p $(@D)
	@echo '$(TOOLCHAIN_ID)' | cmp -s - $@ || echo '$(TOOLCHAIN_ID)' > $@

$(B)/asan/obj/%.o: %.c $(TOOLCHAIN)
	@mkdir -p $(@D)
	@echo "  CC [asan] $<"
	$(Q)$(CC) $(ALL_CFLAGS) $(ASAN_FLAGS) -c $< -o $@

$(B)/tsan/obj/%.o: %.c $(TOOLCHAIN)
	@mkdir -p $(@D)
	@echo "  CC [tsan] $<"
	$(Q)$(CC) $(ALL_CFLAGS) $(TSAN_FLAGS) -c $< -o $@

$(B)/obj/%.o: %.c $(TOOLCHAIN)
	@mkdir -p $(@D)
	@echo "  CC        $<"
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

# ---------------------------------------------------------------------------
# Libraries
# ---------------------------------------------------------------------------
$(LIB_A): $(REL_LIB_OBJS)
	@mkdir -p $(@D)
	@echo "  AR        $@"
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(LIB_SO): $(REL_LIB_OBJS) src/pollen.map $(TOOLCHAIN)
	@mkdir -p $(@D)
	@echo "  LD        $@"
	$(Q)$(CC) -shared -pthread -Wl,-soname,$(LIB_SONAME) \
	    -Wl,--version-script=src/pollen.map -Wl,--no-undefined \
	    $(LDFLAGS) -o $@ $(REL_LIB_OBJS) $(LIBS)

$(B)/$(LIB_SONAME): $(LIB_SO)
	$(Q)ln -sf $(notdir $<) $@

$(B)/libpollen.so: $(B)/$(LIB_SONAME)
	$(Q)ln -sf $(notdir $<) $@

$(B)/asan/libpollen.a: $(ASAN_LIB_OBJS)
	@mkdir -p $(@D)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(B)/tsan/libpollen.a: $(TSAN_LIB_OBJS)
	@mkdir -p $(@D)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

# ---------------------------------------------------------------------------
# Examples (static lib, so they run from the tree without LD_LIBRARY_PATH)
# ---------------------------------------------------------------------------
$(B)/examples/%: $(B)/obj/examples/%.o $(LIB_A)
	@mkdir -p $(@D)
	@echo "  LINK      $@"
	$(Q)$(CC) $(OPT) -g -pthread $(LDFLAGS) -o $@ $< $(LIB_A) $(LIBS)

# ---------------------------------------------------------------------------
# Tests: every tests/*.c (suites and helpers) in one Criterion binary.
# ---------------------------------------------------------------------------
TEST_LIBS := -lcriterion $(LIBS)

# The list of test sources the binaries were linked from: a run with
# TEST_SRCS=... links a smaller binary, and the next plain run must relink.
TEST_LIST := $(B)/tests/.sources
$(TEST_LIST): FORCE
	@mkdir -p $(@D)
	@echo '$(TEST_SRCS)' | cmp -s - $@ || echo '$(TEST_SRCS)' > $@

$(TEST_BIN): $(REL_TEST_OBJS) $(LIB_A) $(TEST_LIST)
	@mkdir -p $(@D)
	@echo "  LINK      $@"
	$(Q)$(CC) -g -pthread $(LDFLAGS) -o $@ $(REL_TEST_OBJS) $(LIB_A) $(TEST_LIBS)

$(ASAN_TEST_BIN): $(ASAN_TEST_OBJS) $(B)/asan/libpollen.a $(TEST_LIST)
	@mkdir -p $(@D)
	@echo "  LINK      $@"
	$(Q)$(CC) -g -pthread $(ASAN_FLAGS) $(LDFLAGS) -o $@ $(ASAN_TEST_OBJS) \
	    $(B)/asan/libpollen.a $(TEST_LIBS)

# mk/tsan_criterion.c: without it Criterion aborts at start under TSan
# ("Could not initialize inheritable arena"); see the file's comment.
TSAN_SHIM := $(B)/tsan/obj/mk/tsan_criterion.o

$(TSAN_TEST_BIN): $(TSAN_TEST_OBJS) $(TSAN_SHIM) $(B)/tsan/libpollen.a $(TEST_LIST)
	@mkdir -p $(@D)
	@echo "  LINK      $@"
	$(Q)$(CC) -g -pthread $(TSAN_FLAGS) $(LDFLAGS) -o $@ $(TSAN_TEST_OBJS) \
	    $(TSAN_SHIM) $(B)/tsan/libpollen.a $(TEST_LIBS)

# ---------------------------------------------------------------------------
# Chaos: the suites that run threads against each other, built so that
# every atomic, lock, futex/eventfd syscall and named schedule point may
# yield, spin or sleep (src/core/chaos.h, -DPN_CHAOS and the header forced
# into every library source), and run under many seeds (mk/chaos.sh).
#   make test-chaos                     CHAOS_SEEDS seeds (CI's bounded set)
#   make test-chaos SEEDS=200           seeds 1..200
#   make test-chaos SEED=17             replay one seed
#   CHAOS_SAN=asan|tsan                 the same under a sanitizer
#   CHAOS_SUITES='@(races|race_stress)/*'   another Criterion filter
# A failing run prints its seed and the command that replays it.
# ---------------------------------------------------------------------------
CHAOS_SAN ?= none
CHAOS_TREE := $(B)/chaos$(if $(filter asan tsan,$(CHAOS_SAN)),-$(CHAOS_SAN))
CHAOS_SAN_FLAGS := $(if $(filter asan,$(CHAOS_SAN)),$(ASAN_FLAGS),$(if $(filter tsan,$(CHAOS_SAN)),$(TSAN_FLAGS)))

# $(1) tree, $(2) sanitizer flags, $(3) extra objects for the test binary
define chaos_tree
$(B)/$(1)/obj/src/%.o: src/%.c $(TOOLCHAIN)
	@mkdir -p $$(@D)
	@echo "  CC [$(1)] $$<"
	$(Q)$(CC) $(ALL_CFLAGS) $(2) -DPN_CHAOS=1 -include src/core/chaos.h -c $$< -o $$@

$(B)/$(1)/obj/tests/%.o: tests/%.c $(TOOLCHAIN)
	@mkdir -p $$(@D)
	@echo "  CC [$(1)] $$<"
	$(Q)$(CC) $(ALL_CFLAGS) $(2) -DPN_CHAOS=1 -c $$< -o $$@

$(B)/$(1)/obj/mk/%.o: mk/%.c $(TOOLCHAIN)
	@mkdir -p $$(@D)
	$(Q)$(CC) $(ALL_CFLAGS) $(2) -c $$< -o $$@

$(B)/$(1)/libpollen.a: $(call objs,$(B)/$(1),$(LIB_SRCS))
	@mkdir -p $$(@D)
	$(Q)rm -f $$@ && $(AR) rcs $$@ $$^

$(B)/$(1)/tests/pollen_tests: $(call objs,$(B)/$(1),$(TEST_SRCS)) $(3) $(B)/$(1)/libpollen.a $(TEST_LIST)
	@mkdir -p $$(@D)
	@echo "  LINK      $$@"
	$(Q)$(CC) -g -pthread $(2) $(LDFLAGS) -o $$@ $(call objs,$(B)/$(1),$(TEST_SRCS)) \
	    $(3) $(B)/$(1)/libpollen.a $(TEST_LIBS)
endef
$(eval $(call chaos_tree,chaos,,))
$(eval $(call chaos_tree,chaos-asan,$(ASAN_FLAGS),))
$(eval $(call chaos_tree,chaos-tsan,$(TSAN_FLAGS),$(B)/chaos-tsan/obj/mk/tsan_criterion.o))

.PHONY: test-chaos
test-chaos: deps-test
	$(Q)$(MAKE) --no-print-directory $(CHAOS_TREE)/tests/pollen_tests $(PROBE)
	$(Q)CHAOS_SAN=$(CHAOS_SAN) SEEDS=$(SEEDS) SEED=$(SEED) CHAOS_SUITES='$(CHAOS_SUITES)' \
	    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1$${ASAN_OPTIONS:+:$$ASAN_OPTIONS} \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1$${UBSAN_OPTIONS:+:$$UBSAN_OPTIONS} \
	    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1$${TSAN_OPTIONS:+:$$TSAN_OPTIONS} \
	    $(if $(filter tsan,$(CHAOS_SAN)),$(NO_ASLR)) \
	    sh mk/chaos.sh $(CHAOS_TREE)/tests $(PROBE) $(CHAOS_TREE)/tests/pollen_tests

deps-test:
	$(Q)sh mk/deps.sh test

deps-bench:
	$(Q)sh mk/deps.sh bench

# Each test target checks dependencies first, then builds (recursive make so
# the dependency check runs before any compile, even under -j), then runs the
# binary through mk/run-tests.sh: Criterion's output (stderr) goes to stdout
# and to build/<tree>/tests/test-<backend>.log, and any sanitizer report fails the run.
#
# Leak detection under Criterion (verified with a deliberately leaking test):
# Criterion (BoxFort) forks one worker per test and the worker ends with
# exit(), not _exit(), so LeakSanitizer's exit-time check does run in every
# worker and reports the leaking test's allocation stack.  The check runs
# after the test's END phase, so Criterion does not count it as a failed
# test: with abort_on_error=1 the worker dies of SIGABRT, Criterion prints
# "Warning! The test `suite::name` crashed during its setup or teardown",
# counts a warning and exits 1 (never pass --ignore-warnings here); with
# abort_on_error=0 it would ignore the leak and exit 0.  Hence abort_on_error=1
# below, plus mk/run-tests.sh, which fails the run on any "ERROR:
# LeakSanitizer" in the output whatever Criterion says, and lists the leaking
# tests at the end.  No --no-fork is needed (Criterion 2.4 has none anyway).
#
# Each target runs the suite once per reactor backend (BACKENDS="epoll
# uring uring-readiness uring-shared"; mk/test-backends.sh), the uring passes only where
# mk/backend_probe.c can set up io_uring (else they say SKIPPED and why).
RUN_TESTS = sh mk/test-backends.sh
PROBE := $(B)/mk/backend_probe

$(PROBE): mk/backend_probe.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $< $(LIB_A) $(LIBS)

# compile-check: tests/compile/*.c must compile cleanly (ok_*) or be
# rejected (fail_*: a discarded future, a local read after an await under
# gcc's -Wjump-misses-init); see mk/compile-check.sh.  Part of `make test`.
compile-check:
	$(Q)sh mk/compile-check.sh '$(CC)' '$(JUMP_WARN)' -std=c11 -Wall -Wextra -Werror $(JUMP_WARN) -D_GNU_SOURCE -Iinclude

test: deps-test compile-check
	$(Q)$(MAKE) --no-print-directory $(TEST_BIN) $(PROBE) examples
	$(Q)$(MAKE) --no-print-directory check-cxx check-readme
	$(Q)if [ -z "$(TEST_SRCS)" ]; then echo "no tests/*.c yet"; exit 0; fi; \
	    $(RUN_TESTS) $(B)/tests $(PROBE) $(TEST_BIN) $(CRITERION_ARGS)

# test-fiber-ucontext: the fiber suites on the ucontext switch (the fallback
# of machines without a hand-written one, and of shadow-stack builds).
test-fiber-ucontext:
	$(Q)$(MAKE) --no-print-directory B=$(B)/ucontext CFLAGS='$(CFLAGS) -DPN_FIBER_UCONTEXT' \
	    $(B)/ucontext/tests/pollen_tests
	$(Q)$(B)/ucontext/tests/pollen_tests --filter='fiber*/*'

# check-readme: every whole program in README.md builds and links (part of
# `make test`; mk/readme-check.sh).
check-readme: $(LIB_A)
	$(Q)sh mk/readme-check.sh '$(CC)' '$(LIB_A)' '$(LIBS)' -std=c11 -Wall -Wextra -Werror \
	    -D_GNU_SOURCE -Iinclude

test-asan: deps-test
	$(Q)$(MAKE) --no-print-directory $(ASAN_TEST_BIN) $(PROBE) examples
	$(Q)if [ -z "$(TEST_SRCS)" ]; then echo "no tests/*.c yet"; exit 0; fi; \
	    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1$${ASAN_OPTIONS:+:$$ASAN_OPTIONS} \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1$${UBSAN_OPTIONS:+:$$UBSAN_OPTIONS} \
	    $(RUN_TESTS) $(B)/asan/tests $(PROBE) $(ASAN_TEST_BIN) $(CRITERION_ARGS)

# ThreadSanitizer's shadow memory can collide with a randomized mmap (seen
# once here: a SEGV in its mmap interceptor, in the test runner itself), so
# its runs go without address randomization where setarch allows it.
NO_ASLR := $(shell setarch $$(uname -m) -R true >/dev/null 2>&1 && echo "setarch $$(uname -m) -R")

test-tsan: deps-test
	$(Q)$(MAKE) --no-print-directory $(TSAN_TEST_BIN) $(PROBE) examples
	$(Q)if [ -z "$(TEST_SRCS)" ]; then echo "no tests/*.c yet"; exit 0; fi; \
	    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1$${TSAN_OPTIONS:+:$$TSAN_OPTIONS} \
	    $(NO_ASLR) $(RUN_TESTS) $(B)/tsan/tests $(PROBE) $(TSAN_TEST_BIN) $(CRITERION_ARGS)

# ---------------------------------------------------------------------------
# Benchmarks: release build (-O2, no sanitizers), one binary per bench/*.c,
# linked with the static library.  C peer programs bench/peers/*.c (libuv
# servers and the like) become build/bench/peers/<name>, linked with -luv.
# `make bench` builds them all, then runs bench/run.sh if it exists (from the
# repository root, with BENCH_BIN=build/bench), else every build/bench/*.
# Extra libraries for bench programs: make bench BENCH_LIBS=-lm
# ---------------------------------------------------------------------------
BENCH_LIBS ?=

$(B)/bench/peers/%: $(B)/obj/bench/peers/%.o
	@mkdir -p $(@D)
	@echo "  LINK      $@"
	$(Q)$(CC) -O2 -g -pthread $(LDFLAGS) -o $@ $< -luv $(BENCH_LIBS) $(LIBS)

$(B)/bench/%: $(B)/obj/bench/%.o $(LIB_A)
	@mkdir -p $(@D)
	@echo "  LINK      $@"
	$(Q)$(CC) -O2 -g -pthread $(LDFLAGS) -o $@ $< $(LIB_A) $(BENCH_LIBS) $(LIBS)

# The echo load generator (bench/loadgen/*.c): plain epoll, no pollen.
LOADGENS := $(patsubst bench/loadgen/%.c,$(B)/bench/loadgen/%,$(sort $(wildcard bench/loadgen/*.c)))

$(B)/bench/loadgen/%: $(B)/obj/bench/loadgen/%.o
	@mkdir -p $(@D)
	@echo "  LINK      $@"
	$(Q)$(CC) -O2 -g $(LDFLAGS) -o $@ $< -lm

bench-build: deps-bench
	$(Q)$(MAKE) --no-print-directory lib $(BENCHES) $(PEERS) $(LOADGENS) $(B)/examples/echo_server

bench: bench-build
	$(Q)if [ -f bench/run.sh ]; then \
	    BENCH_BIN=$(B)/bench sh bench/run.sh; \
	else \
	    for b in $(BENCHES); do echo "== $$b"; $$b || exit 1; done; \
	fi

# ---------------------------------------------------------------------------
# Install
# ---------------------------------------------------------------------------
# libdir/includedir relative to ${prefix} when they sit under PREFIX.
PC_LIBDIR := $(patsubst $(PREFIX)/%,$${exec_prefix}/%,$(LIBDIR))
PC_INCDIR := $(patsubst $(PREFIX)/%,$${prefix}/%,$(INCDIR))

# Regenerated every time: PREFIX may differ from the last run.
$(B)/pollen.pc: pollen.pc.in FORCE
	@mkdir -p $(@D)
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|g' \
	        -e 's|@LIBDIR@|$(PC_LIBDIR)|g' \
	        -e 's|@INCDIR@|$(PC_INCDIR)|g' \
	        -e 's|@VERSION@|$(VERSION)|g' \
	        $(if $(PC_REQUIRES_PRIVATE),-e 's|@REQUIRES_PRIVATE@|$(PC_REQUIRES_PRIVATE)|g',-e '/@REQUIRES_PRIVATE@/d') \
	        -e 's|@LIBS_PRIVATE@|$(PC_LIBS_PRIVATE)|g' \
	        $< > $@

install: lib $(B)/pollen.pc
	install -d $(DESTDIR)$(INCDIR)/pollen $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 include/pollen.h $(DESTDIR)$(INCDIR)/pollen.h
	install -m 644 include/pollen/*.h $(DESTDIR)$(INCDIR)/pollen/
	install -m 644 $(LIB_A) $(DESTDIR)$(LIBDIR)/libpollen.a
	install -m 755 $(LIB_SO) $(DESTDIR)$(LIBDIR)/libpollen.so.$(VERSION)
	ln -sf libpollen.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(LIB_SONAME)
	ln -sf $(LIB_SONAME) $(DESTDIR)$(LIBDIR)/libpollen.so
	install -m 644 $(B)/pollen.pc $(DESTDIR)$(LIBDIR)/pkgconfig/pollen.pc

# Install into a scratch prefix and build a program against it through
# pkg-config, both statically and dynamically, as a user would.
CHECK_PREFIX := $(CURDIR)/$(B)/check-install
check-install: lib
	$(Q)if nm -D --defined-only $(LIB_SO) | awk '$$2 ~ /^[TDBRVW]$$/ {print $$3}' \
	        | grep -v '^pn_[^_]' | grep -v '^POLLEN_'; then \
	    echo "check-install: the symbols above leak out of $(LIB_SO)"; exit 1; fi
	$(Q)soname=$$(readelf -d $(LIB_SO) | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p'); \
	    if [ "$$soname" != "$(LIB_SONAME)" ]; then \
	    echo "check-install: soname '$$soname', expected $(LIB_SONAME)"; exit 1; fi
	$(Q)node=$$(sed -n 's/^\(POLLEN_[0-9.]*\) {.*/\1/p' src/pollen.map); \
	    if [ "$$node" != "POLLEN_$(VERSION_MAJOR).$(VERSION_MINOR)" ]; then \
	    echo "check-install: src/pollen.map's node '$$node', expected POLLEN_$(VERSION_MAJOR).$(VERSION_MINOR)"; exit 1; fi
	$(Q)if ! grep -q '^#define PN_VERSION_MINOR $(VERSION_MINOR)$$' include/pollen/version.h \
	    || ! grep -q '^#define PN_VERSION_MAJOR $(VERSION_MAJOR)$$' include/pollen/version.h \
	    || ! grep -q '^#define PN_VERSION_PATCH $(VERSION_PATCH)$$' include/pollen/version.h; then \
	    echo "check-install: include/pollen/version.h is not $(VERSION)"; exit 1; fi
	$(Q)rm -rf $(CHECK_PREFIX)
	$(Q)$(MAKE) --no-print-directory install PREFIX=$(CHECK_PREFIX) >/dev/null
	$(Q)printf '%s\n' '#include <pollen.h>' '#include <stdio.h>' \
	    'int main(void) { printf("pollen %s %s\n", pn_version_string(), pn_err_name(-EAGAIN));' \
	    '    return pn_version() == PN_VERSION_HEX ? 0 : 1; }' > $(CHECK_PREFIX)/t.c
	$(Q)PKG_CONFIG_PATH=$(CHECK_PREFIX)/lib/pkgconfig; export PKG_CONFIG_PATH; \
	    $(CC) -std=c11 -Wall $(WERROR_FLAG) $(CHECK_PREFIX)/t.c -o $(CHECK_PREFIX)/t-dyn \
	        $$(pkg-config --cflags --libs pollen) && \
	    LD_LIBRARY_PATH=$(CHECK_PREFIX)/lib $(CHECK_PREFIX)/t-dyn && \
	    test -L $(CHECK_PREFIX)/lib/$(LIB_SONAME) && \
	    readelf -d $(CHECK_PREFIX)/t-dyn | grep -q 'NEEDED.*\[$(LIB_SONAME)\]' && \
	    $(CC) -std=c11 -Wall $(WERROR_FLAG) -static $(CHECK_PREFIX)/t.c -o $(CHECK_PREFIX)/t-static \
	        $$(pkg-config --static --cflags --libs pollen) && \
	    $(CHECK_PREFIX)/t-static && \
	    echo "check-install: OK (pkg-config, shared and static)"
	$(Q)$(MAKE) --no-print-directory check-cxx CXX_INCLUDE=$(CHECK_PREFIX)/include \
	    CXX_LINK="$$(PKG_CONFIG_PATH=$(CHECK_PREFIX)/lib/pkgconfig pkg-config --libs pollen)" \
	    CXX_RUN_ENV=LD_LIBRARY_PATH=$(CHECK_PREFIX)/lib CXX_TREE=$(CHECK_PREFIX)/cxx

# ---------------------------------------------------------------------------
# C++: tests/cxx/all_headers.cpp includes every public header (the list is
# generated from CXX_INCLUDE/pollen/*.h) and runs a few futures; layout.c
# gives it C's view of every public type to compare.  By default against
# the tree (include/, build/libpollen.a); check-install points CXX_INCLUDE
# and CXX_LINK at the installed copy.
# ---------------------------------------------------------------------------
CXX_CHECK   ?= $(foreach c,g++ clang++,$(if $(shell command -v $(c)),$(c)))
CXX_FLAGS   := -std=c++17 -Wall -Wextra -pedantic $(WERROR_FLAG) -g -O1 \
               -D_GNU_SOURCE -pthread
CXX_INCLUDE ?= include
CXX_LINK    ?= $(LIB_A) $(LIBS)
CXX_TREE    ?= $(B)/cxx
CXX_RUN_ENV ?=

check-cxx: $(if $(filter include,$(CXX_INCLUDE)),$(LIB_A))
	$(Q)if [ -z "$(strip $(CXX_CHECK))" ]; then \
	    echo "check-cxx: SKIPPED (no C++ compiler: install g++ or clang++)"; exit 0; fi; \
	mkdir -p $(CXX_TREE) && \
	for h in $(CXX_INCLUDE)/pollen/*.h; do \
	    echo "#include <pollen/$${h##*/}>"; done > $(CXX_TREE)/all_headers.inc && \
	$(CC) -std=c11 -Wall -Wextra $(WERROR_FLAG) -D_GNU_SOURCE -I$(CXX_INCLUDE) \
	    -c tests/cxx/layout.c -o $(CXX_TREE)/layout.o && \
	for cxx in $(CXX_CHECK); do \
	    echo "  C++       tests/cxx/all_headers.cpp ($$cxx, $(CXX_INCLUDE))"; \
	    $$cxx $(CXX_FLAGS) -I$(CXX_INCLUDE) -I$(CXX_TREE) -Itests/cxx \
	        tests/cxx/all_headers.cpp $(CXX_TREE)/layout.o -o $(CXX_TREE)/all_headers-$$cxx \
	        $(CXX_LINK) && \
	    $(CXX_RUN_ENV) $(CXX_TREE)/all_headers-$$cxx || exit 1; \
	done

uninstall:
	rm -rf $(DESTDIR)$(INCDIR)/pollen $(DESTDIR)$(INCDIR)/pollen.h
	rm -f $(DESTDIR)$(LIBDIR)/libpollen.a $(DESTDIR)$(LIBDIR)/libpollen.so*
	rm -f $(DESTDIR)$(LIBDIR)/pkgconfig/pollen.pc

clean:
	rm -rf $(B)

# ---------------------------------------------------------------------------
# Fuzzing: `make fuzz` builds build/fuzz/http_parse_fuzz (libFuzzer harness of
# examples/http_parse.h, clang -fsanitize=fuzzer,address,undefined) and, with
# FUZZ_TIME=<seconds>, runs it that long on build/fuzz/corpus (seeded from
# fuzz/corpus/, with fuzz/http.dict).  Needs clang's libFuzzer runtime.
# ---------------------------------------------------------------------------
FUZZ_CC   ?= clang
FUZZ_TIME ?= 0
FUZZ_FLAGS := -std=c11 -g -O1 -Wall -Wextra $(WERROR_FLAG) -D_GNU_SOURCE \
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all

$(B)/fuzz/http_parse_fuzz: fuzz/http_parse_fuzz.c examples/http_parse.h
	@mkdir -p $(@D)
	@echo "  FUZZ      $@"
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $<

.PHONY: fuzz
fuzz: $(B)/fuzz/http_parse_fuzz
	$(Q)if [ "$(FUZZ_TIME)" -gt 0 ]; then \
	    mkdir -p $(B)/fuzz/corpus && \
	    $< -max_total_time=$(FUZZ_TIME) -dict=fuzz/http.dict \
	        $(B)/fuzz/corpus fuzz/corpus; \
	fi

FORCE:

-include $(shell find $(B) -name '*.d' 2>/dev/null)
