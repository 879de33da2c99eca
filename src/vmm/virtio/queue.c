/* queue.c - split virtqueues, read and written in place in guest memory.
 *
 * Nothing the guest wrote is trusted: each descriptor is copied out of guest
 * memory once and then checked (index, flags, address and length against
 * RAM), so a guest changing the ring under our feet cannot make us use an
 * unchecked value. Any violation breaks the queue (see queue.h).
 *
 * Memory ordering (virtio 1.1, 2.7.13 and Linux's virtio_ring.c): read
 * avail->idx, acquire fence, then the ring entry and descriptors; write the
 * used element, release fence, then used->idx; full fence before reading
 * what the driver asked for (flags / used_event) to decide on an interrupt.
 */
#include "vmm/virtio/queue.h"

#include "common/log.h"

#include <errno.h>
#include <string.h>

/* Offsets inside the rings. */
#define VIRTQ_RING_FLAGS 0
#define VIRTQ_RING_IDX	 2
#define VIRTQ_RING_ENTRY 4

static bool virtq_size_ok(uint16_t size)
{
	return size != 0 && size <= VIRTQ_MAX_SIZE && (size & (size - 1)) == 0;
}

static uint16_t virtq_load16(const uint8_t *p)
{
	return __atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_RELAXED);
}

static void virtq_store16(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)(void *)p, v, __ATOMIC_RELAXED);
}

static void virtq_store32(uint8_t *p, uint32_t v)
{
	__atomic_store_n((uint32_t *)(void *)p, v, __ATOMIC_RELAXED);
}

static int virtq_fail(struct virtq *q, const char *why)
{
	if (!q->broken)
		log_warn("virtqueue (desc at 0x%llx, size %u): %s; queue broken",
			 (unsigned long long)q->desc_gpa, q->size, why);
	q->broken = true;
	return -EIO;
}

static uint8_t *virtq_avail(const struct virtq *q)
{
	return guest_mem_ptr(q->mem, q->avail_gpa, VIRTQ_AVAIL_BYTES(q->size));
}

static uint8_t *virtq_used(const struct virtq *q)
{
	return guest_mem_ptr(q->mem, q->used_gpa, VIRTQ_USED_BYTES(q->size));
}

void virtq_reset(struct virtq *q)
{
	q->last_avail = 0;
	q->used_idx = 0;
	q->signalled_used = 0;
	q->signalled_valid = false;
	q->broken = false;
}

bool virtq_usable(const struct virtq *q)
{
	return q->ready && !q->broken && q->mem && virtq_size_ok(q->size);
}

int virtq_validate(struct virtq *q)
{
	const char *why = NULL;

	if (!q->mem)
		why = "no guest memory";
	else if (!virtq_size_ok(q->size))
		why = "queue size is 0, too large or not a power of two";
	else if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3))
		why = "misaligned ring";
	else if (!guest_mem_contains(q->mem, q->desc_gpa, VIRTQ_DESC_BYTES(q->size)))
		why = "descriptor table outside guest RAM";
	else if (!guest_mem_contains(q->mem, q->avail_gpa, VIRTQ_AVAIL_BYTES(q->size)))
		why = "available ring outside guest RAM";
	else if (!guest_mem_contains(q->mem, q->used_gpa, VIRTQ_USED_BYTES(q->size)))
		why = "used ring outside guest RAM";
	if (!why)
		return 0;
	virtq_fail(q, why);
	return -EINVAL;
}

/* State of one chain walk. */
struct virtq_walk {
	struct virtq *q;
	struct virtq_chain *c;
	unsigned int total; /* descriptors seen, direct and indirect */
	bool seen_writable; /* a device-writable descriptor came already */
};

static void virtq_read_desc(const uint8_t *table, uint32_t i, struct virtq_desc *d)
{
	/* One copy out of guest memory; only the copy is checked and used. */
	memcpy(d, table + (size_t)i * sizeof(*d), sizeof(*d));
}

static int virtq_add_segment(struct virtq_walk *w, const struct virtq_desc *d)
{
	struct virtq_chain *c = w->c;
	bool writable = d->flags & VIRTQ_DESC_F_WRITE;
	void *p;

	if (++w->total > VIRTQ_MAX_CHAIN)
		return virtq_fail(w->q, "descriptor chain too long");
	if (!writable && w->seen_writable)
		return virtq_fail(w->q, "device-readable descriptor after a writable one");
	w->seen_writable |= writable;
	if (d->len == 0)
		return 0; /* nothing to transfer; the address does not matter */
	p = guest_mem_ptr(w->q->mem, d->addr, d->len);
	if (!p)
		return virtq_fail(w->q, "buffer outside guest RAM");
	c->iov[c->out_num + c->in_num] = (struct iovec){.iov_base = p, .iov_len = d->len};
	if (writable) {
		c->in_num++;
		c->in_len += d->len;
	} else {
		c->out_num++;
		c->out_len += d->len;
	}
	return 0;
}

