/* vsock_conn.c - a virtio-vsock connection: header codec, CONNECT line,
 * credit arithmetic, the guest→host output buffer, the connection table. */
#include "vmm/virtio/vsock_conn.h"

#include "common/le.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define VSOCK_TABLE_BUCKETS 1024 /* a few hundred connections: short chains */

void vsock_hdr_decode(const uint8_t *raw, struct vsock_hdr *h)
{
	h->src_cid = le64_get(raw + 0);
	h->dst_cid = le64_get(raw + 8);
	h->src_port = le32_get(raw + 16);
	h->dst_port = le32_get(raw + 20);
	h->len = le32_get(raw + 24);
	h->type = le16_get(raw + 28);
	h->op = le16_get(raw + 30);
	h->flags = le32_get(raw + 32);
	h->buf_alloc = le32_get(raw + 36);
	h->fwd_cnt = le32_get(raw + 40);
}

void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t *raw)
{
	le64_put(raw + 0, h->src_cid);
	le64_put(raw + 8, h->dst_cid);
	le32_put(raw + 16, h->src_port);
	le32_put(raw + 20, h->dst_port);
	le32_put(raw + 24, h->len);
	le16_put(raw + 28, h->type);
	le16_put(raw + 30, h->op);
	le32_put(raw + 32, h->flags);
	le32_put(raw + 36, h->buf_alloc);
	le32_put(raw + 40, h->fwd_cnt);
}

int vsock_parse_connect(const char *buf, size_t len, uint32_t *port)
{
	static const char prefix[] = "CONNECT ";
	const size_t plen = sizeof(prefix) - 1;
	uint64_t value = 0;
	size_t i, digits = 0;

	for (i = 0; i < len && i < plen; i++) {
		if (buf[i] != prefix[i])
			return -EINVAL;
	}
	for (; i < len; i++) {
		char ch = buf[i];

		if (i >= VSOCK_CONNECT_LINE_MAX)
			return -E2BIG;
		if (ch == '\n') {
			if (digits == 0)
				return -EINVAL;
			*port = (uint32_t)value;
			return (int)(i + 1);
		}
		if (ch < '0' || ch > '9' || ++digits > 10)
			return -EINVAL;
		value = value * 10 + (uint64_t)(ch - '0');
		if (value > UINT32_MAX)
			return -EINVAL;
	}
	if (len >= VSOCK_CONNECT_LINE_MAX)
		return -E2BIG;
	return 0;
}

struct vsock_conn *vsock_conn_create(struct evloop *loop, int fd, enum vsock_conn_state state,
				     uint32_t buf_alloc)
{
	struct vsock_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	vsock_list_init(&c->all);
	vsock_list_init(&c->ctrl);
	vsock_list_init(&c->data);
	c->loop = loop;
	c->fd = fd;
	c->state = state;
	c->buf_alloc = buf_alloc;
	return c;
}

