/* test_virtio_mmio.c - the virtio-mmio transport driven through an iobus as
 * vCPU exits drive it, with a fake VM (no KVM: vm_fd is -1, so irqfd and
 * ioeventfd are unavailable and the fallbacks run) and a fake device:
 * Linux's init sequence, feature negotiation, queue setup and its refusals,
 * notifications inline and through the event loop, interrupts, breaking
 * and resetting, wrong-width accesses, the kernel command line argument. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmm/evloop.h"
#include "vmm/iobus.h"
#include "vmm/virtio/mmio.h"
#include "vmm/vm.h"

#define BASE 0xd0001000ULL
#define IRQ  5

#define R_MAGIC		0x000
#define R_VERSION	0x004
#define R_DEVICE_ID	0x008
#define R_VENDOR_ID	0x00c
#define R_DEV_FEAT	0x010
#define R_DEV_FEAT_SEL	0x014
#define R_DRV_FEAT	0x020
#define R_DRV_FEAT_SEL	0x024
#define R_QUEUE_SEL	0x030
#define R_QUEUE_NUM_MAX 0x034
#define R_QUEUE_NUM	0x038
#define R_QUEUE_READY	0x044
#define R_QUEUE_NOTIFY	0x050
#define R_INT_STATUS	0x060
#define R_INT_ACK	0x064
#define R_STATUS	0x070
#define R_DESC_LO	0x080
#define R_DESC_HI	0x084
#define R_DRIVER_LO	0x090
#define R_DRIVER_HI	0x094
#define R_DEVICE_LO	0x0a0
#define R_DEVICE_HI	0x0a4
#define R_SHM_LEN_LO	0x0b0
#define R_CONFIG_GEN	0x0fc
#define R_CONFIG	0x100

#define S_ACK	      1
#define S_DRIVER      2
#define S_DRIVER_OK   4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 0x40

#define DEV_FEATURE (1ULL << 3)

#define DESC  0x10000ULL
#define AVAIL 0x11000ULL
#define USED  0x12000ULL
#define BUF   0x20000ULL
#define QSIZE 16

struct fake_dev {
	atomic_int notifies, activates, resets;
	uint8_t config[16];
	uint8_t last_cfg_write[8];
	struct virtio_mmio *t;
};

struct fx {
	struct vm vm;
	struct iobus *bus;
	struct evloop *loop;
	struct fake_dev dev;
	struct virtio_device_ops ops;
	struct virtio_mmio *t;
};

static void fake_config_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
	struct fake_dev *d = opaque;

	for (uint32_t i = 0; i < len; i++)
		if (off + i < sizeof(d->config))
			data[i] = d->config[off + i];
}

static void fake_config_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
	struct fake_dev *d = opaque;

	(void)off;
	memcpy(d->last_cfg_write, data, len < 8 ? len : 8);
}

static void fake_activate(void *opaque)
{
	struct fake_dev *d = opaque;

	atomic_fetch_add(&d->activates, 1);
}

static void fake_reset(void *opaque)
{
	struct fake_dev *d = opaque;

	atomic_fetch_add(&d->resets, 1);
}

/* Completes every available request with its writable length. */
static void fake_queue_notify(void *opaque, unsigned int qi)
{
	struct fake_dev *d = opaque;
	struct virtq *q = virtio_mmio_queue(d->t, qi);
	struct virtq_chain *c = malloc(sizeof(*c));
	bool pushed = false;

	assert_non_null(q);
	while (virtq_pop(q, c) == 1) {
		virtq_push(q, c->head, (uint32_t)c->in_len);
		pushed = true;
	}
	free(c);
	if (pushed)
		virtio_mmio_notify_used(d->t, qi);
	atomic_fetch_add(&d->notifies, 1); /* last: tests wait on it */
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ms * 1000000L};

	nanosleep(&ts, NULL);
}

static bool wait_for(atomic_int *v, int want)
{
	for (int i = 0; i < 2000; i++) {
		if (atomic_load(v) >= want)
			return true;
		sleep_ms(1);
	}
	return false;
}

