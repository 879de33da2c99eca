/* test_iobus.c - the registry of PIO and MMIO ranges. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/iobus.h"

/* What the last handler call saw. */
struct hit {
	int calls;
	void *opaque;
	uint64_t offset;
	uint32_t len;
	bool is_write;
	uint8_t data0;
};

static struct hit last;

static void rec_handler(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	last.calls++;
	last.opaque = opaque;
	last.offset = offset;
	last.len = len;
	last.is_write = is_write;
	last.data0 = data[0];
	if (!is_write)
		memset(data, 0x77, len);
}

static int setup(void **state)
{
	struct iobus *bus = iobus_create();

	assert_non_null(bus);
	memset(&last, 0, sizeof(last));
	*state = bus;
	return 0;
}

static int teardown(void **state)
{
	iobus_destroy(*state);
	return 0;
}

static int reg(struct iobus *bus, enum iobus_space sp, uint64_t base, uint64_t len, void *opaque)
{
	return iobus_register(bus, sp, base, len, rec_handler, opaque);
}

static void test_overlaps(void **state)
{
	struct iobus *bus = *state;
	int a, b, c;

	/* [0x100, 0x110) and [0x200, 0x208) */
	assert_int_equal(reg(bus, IOBUS_PIO, 0x100, 0x10, &a), 0);
	assert_int_equal(reg(bus, IOBUS_PIO, 0x200, 0x8, &b), 0);
	/* Same base, same or other length. */
	assert_int_equal(reg(bus, IOBUS_PIO, 0x100, 0x10, &c), -EEXIST);
	assert_int_equal(reg(bus, IOBUS_PIO, 0x100, 1, &c), -EEXIST);
	assert_int_equal(reg(bus, IOBUS_PIO, 0x200, 0x100, &c), -EEXIST);
	/* Straddling the start of a range. */
	assert_int_equal(reg(bus, IOBUS_PIO, 0xf8, 0x9, &c), -EEXIST);
	assert_int_equal(reg(bus, IOBUS_PIO, 0x1ff, 2, &c), -EEXIST);
	/* Straddling the end of a range. */
	assert_int_equal(reg(bus, IOBUS_PIO, 0x10f, 0x10, &c), -EEXIST);
	assert_int_equal(reg(bus, IOBUS_PIO, 0x207, 1, &c), -EEXIST);
	/* Containing a range, and both ranges at once. */
	assert_int_equal(reg(bus, IOBUS_PIO, 0x0, 0x1000, &c), -EEXIST);
	assert_int_equal(reg(bus, IOBUS_PIO, 0xff, 0x12, &c), -EEXIST);
	assert_int_equal(reg(bus, IOBUS_PIO, 0x108, 0x100, &c), -EEXIST);
	/* Contained in a range. */
	assert_int_equal(reg(bus, IOBUS_PIO, 0x104, 4, &c), -EEXIST);
	assert_int_equal(reg(bus, IOBUS_PIO, 0x10f, 1, &c), -EEXIST);
	/* Touching is fine: right before, right after, in the gap. */
	assert_int_equal(reg(bus, IOBUS_PIO, 0xf0, 0x10, &c), 0);
	assert_int_equal(reg(bus, IOBUS_PIO, 0x110, 0xf0, &c), 0);
	assert_int_equal(reg(bus, IOBUS_PIO, 0x208, 1, &c), 0);
	/* The other space is independent. */
	assert_int_equal(reg(bus, IOBUS_MMIO, 0x100, 0x10, &c), 0);
	assert_int_equal(reg(bus, IOBUS_MMIO, 0x108, 1, &c), -EEXIST);
}

