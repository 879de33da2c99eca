/* agentconn.c - a connection to kiln-init's agent through kiln-vmm's
 * hybrid vsock socket. */
#include "daemon/agentconn.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon/util.h"

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
	size_t n = *cap ? *cap : 4096;
	uint8_t *nb;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	nb = realloc(*buf, n);
	if (!nb)
		return -ENOMEM;
	*buf = nb;
	*cap = n;
	return 0;
}

int agentconn_send(struct agentconn *c, const void *buf, size_t len)
{
	if (c->out_off && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (grow(&c->out, &c->out_cap, c->out_len + len))
		return -ENOMEM;
	memcpy(c->out + c->out_len, buf, len);
	c->out_len += len;
	return 0;
}

int agentconn_open(const char *uds_path, uint32_t port, struct agentconn **out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct agentconn *c;
	char line[32];
	int r;

	if (strlen(uds_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		r = -errno;
		free(c);
		return r;
	}
	strcpy(sa.sun_path, uds_path);
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) && errno != EINPROGRESS &&
	    errno != EAGAIN) {
		r = -errno;
		goto out_close;
	}
	snprintf(line, sizeof(line), "CONNECT %u\n", port);
	r = agentconn_send(c, line, strlen(line));
	if (r)
		goto out_close;
	c->state = AGENTCONN_HANDSHAKE;
	*out = c;
	return 0;

out_close:
	close(c->fd);
	free(c);
	return r;
}

void agentconn_destroy(struct agentconn *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
}

static int fail(struct agentconn *c, int err)
{
	if (c->state != AGENTCONN_CLOSED) {
		c->state = AGENTCONN_CLOSED;
		c->error = err;
	}
	return c->error;
}

bool agentconn_want_write(const struct agentconn *c)
{
	return c->state != AGENTCONN_CLOSED && c->out_off < c->out_len;
}

/* The handshake reply: "OK <port>\n" or anything else (an error). */
static int handshake(struct agentconn *c)
{
	uint8_t *nl = memchr(c->in + c->in_off, '\n', c->in_len - c->in_off);
	size_t n;

	if (!nl)
		return c->in_len - c->in_off > 64 ? fail(c, -EBADMSG) : 0;
	n = (size_t)(nl - (c->in + c->in_off));
	if (n < 3 || memcmp(c->in + c->in_off, "OK ", 3))
		return fail(c, -ECONNREFUSED);
	c->in_off += n + 1;
	c->state = AGENTCONN_OPEN;
	c->handshake_seen = true;
	return 0;
}

int agentconn_io(struct agentconn *c)
{
	if (c->state == AGENTCONN_CLOSED)
		return c->error;
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR || errno == ENOTCONN)
				break;
			return fail(c, -errno);
		}
		c->out_off += (size_t)n;
	}
	/* At most AGENTCONN_READ_BURST per call: a guest that never stops
	 * sending gets its turn again from the (level-triggered) loop, after
	 * the other VMs, and its buffer stays bounded. */
	for (size_t got = 0; got < AGENTCONN_READ_BURST;) {
		ssize_t n;
		if (c->in_off && c->in_off == c->in_len)
			c->in_off = c->in_len = 0;
		if (c->in_off > (1 << 20)) {
			memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
			c->in_len -= c->in_off;
			c->in_off = 0;
		}
		if (grow(&c->in, &c->in_cap, c->in_len + 65536))
			return fail(c, -ENOMEM);
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			return fail(c, -errno);
		}
		if (n == 0) {
			/* Frames already buffered can still be taken. */
			if (c->state == AGENTCONN_HANDSHAKE)
				return fail(c, -ECONNRESET);
			c->state = AGENTCONN_CLOSED;
			c->error = -ECONNRESET;
			break;
		}
		c->in_len += (size_t)n;
		got += (size_t)n;
	}
	if (c->state == AGENTCONN_HANDSHAKE)
		return handshake(c);
	return 0;
}

int agentconn_frame(struct agentconn *c, struct proto_header *h, const uint8_t **payload)
{
	ssize_t n;

	if (!c->handshake_seen)
		return 0;
	n = proto_parse_frame(c->in + c->in_off, c->in_len - c->in_off, h, payload);
	if (n == -EAGAIN)
		return 0;
	if (n < 0) {
		fail(c, -EBADMSG);
		return -EBADMSG;
	}
	c->in_off += (size_t)n;
	return 1;
}

ssize_t agentconn_encode_reseed(void *buf, size_t size, uint32_t id)
{
	uint8_t rnd[64];
	ssize_t n, m;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return -EIO;
	n = proto_encode_raw(buf, size, PROTO_ENTROPY, id, rnd, sizeof(rnd));
	if (n < 0)
		return n;
	m = proto_encode_time((uint8_t *)buf + n, size - (size_t)n, id + 1,
			      (uint64_t)util_wall_ns());
	return m < 0 ? m : n + m;
}

int agentconn_send_reseed(struct agentconn *c, uint32_t id)
{
	uint8_t buf[AGENTCONN_RESEED_MAX];
	ssize_t n = agentconn_encode_reseed(buf, sizeof(buf), id);

	return n < 0 ? (int)n : agentconn_send(c, buf, (size_t)n);
}

int agentconn_wait(struct agentconn *c, struct proto_header *h, const uint8_t **payload,
		   int timeout_ms)
{
	int64_t deadline = util_now_ms() + timeout_ms;

	for (;;) {
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		int r = agentconn_frame(c, h, payload);
		int64_t left;

		if (r)
			return r;
		if (c->state == AGENTCONN_CLOSED)
			return c->error;
		left = deadline - util_now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		if (agentconn_want_write(c))
			p.events |= POLLOUT;
		poll(&p, 1, (int)(left > 100 ? 100 : left));
		r = agentconn_io(c);
		if (r && c->state == AGENTCONN_CLOSED && !c->handshake_seen)
			return r;
	}
}