static int fx_create(void **state, bool with_loop)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->vm.kvm_fd = -1;
	f->vm.vm_fd = -1;
	if (guest_mem_init(&f->vm.mem, 4 << 20) < 0)
		return -1;
	f->bus = iobus_create();
	if (with_loop) {
		f->loop = evloop_create();
		if (!f->loop || evloop_start(f->loop) < 0)
			return -1;
	}
	for (int i = 0; i < 16; i++)
		f->dev.config[i] = (uint8_t)(0xa0 + i);
	f->ops = (struct virtio_device_ops){
		.device_id = VIRTIO_ID_BLOCK,
		.features = DEV_FEATURE,
		.num_queues = 2,
		.queue_max = 256,
		.config_read = fake_config_read,
		.config_write = fake_config_write,
		.activate = fake_activate,
		.queue_notify = fake_queue_notify,
		.reset = fake_reset,
	};
	f->t = virtio_mmio_create(&f->vm, f->bus, f->loop, BASE, IRQ, &f->ops, &f->dev);
	if (!f->t)
		return -1;
	f->dev.t = f->t;
	*state = f;
	return 0;
}

static int setup_inline(void **state)
{
	return fx_create(state, false);
}

static int setup_loop(void **state)
{
	return fx_create(state, true);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	virtio_mmio_destroy(f->t);
	evloop_destroy(f->loop);
	iobus_destroy(f->bus);
	guest_mem_release(&f->vm.mem);
	free(f);
	return 0;
}

static uint64_t rd(struct fx *f, uint64_t off, uint32_t len)
{
	uint8_t data[8];
	uint64_t v = 0;

	memset(data, 0xee, sizeof(data));
	assert_true(iobus_dispatch(f->bus, IOBUS_MMIO, BASE + off, data, len, false));
	memcpy(&v, data, len);
	return v;
}

static uint32_t rd32(struct fx *f, uint64_t off)
{
	return (uint32_t)rd(f, off, 4);
}

static void wr(struct fx *f, uint64_t off, uint64_t v, uint32_t len)
{
	uint8_t data[8];

	memcpy(data, &v, len);
	assert_true(iobus_dispatch(f->bus, IOBUS_MMIO, BASE + off, data, len, true));
}

static void wr32(struct fx *f, uint64_t off, uint32_t v)
{
	wr(f, off, v, 4);
}

