/* test_virtio_blk.c - virtio-blk against a temporary raw image, driven
 * through its virtio-mmio registers and a hand-built virtqueue (fake VM, no
 * KVM): reads, writes, read-only refusal (file untouched), flush, get_id,
 * out-of-range sectors, unsupported types, malformed requests that break
 * the device, config space, a missing image. */
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
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/evloop.h"
#include "vmm/iobus.h"
#include "vmm/snapshot/format.h"
#include "vmm/virtio/blk.h"
#include "vmm/vm.h"

#define BASE	0xd0001000ULL
#define SECTORS 64
#define QSIZE	16

#define DESC   0x10000ULL
#define AVAIL  0x11000ULL
#define USED   0x12000ULL
#define HDR    0x20000ULL
#define DATA   0x30000ULL
#define STATUS 0x40000ULL

struct fx {
	struct vm vm;
	struct iobus *bus;
	struct evloop *loop;
	struct virtio_blk *blk;
	char path[64];
	int fd; /* the image, for checking */
	uint16_t ndesc;
};

static uint8_t pattern(uint64_t off)
{
	return (uint8_t)(off * 7 + off / 512);
}

static uint8_t *gpa(struct fx *f, uint64_t a)
{
	return f->vm.mem.host + a;
}

static void wr32(struct fx *f, uint64_t off, uint32_t v)
{
	uint8_t d[4];

	memcpy(d, &v, 4);
	assert_true(iobus_dispatch(f->bus, IOBUS_MMIO, BASE + off, d, 4, true));
}

static uint32_t rd32(struct fx *f, uint64_t off)
{
	uint8_t d[4];
	uint32_t v;

	assert_true(iobus_dispatch(f->bus, IOBUS_MMIO, BASE + off, d, 4, false));
	memcpy(&v, d, 4);
	return v;
}

static uint64_t features(struct fx *f)
{
	uint64_t v;

	wr32(f, 0x014, 0);
	v = rd32(f, 0x010);
	wr32(f, 0x014, 1);
	return v | (uint64_t)rd32(f, 0x010) << 32;
}

static void driver_init(struct fx *f)
{
	wr32(f, 0x070, 0);
	wr32(f, 0x070, 3);
	wr32(f, 0x024, 0);
	wr32(f, 0x020, (uint32_t)(VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_BLK_SIZE));
	wr32(f, 0x024, 1);
	wr32(f, 0x020, 1); /* VERSION_1 */
	wr32(f, 0x070, 0xb);
	assert_int_equal(rd32(f, 0x070), 0xb);
	wr32(f, 0x030, 0);
	wr32(f, 0x038, QSIZE);
	wr32(f, 0x080, (uint32_t)DESC);
	wr32(f, 0x090, (uint32_t)AVAIL);
	wr32(f, 0x0a0, (uint32_t)USED);
	wr32(f, 0x044, 1);
	wr32(f, 0x070, 0xf);
	assert_int_equal(rd32(f, 0x070), 0xf);
}

