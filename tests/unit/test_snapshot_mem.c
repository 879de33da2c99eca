/* test_snapshot_mem.c - snapshot memory files and directories without KVM:
 * sparse full writes, MAP_PRIVATE mapping back, diffs found through
 * /proc/self/pagemap (copy-on-write pages), chains of diffs loaded and
 * layered, a changed parent refused; and device state round trips (UART,
 * i8042, control page). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/devices/ctl.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/serial.h"
#include "vmm/iobus.h"
#include "vmm/layout.h"
#include "vmm/memory.h"
#include "vmm/snapshot/snapshot.h"

#define PG	 4096ULL
#define MEM_SIZE (16ULL << 20)

static char tmpdir[] = "/tmp/kiln-snaptest-XXXXXX";

static int setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void fill_page(struct guest_mem *m, uint64_t page, uint8_t v)
{
	memset(m->host + page * PG, v, PG);
}

static void check_page(const struct guest_mem *m, uint64_t page, uint8_t v)
{
	for (uint64_t i = 0; i < PG; i++)
		if (m->host[page * PG + i] != v)
			fail_msg("page %llu byte %llu is %u, expected %u", (unsigned long long)page,
				 (unsigned long long)i, m->host[page * PG + i], v);
}

/* Writes a snapshot directory: memory from `mem`, a state with META (and
 * PARENT/MEM_EXTENTS for a diff). Returns the state's CRC. */
static uint32_t write_snapshot(const char *dir, const struct guest_mem *mem,
			       const struct snap_backing *b, bool diff, int *reopen)
{
	struct snap_extents ext = {0};
	struct snap_mem_stats st;
	struct snap_writer w;
	char why[512];
	uint32_t crc;

	assert_int_equal(snap_dir_prepare(dir, why, sizeof(why)), 0);
	assert_int_equal(snap_writer_init(&w), 0);
	snap_put_meta(&w, mem->size, 1, diff);
	if (diff) {
		snap_begin(&w, SNAP_SEC_PARENT, 0);
		snap_put_u32(&w, b->parent_crc);
		snap_put_u32(&w, (uint32_t)strlen(b->parent_dir));
		snap_put_bytes(&w, b->parent_dir, strlen(b->parent_dir));
		snap_end(&w);
	}
	if (snap_write_memory(dir, mem, b, diff, &ext, &st, reopen, why, sizeof(why)) < 0)
		fail_msg("snap_write_memory: %s", why);
	if (diff) {
		snap_begin(&w, SNAP_SEC_MEM_EXTENTS, 0);
		snap_put_u64(&w, ext.n);
		for (size_t i = 0; i < ext.n; i++) {
			snap_put_u64(&w, ext.v[i].page);
			snap_put_u64(&w, ext.v[i].npages);
		}
		snap_end(&w);
	}
	assert_int_equal(snap_writer_seal(&w, &crc), 0);
	assert_int_equal(snap_write_state(dir, w.buf, w.len, why, sizeof(why)), 0);
	snap_writer_release(&w);
	snap_extents_release(&ext);
	return crc;
}