static int virtq_walk_indirect(struct virtq_walk *w, const struct virtq_desc *ind)
{
	struct virtq *q = w->q;
	const uint8_t *table;
	uint32_t n, i = 0, steps = 0;
	struct virtq_desc d;

	if (!q->indirect)
		return virtq_fail(q, "indirect descriptor without VIRTIO_F_INDIRECT_DESC");
	if (ind->flags & VIRTQ_DESC_F_NEXT)
		return virtq_fail(q, "indirect descriptor with NEXT");
	if (ind->len == 0 || ind->len % sizeof(struct virtq_desc))
		return virtq_fail(q, "indirect table length not a non-zero multiple of 16");
	table = guest_mem_ptr(q->mem, ind->addr, ind->len);
	if (!table)
		return virtq_fail(q, "indirect table outside guest RAM");
	n = ind->len / sizeof(struct virtq_desc);
	for (;;) {
		if (++steps > n)
			return virtq_fail(q, "loop in an indirect table");
		virtq_read_desc(table, i, &d);
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return virtq_fail(q, "nested indirect descriptor");
		if (virtq_add_segment(w, &d) < 0)
			return -EIO;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= n)
			return virtq_fail(q, "next index outside the indirect table");
		i = d.next;
	}
}

static int virtq_walk_chain(struct virtq *q, uint16_t head, struct virtq_chain *c)
{
	struct virtq_walk w = {.q = q, .c = c};
	const uint8_t *table = guest_mem_ptr(q->mem, q->desc_gpa, VIRTQ_DESC_BYTES(q->size));
	unsigned int steps = 0;
	uint16_t i = head;
	struct virtq_desc d;

	if (!table)
		return virtq_fail(q, "descriptor table outside guest RAM");
	c->head = head;
	c->out_num = c->in_num = 0;
	c->out_len = c->in_len = 0;
	for (;;) {
		if (++steps > q->size)
			return virtq_fail(q, "descriptor chain longer than the queue (a loop?)");
		virtq_read_desc(table, i, &d);
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return virtq_walk_indirect(&w, &d);
		if (virtq_add_segment(&w, &d) < 0)
			return -EIO;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= q->size)
			return virtq_fail(q, "next descriptor index out of range");
		i = d.next;
	}
}

int virtq_pop(struct virtq *q, struct virtq_chain *c)
{
	uint8_t *avail, *used;
	uint16_t avail_idx, pending, head;

	if (q->broken)
		return -EIO;
	if (!q->ready || !q->mem)
		return 0;
	if (!virtq_size_ok(q->size))
		return virtq_fail(q, "bad queue size");
	avail = virtq_avail(q);
	used = virtq_used(q);
	if (!avail || !used)
		return virtq_fail(q, "ring outside guest RAM");
	avail_idx = virtq_load16(avail + VIRTQ_RING_IDX);
	pending = (uint16_t)(avail_idx - q->last_avail);
	if (pending == 0 && q->event_idx) {
		/* Ask for a notification at the next entry, then look again in
		 * case the driver added one before it could see that. */
		virtq_store16(used + VIRTQ_RING_ENTRY + 8 * (size_t)q->size, q->last_avail);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		avail_idx = virtq_load16(avail + VIRTQ_RING_IDX);
		pending = (uint16_t)(avail_idx - q->last_avail);
	}
	if (pending == 0)
		return 0;
	if (pending > q->size)
		return virtq_fail(q, "available index ran ahead by more than the queue size");
	/* Read the entry and descriptors only after seeing the index. */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	head = virtq_load16(avail + VIRTQ_RING_ENTRY + 2 * (size_t)(q->last_avail % q->size));
	if (head >= q->size)
		return virtq_fail(q, "head descriptor index out of range");
	if (virtq_walk_chain(q, head, c) < 0)
		return -EIO;
	q->last_avail++;
	if (q->event_idx)
		virtq_store16(used + VIRTQ_RING_ENTRY + 8 * (size_t)q->size, q->last_avail);
	return 1;
}