static int fx_setup(void **state, bool read_only, bool with_loop)
{
	struct fx *f = calloc(1, sizeof(*f));
	uint8_t buf[SECTORS * 512];

	if (!f)
		return -1;
	strcpy(f->path, "/tmp/kiln-test-blk-XXXXXX");
	f->fd = mkstemp(f->path);
	if (f->fd < 0)
		return -1;
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = pattern(i);
	if (write(f->fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		return -1;
	f->vm.kvm_fd = f->vm.vm_fd = -1;
	if (guest_mem_init(&f->vm.mem, 4 << 20) < 0)
		return -1;
	f->bus = iobus_create();
	if (with_loop) {
		f->loop = evloop_create();
		if (!f->loop || evloop_start(f->loop) < 0)
			return -1;
	}
	f->blk = virtio_blk_create(f->path, read_only, &f->vm, f->bus, f->loop, BASE, 5);
	if (!f->blk)
		return -1;
	driver_init(f);
	*state = f;
	return 0;
}

static int setup_rw(void **state)
{
	return fx_setup(state, false, false);
}

static int setup_ro(void **state)
{
	return fx_setup(state, true, false);
}

static int setup_loop(void **state)
{
	return fx_setup(state, false, true);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	virtio_blk_destroy(f->blk);
	evloop_destroy(f->loop);
	iobus_destroy(f->bus);
	guest_mem_release(&f->vm.mem);
	close(f->fd);
	unlink(f->path);
	free(f);
	return 0;
}

/* ---- building requests ------------------------------------------------------- */

static void add_desc(struct fx *f, uint64_t addr, uint32_t len, bool writable)
{
	uint16_t i = f->ndesc++;
	struct virtq_desc d = {
		.addr = addr, .len = len, .flags = writable ? VIRTQ_DESC_F_WRITE : 0};

	if (i > 0) { /* link the previous one to this one */
		struct virtq_desc prev;

		memcpy(&prev, gpa(f, DESC + 16ULL * (i - 1)), 16);
		prev.flags |= VIRTQ_DESC_F_NEXT;
		prev.next = i;
		memcpy(gpa(f, DESC + 16ULL * (i - 1)), &prev, 16);
	}
	memcpy(gpa(f, DESC + 16ULL * i), &d, sizeof(d));
}

static void header(struct fx *f, uint32_t type, uint64_t sector)
{
	memset(gpa(f, HDR), 0, 16);
	memcpy(gpa(f, HDR), &type, 4);
	memcpy(gpa(f, HDR + 8), &sector, 8);
	f->ndesc = 0;
	*gpa(f, STATUS) = 0xee;
}

static uint16_t used_idx(struct fx *f)
{
	uint16_t v;

	memcpy(&v, gpa(f, USED + 2), 2);
	return v;
}

/* Publishes the chain at descriptor 0, notifies, waits for completion.
 * Returns the used length (or -1 when nothing was completed). */
static int64_t run(struct fx *f)
{
	uint16_t idx, head = 0, before = used_idx(f);
	uint32_t len;

	memcpy(&idx, gpa(f, AVAIL + 2), 2);
	memcpy(gpa(f, AVAIL + 4 + 2ULL * (idx % QSIZE)), &head, 2);
	idx++;
	memcpy(gpa(f, AVAIL + 2), &idx, 2);
	wr32(f, 0x050, 0);
	for (int i = 0; f->loop && i < 2000 && used_idx(f) == before; i++)
		usleep(1000);
	if (used_idx(f) == before)
		return -1;
	memcpy(&len, gpa(f, USED + 4 + 8ULL * (before % QSIZE) + 4), 4);
	return len;
}

static void read_file(struct fx *f, uint64_t off, void *buf, size_t len)
{
	assert_int_equal(pread(f->fd, buf, len, (off_t)off), (ssize_t)len);
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_config_and_features(void **state)
{
	struct fx *f = *state;
	uint64_t feat = features(f);

	assert_int_equal(rd32(f, 0x008), VIRTIO_ID_BLOCK);
	assert_int_equal(rd32(f, 0x100), SECTORS);
	assert_int_equal(rd32(f, 0x104), 0);
	assert_int_equal(rd32(f, 0x100 + 20), 512);		    /* blk_size */
	assert_int_equal(rd32(f, 0x100 + 12), VIRTQ_MAX_CHAIN - 2); /* seg_max */
	assert_int_equal(rd32(f, 0x100 + 0x80), 0);
	assert_true(feat & VIRTIO_BLK_F_FLUSH);
	assert_true(feat & VIRTIO_BLK_F_BLK_SIZE);
	assert_false(feat & VIRTIO_BLK_F_RO);
	assert_int_equal(virtio_blk_capacity(f->blk), SECTORS);
}

static void test_ro_feature(void **state)
{
	struct fx *f = *state;

	assert_true(features(f) & VIRTIO_BLK_F_RO);
}

static void test_read(void **state)
{
	struct fx *f = *state;
	uint8_t want[1024];

	header(f, VIRTIO_BLK_T_IN, 3);
	add_desc(f, HDR, 16, false);
	add_desc(f, DATA, 1000, true); /* data split over two buffers */
	add_desc(f, DATA + 0x1000, 24, true);
	add_desc(f, STATUS, 1, true);
	assert_int_equal(run(f), 1024 + 1);
	assert_int_equal(*gpa(f, STATUS), VIRTIO_BLK_S_OK);
	read_file(f, 3 * 512, want, sizeof(want));
	assert_memory_equal(gpa(f, DATA), want, 1000);
	assert_memory_equal(gpa(f, DATA + 0x1000), want + 1000, 24);
	assert_int_equal(rd32(f, 0x060) & 1, 1); /* used-buffer interrupt */
}

static void test_read_status_in_data_buffer(void **state)
{
	struct fx *f = *state;
	uint8_t want[512];

	/* Data and status in one writable buffer of 513 bytes. */
	header(f, VIRTIO_BLK_T_IN, SECTORS - 1);
	add_desc(f, HDR, 16, false);
	add_desc(f, DATA, 513, true);
	assert_int_equal(run(f), 513);
	assert_int_equal(*gpa(f, DATA + 512), VIRTIO_BLK_S_OK);
	read_file(f, (SECTORS - 1) * 512, want, sizeof(want));
	assert_memory_equal(gpa(f, DATA), want, 512);
}

static void test_write(void **state)
{
	struct fx *f = *state;
	uint8_t got[1024];

	memset(gpa(f, DATA), 0x5a, 512);
	memset(gpa(f, DATA + 0x1000), 0xa5, 512);
	header(f, VIRTIO_BLK_T_OUT, 5);
	add_desc(f, HDR, 16, false);
	add_desc(f, DATA, 512, false);
	add_desc(f, DATA + 0x1000, 512, false);
	add_desc(f, STATUS, 1, true);
	assert_int_equal(run(f), 1);
	assert_int_equal(*gpa(f, STATUS), VIRTIO_BLK_S_OK);
	read_file(f, 5 * 512, got, sizeof(got));
	for (int i = 0; i < 512; i++) {
		assert_int_equal(got[i], 0x5a);
		assert_int_equal(got[512 + i], 0xa5);
	}
	read_file(f, 4 * 512, got, 512); /* neighbours untouched */
	assert_int_equal(got[511], pattern(4 * 512 + 511));

	/* Header and data in one readable buffer. */
	memcpy(gpa(f, DATA + 0x2000), gpa(f, HDR), 16);
	memset(gpa(f, DATA + 0x2000 + 16), 0x11, 512);
	header(f, VIRTIO_BLK_T_OUT, 0);
	add_desc(f, DATA + 0x2000, 16 + 512, false);
	add_desc(f, STATUS, 1, true);
	*(uint64_t *)(void *)gpa(f, DATA + 0x2000 + 8) = 7; /* sector 7 */
	assert_int_equal(run(f), 1);
	assert_int_equal(*gpa(f, STATUS), VIRTIO_BLK_S_OK);
	read_file(f, 7 * 512, got, 512);
	assert_int_equal(got[0], 0x11);
	assert_int_equal(got[511], 0x11);
}

static void test_write_read_only(void **state)
{
	struct fx *f = *state;
	uint8_t before[512], after[512];

	read_file(f, 0, before, sizeof(before));
	memset(gpa(f, DATA), 0x77, 512);
	header(f, VIRTIO_BLK_T_OUT, 0);
	add_desc(f, HDR, 16, false);
	add_desc(f, DATA, 512, false);
	add_desc(f, STATUS, 1, true);
	assert_int_equal(run(f), 1);
	assert_int_equal(*gpa(f, STATUS), VIRTIO_BLK_S_IOERR);
	read_file(f, 0, after, sizeof(after));
	assert_memory_equal(before, after, sizeof(before));
	assert_false(virtio_mmio_is_broken(virtio_blk_transport(f->blk)));
	/* Reads still work; flush is fine. */
	header(f, VIRTIO_BLK_T_IN, 0);
	add_desc(f, HDR, 16, false);
	add_desc(f, DATA, 512, true);
	add_desc(f, STATUS, 1, true);
	assert_int_equal(run(f), 513);
	assert_memory_equal(gpa(f, DATA), before, 512);
	header(f, VIRTIO_BLK_T_FLUSH, 0);
	add_desc(f, HDR, 16, false);
	add_desc(f, STATUS, 1, true);
	assert_int_equal(run(f), 1);
	assert_int_equal(*gpa(f, STATUS), VIRTIO_BLK_S_OK);
}

static void test_flush(void **state)
{
	struct fx *f = *state;

	header(f, VIRTIO_BLK_T_FLUSH, 0);
	add_desc(f, HDR, 16, false);
	add_desc(f, STATUS, 1, true);
	assert_int_equal(run(f), 1);
	assert_int_equal(*gpa(f, STATUS), VIRTIO_BLK_S_OK);
}

static void test_get_id(void **state)
{
	struct fx *f = *state;

	memset(gpa(f, DATA), 0xff, 32);
	header(f, VIRTIO_BLK_T_GET_ID, 0);
	add_desc(f, HDR, 16, false);
	add_desc(f, DATA, VIRTIO_BLK_ID_BYTES, true);
	add_desc(f, STATUS, 1, true);
	assert_int_equal(run(f), VIRTIO_BLK_ID_BYTES + 1);
	assert_int_equal(*gpa(f, STATUS), VIRTIO_BLK_S_OK);
	assert_memory_equal(gpa(f, DATA), "kiln-", 5);
	assert_int_equal(*gpa(f, DATA + 20), 0xff); /* nothing past the buffer */
}

/* Reads the disk's serial (GET_ID) into id. */
static void get_id(struct fx *f, char id[VIRTIO_BLK_ID_BYTES])
{
	header(f, VIRTIO_BLK_T_GET_ID, 0);
	add_desc(f, HDR, 16, false);
	add_desc(f, DATA, VIRTIO_BLK_ID_BYTES, true);
	add_desc(f, STATUS, 1, true);
	assert_int_equal(run(f), VIRTIO_BLK_ID_BYTES + 1);
	memcpy(id, gpa(f, DATA), VIRTIO_BLK_ID_BYTES);
}

/* Makes a temporary image of `sectors` sectors; returns its fd, name in path. */
static int make_image(char path[64], unsigned int sectors)
{
	int fd;

	strcpy(path, "/tmp/kiln-test-blk-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)sectors * 512), 0);
	return fd;
}

/* The disk's identity (its serial) and the transport's queue come back into
 * a fresh device on another image of the same size: GET_ID answers the
 * snapshot's serial and requests go on at the saved used index. A disk of
 * another size or mode is refused, by the host-side check and by restore. */
static void test_save_restore_round_trip(void **state)
{
	struct fx *f = *state, g = {0};
	char id_a[VIRTIO_BLK_ID_BYTES], id_b[VIRTIO_BLK_ID_BYTES], why[256] = "", other[64];
	struct virtio_host host = {.ops = &virtio_blk_device, .nth = 1};
	struct snap_writer w;
	struct snap_file file;
	struct snap_section sb, sm;
	char own[VIRTIO_BLK_ID_BYTES + 8];
	struct stat st;
	int other_fd;

	get_id(f, id_a);
	assert_int_equal(used_idx(f), 1);
	assert_int_equal(snap_writer_init(&w), 0);
	virtio_blk_device.save(f->blk, &w, 2);
	virtio_mmio_save(virtio_blk_transport(f->blk), &w, 2);
	assert_int_equal(snap_writer_seal(&w, NULL), 0);
	assert_int_equal(snap_parse(w.buf, w.len, &file, why, sizeof(why)), 0);
	assert_true(snap_find(&file, SNAP_SEC_VIRTIO_BLK, 2, &sb));
	assert_true(snap_find(&file, SNAP_SEC_VIRTIO_MMIO, 2, &sm));

	/* Host-side checks, before anything is created. */
	other_fd = make_image(other, SECTORS * 2);
	host.path = other;
	host.read_only = false;
	assert_int_equal(virtio_blk_device.check(&sb, &host, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "sectors; the snapshot's disk 1 had 64"));
	assert_int_equal(ftruncate(other_fd, SECTORS * 512), 0);
	host.read_only = true;
	assert_int_equal(virtio_blk_device.check(&sb, &host, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "must be read-write"));
	host.read_only = false;
	assert_int_equal(virtio_blk_device.check(&sb, &host, why, sizeof(why)), 0);

	/* A fresh device on the other image, in the same window. */
	g.vm = f->vm;
	g.bus = iobus_create();
	assert_non_null(g.bus);
	g.blk = virtio_blk_create(other, false, &g.vm, g.bus, NULL, BASE, 5);
	assert_non_null(g.blk);
	assert_int_equal(virtio_blk_device.restore(g.blk, &sb, why, sizeof(why)), 0);
	assert_int_equal(virtio_mmio_restore(virtio_blk_transport(g.blk), &sm, why, sizeof(why)),
			 0);
	assert_int_equal(rd32(&g, 0x070), 0xf);
	get_id(&g, id_b);
	assert_memory_equal(id_a, id_b, VIRTIO_BLK_ID_BYTES);
	/* ... not the serial of its own image (kiln-<inode>). */
	assert_int_equal(fstat(other_fd, &st), 0);
	snprintf(own, sizeof(own), "kiln-%llx", (unsigned long long)st.st_ino & 0xfffffffffffffULL);
	assert_memory_not_equal(own, id_b, strlen(own));
	assert_int_equal(used_idx(&g), 2);
	virtio_blk_destroy(g.blk);
	iobus_destroy(g.bus);

	/* restore itself refuses a disk that changed since the check. */
	g.bus = iobus_create();
	assert_int_equal(ftruncate(other_fd, SECTORS * 1024), 0);
	g.blk = virtio_blk_create(other, false, &g.vm, g.bus, NULL, BASE, 5);
	assert_non_null(g.blk);
	assert_int_equal(virtio_blk_device.restore(g.blk, &sb, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "in this slot had 64"));
	virtio_blk_destroy(g.blk);
	iobus_destroy(g.bus);
	close(other_fd);
	unlink(other);
	snap_writer_release(&w);
}

static void expect_status(struct fx *f, uint32_t type, uint64_t sector, uint32_t len, bool writable,
			  uint8_t status)
{
	header(f, type, sector);
	add_desc(f, HDR, 16, false);
	if (len)
		add_desc(f, DATA, len, writable);
	add_desc(f, STATUS, 1, true);
	assert_true(run(f) >= 1);
	assert_int_equal(*gpa(f, STATUS), status);
}

static void test_out_of_range(void **state)
{
	struct fx *f = *state;

	expect_status(f, VIRTIO_BLK_T_IN, SECTORS, 512, true, VIRTIO_BLK_S_IOERR);
	expect_status(f, VIRTIO_BLK_T_IN, SECTORS - 1, 1024, true, VIRTIO_BLK_S_IOERR);
	expect_status(f, VIRTIO_BLK_T_IN, UINT64_MAX, 512, true, VIRTIO_BLK_S_IOERR);
	expect_status(f, VIRTIO_BLK_T_IN, UINT64_MAX / 512 + 1, 512, true, VIRTIO_BLK_S_IOERR);
	expect_status(f, VIRTIO_BLK_T_OUT, SECTORS, 512, false, VIRTIO_BLK_S_IOERR);
	expect_status(f, VIRTIO_BLK_T_OUT, (1ULL << 63), 512, false, VIRTIO_BLK_S_IOERR);
	/* Not whole sectors. */
	expect_status(f, VIRTIO_BLK_T_IN, 0, 100, true, VIRTIO_BLK_S_IOERR);
	expect_status(f, VIRTIO_BLK_T_OUT, 0, 100, false, VIRTIO_BLK_S_IOERR);
	/* The last sector exactly is fine. */
	expect_status(f, VIRTIO_BLK_T_IN, SECTORS - 1, 512, true, VIRTIO_BLK_S_OK);
	assert_false(virtio_mmio_is_broken(virtio_blk_transport(f->blk)));
}

static void test_unsupported(void **state)
{
	struct fx *f = *state;

	expect_status(f, 11 /* DISCARD, not offered */, 0, 16, false, VIRTIO_BLK_S_UNSUPP);
	expect_status(f, 0x12345678, 0, 0, false, VIRTIO_BLK_S_UNSUPP);
}

static void test_short_header_breaks(void **state)
{
	struct fx *f = *state;

	header(f, VIRTIO_BLK_T_IN, 0);
	add_desc(f, HDR, 8, false);
	add_desc(f, DATA, 512, true);
	add_desc(f, STATUS, 1, true);
	assert_int_equal(run(f), -1);
	assert_true(virtio_mmio_is_broken(virtio_blk_transport(f->blk)));
	assert_true(rd32(f, 0x070) & 0x40);
	/* A reset and a new init bring it back. */
	memset(gpa(f, DESC), 0, 0x3000);
	driver_init(f);
	assert_false(virtio_mmio_is_broken(virtio_blk_transport(f->blk)));
	expect_status(f, VIRTIO_BLK_T_IN, 0, 512, true, VIRTIO_BLK_S_OK);
}

static void test_no_status_byte_breaks(void **state)
{
	struct fx *f = *state;

	header(f, VIRTIO_BLK_T_FLUSH, 0);
	add_desc(f, HDR, 16, false);
	assert_int_equal(run(f), -1);
	assert_true(virtio_mmio_is_broken(virtio_blk_transport(f->blk)));
}

static void test_bad_descriptor_breaks(void **state)
{
	struct fx *f = *state;

	header(f, VIRTIO_BLK_T_IN, 0);
	add_desc(f, HDR, 16, false);
	add_desc(f, (4 << 20) - 100, 512, true); /* runs past RAM */
	add_desc(f, STATUS, 1, true);
	assert_int_equal(run(f), -1);
	assert_true(virtio_mmio_is_broken(virtio_blk_transport(f->blk)));
}

static void test_missing_image(void **state)
{
	struct fx *f = *state;

	assert_null(virtio_blk_create("/nonexistent/kiln.img", true, &f->vm, f->bus, NULL,
				      BASE + 0x1000, 6));
	assert_null(virtio_blk_create("/tmp", true, &f->vm, f->bus, NULL, BASE + 0x1000, 6));
	virtio_blk_destroy(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_config_and_features, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_ro_feature, setup_ro, teardown),
		cmocka_unit_test_setup_teardown(test_read, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_read, setup_loop, teardown),
		cmocka_unit_test_setup_teardown(test_read_status_in_data_buffer, setup_ro,
						teardown),
		cmocka_unit_test_setup_teardown(test_write, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_write, setup_loop, teardown),
		cmocka_unit_test_setup_teardown(test_write_read_only, setup_ro, teardown),
		cmocka_unit_test_setup_teardown(test_flush, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_get_id, setup_ro, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_range, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_unsupported, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_short_header_breaks, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_no_status_byte_breaks, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_bad_descriptor_breaks, setup_loop, teardown),
		cmocka_unit_test_setup_teardown(test_missing_image, setup_ro, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore_round_trip, setup_rw, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