static void test_full_write_is_sparse(void **state)
{
	struct guest_mem mem;
	struct snap_mem_stats st;
	struct snap_extents ext = {0};
	struct stat sb;
	char path[256], why[256];
	uint8_t buf[PG];
	int fd;

	(void)state;
	assert_int_equal(guest_mem_init(&mem, MEM_SIZE), 0);
	fill_page(&mem, 0, 0x11);
	fill_page(&mem, 5, 0x22);
	fill_page(&mem, 6, 0x33);
	fill_page(&mem, 7, 0x00); /* touched but zero: a hole */
	fill_page(&mem, 4095, 0x44);
	snprintf(path, sizeof(path), "%s/full.mem", tmpdir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(snap_mem_write(fd, &mem, NULL, false, &ext, &st, why, sizeof(why)), 0);
	assert_int_equal(st.pages_written, 4);
	assert_int_equal(st.extents, 3);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal(sb.st_size, MEM_SIZE);
	assert_true((uint64_t)sb.st_blocks * 512 <= 64 * 1024);
	assert_int_equal(pread(fd, buf, PG, 6 * PG), PG);
	assert_int_equal(buf[0], 0x33);
	assert_int_equal(pread(fd, buf, PG, 7 * PG), PG);
	assert_int_equal(buf[100], 0);
	/* A diff without a file-backed parent is refused. */
	assert_int_equal(snap_mem_write(fd, &mem, NULL, true, &ext, &st, why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "needs a parent"));
	close(fd);
	guest_mem_release(&mem);
}

static void test_chain_of_diffs(void **state)
{
	struct guest_mem mem, back;
	struct snap_backing b;
	struct snap_image img;
	char base[256], d1[256], d2[256], why[512];
	int fd = -1;
	uint32_t crc_base, crc_d1;

	(void)state;
	snprintf(base, sizeof(base), "%s/base", tmpdir);
	snprintf(d1, sizeof(d1), "%s/d1", tmpdir);
	snprintf(d2, sizeof(d2), "%s/d2", tmpdir);
	snap_backing_init(&b);

	/* Full snapshot, then RAM becomes the file, copied on write. */
	assert_int_equal(guest_mem_init(&mem, MEM_SIZE), 0);
	fill_page(&mem, 1, 0xa1);
	fill_page(&mem, 2, 0xa2);
	fill_page(&mem, 100, 0xa3);
	crc_base = write_snapshot(base, &mem, NULL, false, &fd);
	assert_int_equal(snap_mem_map(&mem, fd), 0);
	b.file_backed = true;
	b.base_fd = fd;
	assert_non_null(realpath(base, b.parent_dir));
	b.parent_crc = crc_base;
	check_page(&mem, 2, 0xa2);

	/* Diff 1: page 2 changes, page 200 is new, page 100 is zeroed. */
	fill_page(&mem, 2, 0xb2);
	fill_page(&mem, 200, 0xb3);
	fill_page(&mem, 100, 0x00);
	crc_d1 = write_snapshot(d1, &mem, &b, true, NULL);
	snap_backing_release(&b);
	guest_mem_release(&mem);

	/* Restore d1 into fresh memory and check the layers. */
	assert_int_equal(snap_image_load(d1, MEM_SIZE, &img, why, sizeof(why)), 0);
	assert_int_equal(img.nlayers, 2);
	assert_false(img.layers[0].diff);
	assert_true(img.layers[1].diff);
	assert_int_equal(img.layers[1].crc, crc_d1);
	assert_int_equal(guest_mem_init(&back, MEM_SIZE), 0);
	snap_backing_init(&b);
	assert_int_equal(snap_image_map(&img, &back, &b, why, sizeof(why)), 0);
	snap_image_release(&img);
	check_page(&back, 1, 0xa1);
	check_page(&back, 2, 0xb2);
	check_page(&back, 100, 0x00);
	check_page(&back, 200, 0xb3);
	check_page(&back, 3000, 0x00);

	/* Diff 2 on top of d1: only page 1 changes. */
	fill_page(&back, 1, 0xc1);
	write_snapshot(d2, &back, &b, true, NULL);
	snap_backing_release(&b);
	guest_mem_release(&back);
	assert_int_equal(snap_image_load(d2, MEM_SIZE, &img, why, sizeof(why)), 0);
	assert_int_equal(img.nlayers, 3);
	assert_int_equal(img.layers[2].extents.n, 1);
	assert_int_equal(img.layers[2].extents.v[0].page, 1);
	/* Into a hole, as a pre-started kiln-vmm restores. */
	assert_int_equal(guest_mem_init_hole(&back, MEM_SIZE), 0);
	assert_true(back.unmapped);
	snap_backing_init(&b);
	assert_int_equal(snap_image_map(&img, &back, &b, why, sizeof(why)), 0);
	snap_image_release(&img);
	assert_false(back.unmapped);
	check_page(&back, 1, 0xc1);
	check_page(&back, 2, 0xb2);
	check_page(&back, 100, 0x00);
	check_page(&back, 200, 0xb3);
	snap_backing_release(&b);
	guest_mem_release(&back);

	/* Too much memory for the limit. */
	assert_int_equal(snap_image_load(d2, MEM_SIZE - PG, &img, why, sizeof(why)), -E2BIG);
	assert_non_null(strstr(why, "more than the limit"));

	/* A rewritten parent breaks the chain, with a clear reason. */
	assert_int_equal(guest_mem_init(&mem, MEM_SIZE), 0);
	fill_page(&mem, 1, 0xdd);
	write_snapshot(d1, &mem, NULL, false, NULL);
	guest_mem_release(&mem);
	assert_true(snap_image_load(d2, MEM_SIZE, &img, why, sizeof(why)) < 0);
	assert_non_null(strstr(why, "has changed since the diff was taken"));
}

/* A memory file of MEM_SIZE whose page p holds tag + p % 200 (+ 1 so no
 * page is zero), or zeros outside [from, to). */
static int layer_file(uint8_t tag, uint64_t from, uint64_t to)
{
	char path[256];
	uint8_t buf[PG];
	int fd;

	snprintf(path, sizeof(path), "%s/layer-%u", tmpdir, tag);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, MEM_SIZE), 0);
	for (uint64_t p = from; p < to; p++) {
		memset(buf, tag + (int)(p % 200) + 1, sizeof(buf));
		assert_int_equal(pwrite(fd, buf, PG, (off_t)(p * PG)), PG);
	}
	return fd;
}

