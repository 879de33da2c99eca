/* queue.h - split virtqueues (virtio 1.x), read straight from guest memory.
 *
 * Every index, address and length the guest supplies is checked against guest
 * RAM and the queue size before use. A queue whose guest data is malformed is
 * marked broken: it stops serving, and the transport reports the device as
 * needing a reset (DEVICE_NEEDS_RESET). The VMM is never put at risk.
 */
#ifndef KILN_VMM_VIRTIO_QUEUE_H
#define KILN_VMM_VIRTIO_QUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/memory.h"

#define VIRTQ_MAX_SIZE	1024 /* largest queue size kiln offers */
#define VIRTQ_MAX_CHAIN 256  /* most descriptors one request may use */

/* Ring layout (virtio 1.1, 2.6 "Split Virtqueues"), all little-endian:
 *   descriptor table: size x struct virtq_desc, 16-byte aligned;
 *   available ring:   le16 flags, le16 idx, le16 ring[size], le16 used_event;
 *   used ring:        le16 flags, le16 idx, {le32 id, le32 len} ring[size],
 *                     le16 avail_event. */
#define VIRTQ_DESC_F_NEXT	   1
#define VIRTQ_DESC_F_WRITE	   2
#define VIRTQ_DESC_F_INDIRECT	   4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY	   1

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* Bytes of each ring part for a queue of `size` entries. */
#define VIRTQ_DESC_BYTES(size)	(16ULL * (size))
#define VIRTQ_AVAIL_BYTES(size) (6ULL + 2ULL * (size))
#define VIRTQ_USED_BYTES(size)	(6ULL + 8ULL * (size))

struct virtq {
	/* Set by the transport from the guest's registers. */
	uint16_t size; /* power of two, 1..VIRTQ_MAX_SIZE */
	bool ready;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool event_idx; /* VIRTIO_F_EVENT_IDX negotiated */
	bool indirect;	/* VIRTIO_F_INDIRECT_DESC negotiated */
	/* Device-side state (saved in snapshots). */
	uint16_t last_avail;	 /* next available-ring entry to consume */
	uint16_t used_idx;	 /* next used-ring index to fill */
	uint16_t signalled_used; /* used_idx when the guest was last notified */
	bool signalled_valid;
	bool broken; /* the guest broke this queue; it serves nothing until reset */
	const struct guest_mem *mem;
};

/* One request: a chain of buffers resolved to host addresses. The first
 * `out_num` segments are device-readable (driver → device), then `in_num`
 * device-writable ones. Segment pointers point into guest RAM. */
struct virtq_chain {
	uint16_t head; /* descriptor index to hand back with virtq_push */
	unsigned int out_num, in_num;
	uint64_t out_len, in_len; /* total bytes of each kind */
	struct iovec iov[VIRTQ_MAX_CHAIN];
};

/* Resets device-side state (on device reset or queue enable). */
void virtq_reset(struct virtq *q);

/* Returns true when the queue is set up, enabled and not broken. */
bool virtq_usable(const struct virtq *q);

/* Checks the ring addresses against guest RAM when the driver enables the
 * queue. Returns 0, or -EINVAL (and marks the queue broken). */
int virtq_validate(struct virtq *q);

/* Takes the next available request. Returns 1 and fills `c`, 0 when none is
 * available, or -EIO when the guest's data is malformed (out-of-range index or
 * address, length past RAM, a loop, a chain too long, a writable descriptor
 * before a readable one, a bad indirect table): the queue is then broken. */
int virtq_pop(struct virtq *q, struct virtq_chain *c);

/* Hands the last popped request back: the next virtq_pop returns it again
 * (a device that took a buffer it cannot use yet, before a snapshot). Call
 * only right after a virtq_pop that returned 1, nothing pushed since. */
void virtq_unpop(struct virtq *q);

/* Reads the available ring's index (the driver's next free entry) into *idx.
 * Returns false when the queue has no memory or the ring is outside RAM. */
bool virtq_avail_idx(const struct virtq *q, uint16_t *idx);

/* Returns a finished request to the guest with `written` bytes written into
 * its device-writable buffers. Returns 0 or -EIO (broken queue). */
int virtq_push(struct virtq *q, uint16_t head, uint32_t written);

/* Returns true when the guest wants an interrupt for what was pushed since the
 * last notification (honours VIRTQ_AVAIL_F_NO_INTERRUPT and used_event). */
bool virtq_should_notify(struct virtq *q);

/* Returns `n` finished requests at once (heads[i] with lens[i] bytes
 * written), publishing the used index only after all of them, so the guest
 * never sees part of a group (virtio-net's merged receive buffers). Returns
 * 0 or -EIO (broken queue). */
int virtq_push_many(struct virtq *q, const uint16_t *heads, const uint32_t *lens, unsigned int n);

/* Asks the guest not to notify (or to notify again): VIRTQ_USED_F_NO_NOTIFY,
 * or avail_event with event_idx. */
void virtq_set_notification(struct virtq *q, bool enable);

/* Returns true when the available ring has entries not yet popped. */
bool virtq_has_avail(const struct virtq *q);

/* Copies up to `len` bytes from the chain's readable segments, starting at
 * byte `offset` of them, into `dst`. Returns the number of bytes copied. */
size_t virtq_chain_read(const struct virtq_chain *c, size_t offset, void *dst, size_t len);

/* Copies `len` bytes into the chain's writable segments at `offset`. Returns
 * the number of bytes copied (less when the buffers are too small). */
size_t virtq_chain_write(const struct virtq_chain *c, size_t offset, const void *src, size_t len);

#endif