int virtq_push(struct virtq *q, uint16_t head, uint32_t written)
{
	uint8_t *used, *elem;

	if (!virtq_usable(q))
		return -EIO;
	if (head >= q->size)
		return virtq_fail(q, "device pushed an out-of-range head");
	used = virtq_used(q);
	if (!used)
		return virtq_fail(q, "used ring outside guest RAM");
	elem = used + VIRTQ_RING_ENTRY + 8 * (size_t)(q->used_idx % q->size);
	virtq_store32(elem, head);
	virtq_store32(elem + 4, written);
	q->used_idx++;
	/* The element must be visible before the index that publishes it. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n((uint16_t *)(void *)(used + VIRTQ_RING_IDX), q->used_idx,
			 __ATOMIC_RELEASE);
	return 0;
}

int virtq_push_many(struct virtq *q, const uint16_t *heads, const uint32_t *lens, unsigned int n)
{
	uint8_t *used, *elem;

	if (!virtq_usable(q))
		return -EIO;
	if (n > q->size)
		return virtq_fail(q, "device pushed more requests than the queue holds");
	used = virtq_used(q);
	if (!used)
		return virtq_fail(q, "used ring outside guest RAM");
	for (unsigned int i = 0; i < n; i++) {
		if (heads[i] >= q->size)
			return virtq_fail(q, "device pushed an out-of-range head");
		elem = used + VIRTQ_RING_ENTRY + 8 * (size_t)((uint16_t)(q->used_idx + i) % q->size);
		virtq_store32(elem, heads[i]);
		virtq_store32(elem + 4, lens[i]);
	}
	q->used_idx = (uint16_t)(q->used_idx + n);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n((uint16_t *)(void *)(used + VIRTQ_RING_IDX), q->used_idx,
			 __ATOMIC_RELEASE);
	return 0;
}

bool virtq_should_notify(struct virtq *q)
{
	uint8_t *avail;
	uint16_t event, old, new;
	bool valid;

	if (!virtq_usable(q))
		return false;
	avail = virtq_avail(q);
	if (!avail)
		return false;
	/* Our used->idx store must be visible before we read the driver's
	 * wishes, or both sides could decide the other will act. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!q->event_idx)
		return !(virtq_load16(avail + VIRTQ_RING_FLAGS) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	event = virtq_load16(avail + VIRTQ_RING_ENTRY + 2 * (size_t)q->size); /* used_event */
	valid = q->signalled_valid;
	old = q->signalled_used;
	new = q->used_idx;
	q->signalled_valid = true;
	q->signalled_used = new;
	/* vring_need_event(): did new cross event since old? */
	return !valid || (uint16_t)(new - event - 1) < (uint16_t)(new - old);
}

void virtq_set_notification(struct virtq *q, bool enable)
{
	uint8_t *avail, *used;

	if (!virtq_usable(q))
		return;
	avail = virtq_avail(q);
	used = virtq_used(q);
	if (!avail || !used)
		return;
	if (q->event_idx) {
		/* avail_event: notify when you add the entry after what is
		 * there now. (With event_idx notifications cannot be fully
		 * switched off; virtq_pop keeps avail_event up to date.) */
		if (enable)
			virtq_store16(used + VIRTQ_RING_ENTRY + 8 * (size_t)q->size,
				      virtq_load16(avail + VIRTQ_RING_IDX));
	} else {
		virtq_store16(used + VIRTQ_RING_FLAGS, enable ? 0 : VIRTQ_USED_F_NO_NOTIFY);
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

bool virtq_has_avail(const struct virtq *q)
{
	const uint8_t *avail;

	if (!virtq_usable(q))
		return false;
	avail = virtq_avail(q);
	return avail && virtq_load16(avail + VIRTQ_RING_IDX) != q->last_avail;
}

void virtq_unpop(struct virtq *q)
{
	q->last_avail--;
}

bool virtq_avail_idx(const struct virtq *q, uint16_t *idx)
{
	const uint8_t *avail;

	if (!q->mem)
		return false;
	avail = guest_mem_ptr(q->mem, q->avail_gpa + VIRTQ_RING_IDX, 2);
	if (!avail)
		return false;
	*idx = virtq_load16(avail);
	return true;
}

size_t virtq_chain_read(const struct virtq_chain *c, size_t offset, void *dst, size_t len)
{
	uint8_t *out = dst;
	size_t done = 0;

	for (unsigned int i = 0; i < c->out_num && done < len; i++) {
		size_t seg = c->iov[i].iov_len, n;

		if (offset >= seg) {
			offset -= seg;
			continue;
		}
		n = seg - offset;
		if (n > len - done)
			n = len - done;
		memcpy(out + done, (const uint8_t *)c->iov[i].iov_base + offset, n);
		done += n;
		offset = 0;
	}
	return done;
}

size_t virtq_chain_write(const struct virtq_chain *c, size_t offset, const void *src, size_t len)
{
	const uint8_t *in = src;
	size_t done = 0;

	for (unsigned int i = c->out_num; i < c->out_num + c->in_num && done < len; i++) {
		size_t seg = c->iov[i].iov_len, n;

		if (offset >= seg) {
			offset -= seg;
			continue;
		}
		n = seg - offset;
		if (n > len - done)
			n = len - done;
		memcpy((uint8_t *)c->iov[i].iov_base + offset, in + done, n);
		done += n;
		offset = 0;
	}
	return done;
}
