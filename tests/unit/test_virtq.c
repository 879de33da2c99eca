/* test_virtq.c - split virtqueues built by hand in guest memory: good chains
 * (direct, indirect, mixed), every kind of malformed chain (each must give
 * -EIO and a broken queue, never a crash), used-ring updates and interrupt
 * suppression with and without event index, including 16-bit wrap-around. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/memory.h"
#include "vmm/virtio/queue.h"

#define MEM_SIZE (4ULL << 20)
#define DESC	 0x1000ULL
#define AVAIL	 0x5000ULL /* room for 1024 descriptors before it */
#define USED	 0x6000ULL
#define BUF	 0x10000ULL
#define TABLE	 0x20000ULL

struct fx {
	struct guest_mem mem;
	struct virtq q;
	struct virtq_chain c;
};

static uint8_t *at(struct fx *f, uint64_t gpa)
{
	return f->mem.host + gpa;
}

static void put16(struct fx *f, uint64_t gpa, uint16_t v)
{
	memcpy(at(f, gpa), &v, 2);
}

static uint16_t get16(struct fx *f, uint64_t gpa)
{
	uint16_t v;

	memcpy(&v, at(f, gpa), 2);
	return v;
}

static uint32_t get32(struct fx *f, uint64_t gpa)
{
	uint32_t v;

	memcpy(&v, at(f, gpa), 4);
	return v;
}

static void desc_at(struct fx *f, uint64_t table, uint32_t i, uint64_t addr, uint32_t len,
		    uint16_t flags, uint16_t next)
{
	struct virtq_desc d = {.addr = addr, .len = len, .flags = flags, .next = next};

	memcpy(at(f, table + 16ULL * i), &d, sizeof(d));
}

static void desc(struct fx *f, uint32_t i, uint64_t addr, uint32_t len, uint16_t flags,
		 uint16_t next)
{
	desc_at(f, DESC, i, addr, len, flags, next);
}

/* Puts `head` in the available ring and bumps avail->idx. */
static void publish(struct fx *f, uint16_t head)
{
	uint16_t idx = get16(f, AVAIL + 2);

	put16(f, AVAIL + 4 + 2ULL * (idx % f->q.size), head);
	put16(f, AVAIL + 2, (uint16_t)(idx + 1));
}

static void setup_queue(struct fx *f, uint16_t size)
{
	memset(f->mem.host, 0, 0x30000);
	f->q = (struct virtq){
		.size = size,
		.ready = true,
		.desc_gpa = DESC,
		.avail_gpa = AVAIL,
		.used_gpa = USED,
		.mem = &f->mem,
	};
	virtq_reset(&f->q);
	assert_int_equal(virtq_validate(&f->q), 0);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f || guest_mem_init(&f->mem, MEM_SIZE) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	guest_mem_release(&f->mem);
	free(f);
	return 0;
}

static void expect_broken(struct fx *f)
{
	assert_int_equal(virtq_pop(&f->q, &f->c), -EIO);
	assert_true(f->q.broken);
	assert_false(virtq_usable(&f->q));
	/* A broken queue stays broken and serves nothing. */
	assert_int_equal(virtq_pop(&f->q, &f->c), -EIO);
	assert_int_equal(virtq_push(&f->q, 0, 0), -EIO);
	assert_false(virtq_should_notify(&f->q));
}

/* ---- good chains ------------------------------------------------------------ */

static void test_empty_queue(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	assert_false(virtq_has_avail(&f->q));
	assert_int_equal(virtq_pop(&f->q, &f->c), 0);
	assert_false(f->q.broken);
}

static void test_not_ready_pops_nothing(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	desc(f, 0, BUF, 16, 0, 0);
	publish(f, 0);
	f->q.ready = false;
	assert_int_equal(virtq_pop(&f->q, &f->c), 0);
}

static void test_direct_chain(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	desc(f, 3, BUF, 16, VIRTQ_DESC_F_NEXT, 5);
	desc(f, 5, BUF + 0x100, 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 7);
	desc(f, 7, BUF + 0x400, 1, VIRTQ_DESC_F_WRITE, 0);
	publish(f, 3);
	assert_true(virtq_has_avail(&f->q));
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(f->c.head, 3);
	assert_int_equal(f->c.out_num, 1);
	assert_int_equal(f->c.in_num, 2);
	assert_int_equal(f->c.out_len, 16);
	assert_int_equal(f->c.in_len, 513);
	assert_ptr_equal(f->c.iov[0].iov_base, at(f, BUF));
	assert_ptr_equal(f->c.iov[1].iov_base, at(f, BUF + 0x100));
	assert_int_equal(f->c.iov[1].iov_len, 512);
	assert_ptr_equal(f->c.iov[2].iov_base, at(f, BUF + 0x400));
	assert_int_equal(f->q.last_avail, 1);
	assert_false(virtq_has_avail(&f->q));
	assert_int_equal(virtq_pop(&f->q, &f->c), 0);
}