static void test_chain_runs_from_the_topmost_layer(void **state)
{
	const uint64_t npages = MEM_SIZE / PG;
	/* Layer 1's runs; layer 2's overlap their edges, cover one whole and
	 * reach the end of RAM. */
	struct snap_extent e1[] = {{0, 3}, {10, 20}, {40, 5}, {100, 1}};
	struct snap_extent e2[] = {{2, 10}, {25, 20}, {100, 1}, {npages - 4, 4}};
	struct snap_extents x1 = {.v = e1, .n = 4}, x2 = {.v = e2, .n = 4};
	struct snap_extent bad[] = {{5, 5}, {7, 1}};
	struct snap_extents xbad = {.v = bad, .n = 2};
	struct snap_mem_layer chain[3];
	struct guest_mem mem;
	void *squat;

	(void)state;
	chain[0] = (struct snap_mem_layer){.fd = layer_file(0, 0, npages)};
	chain[1] = (struct snap_mem_layer){.fd = layer_file(50, 0, npages), .ext = &x1};
	chain[2] = (struct snap_mem_layer){.fd = layer_file(100, 0, npages), .ext = &x2};
	for (int hole = 0; hole < 2; hole++) {
		assert_int_equal(hole ? guest_mem_init_hole(&mem, MEM_SIZE)
				      : guest_mem_init(&mem, MEM_SIZE),
				 0);
		assert_int_equal(mem.unmapped, hole == 1);
		assert_int_equal(snap_mem_map_chain(&mem, chain, 3), 0);
		assert_false(mem.unmapped);
		for (uint64_t p = 0; p < npages; p++) {
			unsigned int top = 0;

			for (unsigned int l = 1; l < 3; l++)
				for (size_t k = 0; k < chain[l].ext->n; k++)
					if (p >= chain[l].ext->v[k].page &&
					    p < chain[l].ext->v[k].page + chain[l].ext->v[k].npages)
						top = l;
			check_page(&mem, p, (uint8_t)(top * 50 + p % 200 + 1));
		}
		guest_mem_release(&mem);
	}

	/* Out-of-order extents are refused. */
	chain[2].ext = &xbad;
	assert_int_equal(guest_mem_init_hole(&mem, MEM_SIZE), 0);
	assert_int_equal(snap_mem_map_chain(&mem, chain, 3), -EINVAL);
	guest_mem_release(&mem);

	/* Something else in the hole is left alone, not mapped over. */
	chain[2].ext = &x2;
	assert_int_equal(guest_mem_init_hole(&mem, MEM_SIZE), 0);
	squat = mmap(mem.host + 20 * PG, PG, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	assert_ptr_equal(squat, mem.host + 20 * PG);
	memset(squat, 0x77, PG);
	assert_int_equal(snap_mem_map_chain(&mem, chain, 3), -EEXIST);
	assert_int_equal(((uint8_t *)squat)[100], 0x77);
	guest_mem_release(&mem);
	for (unsigned int l = 0; l < 3; l++)
		close(chain[l].fd);
}

static void test_serial_round_trip(void **state)
{
	struct irq_line none = {0};
	struct serial *a = serial_create(-1, none), *b = serial_create(-1, none);
	struct iobus *bus_a = iobus_create(), *bus_b = iobus_create();
	struct snap_writer w;
	struct snap_file f;
	struct snap_section s;
	char why[128];
	uint8_t v;

	(void)state;
	assert_int_equal(serial_attach(a, bus_a, 0x3f8), 0);
	assert_int_equal(serial_attach(b, bus_b, 0x3f8), 0);
	v = 0x5a; /* scratch */
	iobus_dispatch(bus_a, IOBUS_PIO, 0x3ff, &v, 1, true);
	v = 0x01; /* FIFOs on */
	iobus_dispatch(bus_a, IOBUS_PIO, 0x3fa, &v, 1, true);
	v = 0x03; /* 8N1 */
	iobus_dispatch(bus_a, IOBUS_PIO, 0x3fb, &v, 1, true);
	assert_int_equal(serial_input(a, (const uint8_t *)"hello, world, more than sixteen", 31),
			 31);

	assert_int_equal(snap_writer_init(&w), 0);
	serial_save(a, &w);
	assert_int_equal(snap_writer_seal(&w, NULL), 0);
	assert_int_equal(snap_parse(w.buf, w.len, &f, why, sizeof(why)), 0);
	assert_true(snap_find(&f, SNAP_SEC_SERIAL, 0, &s));
	assert_int_equal(serial_restore(b, &s, NULL, 0), 0);

	iobus_dispatch(bus_b, IOBUS_PIO, 0x3ff, &v, 1, false);
	assert_int_equal(v, 0x5a);
	iobus_dispatch(bus_b, IOBUS_PIO, 0x3fb, &v, 1, false);
	assert_int_equal(v, 0x03);
	for (int i = 0; i < 31; i++) {
		iobus_dispatch(bus_b, IOBUS_PIO, 0x3f8, &v, 1, false);
		assert_int_equal(v, (uint8_t) "hello, world, more than sixteen"[i]);
	}
	iobus_dispatch(bus_b, IOBUS_PIO, 0x3fd, &v, 1, false);
	assert_int_equal(v & 1, 0); /* nothing more */

	/* Malformed payloads are refused, whatever their length. */
	for (uint32_t len = 0; len < s.len; len++) {
		struct snap_section cut = s;

		cut.len = len;
		assert_int_equal(serial_restore(b, &cut, NULL, 0), -EINVAL);
	}
	snap_writer_release(&w);
	serial_destroy(a);
	serial_destroy(b);
	iobus_destroy(bus_a);
	iobus_destroy(bus_b);
}

static void count_reset(void *opaque)
{
	(*(int *)opaque)++;
}

static void count_exit(void *opaque, int status)
{
	(void)status;
	(*(int *)opaque)++;
}

/* Non-default state into fresh objects, checked through their registers:
 * an i8042 with a half-written "write output port" command resets the CPU
 * on the data byte that follows; a control page whose exit register was
 * written ignores a second exit. Malformed sections are refused with a
 * reason. */
static void test_i8042_and_ctl_round_trip(void **state)
{
	int resets = 0, exits = 0;
	struct i8042 *k = i8042_create(NULL, NULL), *k2 = i8042_create(count_reset, &resets);
	struct ctl *c = ctl_create(NULL, NULL, NULL), *c2 = ctl_create(count_exit, NULL, &exits);
	struct iobus *bus = iobus_create(), *bus2 = iobus_create();
	struct snap_writer w;
	struct snap_file f;
	struct snap_section s;
	char why[128];
	uint8_t bad[2] = {2, 0}, v;
	uint8_t reg[4] = {3, 0, 0, 0};
	struct snap_section badsec = {.type = SNAP_SEC_CTL, .len = 1, .data = bad};

	(void)state;
	assert_int_equal(i8042_attach(k, bus), 0);
	assert_int_equal(ctl_attach(c, bus), 0);
	assert_int_equal(i8042_attach(k2, bus2), 0);
	assert_int_equal(ctl_attach(c2, bus2), 0);
	v = 0xd1; /* write output port: the data byte follows */
	iobus_dispatch(bus, IOBUS_PIO, 0x64, &v, 1, true);
	iobus_dispatch(bus, IOBUS_MMIO, LAYOUT_CTL_BASE + CTL_REG_EXIT, reg, 4, true);

	assert_int_equal(snap_writer_init(&w), 0);
	i8042_save(k, &w);
	ctl_save(c, &w);
	assert_int_equal(snap_writer_seal(&w, NULL), 0);
	assert_int_equal(snap_parse(w.buf, w.len, &f, why, sizeof(why)), 0);
	assert_true(snap_find(&f, SNAP_SEC_I8042, 0, &s));
	assert_int_equal(i8042_restore(k2, &s, why, sizeof(why)), 0);
	assert_true(snap_find(&f, SNAP_SEC_CTL, 0, &s));
	assert_int_equal(ctl_restore(c2, &s, why, sizeof(why)), 0);

	v = 0xfe; /* output port with bit 0 clear: reset */
	iobus_dispatch(bus2, IOBUS_PIO, 0x60, &v, 1, true);
	assert_int_equal(resets, 1);
	iobus_dispatch(bus2, IOBUS_MMIO, LAYOUT_CTL_BASE + CTL_REG_EXIT, reg, 4, true);
	assert_int_equal(exits, 0); /* the snapshot's guest had exited already */

	assert_int_equal(ctl_restore(c2, &badsec, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "malformed control page state");
	badsec.len = 2;
	assert_int_equal(i8042_restore(k2, &badsec, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "malformed i8042 state");
	snap_writer_release(&w);
	iobus_destroy(bus);
	iobus_destroy(bus2);
	i8042_destroy(k);
	i8042_destroy(k2);
	ctl_destroy(c);
	ctl_destroy(c2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_write_is_sparse),
		cmocka_unit_test(test_chain_of_diffs),
		cmocka_unit_test(test_chain_runs_from_the_topmost_layer),
		cmocka_unit_test(test_serial_round_trip),
		cmocka_unit_test(test_i8042_and_ctl_round_trip),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
