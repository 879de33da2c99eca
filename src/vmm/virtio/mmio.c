/* mmio.c - the virtio-mmio transport, version 2 (virtio 1.1, 4.2).
 *
 * Two sets of queue state: the *registers* the driver writes (qregs, under
 * `lock`, touched by vCPU threads) and the *live* virtqueues the device
 * uses (vqs, touched only on the loop thread). Registers become live queues
 * on the loop thread when the driver sets DRIVER_OK (or enables a queue
 * afterwards); a reset also runs there. So a device never sees a queue
 * change under it while it serves a request, and the driver may write any
 * register at any time without racing the device.
 *
 * Threads and locks:
 *   - vCPU threads run virtio_mmio_access() (register reads and writes);
 *   - the loop thread runs notifications and, through evloop_call_sync(),
 *     activation, queue enable/disable and reset. A vCPU writing Status
 *     waits until that work is done, so once "reset" returns the device has
 *     stopped touching guest memory (as the spec requires).
 *   - `lock` protects the registers only. It is a leaf: the transport never
 *     holds it while calling the device's ops, the event loop or KVM, so a
 *     device may hold its own lock while calling virtio_mmio_notify_used()
 *     and friends (order: device lock, then transport lock).
 * Without an event loop (loop == NULL, for tests and tools) everything runs
 * inline on the calling thread.
 */
#include "vmm/virtio/mmio.h"

#include "common/le.h"
#include "common/reason.h"

#include "common/log.h"

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Register offsets. */
#define VMMIO_MAGIC_VALUE	  0x000
#define VMMIO_VERSION		  0x004
#define VMMIO_DEVICE_ID		  0x008
#define VMMIO_VENDOR_ID		  0x00c
#define VMMIO_DEVICE_FEATURES	  0x010
#define VMMIO_DEVICE_FEATURES_SEL 0x014
#define VMMIO_DRIVER_FEATURES	  0x020
#define VMMIO_DRIVER_FEATURES_SEL 0x024
#define VMMIO_QUEUE_SEL		  0x030
#define VMMIO_QUEUE_NUM_MAX	  0x034
#define VMMIO_QUEUE_NUM		  0x038
#define VMMIO_QUEUE_READY	  0x044
#define VMMIO_QUEUE_NOTIFY	  0x050
#define VMMIO_INTERRUPT_STATUS	  0x060
#define VMMIO_INTERRUPT_ACK	  0x064
#define VMMIO_STATUS		  0x070
#define VMMIO_QUEUE_DESC_LOW	  0x080
#define VMMIO_QUEUE_DESC_HIGH	  0x084
#define VMMIO_QUEUE_DRIVER_LOW	  0x090
#define VMMIO_QUEUE_DRIVER_HIGH	  0x094
#define VMMIO_QUEUE_DEVICE_LOW	  0x0a0
#define VMMIO_QUEUE_DEVICE_HIGH	  0x0a4
#define VMMIO_SHM_SEL		  0x0ac
#define VMMIO_SHM_LEN_LOW	  0x0b0
#define VMMIO_SHM_BASE_HIGH	  0x0bc
#define VMMIO_CONFIG_GENERATION	  0x0fc
#define VMMIO_CONFIG		  0x100
#define VMMIO_WINDOW_SIZE	  0x1000 /* "4K" on the kernel command line */

#define VMMIO_MAGIC	     0x74726976U /* "virt" */
#define VMMIO_VERSION_MODERN 2U
#define VMMIO_VENDOR	     0x4e4c494bU /* "KILN" */

#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER	  0x02
#define VIRTIO_STATUS_DRIVER_OK	  0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED	  0x80

#define VIRTIO_INT_USED	  0x1
#define VIRTIO_INT_CONFIG 0x2

#define VIRTIO_TRANSPORT_FEATURES (VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX)

struct virtio_mmio_qregs {
	uint16_t num;
	bool ready;
	uint64_t desc, driver, device;
};

struct virtio_mmio_notifier {
	struct virtio_mmio *t;
	unsigned int index;
	int fd;		/* eventfd the guest's notification lands on, or -1 */
	bool ioeventfd; /* KVM writes fd itself (KVM_IOEVENTFD) */
	bool watched;	/* fd is on the loop */
};

struct virtio_mmio {
	struct vm *vm;
	struct evloop *loop;
	uint64_t base;
	unsigned int irq;
	const struct virtio_device_ops *ops;
	void *dev;
	uint64_t dev_features;
	int irq_fd;    /* KVM_IRQFD eventfd, or -1 */
	bool irq_line; /* else pulse with KVM_IRQ_LINE (needs a VM fd) */
	struct virtio_mmio_notifier notifiers[VIRTIO_MAX_QUEUES];