static void test_invalid(void **state)
{
	struct iobus *bus = *state;
	int a;
	uint8_t d = 0;

	assert_int_equal(reg(bus, IOBUS_PIO, 0x100, 0, &a), -EINVAL);
	assert_int_equal(reg(bus, IOBUS_MMIO, UINT64_MAX, 2, &a), -EINVAL);
	assert_int_equal(reg(bus, IOBUS_MMIO, UINT64_MAX - 0xf, 0x20, &a), -EINVAL);
	assert_int_equal(reg(bus, IOBUS_MMIO, 2, UINT64_MAX, &a), -EINVAL);
	/* [1, 2^64) ends exactly at the last byte: no wrap. */
	assert_int_equal(reg(bus, IOBUS_PIO, 1, UINT64_MAX, &a), 0);
	assert_int_equal(reg(bus, IOBUS_PIO, 0, 1, &a), 0);
	assert_int_equal(iobus_register(bus, IOBUS_PIO, 0x100, 1, NULL, &a), -EINVAL);
	assert_int_equal(reg(bus, (enum iobus_space)2, 0x100, 1, &a), -EINVAL);
	/* The very last byte is fine, and reachable. */
	assert_int_equal(reg(bus, IOBUS_MMIO, UINT64_MAX, 1, &a), 0);
	assert_true(iobus_dispatch(bus, IOBUS_MMIO, UINT64_MAX, &d, 1, false));
	assert_int_equal(last.offset, 0);
	assert_false(iobus_dispatch(bus, IOBUS_MMIO, UINT64_MAX, &d, 2, false));
	/* The PIO space is now full: [0, 1) + [1, 2^64). */
	assert_int_equal(reg(bus, IOBUS_PIO, 0x1234, 1, &a), -EEXIST);
	assert_int_equal(reg(bus, IOBUS_PIO, UINT64_MAX, 1, &a), -EEXIST);
	assert_true(iobus_dispatch(bus, IOBUS_PIO, UINT64_MAX - 7, &d, 1, false));
	assert_int_equal(last.offset, UINT64_MAX - 8);
}

static void test_dispatch(void **state)
{
	struct iobus *bus = *state;
	int a, b;
	uint8_t d[8] = {0x11};

	assert_int_equal(reg(bus, IOBUS_MMIO, 0xd0000000, 0x1000, &a), 0);
	assert_int_equal(reg(bus, IOBUS_MMIO, 0xd0001000, 0x1000, &b), 0);

	assert_true(iobus_dispatch(bus, IOBUS_MMIO, 0xd0000010, d, 4, true));
	assert_int_equal(last.calls, 1);
	assert_ptr_equal(last.opaque, &a);
	assert_int_equal(last.offset, 0x10);
	assert_int_equal(last.len, 4);
	assert_true(last.is_write);
	assert_int_equal(last.data0, 0x11);

	assert_true(iobus_dispatch(bus, IOBUS_MMIO, 0xd0001ff8, d, 8, false));
	assert_ptr_equal(last.opaque, &b);
	assert_int_equal(last.offset, 0xff8);
	assert_false(last.is_write);
	assert_int_equal(d[7], 0x77);

	assert_true(iobus_dispatch(bus, IOBUS_MMIO, 0xd0000000, d, 1, false));
	assert_ptr_equal(last.opaque, &a);
	assert_int_equal(last.offset, 0);
	assert_true(iobus_dispatch(bus, IOBUS_MMIO, 0xd0000fff, d, 1, false));
	assert_ptr_equal(last.opaque, &a);
	assert_int_equal(last.offset, 0xfff);
	assert_int_equal(last.calls, 4);

	/* Straddling a range's end (even into an adjacent range): nobody. */
	assert_false(iobus_dispatch(bus, IOBUS_MMIO, 0xd0000ffe, d, 4, false));
	assert_false(iobus_dispatch(bus, IOBUS_MMIO, 0xd0001ffc, d, 8, false));
	/* Unregistered addresses, len 0, the wrong space, a bad space. */
	memset(d, 0xee, sizeof(d));
	assert_false(iobus_dispatch(bus, IOBUS_MMIO, 0xcfffffff, d, 1, false));
	assert_false(iobus_dispatch(bus, IOBUS_MMIO, 0xd0002000, d, 1, false));
	assert_false(iobus_dispatch(bus, IOBUS_MMIO, 0, d, 1, false));
	assert_false(iobus_dispatch(bus, IOBUS_MMIO, UINT64_MAX, d, 1, false));
	assert_false(iobus_dispatch(bus, IOBUS_MMIO, 0xd0000000, d, 0, false));
	assert_false(iobus_dispatch(bus, IOBUS_PIO, 0xd0000000, d, 1, false));
	assert_false(iobus_dispatch(bus, (enum iobus_space)7, 0xd0000000, d, 1, false));
	assert_int_equal(d[0], 0xee); /* left as the caller set it */
	assert_int_equal(last.calls, 4);
}

