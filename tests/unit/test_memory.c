/* test_memory.c - guest RAM translation and its bounds checks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmm/layout.h"
#include "vmm/memory.h"

#include <errno.h>
#include <sys/mman.h>

static void test_rejects_bad_sizes(void **state)
{
	struct guest_mem m;

	(void)state;
	assert_int_equal(guest_mem_init(&m, 0), -EINVAL);
	assert_int_equal(guest_mem_init(&m, 4097), -EINVAL);
}

static void test_small_guest_bounds(void **state)
{
	struct guest_mem m;
	const uint64_t size = 64ULL << 20;

	(void)state;
	assert_int_equal(guest_mem_init(&m, size), 0);
	assert_int_equal(m.low_size, size);
	assert_int_equal(guest_mem_end(&m), size);
	assert_ptr_equal(guest_mem_ptr(&m, 0, size), m.host);
	assert_ptr_equal(guest_mem_ptr(&m, size - 1, 1), m.host + size - 1);
	assert_ptr_equal(guest_mem_ptr(&m, size, 0), NULL);
	assert_null(guest_mem_ptr(&m, size - 1, 2));
	assert_null(guest_mem_ptr(&m, 1, size));
	assert_null(guest_mem_ptr(&m, UINT64_MAX, 2));
	assert_null(guest_mem_ptr(&m, 4096, UINT64_MAX));
	assert_null(guest_mem_ptr(&m, LAYOUT_MMIO_GAP_END, 1));
	assert_true(guest_mem_contains(&m, 0x1000, 0x1000));
	assert_false(guest_mem_contains(&m, LAYOUT_CTL_BASE, 4));
	guest_mem_release(&m);
	assert_null(m.host);
	guest_mem_release(&m); /* twice is fine */
}

static void test_large_guest_splits_around_hole(void **state)
{
	struct guest_mem m;
	const uint64_t size = LAYOUT_MMIO_GAP_START + (256ULL << 20);
	uint8_t *p;

	(void)state;
	assert_int_equal(guest_mem_init(&m, size), 0);
	assert_int_equal(m.low_size, LAYOUT_MMIO_GAP_START);
	assert_int_equal(guest_mem_end(&m), LAYOUT_MMIO_GAP_END + (256ULL << 20));
	/* Nothing in the hole. */
	assert_null(guest_mem_ptr(&m, LAYOUT_MMIO_GAP_START, 1));
	assert_null(guest_mem_ptr(&m, LAYOUT_MMIO_GAP_END - 1, 1));
	assert_null(guest_mem_ptr(&m, LAYOUT_MMIO_GAP_START - 1, 2));
	/* High RAM follows low RAM in the host mapping. */
	p = guest_mem_ptr(&m, LAYOUT_MMIO_GAP_END, 1);
	assert_ptr_equal(p, m.host + LAYOUT_MMIO_GAP_START);
	assert_non_null(guest_mem_ptr(&m, LAYOUT_MMIO_GAP_END, 256ULL << 20));
	assert_null(guest_mem_ptr(&m, LAYOUT_MMIO_GAP_END, (256ULL << 20) + 1));
	assert_null(guest_mem_ptr(&m, guest_mem_end(&m), 1));
	guest_mem_release(&m);
}

static void test_hole_for_a_snapshot(void **state)
{
	struct guest_mem m;
	const uint64_t size = 64ULL << 20;

	(void)state;
	assert_int_equal(guest_mem_init_hole(&m, 4097), -EINVAL);
	assert_int_equal(guest_mem_init_hole(&m, size), 0);
	assert_true(m.unmapped);
	assert_int_equal(m.size, size);
	/* Far below where mmap(NULL) allocates, and nothing mapped there. */
	assert_true((uintptr_t)m.host >= (32ULL << 40));
	assert_int_equal(msync(m.host, 4096, MS_ASYNC), -1);
	assert_int_equal(errno, ENOMEM);
	/* Addresses are checked as for RAM (a restore checks queues first). */
	assert_ptr_equal(guest_mem_ptr(&m, 0x1000, 0x1000), m.host + 0x1000);
	assert_null(guest_mem_ptr(&m, size, 1));
	guest_mem_release(&m);
	assert_null(m.host);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rejects_bad_sizes),
		cmocka_unit_test(test_small_guest_bounds),
		cmocka_unit_test(test_large_guest_splits_around_hole),
		cmocka_unit_test(test_hole_for_a_snapshot),
	};

	return cmocka_run_group_tests_name("memory", tests, NULL, NULL);
}