static void test_single_writable_and_zero_length(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 4);
	/* A zero-length buffer may point anywhere: it is never touched. */
	desc(f, 0, 0xffffffffffff0000ULL, 0, VIRTQ_DESC_F_NEXT, 1);
	desc(f, 1, BUF, 8, VIRTQ_DESC_F_WRITE, 0);
	publish(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(f->c.out_num, 0);
	assert_int_equal(f->c.in_num, 1);
	assert_int_equal(f->c.in_len, 8);
}

static void test_indirect_chain(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	f->q.indirect = true;
	desc_at(f, TABLE, 0, BUF, 16, VIRTQ_DESC_F_NEXT, 2);
	desc_at(f, TABLE, 2, BUF + 0x200, 100, VIRTQ_DESC_F_NEXT, 1);
	desc_at(f, TABLE, 1, BUF + 0x400, 1, VIRTQ_DESC_F_WRITE, 0);
	desc(f, 6, TABLE, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	publish(f, 6);
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(f->c.head, 6);
	assert_int_equal(f->c.out_num, 2);
	assert_int_equal(f->c.in_num, 1);
	assert_int_equal(f->c.out_len, 116);
	assert_ptr_equal(f->c.iov[1].iov_base, at(f, BUF + 0x200));
	assert_ptr_equal(f->c.iov[2].iov_base, at(f, BUF + 0x400));
}

static void test_direct_then_indirect(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	f->q.indirect = true;
	desc_at(f, TABLE, 0, BUF + 0x400, 4, VIRTQ_DESC_F_WRITE, 0);
	desc(f, 0, BUF, 16, VIRTQ_DESC_F_NEXT, 1);
	desc(f, 1, TABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
	publish(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(f->c.out_num, 1);
	assert_int_equal(f->c.in_num, 1);
}

static void test_chain_read_write_across_segments(void **state)
{
	struct fx *f = *state;
	char buf[32];

	setup_queue(f, 8);
	memcpy(at(f, BUF), "hello ", 6);
	memcpy(at(f, BUF + 0x100), "world", 5);
	desc(f, 0, BUF, 6, VIRTQ_DESC_F_NEXT, 1);
	desc(f, 1, BUF + 0x100, 5, VIRTQ_DESC_F_NEXT, 2);
	desc(f, 2, BUF + 0x200, 3, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3);
	desc(f, 3, BUF + 0x300, 4, VIRTQ_DESC_F_WRITE, 0);
	publish(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(virtq_chain_read(&f->c, 0, buf, sizeof(buf)), 11);
	assert_string_equal(buf, "hello world");
	memset(buf, 0, sizeof(buf));
	assert_int_equal(virtq_chain_read(&f->c, 4, buf, 4), 4);
	assert_string_equal(buf, "o wo");
	assert_int_equal(virtq_chain_write(&f->c, 1, "ABCDEFGH", 8), 6);
	assert_memory_equal(at(f, BUF + 0x201), "AB", 2);
	assert_memory_equal(at(f, BUF + 0x300), "CDEF", 4);
}

static void test_max_chain_accepted(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 1024);
	for (uint16_t i = 0; i < VIRTQ_MAX_CHAIN; i++)
		desc(f, i, BUF + i, 1,
		     i + 1 < VIRTQ_MAX_CHAIN ? VIRTQ_DESC_F_NEXT : VIRTQ_DESC_F_WRITE,
		     (uint16_t)(i + 1));
	publish(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(f->c.out_num + f->c.in_num, VIRTQ_MAX_CHAIN);
}

/* ---- malformed chains ----------------------------------------------------------- */

static void test_head_out_of_range(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	publish(f, 8);
	expect_broken(f);
}

static void test_next_out_of_range(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	desc(f, 0, BUF, 16, VIRTQ_DESC_F_NEXT, 8);
	publish(f, 0);
	expect_broken(f);
}

static void test_loop(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	desc(f, 0, BUF, 16, VIRTQ_DESC_F_NEXT, 1);
	desc(f, 1, BUF, 16, VIRTQ_DESC_F_NEXT, 0);
	publish(f, 0);
	expect_broken(f);
}

static void test_self_loop(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 2);
	desc(f, 1, BUF, 16, VIRTQ_DESC_F_NEXT, 1);
	publish(f, 1);
	expect_broken(f);
}

static void test_chain_longer_than_size(void **state)
{
	struct fx *f = *state;

	/* Every descriptor chained in order, the last back to the first. */
	setup_queue(f, 16);
	for (uint16_t i = 0; i < 16; i++)
		desc(f, i, BUF, 1, VIRTQ_DESC_F_NEXT, (uint16_t)((i + 1) % 16));
	publish(f, 0);
	expect_broken(f);
}

static void test_chain_longer_than_max(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 1024);
	for (uint16_t i = 0; i <= VIRTQ_MAX_CHAIN; i++)
		desc(f, i, BUF, 1, i < VIRTQ_MAX_CHAIN ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	publish(f, 0);
	expect_broken(f);
}

static void test_addr_past_ram(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	desc(f, 0, MEM_SIZE, 16, 0, 0);
	publish(f, 0);
	expect_broken(f);
}

static void test_addr_in_mmio_gap(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	desc(f, 0, 0xd0000000ULL, 4, 0, 0);
	publish(f, 0);
	expect_broken(f);
}

static void test_addr_len_overflow(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	desc(f, 0, 0xfffffffffffff000ULL, 0x2000, 0, 0);
	publish(f, 0);
	expect_broken(f);
}

static void test_len_crosses_ram_end(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	desc(f, 0, MEM_SIZE - 8, 16, VIRTQ_DESC_F_WRITE, 0);
	publish(f, 0);
	expect_broken(f);
}

static void test_huge_len(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	desc(f, 0, BUF, 0xffffffffU, 0, 0);
	publish(f, 0);
	expect_broken(f);
}

static void test_writable_before_readable(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	desc(f, 0, BUF, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	desc(f, 1, BUF, 16, 0, 0);
	publish(f, 0);
	expect_broken(f);
}

static void test_indirect_not_negotiated(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	desc_at(f, TABLE, 0, BUF, 16, 0, 0);
	desc(f, 0, TABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
	publish(f, 0);
	expect_broken(f);
}

static void indirect_case(struct fx *f, uint64_t addr, uint32_t len, uint16_t flags)
{
	setup_queue(f, 8);
	f->q.indirect = true;
	desc_at(f, TABLE, 0, BUF, 16, 0, 0);
	desc(f, 0, addr, len, flags, 1);
	desc(f, 1, BUF, 16, 0, 0);
	publish(f, 0);
	expect_broken(f);
}

static void test_indirect_len_not_multiple(void **state)
{
	indirect_case(*state, TABLE, 24, VIRTQ_DESC_F_INDIRECT);
}

static void test_indirect_len_zero(void **state)
{
	indirect_case(*state, TABLE, 0, VIRTQ_DESC_F_INDIRECT);
}

static void test_indirect_outside_ram(void **state)
{
	indirect_case(*state, MEM_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT);
}

static void test_indirect_with_next(void **state)
{
	indirect_case(*state, TABLE, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT);
}

static void test_indirect_nested(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	f->q.indirect = true;
	desc_at(f, TABLE, 0, TABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
	desc(f, 0, TABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
	publish(f, 0);
	expect_broken(f);
}

static void test_indirect_next_out_of_table(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	f->q.indirect = true;
	desc_at(f, TABLE, 0, BUF, 16, VIRTQ_DESC_F_NEXT, 2); /* table has 2 entries */
	desc_at(f, TABLE, 1, BUF, 16, 0, 0);
	desc(f, 0, TABLE, 32, VIRTQ_DESC_F_INDIRECT, 0);
	publish(f, 0);
	expect_broken(f);
}

static void test_indirect_loop(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	f->q.indirect = true;
	desc_at(f, TABLE, 0, BUF, 16, VIRTQ_DESC_F_NEXT, 1);
	desc_at(f, TABLE, 1, BUF, 16, VIRTQ_DESC_F_NEXT, 0);
	desc(f, 0, TABLE, 32, VIRTQ_DESC_F_INDIRECT, 0);
	publish(f, 0);
	expect_broken(f);
}

static void test_indirect_too_long(void **state)
{
	struct fx *f = *state;
	uint32_t n = VIRTQ_MAX_CHAIN + 1;

	setup_queue(f, 8);
	f->q.indirect = true;
	for (uint32_t i = 0; i < n; i++)
		desc_at(f, TABLE, i, BUF, 1, i + 1 < n ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	desc(f, 0, TABLE, n * 16, VIRTQ_DESC_F_INDIRECT, 0);
	publish(f, 0);
	expect_broken(f);
}

static void test_avail_idx_runs_ahead(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	desc(f, 0, BUF, 16, 0, 0);
	put16(f, AVAIL + 2, 9);
	expect_broken(f);
}

static void test_avail_idx_full_ring_ok(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 4);
	desc(f, 0, BUF, 16, 0, 0);
	for (int i = 0; i < 4; i++)
		publish(f, 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(virtq_pop(&f->q, &f->c), 0);
}

static void test_reset_clears_broken(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	publish(f, 9);
	expect_broken(f);
	virtq_reset(&f->q);
	assert_true(virtq_usable(&f->q));
	assert_int_equal(f->q.last_avail, 0);
}

/* ---- validate ------------------------------------------------------------------- */

static void test_validate(void **state)
{
	struct fx *f = *state;
	static const uint16_t bad_sizes[] = {0, 3, 6, 2048};

	for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
		setup_queue(f, 8);
		f->q.size = bad_sizes[i];
		assert_int_equal(virtq_validate(&f->q), -EINVAL);
		assert_true(f->q.broken);
	}
	setup_queue(f, 8);
	f->q.used_gpa = MEM_SIZE - 8; /* used ring crosses the end of RAM */
	assert_int_equal(virtq_validate(&f->q), -EINVAL);
	setup_queue(f, 8);
	f->q.desc_gpa = DESC + 8; /* misaligned */
	assert_int_equal(virtq_validate(&f->q), -EINVAL);
	setup_queue(f, 8);
	f->q.avail_gpa = 0xfffffffffffffff0ULL;
	assert_int_equal(virtq_validate(&f->q), -EINVAL);
	setup_queue(f, 1024);
	f->q.desc_gpa = MEM_SIZE - 16 * 1024 + 16; /* table runs past RAM */
	assert_int_equal(virtq_validate(&f->q), -EINVAL);
}

/* ---- used ring and notifications ----------------------------------------------------- */

static void test_push_and_notify_plain(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	desc(f, 2, BUF, 1, VIRTQ_DESC_F_WRITE, 0);
	publish(f, 2);
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(virtq_push(&f->q, 2, 77), 0);
	assert_int_equal(get16(f, USED + 2), 1);
	assert_int_equal(get32(f, USED + 4), 2);
	assert_int_equal(get32(f, USED + 8), 77);
	assert_true(virtq_should_notify(&f->q));
	put16(f, AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT);
	assert_false(virtq_should_notify(&f->q));
	/* Out-of-range head from a device bug breaks the queue. */
	assert_int_equal(virtq_push(&f->q, 8, 0), -EIO);
	assert_true(f->q.broken);
}

static void test_set_notification_plain(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 8);
	virtq_set_notification(&f->q, false);
	assert_int_equal(get16(f, USED), VIRTQ_USED_F_NO_NOTIFY);
	virtq_set_notification(&f->q, true);
	assert_int_equal(get16(f, USED), 0);
}

static void test_event_idx_avail_event(void **state)
{
	struct fx *f = *state;
	uint64_t avail_event = USED + 4 + 8 * 8;

	setup_queue(f, 8);
	f->q.event_idx = true;
	desc(f, 0, BUF, 1, 0, 0);
	publish(f, 0);
	publish(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(get16(f, avail_event), 1);
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(get16(f, avail_event), 2);
	assert_int_equal(virtq_pop(&f->q, &f->c), 0);
	assert_int_equal(get16(f, avail_event), 2);
	/* The flags word is not used with event_idx. */
	virtq_set_notification(&f->q, false);
	assert_int_equal(get16(f, USED), 0);
}

static void test_event_idx_notify(void **state)
{
	struct fx *f = *state;
	uint64_t used_event = AVAIL + 4 + 2 * 8;

	setup_queue(f, 8);
	f->q.event_idx = true;
	/* First notification always goes out. */
	assert_int_equal(virtq_push(&f->q, 0, 0), 0);
	put16(f, used_event, 5);
	assert_true(virtq_should_notify(&f->q));
	/* used idx 1 -> 3: event 5 not crossed. */
	virtq_push(&f->q, 0, 0);
	virtq_push(&f->q, 0, 0);
	assert_false(virtq_should_notify(&f->q));
	/* 3 -> 6 crosses 5 (the entry at index 5 was used). */
	for (int i = 0; i < 3; i++)
		virtq_push(&f->q, 0, 0);
	assert_true(virtq_should_notify(&f->q));
	/* Nothing new since: no interrupt. */
	assert_false(virtq_should_notify(&f->q));
	/* event == old idx: notify on the next one. */
	put16(f, used_event, 6);
	virtq_push(&f->q, 0, 0);
	assert_true(virtq_should_notify(&f->q));
}

static void test_event_idx_wraparound(void **state)
{
	struct fx *f = *state;
	uint64_t used_event = AVAIL + 4 + 2 * 8;

	setup_queue(f, 8);
	f->q.event_idx = true;
	f->q.used_idx = 0xfffe;
	f->q.signalled_used = 0xfffe;
	f->q.signalled_valid = true;
	put16(f, used_event, 0xfffe);
	assert_int_equal(virtq_push(&f->q, 1, 0), 0); /* -> 0xffff */
	assert_int_equal(get16(f, USED + 2), 0xffff);
	assert_true(virtq_should_notify(&f->q));
	put16(f, used_event, 0x0000);
	virtq_push(&f->q, 1, 0); /* -> 0x0000: entry 0xffff used, not 0 */
	assert_int_equal(get16(f, USED + 2), 0);
	assert_int_equal(get32(f, USED + 4 + 8 * 7), 1); /* slot 0xffff % 8 */
	assert_false(virtq_should_notify(&f->q));
	virtq_push(&f->q, 1, 0); /* -> 0x0001: entry 0 used */
	assert_true(virtq_should_notify(&f->q));
	/* A jump across the wrap with event in the middle. */
	f->q.used_idx = 0xfff0;
	f->q.signalled_used = 0xfff0;
	put16(f, used_event, 0xfffa);
	for (int i = 0; i < 0x20; i++)
		virtq_push(&f->q, 1, 0);
	assert_true(virtq_should_notify(&f->q));
}

static void test_avail_wraparound(void **state)
{
	struct fx *f = *state;

	setup_queue(f, 4);
	f->q.last_avail = 0xfffe;
	put16(f, AVAIL + 2, 0xfffe);
	desc(f, 1, BUF, 4, 0, 0);
	for (int i = 0; i < 4; i++)
		publish(f, 1); /* idx 0xfffe -> 0x0002 */
	for (int i = 0; i < 4; i++)
		assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(f->q.last_avail, 2);
	assert_int_equal(virtq_pop(&f->q, &f->c), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_queue),
		cmocka_unit_test(test_not_ready_pops_nothing),
		cmocka_unit_test(test_direct_chain),
		cmocka_unit_test(test_single_writable_and_zero_length),
		cmocka_unit_test(test_indirect_chain),
		cmocka_unit_test(test_direct_then_indirect),
		cmocka_unit_test(test_chain_read_write_across_segments),
		cmocka_unit_test(test_max_chain_accepted),
		cmocka_unit_test(test_head_out_of_range),
		cmocka_unit_test(test_next_out_of_range),
		cmocka_unit_test(test_loop),
		cmocka_unit_test(test_self_loop),
		cmocka_unit_test(test_chain_longer_than_size),
		cmocka_unit_test(test_chain_longer_than_max),
		cmocka_unit_test(test_addr_past_ram),
		cmocka_unit_test(test_addr_in_mmio_gap),
		cmocka_unit_test(test_addr_len_overflow),
		cmocka_unit_test(test_len_crosses_ram_end),
		cmocka_unit_test(test_huge_len),
		cmocka_unit_test(test_writable_before_readable),
		cmocka_unit_test(test_indirect_not_negotiated),
		cmocka_unit_test(test_indirect_len_not_multiple),
		cmocka_unit_test(test_indirect_len_zero),
		cmocka_unit_test(test_indirect_outside_ram),
		cmocka_unit_test(test_indirect_with_next),
		cmocka_unit_test(test_indirect_nested),
		cmocka_unit_test(test_indirect_next_out_of_table),
		cmocka_unit_test(test_indirect_loop),
		cmocka_unit_test(test_indirect_too_long),
		cmocka_unit_test(test_avail_idx_runs_ahead),
		cmocka_unit_test(test_avail_idx_full_ring_ok),
		cmocka_unit_test(test_reset_clears_broken),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_push_and_notify_plain),
		cmocka_unit_test(test_set_notification_plain),
		cmocka_unit_test(test_event_idx_avail_event),
		cmocka_unit_test(test_event_idx_notify),
		cmocka_unit_test(test_event_idx_wraparound),
		cmocka_unit_test(test_avail_wraparound),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