void vsock_conn_close_fd(struct vsock_conn *c)
{
	if (c->watched) {
		evloop_del(c->loop, c->fd);
		c->watched = false;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
}

void vsock_conn_destroy(struct vsock_conn *c)
{
	struct vsock_chunk *k;

	if (!c)
		return;
	vsock_conn_close_fd(c);
	k = c->out_head;
	while (k) {
		struct vsock_chunk *next = k->next;

		free(k);
		k = next;
	}
	free(c);
}

int vsock_conn_watch(struct vsock_conn *c, uint32_t events, evloop_fn fn, void *opaque)
{
	int ret;

	if (c->fd < 0)
		return 0;
	if (events == UINT32_MAX) {
		if (c->watched) {
			ret = evloop_del(c->loop, c->fd);
			c->watched = false;
			return ret;
		}
		return 0;
	}
	if (!c->watched) {
		ret = evloop_add(c->loop, c->fd, events, fn, opaque);
		if (ret < 0)
			return ret;
		c->watched = true;
		c->events = events;
		return 0;
	}
	if (c->events == events)
		return 0;
	ret = evloop_mod(c->loop, c->fd, events);
	if (ret == 0)
		c->events = events;
	return ret;
}

uint32_t vsock_conn_peer_credit(const struct vsock_conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt; /* wraps like the counters */

	if (in_flight > c->peer_buf_alloc)
		return 0; /* the guest claims to have consumed more than we sent */
	return c->peer_buf_alloc - in_flight;
}

void vsock_conn_set_peer_credit(struct vsock_conn *c, uint32_t buf_alloc, uint32_t fwd_cnt)
{
	c->peer_buf_alloc = buf_alloc;
	c->peer_fwd_cnt = fwd_cnt;
}

bool vsock_conn_rx_fits(const struct vsock_conn *c, uint32_t len)
{
	uint32_t used = c->rx_cnt - c->last_fwd_sent;

	return used <= c->buf_alloc && len <= c->buf_alloc - used;
}

bool vsock_conn_wants_credit_update(const struct vsock_conn *c)
{
	return c->fwd_cnt - c->last_fwd_sent >= c->buf_alloc / 2;
}

int vsock_conn_out_append(struct vsock_conn *c, const struct iovec *iov, unsigned int iovcnt,
			  size_t len, bool counted)
{
	struct vsock_chunk *k;
	size_t done = 0;

	if (len == 0)
		return 0;
	if (len > UINT32_MAX)
		return -EINVAL;
	k = malloc(sizeof(*k) + len);
	if (!k)
		return -ENOMEM;
	for (unsigned int i = 0; i < iovcnt && done < len; i++) {
		size_t n = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;

		memcpy(k->data + done, iov[i].iov_base, n);
		done += n;
	}
	k->next = NULL;
	k->len = (uint32_t)done;
	k->off = 0;
	k->counted = counted;
	if (c->out_tail)
		c->out_tail->next = k;
	else
		c->out_head = k;
	c->out_tail = k;
	c->out_bytes += done;
	return 0;
}

int vsock_conn_out_prepend(struct vsock_conn *c, const void *data, size_t len)
{
	struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
	struct vsock_chunk *head = c->out_head, *tail = c->out_tail;
	size_t bytes = c->out_bytes;
	int ret;

	c->out_head = c->out_tail = NULL;
	c->out_bytes = 0;
	ret = vsock_conn_out_append(c, &iov, 1, len, false);
	if (ret < 0) {
		c->out_head = head;
		c->out_tail = tail;
		c->out_bytes = bytes;
		return ret;
	}
	if (head) {
		c->out_head->next = head;
		c->out_tail = tail;
	}
	c->out_bytes += bytes;
	return 0;
}

int vsock_conn_out_flush(struct vsock_conn *c)
{
	while (c->out_head) {
		struct vsock_chunk *k = c->out_head;
		ssize_t n;

		if (c->fd < 0)
			return -EPIPE;
		n = send(c->fd, k->data + k->off, k->len - k->off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return -EAGAIN;
			return -errno;
		}
		k->off += (uint32_t)n;
		c->out_bytes -= (size_t)n;
		if (k->counted)
			c->fwd_cnt += (uint32_t)n;
		if (k->off < k->len)
			return -EAGAIN; /* a short write: the socket is full */
		c->out_head = k->next;
		if (!c->out_head)
			c->out_tail = NULL;
		free(k);
	}
	return 0;
}

static size_t vsock_table_hash(uint32_t guest_port, uint32_t host_port)
{
	uint64_t k = ((uint64_t)guest_port << 32) | host_port;

	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	return (size_t)k & (VSOCK_TABLE_BUCKETS - 1);
}

int vsock_table_init(struct vsock_table *t)
{
	t->buckets = calloc(VSOCK_TABLE_BUCKETS, sizeof(*t->buckets));
	if (!t->buckets)
		return -ENOMEM;
	t->nbuckets = VSOCK_TABLE_BUCKETS;
	t->count = 0;
	return 0;
}

void vsock_table_release(struct vsock_table *t)
{
	free(t->buckets);
	t->buckets = NULL;
	t->nbuckets = 0;
	t->count = 0;
}

struct vsock_conn *vsock_table_find(const struct vsock_table *t, uint32_t guest_port,
				    uint32_t host_port)
{
	struct vsock_conn *c;

	if (!t->buckets)
		return NULL;
	for (c = t->buckets[vsock_table_hash(guest_port, host_port)]; c; c = c->hnext) {
		if (c->guest_port == guest_port && c->host_port == host_port)
			return c;
	}
	return NULL;
}

int vsock_table_insert(struct vsock_table *t, struct vsock_conn *c)
{
	size_t b;

	if (vsock_table_find(t, c->guest_port, c->host_port))
		return -EEXIST;
	b = vsock_table_hash(c->guest_port, c->host_port);
	c->hnext = t->buckets[b];
	t->buckets[b] = c;
	c->in_table = true;
	t->count++;
	return 0;
}

void vsock_table_remove(struct vsock_table *t, struct vsock_conn *c)
{
	struct vsock_conn **pp;

	if (!c->in_table)
		return;
	for (pp = &t->buckets[vsock_table_hash(c->guest_port, c->host_port)]; *pp;
	     pp = &(*pp)->hnext) {
		if (*pp == c) {
			*pp = c->hnext;
			c->hnext = NULL;
			c->in_table = false;
			t->count--;
			return;
		}
	}
}
