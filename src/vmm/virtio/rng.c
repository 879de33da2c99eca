/* rng.c - virtio-rng (device id 4, "entropy device", virtio 1.1 5.4): one
 * request queue whose device-writable buffers the device fills with bytes
 * from the host's getrandom(2), so that a guest (a fresh restore above all)
 * has entropy without waiting for its own pool. No features, no config
 * space, no state of its own in snapshots (the transport saves the queue),
 * and nothing of the host to give again on restore.
 *
 * Requests are served on the I/O event loop thread. A chain with readable
 * buffers breaks the device (the driver only ever offers writable ones).
 * Each request gets at most VIRTIO_RNG_MAX_REQ bytes.
 */
#include "vmm/virtio/device.h"

#include "common/log.h"
#include "vmm/virtio/mmio.h"
#include "vmm/virtio/queue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define VIRTIO_RNG_QUEUE_MAX 64
#define VIRTIO_RNG_MAX_REQ   4096 /* bytes per request */

struct virtio_rng {
	struct virtio_mmio *t;
	struct virtq_chain chain; /* loop-thread scratch */
};

/* Fills buf[0..len) from getrandom. Returns 0 or -errno. */
static int virtio_rng_fill(uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = getrandom(buf, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Serves one popped request. Returns the bytes written into it, or -errno. */
static int virtio_rng_handle(struct virtio_rng *r)
{
	struct virtq_chain *c = &r->chain;
	uint8_t buf[VIRTIO_RNG_MAX_REQ];
	size_t len = c->in_len < sizeof(buf) ? (size_t)c->in_len : sizeof(buf);
	int ret;

	if (c->out_num)
		return -EINVAL;
	ret = virtio_rng_fill(buf, len);
	if (ret < 0)
		return ret;
	return (int)virtq_chain_write(c, 0, buf, len);
}

static void virtio_rng_queue_notify(void *dev, unsigned int qi)
{
	struct virtio_rng *r = dev;
	struct virtq *q = virtio_mmio_queue(r->t, qi);
	bool pushed = false;

	if (!q)
		return;
	for (;;) {
		int n = virtq_pop(q, &r->chain);

		if (n == 0)
			break;
		if (n < 0) {
			virtio_mmio_set_broken(r->t, "malformed virtqueue");
			break;
		}
		n = virtio_rng_handle(r);
		if (n == -EINVAL) {
			virtio_mmio_set_broken(r->t, "request with a device-readable buffer");
			break;
		}
		if (n < 0) {
			/* Give it back: the guest asks again on its next kick. */
			log_warn("virtio-rng: getrandom: %s", strerror(-n));
			virtq_unpop(q);
			break;
		}
		if (virtq_push(q, r->chain.head, (uint32_t)n) < 0)
			break;
		pushed = true;
	}
	if (pushed)
		virtio_mmio_notify_used(r->t, qi);
}

static void virtio_rng_reset(void *dev)
{
	(void)dev; /* requests complete synchronously: nothing in flight */
}

static void virtio_rng_destroy(void *dev)
{
	struct virtio_rng *r = dev;

	if (!r)
		return;
	virtio_mmio_destroy(r->t);
	free(r);
}

static void *virtio_rng_create(const struct virtio_slot *slot, const struct virtio_host *host,
			       struct virtio_mmio **t)
{
	struct virtio_rng *r = calloc(1, sizeof(*r));

	(void)host;
	if (!r) {
		log_error("out of memory");
		return NULL;
	}
	r->t = virtio_mmio_create(slot->vm, slot->bus, slot->loop, slot->base, slot->irq,
				  &virtio_rng_device, r);
	if (!r->t) {
		free(r);
		return NULL;
	}
	*t = r->t;
	log_debug("virtio-rng at 0x%llx", (unsigned long long)slot->base);
	return r;
}

const struct virtio_device_ops virtio_rng_device = {
	.name = "virtio-rng",
	.noun = "entropy device",
	.device_id = VIRTIO_ID_RNG,
	.max_count = 1,
	.num_queues = 1,
	.queue_max = VIRTIO_RNG_QUEUE_MAX,
	.queue_notify = virtio_rng_queue_notify,
	.reset = virtio_rng_reset,
	.create = virtio_rng_create,
	.destroy = virtio_rng_destroy,
};