	/* Registers, under `lock`. */
	pthread_mutex_t lock;
	uint32_t status;
	uint32_t dev_features_sel, drv_features_sel;
	uint64_t drv_features;
	uint32_t queue_sel;
	uint32_t int_status;
	uint32_t config_generation;
	struct virtio_mmio_qregs qregs[VIRTIO_MAX_QUEUES];

	/* Loop-thread state. */
	struct virtq vqs[VIRTIO_MAX_QUEUES];
	atomic_bool active; /* DRIVER_OK done: notifications reach the device */
	atomic_bool broken; /* DEVICE_NEEDS_RESET */
	_Atomic uint64_t negotiated;
};

static const char *virtio_mmio_name(const struct virtio_mmio *t)
{
	switch (t->ops->device_id) {
	case VIRTIO_ID_NET:
		return "virtio-net";
	case VIRTIO_ID_BLOCK:
		return "virtio-blk";
	case VIRTIO_ID_VSOCK:
		return "virtio-vsock";
	default:
		return "virtio";
	}
}

/* Runs fn on the loop thread and waits (inline without a loop). */
static void virtio_mmio_on_loop(struct virtio_mmio *t, evloop_fn fn, void *arg)
{
	if (t->loop && evloop_call_sync(t->loop, fn, arg) == 0)
		return;
	fn(arg, 0);
}

/* Sets `bits` in InterruptStatus and injects an edge on the IRQ. */
static void virtio_mmio_interrupt(struct virtio_mmio *t, uint32_t bits)
{
	uint64_t one = 1;

	pthread_mutex_lock(&t->lock);
	t->int_status |= bits;
	pthread_mutex_unlock(&t->lock);
	if (t->irq_fd >= 0) {
		if (write(t->irq_fd, &one, sizeof(one)) < 0)
			log_warn("%s: irqfd write: %s", virtio_mmio_name(t), strerror(errno));
	} else if (t->irq_line) {
		/* The MP table makes ISA IRQs edge-triggered: a pulse. */
		vm_set_irq(t->vm, t->irq, 1);
		vm_set_irq(t->vm, t->irq, 0);
	}
}

void virtio_mmio_set_broken(struct virtio_mmio *t, const char *why)
{
	bool driver_ok;

	if (atomic_exchange(&t->broken, true))
		return;
	log_warn("%s at 0x%llx: %s; the device needs a reset", virtio_mmio_name(t),
		 (unsigned long long)t->base, why);
	pthread_mutex_lock(&t->lock);
	t->status |= VIRTIO_STATUS_NEEDS_RESET;
	driver_ok = t->status & VIRTIO_STATUS_DRIVER_OK;
	t->config_generation++;
	pthread_mutex_unlock(&t->lock);
	if (driver_ok)
		virtio_mmio_interrupt(t, VIRTIO_INT_CONFIG);
}

bool virtio_mmio_is_broken(const struct virtio_mmio *t)
{
	return atomic_load(&t->broken);
}

struct virtq *virtio_mmio_queue(struct virtio_mmio *t, unsigned int q)
{
	return q < t->ops->num_queues ? &t->vqs[q] : NULL;
}

uint64_t virtio_mmio_driver_features(const struct virtio_mmio *t)
{
	return atomic_load(&t->negotiated);
}

void virtio_mmio_notify_used(struct virtio_mmio *t, unsigned int q)
{
	if (q >= t->ops->num_queues || !virtq_should_notify(&t->vqs[q]))
		return;
	virtio_mmio_interrupt(t, VIRTIO_INT_USED);
}

void virtio_mmio_notify_config(struct virtio_mmio *t)
{
	pthread_mutex_lock(&t->lock);
	t->config_generation++;
	pthread_mutex_unlock(&t->lock);
	virtio_mmio_interrupt(t, VIRTIO_INT_CONFIG);
}

int virtio_mmio_cmdline_arg(const struct virtio_mmio *t, char *buf, size_t len)
{
	int n = snprintf(buf, len, " virtio_mmio.device=4K@0x%llx:%u", (unsigned long long)t->base,
			 t->irq);

	if (n < 0 || (size_t)n >= len)
		return -E2BIG;
	return n;
}

/* ---- the guest notified a queue (loop thread) ----------------------------- */

static void virtio_mmio_queue_notify(struct virtio_mmio *t, unsigned int q)
{
	char why[64];

	if (!atomic_load(&t->active) || atomic_load(&t->broken))
		return; /* before DRIVER_OK, or broken: ignored until reset */
	t->ops->queue_notify(t->dev, q);
	if (t->vqs[q].broken && !atomic_load(&t->broken)) {
		snprintf(why, sizeof(why), "queue %u: malformed ring or descriptors", q);
		virtio_mmio_set_broken(t, why);
	}
}