/* Linux's virtio_mmio probe + virtio core, up to FEATURES_OK. */
static void driver_features(struct fx *f, uint64_t features)
{
	wr32(f, R_STATUS, 0);
	assert_int_equal(rd32(f, R_STATUS), 0);
	wr32(f, R_STATUS, S_ACK);
	wr32(f, R_STATUS, S_ACK | S_DRIVER);
	wr32(f, R_DRV_FEAT_SEL, 0);
	wr32(f, R_DRV_FEAT, (uint32_t)features);
	wr32(f, R_DRV_FEAT_SEL, 1);
	wr32(f, R_DRV_FEAT, (uint32_t)(features >> 32));
	wr32(f, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
}

static void setup_queue(struct fx *f, uint32_t q, uint32_t num, uint64_t desc)
{
	wr32(f, R_QUEUE_SEL, q);
	assert_int_equal(rd32(f, R_QUEUE_READY), 0);
	assert_int_equal(rd32(f, R_QUEUE_NUM_MAX), 256);
	wr32(f, R_QUEUE_NUM, num);
	wr32(f, R_DESC_LO, (uint32_t)desc);
	wr32(f, R_DESC_HI, (uint32_t)(desc >> 32));
	wr32(f, R_DRIVER_LO, (uint32_t)(desc + 0x1000));
	wr32(f, R_DRIVER_HI, 0);
	wr32(f, R_DEVICE_LO, (uint32_t)(desc + 0x2000));
	wr32(f, R_DEVICE_HI, 0);
	wr32(f, R_QUEUE_READY, 1);
}

static void full_init(struct fx *f, uint64_t features)
{
	uint64_t offered;

	wr32(f, R_DEV_FEAT_SEL, 0);
	offered = rd32(f, R_DEV_FEAT);
	wr32(f, R_DEV_FEAT_SEL, 1);
	offered |= (uint64_t)rd32(f, R_DEV_FEAT) << 32;
	assert_true(offered & VIRTIO_F_VERSION_1);
	assert_true(offered & VIRTIO_F_EVENT_IDX);
	assert_true(offered & VIRTIO_F_INDIRECT_DESC);
	assert_true(offered & DEV_FEATURE);
	driver_features(f, features);
	assert_int_equal(rd32(f, R_STATUS), S_ACK | S_DRIVER | S_FEATURES_OK);
	setup_queue(f, 0, QSIZE, DESC);
	assert_int_equal(rd32(f, R_QUEUE_READY), 1);
	wr32(f, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	assert_int_equal(rd32(f, R_STATUS), S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
}

static uint8_t *gpa(struct fx *f, uint64_t a)
{
	return f->vm.mem.host + a;
}

/* One writable buffer of 64 bytes in descriptor `i`, published. */
static void submit(struct fx *f, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		   uint16_t next)
{
	struct virtq_desc d = {.addr = addr, .len = len, .flags = flags, .next = next};
	uint16_t idx;

	memcpy(gpa(f, DESC + 16ULL * i), &d, sizeof(d));
	memcpy(&idx, gpa(f, AVAIL + 2), 2);
	memcpy(gpa(f, AVAIL + 4 + 2ULL * (idx % QSIZE)), &i, 2);
	idx++;
	memcpy(gpa(f, AVAIL + 2), &idx, 2);
}

static uint16_t used_idx(struct fx *f)
{
	uint16_t v;

	memcpy(&v, gpa(f, USED + 2), 2);
	return v;
}

static void noop(void *opaque, uint32_t events)
{
	(void)opaque;
	(void)events;
}

/* Waits until the device saw n notifications and the loop finished that
 * iteration (the transport's checks after queue_notify included). */
static void wait_notifies(struct fx *f, int n)
{
	if (f->loop) {
		assert_true(wait_for(&f->dev.notifies, n));
		evloop_call_sync(f->loop, noop, NULL);
	}
	assert_int_equal(atomic_load(&f->dev.notifies), n);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_identity(void **state)
{
	struct fx *f = *state;

	assert_int_equal(rd32(f, R_MAGIC), 0x74726976);
	assert_int_equal(rd32(f, R_VERSION), 2);
	assert_int_equal(rd32(f, R_DEVICE_ID), VIRTIO_ID_BLOCK);
	assert_int_equal(rd32(f, R_VENDOR_ID), 0x4e4c494b);
	assert_int_equal(rd32(f, R_SHM_LEN_LO), 0xffffffff);
	wr32(f, R_DEV_FEAT_SEL, 2);
	assert_int_equal(rd32(f, R_DEV_FEAT), 0);
}

static void test_linux_init_and_request(void **state)
{
	struct fx *f = *state;
	struct virtq *q;

	full_init(f, VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX | DEV_FEATURE);
	assert_int_equal(atomic_load(&f->dev.activates), 1);
	assert_int_equal(virtio_mmio_driver_features(f->t),
			 VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX | DEV_FEATURE);
	q = virtio_mmio_queue(f->t, 0);
	assert_non_null(q);
	assert_null(virtio_mmio_queue(f->t, 2));
	assert_true(q->ready);
	assert_int_equal(q->size, QSIZE);
	assert_true(q->event_idx);
	assert_false(q->indirect);
	assert_false(virtio_mmio_queue(f->t, 1)->ready);

	submit(f, 0, BUF, 64, VIRTQ_DESC_F_WRITE, 0);
	wr32(f, R_QUEUE_NOTIFY, 0);
	wait_notifies(f, 1);
	assert_int_equal(used_idx(f), 1);
	assert_int_equal(rd32(f, R_INT_STATUS), 1);
	wr32(f, R_INT_ACK, 1);
	assert_int_equal(rd32(f, R_INT_STATUS), 0);
	/* Notifying a queue that does not exist is ignored. */
	wr32(f, R_QUEUE_NOTIFY, 7);
	assert_false(virtio_mmio_is_broken(f->t));

	/* Reset: status 0, queues gone, the device told. */
	wr32(f, R_STATUS, 0);
	assert_int_equal(rd32(f, R_STATUS), 0);
	assert_int_equal(atomic_load(&f->dev.resets), 2); /* init's reset + this one */
	assert_false(q->ready);
	wr32(f, R_QUEUE_SEL, 0);
	assert_int_equal(rd32(f, R_QUEUE_READY), 0);
	assert_int_equal(virtio_mmio_driver_features(f->t), 0);
	/* And it initialises again. */
	full_init(f, VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC);
	assert_int_equal(atomic_load(&f->dev.activates), 2);
	assert_true(q->indirect);
	assert_false(q->event_idx);
}

static void test_notify_before_driver_ok_ignored(void **state)
{
	struct fx *f = *state;

	driver_features(f, VIRTIO_F_VERSION_1);
	setup_queue(f, 0, QSIZE, DESC);
	submit(f, 0, BUF, 64, VIRTQ_DESC_F_WRITE, 0);
	wr32(f, R_QUEUE_NOTIFY, 0);
	if (f->loop)
		sleep_ms(20);
	assert_int_equal(atomic_load(&f->dev.notifies), 0);
	assert_int_equal(used_idx(f), 0);
}

static void test_queue_size_not_power_of_two(void **state)
{
	struct fx *f = *state;

	driver_features(f, VIRTIO_F_VERSION_1);
	setup_queue(f, 0, 3, DESC);
	assert_int_equal(rd32(f, R_QUEUE_READY), 0);
	assert_true(virtio_mmio_is_broken(f->t));
	assert_true(rd32(f, R_STATUS) & S_NEEDS_RESET);
	/* DRIVER_OK does not activate a broken device. */
	wr32(f, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	assert_int_equal(atomic_load(&f->dev.activates), 0);
	assert_true(rd32(f, R_STATUS) & S_NEEDS_RESET);
	/* A reset repairs it. */
	wr32(f, R_STATUS, 0);
	assert_int_equal(rd32(f, R_STATUS), 0);
	assert_false(virtio_mmio_is_broken(f->t));
	full_init(f, VIRTIO_F_VERSION_1);
	assert_int_equal(atomic_load(&f->dev.activates), 1);
}

static void test_queue_size_zero_or_too_big(void **state)
{
	struct fx *f = *state;

	driver_features(f, VIRTIO_F_VERSION_1);
	setup_queue(f, 0, 512, DESC); /* > QueueNumMax 256 */
	assert_int_equal(rd32(f, R_QUEUE_READY), 0);
	assert_true(virtio_mmio_is_broken(f->t));
	wr32(f, R_STATUS, 0);
	driver_features(f, VIRTIO_F_VERSION_1);
	setup_queue(f, 1, 0, DESC);
	assert_int_equal(rd32(f, R_QUEUE_READY), 0);
	assert_true(virtio_mmio_is_broken(f->t));
	wr32(f, R_STATUS, 0);
	driver_features(f, VIRTIO_F_VERSION_1);
	setup_queue(f, 1, 0x10000 + 16, DESC); /* 16 bits only: refused, not truncated */
	assert_int_equal(rd32(f, R_QUEUE_READY), 0);
	assert_true(virtio_mmio_is_broken(f->t));
}

static void test_rings_outside_ram(void **state)
{
	struct fx *f = *state;

	driver_features(f, VIRTIO_F_VERSION_1);
	setup_queue(f, 0, QSIZE, (4 << 20) - 0x1000); /* avail/used past RAM */
	assert_int_equal(rd32(f, R_QUEUE_READY), 0);
	assert_true(rd32(f, R_STATUS) & S_NEEDS_RESET);
	wr32(f, R_STATUS, 0);
	driver_features(f, VIRTIO_F_VERSION_1);
	setup_queue(f, 0, QSIZE, 0x100000000ULL + DESC); /* high half: no RAM there */
	assert_int_equal(rd32(f, R_QUEUE_READY), 0);
	assert_true(rd32(f, R_STATUS) & S_NEEDS_RESET);
}

static void test_features_not_offered(void **state)
{
	struct fx *f = *state;

	driver_features(f, VIRTIO_F_VERSION_1 | (1ULL << 5));
	assert_int_equal(rd32(f, R_STATUS), S_ACK | S_DRIVER);
	/* Without VERSION_1 (a legacy driver) it is refused as well. */
	driver_features(f, DEV_FEATURE);
	assert_int_equal(rd32(f, R_STATUS), S_ACK | S_DRIVER);
	/* DRIVER_OK without FEATURES_OK: not activated, device broken. */
	wr32(f, R_STATUS, S_ACK | S_DRIVER | S_DRIVER_OK);
	assert_int_equal(atomic_load(&f->dev.activates), 0);
	assert_true(virtio_mmio_is_broken(f->t));
	/* Offered features are accepted, and frozen after FEATURES_OK. */
	driver_features(f, VIRTIO_F_VERSION_1 | DEV_FEATURE);
	assert_int_equal(rd32(f, R_STATUS), S_ACK | S_DRIVER | S_FEATURES_OK);
	wr32(f, R_DRV_FEAT_SEL, 0);
	wr32(f, R_DRV_FEAT, 0xffffffff);
	assert_int_equal(virtio_mmio_driver_features(f->t), VIRTIO_F_VERSION_1 | DEV_FEATURE);
}

static void test_queue_registers_frozen_while_ready(void **state)
{
	struct fx *f = *state;

	full_init(f, VIRTIO_F_VERSION_1);
	wr32(f, R_QUEUE_SEL, 0);
	wr32(f, R_QUEUE_NUM, 64);
	wr32(f, R_DESC_LO, 0x1000);
	assert_int_equal(rd32(f, R_QUEUE_NUM), QSIZE);
	assert_int_equal(rd32(f, R_DESC_LO), DESC);
	assert_int_equal(virtio_mmio_queue(f->t, 0)->size, QSIZE);
	/* Disabling the queue takes it away from the device. */
	wr32(f, R_QUEUE_READY, 0);
	assert_int_equal(rd32(f, R_QUEUE_READY), 0);
	assert_false(virtio_mmio_queue(f->t, 0)->ready);
	/* Enabling queue 1 after DRIVER_OK makes it live. */
	setup_queue(f, 1, 8, 0x30000);
	assert_true(virtio_mmio_queue(f->t, 1)->ready);
	assert_int_equal(virtio_mmio_queue(f->t, 1)->size, 8);
	/* QueueSel out of range. */
	wr32(f, R_QUEUE_SEL, 5);
	assert_int_equal(rd32(f, R_QUEUE_NUM_MAX), 0);
	wr32(f, R_QUEUE_READY, 1);
	assert_int_equal(rd32(f, R_QUEUE_READY), 0);
	assert_false(virtio_mmio_is_broken(f->t));
}

static void test_malformed_chain_breaks_device(void **state)
{
	struct fx *f = *state;

	full_init(f, VIRTIO_F_VERSION_1);
	submit(f, 0, 0x7fff0000ULL, 64, VIRTQ_DESC_F_WRITE, 0); /* outside RAM */
	wr32(f, R_QUEUE_NOTIFY, 0);
	wait_notifies(f, 1);
	assert_true(virtio_mmio_is_broken(f->t));
	assert_true(rd32(f, R_STATUS) & S_NEEDS_RESET);
	assert_int_equal(rd32(f, R_INT_STATUS), 2); /* configuration change */
	assert_int_equal(used_idx(f), 0);
	/* Further notifications are ignored until a reset. */
	wr32(f, R_QUEUE_NOTIFY, 0);
	if (f->loop)
		sleep_ms(20);
	assert_int_equal(atomic_load(&f->dev.notifies), 1);
	wr32(f, R_STATUS, 0);
	assert_false(virtio_mmio_is_broken(f->t));
	memset(gpa(f, DESC), 0, 0x3000);
	full_init(f, VIRTIO_F_VERSION_1);
	submit(f, 0, BUF, 64, VIRTQ_DESC_F_WRITE, 0);
	wr32(f, R_QUEUE_NOTIFY, 0);
	wait_notifies(f, 2);
	assert_int_equal(used_idx(f), 1);
}

static void test_wrong_width(void **state)
{
	struct fx *f = *state;

	assert_int_equal(rd(f, R_MAGIC, 1), 0);
	assert_int_equal(rd(f, R_MAGIC, 2), 0);
	assert_int_equal(rd(f, R_MAGIC, 8), 0);
	assert_int_equal(rd(f, R_MAGIC + 2, 4), 0); /* misaligned */
	driver_features(f, VIRTIO_F_VERSION_1);
	wr(f, R_STATUS, 0, 1); /* a byte write of 0 must not reset */
	wr(f, R_STATUS, 0, 2);
	wr(f, R_STATUS + 1, 0, 4);
	assert_int_equal(rd32(f, R_STATUS), S_ACK | S_DRIVER | S_FEATURES_OK);
	assert_int_equal(atomic_load(&f->dev.resets), 1);
	/* Config space: any width. */
	assert_int_equal(rd(f, R_CONFIG, 1), 0xa0);
	assert_int_equal(rd(f, R_CONFIG + 1, 2), 0xa2a1);
	assert_int_equal(rd32(f, R_CONFIG + 4), 0xa7a6a5a4);
	assert_int_equal(rd(f, R_CONFIG + 8, 8), 0xafaeadacabaaa9a8ULL);
	assert_int_equal(rd32(f, R_CONFIG + 0x200), 0); /* past the device's config */
	wr(f, R_CONFIG + 2, 0x1234, 2);
	assert_int_equal(f->dev.last_cfg_write[0], 0x34);
	assert_int_equal(f->dev.last_cfg_write[1], 0x12);
}

static void test_config_notification(void **state)
{
	struct fx *f = *state;
	uint32_t gen = rd32(f, R_CONFIG_GEN);

	virtio_mmio_notify_config(f->t);
	assert_int_equal(rd32(f, R_INT_STATUS), 2);
	assert_int_not_equal(rd32(f, R_CONFIG_GEN), gen);
	wr32(f, R_INT_ACK, 2);
	assert_int_equal(rd32(f, R_INT_STATUS), 0);
}

static void test_cmdline_arg(void **state)
{
	struct fx *f = *state;
	char buf[64];

	assert_int_equal(virtio_mmio_cmdline_arg(f->t, buf, sizeof(buf)),
			 (int)strlen(" virtio_mmio.device=4K@0xd0001000:5"));
	assert_string_equal(buf, " virtio_mmio.device=4K@0xd0001000:5");
	assert_int_equal(virtio_mmio_cmdline_arg(f->t, buf, 10), -E2BIG);
}

static void test_create_rejects_bad_ops(void **state)
{
	struct fx *f = *state;
	struct virtio_device_ops ops = f->ops;

	ops.queue_max = 100; /* not a power of two */
	assert_null(virtio_mmio_create(&f->vm, f->bus, NULL, BASE + 0x1000, IRQ, &ops, NULL));
	ops = f->ops;
	ops.num_queues = VIRTIO_MAX_QUEUES + 1;
	assert_null(virtio_mmio_create(&f->vm, f->bus, NULL, BASE + 0x1000, IRQ, &ops, NULL));
	/* The window is taken already. */
	assert_null(virtio_mmio_create(&f->vm, f->bus, NULL, BASE, IRQ, &f->ops, NULL));
	virtio_mmio_destroy(NULL);
}

/* Everything the transport holds comes back into a fresh transport: status,
 * negotiated features, the selected queue, each queue's registers and ring
 * positions, the pending interrupt; the fresh one serves on at the saved
 * used index. Checked through the registers. */
static void test_save_restore_round_trip(void **state)
{
	struct fx *f = *state;
	struct fake_dev dev2 = {0};
	struct iobus *bus2 = iobus_create(), *bus1 = f->bus;
	struct virtio_mmio *t2;
	struct snap_writer w;
	struct snap_file file;
	struct snap_section s;
	char why[256] = "";
	uint64_t features = VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX | DEV_FEATURE;

	driver_features(f, features);
	setup_queue(f, 0, QSIZE, DESC);
	setup_queue(f, 1, 8, 0x40000);
	wr32(f, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	submit(f, 0, BUF, 64, VIRTQ_DESC_F_WRITE, 0);
	wr32(f, R_QUEUE_NOTIFY, 0);
	wait_notifies(f, 1);
	assert_int_equal(used_idx(f), 1);
	assert_int_equal(rd32(f, R_INT_STATUS), 1); /* left pending */
	wr32(f, R_QUEUE_SEL, 1);

	assert_int_equal(snap_writer_init(&w), 0);
	virtio_mmio_save(f->t, &w, 3);
	assert_int_equal(snap_writer_seal(&w, NULL), 0);
	assert_int_equal(snap_parse(w.buf, w.len, &file, why, sizeof(why)), 0);
	assert_true(snap_find(&file, SNAP_SEC_VIRTIO_MMIO, 3, &s));

	assert_non_null(bus2);
	t2 = virtio_mmio_create(&f->vm, bus2, NULL, BASE, IRQ, &f->ops, &dev2);
	assert_non_null(t2);
	dev2.t = t2;
	f->bus = bus2; /* rd32/wr32 now reach the fresh transport */
	assert_int_equal(rd32(f, R_STATUS), 0);
	assert_int_equal(virtio_mmio_restore(t2, &s, why, sizeof(why)), 0);
	assert_int_equal(rd32(f, R_STATUS), S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	assert_int_equal(virtio_mmio_driver_features(t2), features);
	assert_int_equal(rd32(f, R_INT_STATUS), 1);
	/* Queue 1 is still the selected one. */
	assert_int_equal(rd32(f, R_QUEUE_NUM), 8);
	assert_int_equal(rd32(f, R_QUEUE_READY), 1);
	assert_int_equal(rd32(f, R_DESC_LO), 0x40000);
	assert_int_equal(rd32(f, R_DRIVER_LO), 0x41000);
	assert_int_equal(rd32(f, R_DEVICE_LO), 0x42000);
	wr32(f, R_QUEUE_SEL, 0);
	assert_int_equal(rd32(f, R_QUEUE_NUM), QSIZE);
	assert_int_equal(rd32(f, R_DESC_LO), (uint32_t)DESC);
	assert_true(virtio_mmio_queue(t2, 0)->event_idx);
	assert_int_equal(virtio_mmio_queue(t2, 0)->last_avail, 1);
	assert_int_equal(virtio_mmio_queue(t2, 0)->used_idx, 1);
	/* The fresh transport serves the next request after the saved ones. */
	submit(f, 1, BUF, 32, VIRTQ_DESC_F_WRITE, 0);
	wr32(f, R_QUEUE_NOTIFY, 0);
	assert_int_equal(atomic_load(&dev2.notifies), 1);
	assert_int_equal(used_idx(f), 2);
	assert_int_equal(atomic_load(&f->dev.notifies), 1);
	f->bus = bus1;
	virtio_mmio_destroy(t2);
	iobus_destroy(bus2);
	snap_writer_release(&w);
}

static void test_restore_refuses_other_device(void **state)
{
	struct fx *f = *state;
	struct virtio_device_ops other = f->ops;
	struct iobus *bus2 = iobus_create();
	struct virtio_mmio *t2;
	struct snap_writer w;
	struct snap_file file;
	struct snap_section s;
	char why[256] = "";

	full_init(f, VIRTIO_F_VERSION_1 | DEV_FEATURE);
	assert_int_equal(snap_writer_init(&w), 0);
	virtio_mmio_save(f->t, &w, 0);
	assert_int_equal(snap_writer_seal(&w, NULL), 0);
	assert_int_equal(snap_parse(w.buf, w.len, &file, why, sizeof(why)), 0);
	assert_true(snap_find(&file, SNAP_SEC_VIRTIO_MMIO, 0, &s));
	other.device_id = VIRTIO_ID_VSOCK;
	t2 = virtio_mmio_create(&f->vm, bus2, NULL, BASE, IRQ, &other, NULL);
	assert_non_null(t2);
	assert_int_equal(virtio_mmio_restore(t2, &s, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "another kind of virtio device"));
	virtio_mmio_destroy(t2);
	iobus_destroy(bus2);
	snap_writer_release(&w);
}

#define BOTH(fn)                                                                                   \
	cmocka_unit_test_setup_teardown(fn, setup_inline, teardown),                               \
		cmocka_unit_test_setup_teardown(fn, setup_loop, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		BOTH(test_identity),
		BOTH(test_linux_init_and_request),
		BOTH(test_notify_before_driver_ok_ignored),
		BOTH(test_queue_size_not_power_of_two),
		BOTH(test_queue_size_zero_or_too_big),
		BOTH(test_rings_outside_ram),
		BOTH(test_features_not_offered),
		BOTH(test_queue_registers_frozen_while_ready),
		BOTH(test_malformed_chain_breaks_device),
		BOTH(test_wrong_width),
		BOTH(test_config_notification),
		BOTH(test_cmdline_arg),
		BOTH(test_create_rejects_bad_ops),
		cmocka_unit_test_setup_teardown(test_save_restore_round_trip, setup_inline,
						teardown),
		cmocka_unit_test_setup_teardown(test_restore_refuses_other_device, setup_inline,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
