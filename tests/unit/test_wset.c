/* test_wset.c - a snapshot's working-set file (vmm/snapshot/wset.c): the
 * encoding round trip, every way a damaged or stale file is refused, the
 * resident-page record (snap_mem_resident) and the prefetch on a real
 * file mapping, checked with mincore. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/le.h"
#include "vmm/snapshot/format.h"
#include "vmm/snapshot/wset.h"

#define MEM (64ULL << 20)
#define CRC 0x1234abcdU

static void three_runs(struct snap_extents *e)
{
	assert_int_equal(snap_extents_add(e, 0, 2), 0);
	assert_int_equal(snap_extents_add(e, 10, 1), 0);
	assert_int_equal(snap_extents_add(e, 100, 50), 0);
}

/* Re-seals buf after an edit, so the check under test is not the CRC. */
static void reseal(uint8_t *buf, size_t len)
{
	le32_put(buf + len - 4, snap_crc32c(0, buf, len - 4));
}

static int decode(const uint8_t *buf, size_t len, uint32_t crc, uint64_t mem)
{
	struct snap_extents e = {0};
	char why[256];
	int r = wset_decode(buf, len, crc, mem, &e, why, sizeof(why));

	if (r < 0)
		assert_int_equal(e.n, 0); /* nothing half-decoded is kept */
	snap_extents_release(&e);
	return r;
}

static void test_round_trip(void **state)
{
	struct snap_extents e = {0}, d = {0};
	uint8_t *buf;
	size_t len;
	char why[256];

	(void)state;
	three_runs(&e);
	assert_int_equal(wset_encode(&e, CRC, MEM, &buf, &len), 0);
	assert_int_equal(len, 32 + 3 * 16 + 4);
	assert_memory_equal(buf, WSET_MAGIC, 8);
	assert_int_equal(wset_decode(buf, len, CRC, MEM, &d, why, sizeof(why)), 0);
	assert_int_equal(d.n, 3);
	assert_int_equal(d.v[2].page, 100);
	assert_int_equal(d.v[2].npages, 50);
	free(buf);
	snap_extents_release(&d);
	/* An empty working set is a valid one. */
	snap_extents_release(&e);
	assert_int_equal(wset_encode(&e, CRC, MEM, &buf, &len), 0);
	assert_int_equal(decode(buf, len, CRC, MEM), 0);
	free(buf);
}

static void test_damaged_and_stale(void **state)
{
	struct snap_extents e = {0};
	uint8_t *buf;
	size_t len;

	(void)state;
	three_runs(&e);
	assert_int_equal(wset_encode(&e, CRC, MEM, &buf, &len), 0);
	/* Another snapshot (its state checksum), another RAM size: stale. */
	assert_int_equal(decode(buf, len, CRC + 1, MEM), -ESTALE);
	assert_int_equal(decode(buf, len, CRC, MEM * 2), -ESTALE);
	/* Any flipped byte: the checksum. */
	for (size_t i = 0; i < len; i++) {
		buf[i] ^= 0x40;
		if (decode(buf, len, CRC, MEM) != -EBADMSG)
			fail_msg("a flip at byte %zu was accepted", i);
		buf[i] ^= 0x40;
	}
	/* Short, or with bytes the header does not count. */
	for (size_t n = 0; n < len; n++)
		assert_int_equal(decode(buf, n, CRC, MEM), -EBADMSG);
	/* Resealed edits: version, run count, order, runs outside RAM. */
	le32_put(buf + 8, 2);
	reseal(buf, len);
	assert_int_equal(decode(buf, len, CRC, MEM), -EBADMSG);
	le32_put(buf + 8, WSET_VERSION);
	le64_put(buf + 24, 1ULL << 60);
	reseal(buf, len);
	assert_int_equal(decode(buf, len, CRC, MEM), -EBADMSG);
	le64_put(buf + 24, 3);
	le64_put(buf + 32 + 16, 1); /* run 1 starts inside run 0 */
	reseal(buf, len);
	assert_int_equal(decode(buf, len, CRC, MEM), -EBADMSG);
	le64_put(buf + 32 + 16, 10);
	le64_put(buf + 32 + 32 + 8, MEM / 4096); /* run 2 past the end of RAM */
	reseal(buf, len);
	assert_int_equal(decode(buf, len, CRC, MEM), -EBADMSG);
	le64_put(buf + 32 + 32 + 8, 0); /* an empty run */
	reseal(buf, len);
	assert_int_equal(decode(buf, len, CRC, MEM), -EBADMSG);
	le64_put(buf + 32 + 32 + 8, 50);
	reseal(buf, len);
	assert_int_equal(decode(buf, len, CRC, MEM), 0);
	free(buf);
	snap_extents_release(&e);
}

