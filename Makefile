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
LDLIBS  := -lpthread -ljansson

ifeq ($(ASAN),1)
BUILD   := build-asan
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
endif

# ---- sources -----------------------------------------------------------
COMMON_SRCS := $(wildcard src/common/*.c)
VMM_SRCS    := $(filter-out src/vmm/main.c,$(wildcard src/vmm/*.c src/vmm/*/*.c))
AGENT_SRCS  := $(wildcard src/agent/*.c)
DAEMON_SRCS := $(filter-out src/daemon/main.c,$(wildcard src/daemon/*.c))
CLI_SRCS    := $(filter-out src/cli/main.c,$(wildcard src/cli/*.c))
UNIT_SRCS   := $(wildcard tests/unit/test_*.c)
GUEST_SRCS  := $(wildcard tests/vmm/guests/*.S)

COMMON_OBJS := $(COMMON_SRCS:%.c=$(BUILD)/%.o)
VMM_OBJS    := $(VMM_SRCS:%.c=$(BUILD)/%.o)
DAEMON_OBJS := $(DAEMON_SRCS:%.c=$(BUILD)/%.o)
CLI_OBJS    := $(CLI_SRCS:%.c=$(BUILD)/%.o)
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

DAEMON_LIBS := -lmicrohttpd -lsqlite3 -lcurl -larchive -lcrypto
CLI_LIBS    := -lcurl -lyaml

.PHONY: all run test asan bench format setup kernel rootfs rootfs-python unit-test vmm-test agent-test e2e-test clean

all: $(VMM_BIN) $(INIT_BIN) $(DAEMON_BIN) $(CLI_BIN) $(UNIT_BINS) $(GUEST_ELFS)

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
INIT_COMMON := $(addprefix src/common/,archive.c argv.c log.c proto.c unixsock.c)
$(INIT_BIN): $(AGENT_SRCS) $(INIT_COMMON) $(wildcard src/agent/*.h src/common/*.h)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARNINGS) -Isrc -O2 -static -o $@ $(AGENT_SRCS) $(INIT_COMMON)

$(BUILD)/tests/unit/%: tests/unit/%.c $(LIBDAEMON) $(LIBCLI) $(LIBVMM) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBDAEMON) $(LIBCLI) $(LIBVMM) $(LIBCOMMON) -lcmocka \
		$(DAEMON_LIBS) $(CLI_LIBS) $(LDLIBS)

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
e2e-test: all rootfs rootfs-python
	@images/kernel/build.sh >/dev/null
	KILN_BUILD=$(BUILD) $(PYTHON) -m pytest -q -n 2 --dist loadfile tests/e2e

test: setup
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit-test vmm-test agent-test e2e-test

asan: setup
	@$(MAKE) --no-print-directory ASAN=1 all
	@$(MAKE) --no-print-directory ASAN=1 unit-test vmm-test

bench: setup
	@$(MAKE) --no-print-directory all
	@bench/run $(BUILD)

format:
	clang-format -i $(shell find src tests bench -name '*.[ch]' -not -path 'tests/vmm/guests/*')

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
