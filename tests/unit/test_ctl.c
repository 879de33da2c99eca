/* test_ctl.c - kiln's control page through the MMIO bus. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/devices/ctl.h"
#include "vmm/iobus.h"
#include "vmm/layout.h"

struct fix {
	struct iobus *bus;
	struct ctl *c;
	int exits;
	int exit_status;
	int readies;
	uint32_t ready_ms;
};

static void on_exit_cb(void *opaque, int status)
{
	struct fix *f = opaque;

	f->exits++;
	f->exit_status = status;
}

static void on_ready_cb(void *opaque, uint32_t guest_ms)
{
	struct fix *f = opaque;

	f->readies++;
	f->ready_ms = guest_ms;
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->bus = iobus_create();
	assert_non_null(f->bus);
	f->c = ctl_create(on_exit_cb, on_ready_cb, f);
	assert_non_null(f->c);
	assert_int_equal(ctl_attach(f->c, f->bus), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	ctl_destroy(f->c);
	iobus_destroy(f->bus);
	free(f);
	return 0;
}

static uint32_t rd32(struct fix *f, uint64_t off)
{
	uint8_t b[4] = {0xaa, 0xaa, 0xaa, 0xaa};

	assert_true(iobus_dispatch(f->bus, IOBUS_MMIO, LAYOUT_CTL_BASE + off, b, 4, false));
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void wr32(struct fix *f, uint64_t off, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};

	assert_true(iobus_dispatch(f->bus, IOBUS_MMIO, LAYOUT_CTL_BASE + off, b, 4, true));
}

static void test_magic_version(void **state)
{
	struct fix *f = *state;
	uint8_t b[4];

	assert_int_equal(rd32(f, CTL_REG_MAGIC), CTL_MAGIC);
	assert_int_equal(rd32(f, CTL_REG_VERSION), CTL_VERSION);
	/* "KILN" in memory order. */
	assert_true(iobus_dispatch(f->bus, IOBUS_MMIO, LAYOUT_CTL_BASE, b, 4, false));
	assert_memory_equal(b, "KILN", 4);
	/* Write-only and unused registers read 0. */
	assert_int_equal(rd32(f, CTL_REG_EXIT), 0);
	assert_int_equal(rd32(f, CTL_REG_READY), 0);
	assert_int_equal(rd32(f, 0x10), 0);
	assert_int_equal(rd32(f, LAYOUT_CTL_SIZE - 4), 0);
	/* Writes to the read-only registers change nothing. */
	wr32(f, CTL_REG_MAGIC, 0);
	assert_int_equal(rd32(f, CTL_REG_MAGIC), CTL_MAGIC);
}

static void test_exit_once(void **state)
{
	struct fix *f = *state;

	wr32(f, CTL_REG_EXIT, 0x12345603);
	assert_int_equal(f->exits, 1);
	assert_int_equal(f->exit_status, 3);
	wr32(f, CTL_REG_EXIT, 7);
	assert_int_equal(f->exits, 1);
	assert_int_equal(f->exit_status, 3);
}

static void test_exit_status_byte(void **state)
{
	struct fix *f = *state;

	wr32(f, CTL_REG_EXIT, 0xffffffff);
	assert_int_equal(f->exits, 1);
	assert_int_equal(f->exit_status, 255);
}

static void test_ready(void **state)
{
	struct fix *f = *state;

	wr32(f, CTL_REG_READY, 123456789);
	assert_int_equal(f->readies, 1);
	assert_int_equal(f->ready_ms, 123456789);
	wr32(f, CTL_REG_READY, 0xfffffffe);
	assert_int_equal(f->readies, 2);
	assert_int_equal(f->ready_ms, 0xfffffffe);
	assert_int_equal(f->exits, 0);
}

/* Anything but an aligned 32-bit access: reads 0, writes ignored. */
static void test_bad_accesses(void **state)
{
	struct fix *f = *state;
	uint8_t b[8];

	for (uint32_t len = 1; len <= 8; len *= 2) {
		if (len == 4)
			continue;
		memset(b, 0xaa, sizeof(b));
		assert_true(iobus_dispatch(f->bus, IOBUS_MMIO, LAYOUT_CTL_BASE, b, len, false));
		for (uint32_t i = 0; i < len; i++)
			assert_int_equal(b[i], 0);
		memset(b, 0, sizeof(b));
		assert_true(iobus_dispatch(f->bus, IOBUS_MMIO, LAYOUT_CTL_BASE + CTL_REG_EXIT, b,
					   len, true));
		assert_true(iobus_dispatch(f->bus, IOBUS_MMIO, LAYOUT_CTL_BASE + CTL_REG_READY, b,
					   len, true));
	}
	/* Misaligned 32-bit accesses. */
	memset(b, 0xaa, sizeof(b));
	assert_true(iobus_dispatch(f->bus, IOBUS_MMIO, LAYOUT_CTL_BASE + 1, b, 4, false));
	assert_int_equal(b[0] | b[1] | b[2] | b[3], 0);
	memset(b, 0, sizeof(b));
	assert_true(
		iobus_dispatch(f->bus, IOBUS_MMIO, LAYOUT_CTL_BASE + CTL_REG_EXIT + 2, b, 4, true));
	assert_true(
		iobus_dispatch(f->bus, IOBUS_MMIO, LAYOUT_CTL_BASE + CTL_REG_EXIT - 2, b, 4, true));
	assert_int_equal(f->exits, 0);
	assert_int_equal(f->readies, 0);
	/* Past the page: not the device's. */
	assert_false(iobus_dispatch(f->bus, IOBUS_MMIO, LAYOUT_CTL_BASE + LAYOUT_CTL_SIZE - 2, b, 4,
				    false));
	assert_false(
		iobus_dispatch(f->bus, IOBUS_MMIO, LAYOUT_CTL_BASE + LAYOUT_CTL_SIZE, b, 4, false));
	/* Port I/O at the same number is a different space. */
	assert_false(iobus_dispatch(f->bus, IOBUS_PIO, LAYOUT_CTL_BASE, b, 4, false));
	/* The exit register still works afterwards. */
	wr32(f, CTL_REG_EXIT, 0);
	assert_int_equal(f->exits, 1);
	assert_int_equal(f->exit_status, 0);
}

static void test_null_callbacks(void **state)
{
	struct iobus *bus = iobus_create();
	struct ctl *c = ctl_create(NULL, NULL, NULL);
	uint8_t b[4] = {1, 0, 0, 0};

	(void)state;
	assert_non_null(bus);
	assert_non_null(c);
	assert_int_equal(ctl_attach(c, bus), 0);
	assert_int_equal(ctl_attach(c, bus), -EEXIST);
	assert_true(iobus_dispatch(bus, IOBUS_MMIO, LAYOUT_CTL_BASE + CTL_REG_EXIT, b, 4, true));
	assert_true(iobus_dispatch(bus, IOBUS_MMIO, LAYOUT_CTL_BASE + CTL_REG_READY, b, 4, true));
	ctl_destroy(c);
	ctl_destroy(NULL);
	iobus_destroy(bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_magic_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exit_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exit_status_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ready, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_accesses, setup, teardown),
		cmocka_unit_test(test_null_callbacks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
