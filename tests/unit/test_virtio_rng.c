/* test_virtio_rng.c - virtio-rng driven through its virtio-mmio registers
 * and a hand-built virtqueue (fake VM, no KVM), created the way the machine
 * creates every device (virtio_rng_device.create): entropy read through
 * the queue, the per-request limit, a readable buffer breaking the device,
 * and a save -> restore round trip of the transport into a fresh device
 * that goes on serving at the saved ring positions. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "vmm/iobus.h"
#include "vmm/snapshot/format.h"
#include "vmm/virtio/device.h"
#include "vmm/virtio/mmio.h"
#include "vmm/vm.h"

#define BASE  0xd0001000ULL
#define QSIZE 8
#define DESC  0x10000ULL
#define AVAIL 0x11000ULL
#define USED  0x12000ULL
#define BUF   0x20000ULL

#define STATUS_NEEDS_RESET 0x40

struct fx {
	struct vm vm;
	struct iobus *bus;
	void *dev;
	struct virtio_mmio *t;
};

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

/* A device on a fresh bus over the fixture's guest RAM (kept across
 * devices, as a restore keeps it). */
static void fx_device(struct fx *f)
{
	struct virtio_slot slot = {.vm = &f->vm, .base = BASE, .irq = 5};
	struct virtio_host host = {.ops = &virtio_rng_device};

	f->bus = iobus_create();
	assert_non_null(f->bus);
	slot.bus = f->bus;
	f->dev = virtio_rng_device.create(&slot, &host, &f->t);
	assert_non_null(f->dev);
}

static void fx_device_destroy(struct fx *f)
{
	virtio_rng_device.destroy(f->dev);
	iobus_destroy(f->bus);
	f->dev = NULL;
	f->bus = NULL;
}

static void driver_init(struct fx *f)
{
	wr32(f, 0x070, 0);
	wr32(f, 0x070, 3);
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

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->vm.kvm_fd = f->vm.vm_fd = -1;
	if (guest_mem_init(&f->vm.mem, 4 << 20) < 0)
		return -1;
	fx_device(f);
	driver_init(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	fx_device_destroy(f);
	guest_mem_release(&f->vm.mem);
	free(f);
	return 0;
}

static uint16_t used_idx(struct fx *f)
{
	uint16_t v;

	memcpy(&v, gpa(f, USED + 2), 2);
	return v;
}

/* Offers one buffer of `len` bytes at BUF (device-writable unless
 * `readable`), notifies, and returns the used length (-1: not served). */
static int64_t request(struct fx *f, uint32_t len, bool readable)
{
	struct virtq_desc d = {.addr = BUF, .len = len, .flags = readable ? 0 : VIRTQ_DESC_F_WRITE};
	uint16_t idx, head = 0, before = used_idx(f);
	uint32_t used;

	memcpy(gpa(f, DESC), &d, sizeof(d));
	memset(gpa(f, BUF), 0, len);
	memcpy(&idx, gpa(f, AVAIL + 2), 2);
	memcpy(gpa(f, AVAIL + 4 + 2ULL * (idx % QSIZE)), &head, 2);
	idx++;
	memcpy(gpa(f, AVAIL + 2), &idx, 2);
	wr32(f, 0x050, 0);
	if (used_idx(f) == before)
		return -1;
	memcpy(&used, gpa(f, USED + 4 + 8ULL * (before % QSIZE) + 4), 4);
	return used;
}

/* True when buf holds at least one non-zero byte in every 16. */
static bool looks_random(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i + 16 <= len; i += 16) {
		bool any = false;

		for (size_t j = 0; j < 16; j++)
			any |= buf[i + j] != 0;
		if (!any)
			return false;
	}
	return true;
}

static void test_identity(void **state)
{
	struct fx *f = *state;

	assert_int_equal(rd32(f, 0x000), 0x74726976); /* "virt" */
	assert_int_equal(rd32(f, 0x008), VIRTIO_ID_RNG);
	wr32(f, 0x014, 0);
	assert_int_equal(rd32(f, 0x010), 0x30000000); /* INDIRECT_DESC, EVENT_IDX */
	assert_ptr_equal(virtio_device_find(VIRTIO_ID_RNG), &virtio_rng_device);
}

static void test_reads_entropy(void **state)
{
	struct fx *f = *state;
	uint8_t first[64];

	assert_int_equal(request(f, 64, false), 64);
	assert_true(looks_random(gpa(f, BUF), 64));
	memcpy(first, gpa(f, BUF), sizeof(first));
	assert_int_equal(request(f, 64, false), 64);
	assert_memory_not_equal(first, gpa(f, BUF), sizeof(first));
	assert_int_equal(used_idx(f), 2);
}

static void test_large_request_is_capped(void **state)
{
	struct fx *f = *state;

	assert_int_equal(request(f, 65536, false), 4096);
	assert_true(looks_random(gpa(f, BUF), 4096));
	for (size_t i = 4096; i < 65536; i++)
		assert_int_equal(*gpa(f, BUF + i), 0);
}

static void test_readable_buffer_breaks(void **state)
{
	struct fx *f = *state;

	assert_int_equal(request(f, 64, true), -1);
	assert_true(rd32(f, 0x070) & STATUS_NEEDS_RESET);
}

/* The transport's state (negotiated features, the queue and its positions)
 * saved after two requests comes back into a fresh device, which serves
 * the next request at used index 2. */
static void test_save_restore_round_trip(void **state)
{
	struct fx *f = *state;
	struct snap_writer w;
	struct snap_file file;
	struct snap_section s;
	char why[256] = "";

	assert_int_equal(request(f, 32, false), 32);
	assert_int_equal(request(f, 32, false), 32);
	assert_int_equal(snap_writer_init(&w), 0);
	assert_int_equal(virtio_rng_device.snap_section, 0);
	virtio_mmio_save(f->t, &w, 0);
	assert_int_equal(snap_writer_seal(&w, NULL), 0);
	assert_int_equal(snap_parse(w.buf, w.len, &file, why, sizeof(why)), 0);

	fx_device_destroy(f);
	fx_device(f);
	assert_int_equal(rd32(f, 0x070), 0); /* fresh: reset */
	assert_true(snap_find(&file, SNAP_SEC_VIRTIO_MMIO, 0, &s));
	assert_int_equal(virtio_mmio_restore(f->t, &s, why, sizeof(why)), 0);
	assert_int_equal(rd32(f, 0x070), 0xf);
	assert_int_equal(rd32(f, 0x044), 1); /* queue ready */
	assert_int_equal(request(f, 48, false), 48);
	assert_int_equal(used_idx(f), 3);
	assert_true(looks_random(gpa(f, BUF), 48));
	snap_writer_release(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reads_entropy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_request_is_capped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readable_buffer_breaks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore_round_trip, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