static void test_save_load(void **state)
{
	char dir[] = "/tmp/test-wset-XXXXXX", path[64], why[256];
	struct snap_extents e = {0}, d = {0};
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/working-set", dir);
	assert_int_equal(wset_load(path, CRC, MEM, &d, why, sizeof(why)), -ENOENT);
	three_runs(&e);
	assert_int_equal(wset_save(path, &e, CRC, MEM), 0);
	assert_int_equal(wset_load(path, CRC, MEM, &d, why, sizeof(why)), 0);
	assert_int_equal(d.n, 3);
	snap_extents_release(&d);
	assert_int_equal(wset_load(path, CRC ^ 1, MEM, &d, why, sizeof(why)), -ESTALE);
	assert_non_null(strstr(why, "another snapshot"));
	/* Larger than any working set of this RAM can be: not even read. */
	f = fopen(path, "a");
	assert_non_null(f);
	for (int i = 0; i < 20000; i++)
		fwrite("0123456789abcdef", 1, 16, f);
	fclose(f);
	assert_int_equal(wset_load(path, CRC, 16ULL << 20, &d, why, sizeof(why)), -EFBIG);
	/* A directory is not a working set. */
	assert_int_equal(wset_load(dir, CRC, MEM, &d, why, sizeof(why)), -EFBIG);
	unlink(path);
	rmdir(dir);
	snap_extents_release(&e);
}

/* True when one of e's runs holds page. */
static bool covers(const struct snap_extents *e, uint64_t page)
{
	for (size_t i = 0; i < e->n; i++)
		if (page >= e->v[i].page && page < e->v[i].page + e->v[i].npages)
			return true;
	return false;
}

/* Pages of [p, p + pages * 4096) resident in this process's page cache
 * view (mincore). */
static unsigned resident(const uint8_t *p, size_t pages)
{
	unsigned char vec[64];
	unsigned n = 0;

	assert_true(pages <= sizeof(vec));
	assert_int_equal(mincore((void *)p, pages * 4096, vec), 0);
	for (size_t i = 0; i < pages; i++)
		n += vec[i] & 1;
	return n;
}

static void test_resident_and_prefetch(void **state)
{
	char path[] = "/tmp/test-wset-mem-XXXXXX", why[256];
	struct snap_extents e = {0}, rec = {0};
	struct guest_mem mem = {0};
	uint8_t page[4096];
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	memset(page, 0x5a, sizeof(page));
	for (int i = 0; i < 64; i++)
		assert_int_equal(pwrite(fd, page, sizeof(page), (off_t)i * 4096), 4096);
	mem.size = mem.low_size = 64 * 4096;
	mem.host = mmap(NULL, mem.size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	assert_true(mem.host != MAP_FAILED);
	/* Nothing touched yet: an empty record. Then two reads and a write. */
	assert_int_equal(snap_mem_resident(&mem, &rec, why, sizeof(why)), 0);
	assert_int_equal(rec.n, 0);
	assert_int_equal(((volatile uint8_t *)mem.host)[3 * 4096], 0x5a);
	assert_int_equal(((volatile uint8_t *)mem.host)[4 * 4096 + 7], 0x5a);
	mem.host[40 * 4096] = 1;
	assert_int_equal(snap_mem_resident(&mem, &rec, why, sizeof(why)), 0);
	/* The kernel maps cached neighbours of a read fault too (fault-around):
	 * the record holds at least the pages touched. */
	assert_true(covers(&rec, 3) && covers(&rec, 4) && covers(&rec, 40));
	snap_extents_release(&rec);
	munmap(mem.host, mem.size);
	/* A fresh mapping: the prefetch makes exactly the runs present. */
	mem.host = mmap(NULL, mem.size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	assert_true(mem.host != MAP_FAILED);
	assert_int_equal(snap_extents_add(&e, 8, 4), 0);
	assert_int_equal(snap_extents_add(&e, 60, 4), 0);
	assert_int_equal(snap_mem_resident(&mem, &rec, why, sizeof(why)), 0);
	assert_int_equal(rec.n, 0);
	assert_int_equal(wset_prefetch(&mem, &e), 8);
	assert_int_equal(snap_mem_resident(&mem, &rec, why, sizeof(why)), 0);
	for (uint64_t p = 8; p < 12; p++)
		assert_true(covers(&rec, p) && covers(&rec, p + 52));
	assert_int_equal(resident(mem.host + 8 * 4096, 4), 4);
	assert_int_equal(mem.host[9 * 4096], 0x5a); /* the file's contents */
	snap_extents_release(&rec);
	snap_extents_release(&e);
	munmap(mem.host, mem.size);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_damaged_and_stale),
		cmocka_unit_test(test_save_load),
		cmocka_unit_test(test_resident_and_prefetch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
