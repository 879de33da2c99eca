# kiln - one non-recursive Makefile.
#
#   make          build everything (host tools, kiln-init, test guests)
#   make run      set up, build, build the guest kernel once, boot a guest
#   make test     set up, build, run unit, VMM and end-to-end tests
#   make asan     build with AddressSanitizer + UBSan and run the fast tests
#   make bench    benchmarks side by side with QEMU, see bench/RESULTS.md
#   make format   clang-format every C file

CC      ?= gcc
BUILD   ?= build
PYTHON  ?= /usr/bin/python3
KILN_CACHE ?= $(HOME)/.cache/kiln
export KILN_CACHE

WARNINGS := -Wall -Wextra -Werror -Wformat=2 -Winit-self -Wmissing-prototypes \
	-Wmissing-declarations -Wnested-externs -Wold-style-definition -Wredundant-decls \
	-Wsign-compare -Wstrict-prototypes -Wundef -Wwrite-strings -Wno-format-nonliteral \
	-Wshadow -Wvla
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE $(WARNINGS) -Isrc -MMD -MP
LDFLAGS ?=
LDLIBS  := -lpthread -ljansson -lseccomp

# kiln-vmm is linked statically so that its jail (kiln-jailer) needs no
# libraries; ASan cannot link statically, so the ASan build's is dynamic
# (and runs unjailed: kilnd --no-jail).
VMM_STATIC := -static

ifeq ($(ASAN),1)
VMM_STATIC :=
BUILD   := build-asan
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
endif

# make SECCOMP=0: kiln-vmm and kilnd without their seccomp filters, for
# debugging only, built into their own directory (build-noseccomp).
SECCOMP ?= 1
ifeq ($(SECCOMP),0)
BUILD   := $(BUILD)-noseccomp
CFLAGS  += -DKILN_NO_SECCOMP
endif