static void test_empty_bus(void **state)
{
	struct iobus *bus = *state;
	uint8_t d = 0;

	assert_false(iobus_dispatch(bus, IOBUS_PIO, 0x3f8, &d, 1, false));
	assert_false(iobus_dispatch(bus, IOBUS_MMIO, 0, &d, 1, true));
	iobus_destroy(NULL);
}

#define NR_RANGES 1000

struct rrange {
	uint64_t base;
	uint64_t len;
};

/* 1000 random non-overlapping ranges registered in random order: every
 * one is found, with the right offset, and the gaps stay empty. */
static void test_many_ranges(void **state)
{
	struct iobus *bus = *state;
	static struct rrange r[NR_RANGES];
	static int order[NR_RANGES];
	uint64_t at = 0x1000;
	uint8_t d[8];

	srand(12345);
	for (int i = 0; i < NR_RANGES; i++) {
		at += (uint64_t)(rand() % 3) * (uint64_t)(1 + rand() % 4096); /* gap, maybe none */
		r[i].base = at;
		r[i].len = 1 + (uint64_t)(rand() % 8192);
		at += r[i].len;
		order[i] = i;
	}
	for (int i = NR_RANGES - 1; i > 0; i--) {
		int j = rand() % (i + 1), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (int i = 0; i < NR_RANGES; i++) {
		struct rrange *x = &r[order[i]];

		assert_int_equal(reg(bus, IOBUS_MMIO, x->base, x->len, x), 0);
		/* And a clash with it is refused at once. */
		assert_int_equal(reg(bus, IOBUS_MMIO, x->base + x->len - 1, 1, x), -EEXIST);
	}
	for (int i = 0; i < NR_RANGES; i++) {
		uint64_t off = (uint64_t)rand() % r[i].len;

		assert_true(iobus_dispatch(bus, IOBUS_MMIO, r[i].base + off, d, 1, false));
		assert_ptr_equal(last.opaque, &r[i]);
		assert_int_equal(last.offset, off);
		assert_true(iobus_dispatch(bus, IOBUS_MMIO, r[i].base, d, 1, false));
		assert_int_equal(last.offset, 0);
		assert_true(iobus_dispatch(bus, IOBUS_MMIO, r[i].base + r[i].len - 1, d, 1, true));
		assert_ptr_equal(last.opaque, &r[i]);
		if (r[i].len < 8)
			assert_false(iobus_dispatch(bus, IOBUS_MMIO, r[i].base, d, 8, false));
		/* The byte after it is the next range's or nobody's. */
		if (i + 1 < NR_RANGES && r[i + 1].base == r[i].base + r[i].len) {
			assert_true(
				iobus_dispatch(bus, IOBUS_MMIO, r[i].base + r[i].len, d, 1, false));
			assert_ptr_equal(last.opaque, &r[i + 1]);
		} else {
			assert_false(
				iobus_dispatch(bus, IOBUS_MMIO, r[i].base + r[i].len, d, 1, false));
		}
	}
	assert_false(iobus_dispatch(bus, IOBUS_MMIO, r[0].base - 1, d, 1, false));
	assert_false(iobus_dispatch(bus, IOBUS_MMIO, at, d, 1, false));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_overlaps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dispatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_bus, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_ranges, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