static void virtio_mmio_notifier_ready(void *opaque, uint32_t events)
{
	struct virtio_mmio_notifier *n = opaque;
	uint64_t v;

	(void)events;
	if (read(n->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("%s: notify eventfd: %s", virtio_mmio_name(n->t), strerror(errno));
	virtio_mmio_queue_notify(n->t, n->index);
}

/* ---- work done on the loop thread for the registers ------------------------ */

/* Makes the registers of queue `q` live (activate or later enable). */
static int virtio_mmio_load_queue(struct virtio_mmio *t, unsigned int q,
				  const struct virtio_mmio_qregs *r, uint64_t features)
{
	struct virtq *vq = &t->vqs[q];

	*vq = (struct virtq){
		.size = r->num,
		.desc_gpa = r->desc,
		.avail_gpa = r->driver,
		.used_gpa = r->device,
		.event_idx = features & VIRTIO_F_EVENT_IDX,
		.indirect = features & VIRTIO_F_INDIRECT_DESC,
		.mem = &t->vm->mem,
	};
	if (!r->ready)
		return 0;
	if (virtq_validate(vq) < 0)
		return -EINVAL;
	vq->ready = true;
	return 0;
}

static void virtio_mmio_activate_cb(void *opaque, uint32_t events)
{
	struct virtio_mmio *t = opaque;
	struct virtio_mmio_qregs regs[VIRTIO_MAX_QUEUES];
	uint64_t features;
	char why[64];

	(void)events;
	pthread_mutex_lock(&t->lock);
	memcpy(regs, t->qregs, sizeof(regs));
	features = t->drv_features;
	pthread_mutex_unlock(&t->lock);
	if (atomic_load(&t->broken))
		return;
	for (unsigned int q = 0; q < t->ops->num_queues; q++) {
		if (virtio_mmio_load_queue(t, q, &regs[q], features) < 0) {
			snprintf(why, sizeof(why), "queue %u: rings outside guest RAM", q);
			virtio_mmio_set_broken(t, why);
			return;
		}
	}
	atomic_store(&t->active, true);
	log_debug("%s at 0x%llx: driver ready, features 0x%llx", virtio_mmio_name(t),
		  (unsigned long long)t->base, (unsigned long long)features);
	if (t->ops->activate)
		t->ops->activate(t->dev);
}

struct virtio_mmio_queue_op {
	struct virtio_mmio *t;
	unsigned int q;
	struct virtio_mmio_qregs regs;
};

static void virtio_mmio_enable_cb(void *opaque, uint32_t events)
{
	struct virtio_mmio_queue_op *op = opaque;
	struct virtio_mmio *t = op->t;

	(void)events;
	if (!atomic_load(&t->active) || atomic_load(&t->broken))
		return;
	if (virtio_mmio_load_queue(t, op->q, &op->regs, atomic_load(&t->negotiated)) < 0)
		virtio_mmio_set_broken(t, "queue enabled with rings outside guest RAM");
}

static void virtio_mmio_disable_cb(void *opaque, uint32_t events)
{
	struct virtio_mmio_queue_op *op = opaque;

	(void)events;
	op->t->vqs[op->q].ready = false;
}

static void virtio_mmio_reset_cb(void *opaque, uint32_t events)
{
	struct virtio_mmio *t = opaque;

	(void)events;
	atomic_store(&t->active, false);
	if (t->ops->reset)
		t->ops->reset(t->dev);
	for (unsigned int q = 0; q < VIRTIO_MAX_QUEUES; q++)
		t->vqs[q] = (struct virtq){.mem = &t->vm->mem};
	pthread_mutex_lock(&t->lock);
	t->status = 0;
	t->int_status = 0;
	t->dev_features_sel = 0;
	t->drv_features_sel = 0;
	t->drv_features = 0;
	t->queue_sel = 0;
	memset(t->qregs, 0, sizeof(t->qregs));
	atomic_store(&t->negotiated, 0);
	atomic_store(&t->broken, false);
	pthread_mutex_unlock(&t->lock);
	log_debug("%s at 0x%llx: reset", virtio_mmio_name(t), (unsigned long long)t->base);
}

/* ---- registers (vCPU threads) ------------------------------------------- */

static uint32_t virtio_mmio_read_reg(struct virtio_mmio *t, uint64_t off)
{
	struct virtio_mmio_qregs *qr = NULL;
	uint32_t v = 0;

	pthread_mutex_lock(&t->lock);
	if (t->queue_sel < t->ops->num_queues)
		qr = &t->qregs[t->queue_sel];
	switch (off) {
	case VMMIO_MAGIC_VALUE:
		v = VMMIO_MAGIC;
		break;
	case VMMIO_VERSION:
		v = VMMIO_VERSION_MODERN;
		break;
	case VMMIO_DEVICE_ID:
		v = t->ops->device_id;
		break;
	case VMMIO_VENDOR_ID:
		v = VMMIO_VENDOR;
		break;
	case VMMIO_DEVICE_FEATURES:
		if (t->dev_features_sel < 2)
			v = (uint32_t)(t->dev_features >> (32 * t->dev_features_sel));
		break;
	case VMMIO_QUEUE_NUM_MAX:
		v = qr ? t->ops->queue_max : 0;
		break;
	case VMMIO_QUEUE_NUM:
		v = qr ? qr->num : 0;
		break;
	case VMMIO_QUEUE_READY:
		v = qr ? qr->ready : 0;
		break;
	case VMMIO_INTERRUPT_STATUS:
		v = t->int_status;
		break;
	case VMMIO_STATUS:
		v = t->status;
		break;
	case VMMIO_QUEUE_DESC_LOW:
		v = qr ? (uint32_t)qr->desc : 0;
		break;
	case VMMIO_QUEUE_DESC_HIGH:
		v = qr ? (uint32_t)(qr->desc >> 32) : 0;
		break;
	case VMMIO_QUEUE_DRIVER_LOW:
		v = qr ? (uint32_t)qr->driver : 0;
		break;
	case VMMIO_QUEUE_DRIVER_HIGH:
		v = qr ? (uint32_t)(qr->driver >> 32) : 0;
		break;
	case VMMIO_QUEUE_DEVICE_LOW:
		v = qr ? (uint32_t)qr->device : 0;
		break;
	case VMMIO_QUEUE_DEVICE_HIGH:
		v = qr ? (uint32_t)(qr->device >> 32) : 0;
		break;
	case VMMIO_CONFIG_GENERATION:
		v = t->config_generation;
		break;
	default:
		/* No shared memory regions: length and base all ones. */
		if (off >= VMMIO_SHM_LEN_LOW && off <= VMMIO_SHM_BASE_HIGH)
			v = 0xffffffffU;
		break;
	}
	pthread_mutex_unlock(&t->lock);
	return v;
}

static void virtio_mmio_set_addr(uint64_t *addr, uint32_t v, bool high)
{
	if (high)
		*addr = (*addr & 0xffffffffULL) | (uint64_t)v << 32;
	else
		*addr = (*addr & ~0xffffffffULL) | v;
}

/* What a register write asks for once the lock is dropped. */
enum virtio_mmio_action {
	VMMIO_ACT_NONE,
	VMMIO_ACT_RESET,
	VMMIO_ACT_ACTIVATE,
	VMMIO_ACT_ENABLE_QUEUE,
	VMMIO_ACT_DISABLE_QUEUE,
	VMMIO_ACT_NOTIFY,
	VMMIO_ACT_BROKEN,
};

/* Status write, under the lock. */
static enum virtio_mmio_action virtio_mmio_write_status(struct virtio_mmio *t, uint32_t v)
{
	uint32_t old = t->status, new = v & 0xff;

	if (v == 0)
		return VMMIO_ACT_RESET;
	new = (new & ~VIRTIO_STATUS_NEEDS_RESET) | (old & VIRTIO_STATUS_NEEDS_RESET);
	if ((new &VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
		if (t->drv_features & ~t->dev_features) {
			log_debug("%s: driver accepted features 0x%llx not offered; FEATURES_OK "
				  "refused",
				  virtio_mmio_name(t),
				  (unsigned long long)(t->drv_features & ~t->dev_features));
			new &= ~VIRTIO_STATUS_FEATURES_OK;
		} else if (!(t->drv_features & VIRTIO_F_VERSION_1)) {
			log_debug(
				"%s: driver did not accept VIRTIO_F_VERSION_1; FEATURES_OK refused",
				virtio_mmio_name(t));
			new &= ~VIRTIO_STATUS_FEATURES_OK;
		} else {
			atomic_store(&t->negotiated, t->drv_features);
		}
	}
	t->status = new;
	if ((new &VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK)) {
		if (!(new &VIRTIO_STATUS_FEATURES_OK)) {
			t->status &= ~VIRTIO_STATUS_DRIVER_OK;
			return VMMIO_ACT_BROKEN;
		}
		return VMMIO_ACT_ACTIVATE;
	}
	return VMMIO_ACT_NONE;
}

/* QueueReady write, under the lock. */
static enum virtio_mmio_action virtio_mmio_write_ready(struct virtio_mmio *t, uint32_t v,
						       struct virtio_mmio_queue_op *op,
						       const char **why)
{
	struct virtio_mmio_qregs *qr;
	struct virtq probe;

	if (t->queue_sel >= t->ops->num_queues)
		return VMMIO_ACT_NONE;
	qr = &t->qregs[t->queue_sel];
	op->t = t;
	op->q = t->queue_sel;
	if (v == 0 && qr->ready) {
		qr->ready = false;
		return VMMIO_ACT_DISABLE_QUEUE;
	}
	if (v != 1 || qr->ready)
		return VMMIO_ACT_NONE;
	if (qr->num == 0 || qr->num > t->ops->queue_max || (qr->num & (qr->num - 1))) {
		*why = "queue size is 0, above QueueNumMax or not a power of two";
		return VMMIO_ACT_BROKEN;
	}
	probe = (struct virtq){.size = qr->num,
			       .desc_gpa = qr->desc,
			       .avail_gpa = qr->driver,
			       .used_gpa = qr->device,
			       .mem = &t->vm->mem};
	if (virtq_validate(&probe) < 0) {
		*why = "queue rings misaligned or outside guest RAM";
		return VMMIO_ACT_BROKEN;
	}
	qr->ready = true;
	op->regs = *qr;
	return (t->status & VIRTIO_STATUS_DRIVER_OK) ? VMMIO_ACT_ENABLE_QUEUE : VMMIO_ACT_NONE;
}

static void virtio_mmio_write_reg(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
	enum virtio_mmio_action act = VMMIO_ACT_NONE;
	struct virtio_mmio_queue_op op = {.t = t};
	struct virtio_mmio_qregs *qr = NULL;
	const char *why = "driver set DRIVER_OK without FEATURES_OK";

	pthread_mutex_lock(&t->lock);
	if (t->queue_sel < t->ops->num_queues && !t->qregs[t->queue_sel].ready)
		qr = &t->qregs[t->queue_sel]; /* a queue's registers are frozen while ready */
	switch (off) {
	case VMMIO_DEVICE_FEATURES_SEL:
		t->dev_features_sel = v;
		break;
	case VMMIO_DRIVER_FEATURES:
		if (t->status & VIRTIO_STATUS_FEATURES_OK)
			break; /* too late to change them */
		if (t->drv_features_sel == 0)
			t->drv_features = (t->drv_features & ~0xffffffffULL) | v;
		else if (t->drv_features_sel == 1)
			t->drv_features = (t->drv_features & 0xffffffffULL) | (uint64_t)v << 32;
		break;
	case VMMIO_DRIVER_FEATURES_SEL:
		t->drv_features_sel = v;
		break;
	case VMMIO_QUEUE_SEL:
		t->queue_sel = v;
		break;
	case VMMIO_QUEUE_NUM:
		if (qr)
			qr->num = v > 0xffff ? 0 : (uint16_t)v; /* 0 refuses QueueReady */
		break;
	case VMMIO_QUEUE_READY:
		act = virtio_mmio_write_ready(t, v, &op, &why);
		break;
	case VMMIO_QUEUE_NOTIFY:
		if (v < t->ops->num_queues) {
			op.q = v;
			act = VMMIO_ACT_NOTIFY;
		}
		break;
	case VMMIO_INTERRUPT_ACK:
		t->int_status &= ~v;
		break;
	case VMMIO_STATUS:
		act = virtio_mmio_write_status(t, v);
		break;
	case VMMIO_QUEUE_DESC_LOW:
	case VMMIO_QUEUE_DESC_HIGH:
		if (qr)
			virtio_mmio_set_addr(&qr->desc, v, off == VMMIO_QUEUE_DESC_HIGH);
		break;
	case VMMIO_QUEUE_DRIVER_LOW:
	case VMMIO_QUEUE_DRIVER_HIGH:
		if (qr)
			virtio_mmio_set_addr(&qr->driver, v, off == VMMIO_QUEUE_DRIVER_HIGH);
		break;
	case VMMIO_QUEUE_DEVICE_LOW:
	case VMMIO_QUEUE_DEVICE_HIGH:
		if (qr)
			virtio_mmio_set_addr(&qr->device, v, off == VMMIO_QUEUE_DEVICE_HIGH);
		break;
	default:
		log_debug("%s: write of 0x%x to read-only or unknown register 0x%llx",
			  virtio_mmio_name(t), v, (unsigned long long)off);
		break;
	}
	pthread_mutex_unlock(&t->lock);

	switch (act) {
	case VMMIO_ACT_NONE:
		break;
	case VMMIO_ACT_RESET:
		virtio_mmio_on_loop(t, virtio_mmio_reset_cb, t);
		break;
	case VMMIO_ACT_ACTIVATE:
		virtio_mmio_on_loop(t, virtio_mmio_activate_cb, t);
		break;
	case VMMIO_ACT_ENABLE_QUEUE:
		virtio_mmio_on_loop(t, virtio_mmio_enable_cb, &op);
		break;
	case VMMIO_ACT_DISABLE_QUEUE:
		virtio_mmio_on_loop(t, virtio_mmio_disable_cb, &op);
		break;
	case VMMIO_ACT_NOTIFY: {
		/* Only reached when no ioeventfd caught the write. */
		struct virtio_mmio_notifier *n = &t->notifiers[op.q];
		uint64_t one = 1;

		if (n->watched) {
			if (write(n->fd, &one, sizeof(one)) < 0)
				log_warn("%s: notify eventfd: %s", virtio_mmio_name(t),
					 strerror(errno));
		} else {
			virtio_mmio_queue_notify(t, op.q);
		}
		break;
	}
	case VMMIO_ACT_BROKEN:
		virtio_mmio_set_broken(t, why);
		break;
	}
}

static void virtio_mmio_access(void *opaque, uint64_t off, uint8_t *data, uint32_t len,
			       bool is_write)
{
	struct virtio_mmio *t = opaque;

	if (off >= VMMIO_CONFIG) {
		/* Device config space: any width; the device bounds-checks. */
		if (is_write) {
			if (t->ops->config_write)
				t->ops->config_write(t->dev, off - VMMIO_CONFIG, data, len);
		} else {
			memset(data, 0, len);
			if (t->ops->config_read)
				t->ops->config_read(t->dev, off - VMMIO_CONFIG, data, len);
		}
		return;
	}
	if (len != 4 || (off & 3)) {
		log_debug("%s: ignoring %u-byte %s at register offset 0x%llx", virtio_mmio_name(t),
			  len, is_write ? "write" : "read", (unsigned long long)off);
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	if (is_write)
		virtio_mmio_write_reg(t, off, le32_get(data));
	else
		le32_put(data, virtio_mmio_read_reg(t, off));
}

/* ---- KVM plumbing ------------------------------------------------------------ */

static void virtio_mmio_setup_irq(struct virtio_mmio *t)
{
	struct kvm_irqfd irqfd = {.gsi = t->irq};
	int fd;

	t->irq_line = t->vm->vm_fd >= 0;
	fd = vm_take_irqfd(t->vm, t->irq); /* registered already (prestart) */
	if (fd >= 0) {
		t->irq_fd = fd;
		return;
	}
	if (!vm_has_cap(t->vm, KVM_CAP_IRQFD)) {
		log_debug("%s at 0x%llx: interrupts by %s", virtio_mmio_name(t),
			  (unsigned long long)t->base,
			  t->irq_line ? "KVM_IRQ_LINE pulses (no irqfd)" : "nothing (no VM)");
		return;
	}
	fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		return;
	irqfd.fd = (uint32_t)fd;
	if (ioctl(t->vm->vm_fd, KVM_IRQFD, &irqfd) < 0) {
		log_debug("%s: KVM_IRQFD: %s; using KVM_IRQ_LINE", virtio_mmio_name(t),
			  strerror(errno));
		close(fd);
		return;
	}
	t->irq_fd = fd;
	log_debug("%s at 0x%llx: interrupts by irqfd on GSI %u", virtio_mmio_name(t),
		  (unsigned long long)t->base, t->irq);
}

static int virtio_mmio_ioeventfd(struct virtio_mmio *t, struct virtio_mmio_notifier *n, bool assign)
{
	struct kvm_ioeventfd io = {
		.datamatch = n->index,
		.addr = t->base + VMMIO_QUEUE_NOTIFY,
		.len = 4,
		.fd = n->fd,
		.flags = KVM_IOEVENTFD_FLAG_DATAMATCH | (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
	};

	return ioctl(t->vm->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

static int virtio_mmio_setup_notifiers(struct virtio_mmio *t)
{
	bool can_ioeventfd = vm_has_cap(t->vm, KVM_CAP_IOEVENTFD);
	unsigned int kvm_caught = 0;
	int ret;

	if (!t->loop)
		return 0; /* notifications run inline on the vCPU thread */
	for (unsigned int q = 0; q < t->ops->num_queues; q++) {
		struct virtio_mmio_notifier *n = &t->notifiers[q];

		n->fd = vm_take_eventfd(t->vm);
		if (n->fd < 0) {
			ret = n->fd;
			n->fd = -1;
			log_error("%s: eventfd: %s", virtio_mmio_name(t), strerror(-ret));
			return ret;
		}
		if (can_ioeventfd) {
			ret = virtio_mmio_ioeventfd(t, n, true);
			if (ret == 0) {
				n->ioeventfd = true;
				kvm_caught++;
			} else {
				log_debug("%s: KVM_IOEVENTFD: %s", virtio_mmio_name(t),
					  strerror(-ret));
			}
		}
		ret = evloop_add(t->loop, n->fd, EPOLLIN, virtio_mmio_notifier_ready, n);
		if (ret < 0) {
			log_error("%s: cannot watch the notify eventfd: %s", virtio_mmio_name(t),
				  strerror(-ret));
			return ret;
		}
		n->watched = true;
	}
	log_debug("%s at 0x%llx: queue notifications by %s", virtio_mmio_name(t),
		  (unsigned long long)t->base,
		  kvm_caught == t->ops->num_queues ? "ioeventfd" : "MMIO exits (no ioeventfd)");
	return 0;
}

struct virtio_mmio *virtio_mmio_create(struct vm *vm, struct iobus *bus, struct evloop *loop,
				       uint64_t base, unsigned int irq,
				       const struct virtio_device_ops *ops, void *dev)
{
	struct virtio_mmio *t;
	int ret;

	if (!vm || !bus || !ops || !ops->queue_notify || ops->num_queues < 1 ||
	    ops->num_queues > VIRTIO_MAX_QUEUES || ops->queue_max == 0 ||
	    ops->queue_max > VIRTQ_MAX_SIZE || (ops->queue_max & (ops->queue_max - 1))) {
		log_error("virtio-mmio: bad device description");
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		log_error("out of memory");
		return NULL;
	}
	t->vm = vm;
	t->loop = loop;
	t->base = base;
	t->irq = irq;
	t->ops = ops;
	t->dev = dev;
	t->dev_features = ops->features | VIRTIO_TRANSPORT_FEATURES;
	t->irq_fd = -1;
	pthread_mutex_init(&t->lock, NULL);
	for (unsigned int q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		t->notifiers[q] = (struct virtio_mmio_notifier){.t = t, .index = q, .fd = -1};
		t->vqs[q] = (struct virtq){.mem = &vm->mem};
	}
	virtio_mmio_setup_irq(t);
	if (virtio_mmio_setup_notifiers(t) < 0)
		goto out_destroy;
	ret = iobus_register(bus, IOBUS_MMIO, base, VMMIO_WINDOW_SIZE, virtio_mmio_access, t);
	if (ret < 0) {
		log_error("%s: cannot register MMIO window at 0x%llx: %s", virtio_mmio_name(t),
			  (unsigned long long)base, strerror(-ret));
		goto out_destroy;
	}
	return t;

out_destroy:
	virtio_mmio_destroy(t);
	return NULL;
}

void virtio_mmio_destroy(struct virtio_mmio *t)
{
	if (!t)
		return;
	for (unsigned int q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		struct virtio_mmio_notifier *n = &t->notifiers[q];

		if (n->watched)
			evloop_del(t->loop, n->fd);
		if (n->ioeventfd)
			virtio_mmio_ioeventfd(t, n, false);
		if (n->fd >= 0)
			close(n->fd);
	}
	if (t->irq_fd >= 0) {
		struct kvm_irqfd irqfd = {
			.fd = (uint32_t)t->irq_fd, .gsi = t->irq, .flags = KVM_IRQFD_FLAG_DEASSIGN};

		ioctl(t->vm->vm_fd, KVM_IRQFD, &irqfd);
		close(t->irq_fd);
	}
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* ---- snapshots --------------------------------------------------------------- */

uint32_t virtio_mmio_device_id(const struct virtio_mmio *t)
{
	return t->ops->device_id;
}

void virtio_mmio_save(struct virtio_mmio *t, struct snap_writer *w, uint16_t slot)
{
	pthread_mutex_lock(&t->lock);
	snap_begin(w, SNAP_SEC_VIRTIO_MMIO, slot);
	snap_put_u32(w, t->ops->device_id);
	snap_put_u64(w, t->dev_features);
	snap_put_u32(w, t->status);
	snap_put_u32(w, t->dev_features_sel);
	snap_put_u32(w, t->drv_features_sel);
	snap_put_u64(w, t->drv_features);
	snap_put_u32(w, t->queue_sel);
	snap_put_u32(w, t->int_status);
	snap_put_u32(w, t->config_generation);
	snap_put_u8(w, atomic_load(&t->active));
	snap_put_u8(w, atomic_load(&t->broken));
	snap_put_u64(w, atomic_load(&t->negotiated));
	snap_put_u32(w, t->ops->num_queues);
	for (unsigned int q = 0; q < t->ops->num_queues; q++) {
		const struct virtio_mmio_qregs *r = &t->qregs[q];
		const struct virtq *vq = &t->vqs[q];

		snap_put_u16(w, r->num);
		snap_put_u8(w, r->ready);
		snap_put_u64(w, r->desc);
		snap_put_u64(w, r->driver);
		snap_put_u64(w, r->device);
		snap_put_u8(w, vq->ready);
		snap_put_u16(w, vq->last_avail);
		snap_put_u16(w, vq->used_idx);
		snap_put_u16(w, vq->signalled_used);
		snap_put_u8(w, vq->signalled_valid);
		snap_put_u8(w, vq->broken);
	}
	snap_end(w);
	pthread_mutex_unlock(&t->lock);
}

struct virtio_mmio_saved_queue {
	struct virtio_mmio_qregs regs;
	bool live_ready, signalled_valid, broken;
	uint16_t last_avail, used_idx, signalled_used;
};

int virtio_mmio_restore(struct virtio_mmio *t, const struct snap_section *sec, char *why,
			size_t why_len)
{
	struct virtio_mmio_saved_queue sq[VIRTIO_MAX_QUEUES];
	uint32_t device_id, status, dfsel, drfsel, qsel, isr, gen, nq;
	uint64_t dev_features, drv_features, negotiated;
	bool active, broken;
	struct snap_rd r;

	memset(sq, 0, sizeof(sq));
	snap_rd_init(&r, sec);
	device_id = snap_get_u32(&r);
	dev_features = snap_get_u64(&r);
	status = snap_get_u32(&r);
	dfsel = snap_get_u32(&r);
	drfsel = snap_get_u32(&r);
	drv_features = snap_get_u64(&r);
	qsel = snap_get_u32(&r);
	isr = snap_get_u32(&r);
	gen = snap_get_u32(&r);
	active = snap_get_u8(&r);
	broken = snap_get_u8(&r);
	negotiated = snap_get_u64(&r);
	nq = snap_get_u32(&r);
	if (r.err)
		return reason_fail(why, why_len, -EINVAL, "malformed virtio-mmio section");
	if (device_id != t->ops->device_id)
		return reason_fail(why, why_len, -EINVAL,
				   "the snapshot has another kind of virtio device "
				   "in this slot");
	if (dev_features != t->dev_features)
		return reason_fail(why, why_len, -EINVAL,
				   "the device offers other features than in the "
				   "snapshot (a read-only disk that was read-write, "
				   "or the reverse?)");
	if (nq != t->ops->num_queues)
		return reason_fail(why, why_len, -EINVAL,
				   "the snapshot's device has another "
				   "number of queues");
	for (uint32_t q = 0; q < nq; q++) {
		sq[q].regs.num = snap_get_u16(&r);
		sq[q].regs.ready = snap_get_u8(&r);
		sq[q].regs.desc = snap_get_u64(&r);
		sq[q].regs.driver = snap_get_u64(&r);
		sq[q].regs.device = snap_get_u64(&r);
		sq[q].live_ready = snap_get_u8(&r);
		sq[q].last_avail = snap_get_u16(&r);
		sq[q].used_idx = snap_get_u16(&r);
		sq[q].signalled_used = snap_get_u16(&r);
		sq[q].signalled_valid = snap_get_u8(&r);
		sq[q].broken = snap_get_u8(&r);
	}
	if (!snap_rd_done(&r))
		return reason_fail(why, why_len, -EINVAL, "malformed virtio-mmio section");
	if ((negotiated & ~dev_features) ||
	    ((status & VIRTIO_STATUS_FEATURES_OK) && (drv_features & ~dev_features)))
		return reason_fail(why, why_len, -EINVAL,
				   "the snapshot's driver features were not offered");

	/* Live queues first: they are checked against guest RAM. */
	for (uint32_t q = 0; q < nq; q++) {
		struct virtq *vq = &t->vqs[q];

		*vq = (struct virtq){.mem = &t->vm->mem};
		if (!active || !sq[q].regs.ready)
			continue;
		if (sq[q].regs.num == 0 || sq[q].regs.num > t->ops->queue_max ||
		    (sq[q].regs.num & (sq[q].regs.num - 1)) ||
		    virtio_mmio_load_queue(t, q, &sq[q].regs, negotiated) < 0)
			return reason_fail(why, why_len, -EINVAL,
					   "a queue in the snapshot is malformed or "
					   "outside guest RAM");
		vq->ready = sq[q].live_ready;
		vq->last_avail = sq[q].last_avail;
		vq->used_idx = sq[q].used_idx;
		vq->signalled_used = sq[q].signalled_used;
		vq->signalled_valid = sq[q].signalled_valid;
		vq->broken = sq[q].broken;
	}
	pthread_mutex_lock(&t->lock);
	t->status = status & 0xff;
	t->dev_features_sel = dfsel;
	t->drv_features_sel = drfsel;
	t->drv_features = drv_features;
	t->queue_sel = qsel;
	t->int_status = isr;
	t->config_generation = gen;
	for (uint32_t q = 0; q < nq; q++)
		t->qregs[q] = sq[q].regs;
	atomic_store(&t->negotiated, negotiated);
	atomic_store(&t->broken, broken);
	atomic_store(&t->active, active);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

void virtio_mmio_kick(struct virtio_mmio *t)
{
	for (unsigned int q = 0; q < t->ops->num_queues; q++)
		if (virtq_usable(&t->vqs[q]))
			virtio_mmio_queue_notify(t, q);
}