# ---- sources -----------------------------------------------------------
COMMON_SRCS := $(wildcard src/common/*.c)
VMM_SRCS    := $(filter-out src/vmm/main.c,$(wildcard src/vmm/*.c src/vmm/*/*.c))
AGENT_SRCS  := $(wildcard src/agent/*.c)
DAEMON_SRCS := $(filter-out src/daemon/main.c,$(wildcard src/daemon/*.c))
CLI_SRCS    := $(filter-out src/cli/main.c,$(wildcard src/cli/*.c))
JAILER_SRCS := $(wildcard src/jailer/*.c)
UNIT_SRCS   := $(wildcard tests/unit/test_*.c)
GUEST_SRCS  := $(wildcard tests/vmm/guests/*.S)

COMMON_OBJS := $(COMMON_SRCS:%.c=$(BUILD)/%.o)
VMM_OBJS    := $(VMM_SRCS:%.c=$(BUILD)/%.o)
DAEMON_OBJS := $(DAEMON_SRCS:%.c=$(BUILD)/%.o)
CLI_OBJS    := $(CLI_SRCS:%.c=$(BUILD)/%.o)
JAILER_OBJS := $(JAILER_SRCS:%.c=$(BUILD)/%.o)
UNIT_BINS   := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%)
GUEST_ELFS  := $(GUEST_SRCS:tests/vmm/guests/%.S=$(BUILD)/tests/vmm/guests/%.elf)

LIBCOMMON := $(BUILD)/libkilncommon.a
LIBVMM    := $(BUILD)/libkilnvmm.a
LIBDAEMON := $(BUILD)/libkilnd.a
LIBCLI    := $(BUILD)/libkilncli.a
VMM_BIN   := $(BUILD)/kiln-vmm
INIT_BIN  := $(BUILD)/kiln-init
DAEMON_BIN := $(BUILD)/kilnd
CLI_BIN   := $(BUILD)/kiln
JAILER_BIN := $(BUILD)/kiln-jailer

DAEMON_LIBS := -lmicrohttpd -lsqlite3 -lcurl -larchive -lcrypto
CLI_LIBS    := -lcurl -lyaml

.PHONY: all run test test-slow asan bench format setup kernel rootfs rootfs-python rootfs-builder unit-test vmm-test agent-test e2e-test clean

all: $(VMM_BIN) $(INIT_BIN) $(DAEMON_BIN) $(CLI_BIN) $(JAILER_BIN) $(UNIT_BINS) $(GUEST_ELFS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIBCOMMON): $(COMMON_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIBVMM): $(VMM_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(VMM_BIN): $(BUILD)/src/vmm/main.o $(LIBVMM) $(LIBCOMMON)
	$(CC) $(LDFLAGS) $(VMM_STATIC) -o $@ $^ $(LDLIBS)

$(JAILER_BIN): $(JAILER_OBJS) $(LIBCOMMON)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(LIBDAEMON): $(DAEMON_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIBCLI): $(CLI_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(DAEMON_BIN): $(BUILD)/src/daemon/main.o $(LIBDAEMON) $(LIBCOMMON)
	$(CC) $(LDFLAGS) -o $@ $^ $(DAEMON_LIBS) $(LDLIBS)

$(CLI_BIN): $(BUILD)/src/cli/main.o $(LIBCLI) $(LIBCOMMON)
	$(CC) $(LDFLAGS) -o $@ $^ $(CLI_LIBS) $(LDLIBS)

# kiln-init runs as PID 1 in the guest: static, no sanitizers, and only the
# common pieces it uses (its bytes key the runtime images and snapshots).
INIT_COMMON := $(addprefix src/common/,archive.c argv.c atomicfile.c capfile.c dnsname.c log.c proto.c unixsock.c)
$(INIT_BIN): $(AGENT_SRCS) $(INIT_COMMON) $(wildcard src/agent/*.h src/common/*.h)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARNINGS) -Isrc -O2 -static -o $@ $(AGENT_SRCS) $(INIT_COMMON)

$(BUILD)/tests/unit/%: tests/unit/%.c $(LIBDAEMON) $(LIBCLI) $(LIBVMM) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBDAEMON) $(LIBCLI) $(LIBVMM) $(LIBCOMMON) -lcmocka \
		$(DAEMON_LIBS) $(CLI_LIBS) $(LDLIBS)

# Unit tests of kiln-init's pieces link its sources (all but main.c).
AGENT_TEST_SRCS := $(filter-out src/agent/main.c,$(AGENT_SRCS))
$(BUILD)/tests/unit/test_function: tests/unit/test_function.c $(AGENT_TEST_SRCS) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(AGENT_TEST_SRCS) $(LIBCOMMON) -lcmocka $(LDLIBS)

$(BUILD)/tests/unit/test_netcfg: tests/unit/test_netcfg.c src/agent/netcfg.c src/agent/netcfg.h src/common/dnsname.c src/common/atomicfile.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< src/agent/netcfg.c src/common/dnsname.c src/common/atomicfile.c -lcmocka $(LDLIBS)

# Tiny hand-written guests: 64-bit code linked at 1 MiB into an ELF.
$(BUILD)/tests/vmm/guests/%.elf: tests/vmm/guests/%.S tests/vmm/guests/guest.ld tests/vmm/guests/guest.h
	@mkdir -p $(dir $@)
	$(CC) -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-T,tests/vmm/guests/guest.ld -o $@ $<

# ---- images ---------------------------------------------------------------
# Both scripts print the path of what they built (cached under KILN_CACHE).
kernel:
	@images/kernel/build.sh

rootfs: $(INIT_BIN)
	@images/rootfs/build.sh $(BUILD)

rootfs-python: rootfs
	@images/rootfs/build-runtime.sh $(BUILD) python

# The builder microVM's image (gcc, rustc): c and rust functions.
rootfs-builder: rootfs
	@images/rootfs/build-runtime.sh $(BUILD) builder

# ---- top-level jobs ---------------------------------------------------------
setup:
	@scripts/setup

run: setup
	@$(MAKE) --no-print-directory all
	@scripts/run-demo $(BUILD)

unit-test: $(UNIT_BINS)
	@scripts/run-unit-tests $(UNIT_BINS)

vmm-test: $(VMM_BIN) $(GUEST_ELFS)
	KILN_BUILD=$(BUILD) $(PYTHON) -m pytest -q tests/vmm

agent-test: $(INIT_BIN) rootfs
	KILN_BUILD=$(BUILD) $(PYTHON) -m pytest -q tests/agent

# The guest kernel is built (or found in the cache) first, then the test
# files run two at a time (pytest-xdist, one file per worker): each guest
# keeps one core busy with emulated kernel code, and this machine has two.
e2e-test: all rootfs rootfs-python rootfs-builder
	@images/kernel/build.sh >/dev/null
	KILN_BUILD=$(BUILD) $(PYTHON) -m pytest -q -n 2 --dist loadfile tests/e2e

test: setup
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit-test vmm-test agent-test e2e-test

# What make test leaves out on a nested KVM, where each takes many minutes
# (docs/testing.md): CPython's own regression tests in a guest and the Rust
# builds, one file per worker. CI runs it after make test.
test-slow: setup
	@$(MAKE) --no-print-directory all rootfs rootfs-python rootfs-builder
	@images/kernel/build.sh >/dev/null
	KILN_BUILD=$(BUILD) KILN_E2E_STDLIB=1 KILN_E2E_RUST=1 $(PYTHON) -m pytest -q -n 2 \
		--dist loadfile tests/e2e/test_python_stdlib.py \
		tests/e2e/test_builder.py::test_cloudlet_rust_example_runs \
		tests/e2e/test_builder.py::test_rust_function_forms

asan: setup
	@$(MAKE) --no-print-directory ASAN=1 all
	@$(MAKE) --no-print-directory ASAN=1 unit-test vmm-test

# The kilnd group's lower bound: kilnd's HTTP server before a host process.
FLOOR_BIN := $(BUILD)/bench/kiln-floor
$(FLOOR_BIN): $(BUILD)/bench/floor.o $(LIBDAEMON) $(LIBCOMMON)
	$(CC) $(LDFLAGS) -o $@ $^ $(DAEMON_LIBS) $(LDLIBS)

bench: setup
	@$(MAKE) --no-print-directory all $(FLOOR_BIN)
	@bench/run $(BUILD)

format:
	clang-format -i $(shell find src tests bench -name '*.[ch]' -not -path 'tests/vmm/guests/*')

clean:
	rm -rf build build-asan build-noseccomp build-asan-noseccomp

# ---- fuzzing (tests/fuzz/README.md) -------------------------------------------
# make fuzz: each tests/fuzz/fuzz_NAME.c built with clang and libFuzzer +
# ASan + UBSan into build-fuzz/, run FUZZ_SECONDS from its seed corpus
# (new inputs go to build-fuzz/corpus/NAME, crashes to build-fuzz/crash-*).
# make unit-test replays every seed (the crash regressions) with the
# normal build: $(BUILD)/tests/fuzz/replay_NAME.
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_BUILD   := build-fuzz
FUZZ_SRCS    := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES   := $(FUZZ_SRCS:tests/fuzz/fuzz_%.c=%)
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -Isrc -Itests/fuzz -g -O1 -fno-omit-frame-pointer \
	-fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_OBJS    := $(patsubst %.c,$(FUZZ_BUILD)/%.o,$(COMMON_SRCS) $(DAEMON_SRCS) $(CLI_SRCS))
FUZZ_BINS    := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)
REPLAY_BINS  := $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/replay_%)

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/libfuzzsrc.a: $(FUZZ_OBJS)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_BUILD)/libfuzzsrc.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/libfuzzsrc.a \
		$(DAEMON_LIBS) $(CLI_LIBS) $(LDLIBS)

$(BUILD)/tests/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c tests/fuzz/fuzz.h \
		$(LIBDAEMON) $(LIBCLI) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/fuzz $(LDFLAGS) -o $@ $< tests/fuzz/replay.c $(LIBDAEMON) $(LIBCLI) \
		$(LIBCOMMON) $(DAEMON_LIBS) $(CLI_LIBS) $(LDLIBS)

.PHONY: fuzz fuzz-build fuzz-replay
fuzz-build: $(FUZZ_BINS)

fuzz: setup
	@$(MAKE) --no-print-directory fuzz-build
	@for n in $(FUZZ_NAMES); do \
		mkdir -p $(FUZZ_BUILD)/corpus/$$n tests/fuzz/corpus/$$n && \
		echo "fuzz: $$n for $(FUZZ_SECONDS) s" && \
		$(FUZZ_BUILD)/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=$(FUZZ_BUILD)/crash-$$n- \
			$(FUZZ_BUILD)/corpus/$$n tests/fuzz/corpus/$$n 2>$(FUZZ_BUILD)/$$n.log || \
			{ tail -40 $(FUZZ_BUILD)/$$n.log; exit 1; }; \
		grep -E "stat::number_of_executed_units|stat::peak_rss" $(FUZZ_BUILD)/$$n.log; \
	done

fuzz-replay: $(REPLAY_BINS)
	@for n in $(FUZZ_NAMES); do \
		$(BUILD)/tests/fuzz/replay_$$n tests/fuzz/corpus/$$n >/dev/null || \
			{ echo "FAILED: fuzz replay of $$n"; exit 1; }; \
	done; echo "fuzz-replay: $(words $(FUZZ_NAMES)) targets, every seed replayed"

unit-test: fuzz-replay

-include $(shell find $(FUZZ_BUILD) -name '*.d' 2>/dev/null)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
