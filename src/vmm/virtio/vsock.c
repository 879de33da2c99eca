/* vsock.c - the virtio-vsock device: packets on the virtqueues, connections
 * to unix sockets on the host (see vsock.h and docs/vsock.md).
 *
 * Scheduling of the rx queue (device → guest), in this order, one packet per
 * guest buffer:
 *   1. RSTs for connections that no longer exist (a bounded ring of ports);
 *   2. control packets connections owe (REQUEST, RESPONSE, CREDIT_UPDATE,
 *      SHUTDOWN), so data never starves them;
 *   3. data: connections whose unix socket is readable and whose guest has
 *      credit, round robin, one packet each per turn, read straight from the
 *      unix socket into the guest's buffer.
 * When the guest has no rx buffer, everything stays queued and resumes on
 * the rx queue's notification. A connection with nothing to send and credit
 * to send with watches EPOLLIN; one without credit does not (so the loop does
 * not spin) until a guest packet gives credit back.
 *
 * Guest → host bytes are written to the unix socket at once when it takes
 * them, else buffered on the connection (at most the window we advertised:
 * a guest that sends beyond it is reset) and flushed on EPOLLOUT.
 *
 * Everything runs on the event loop thread. Functions that may free a
 * connection return false when they did.
 */
#include "vmm/virtio/vsock.h"

#include "common/clock.h"
#include "common/le.h"
#include "common/log.h"
#include "common/reason.h"
#include "common/unixsock.h"
#include "vmm/virtio/vsock_conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define VSOCK_QUEUE_MAX	   256	/* entries per queue offered to the driver */
#define VSOCK_RST_RING	   1024 /* RSTs owed for connections already gone */
#define VSOCK_ACCEPT_BURST 64	/* accepts per listener event */
#define VSOCK_TICK_MS	   100	/* timer period while a deadline is pending */

/* Snapshot section: the connection list is replaced by this count when the
 * guest may hold more connections than fit the RST ring (or, in a section
 * written before the list existed, implied): a restore then resets the whole
 * transport instead of each connection. */
#define VSOCK_SAVED_ALL	       0xffffffffU
#define VSOCK_LEGACY_HOST_PORT (1U << 31) /* host ports after restoring an old section */

struct vsock_rst {
	uint32_t guest_port, host_port;
};

struct virtio_vsock {
	struct evloop *loop;
	uint64_t guest_cid;
	char *uds_path;
	uint32_t buf_alloc;
	unsigned int max_conns, connect_ms, close_ms;

	int listen_fd;
	bool listen_watched;
	bool listen_paused; /* out of fds: stopped accepting until one is freed */
	bool listen_owned;  /* we bound uds_path: unlink it on destroy */
	ino_t listen_ino;
	int timer_fd;
	bool timer_armed;

	struct virtio_mmio *mmio; /* from virtio_vsock_attach, or NULL */
	struct virtio_vsock_queues qs;
	bool bound;

	struct vsock_table table;
	struct vsock_list all;	/* every connection */
	struct vsock_list ctrl; /* connections owing a control packet */
	struct vsock_list data; /* connections with bytes for the guest */
	unsigned int nconns;
	uint32_t next_host_port;

	struct vsock_rst rst[VSOCK_RST_RING];
	unsigned int rst_head, rst_count;
	bool event_pending; /* TRANSPORT_RESET waits for an event buffer */
	/* After a TRANSPORT_RESET: until the guest has handled it, the rx queue
	 * carries nothing but RSTs (a connection the guest accepted before
	 * handling the event would be dropped by it). The guest has handled it
	 * once it put an event buffer back: the event queue's available index
	 * moved away from `reset_avail`, read when the event was posted. */
	bool reset_wait;
	uint16_t reset_avail;

	struct virtq_chain rx_chain; /* popped rx buffer not used yet */
	bool rx_held;
	/* A restore loaded a section without the connection list: the
	 * transport is reset once the restore is complete. */
	bool reset_on_restore;
	struct virtq_chain tx_chain;
	struct virtq_chain ev_chain;
	struct iovec iov[VIRTQ_MAX_CHAIN]; /* scratch slice of a chain */
};

static void vsock_conn_event(void *opaque, uint32_t events);
static bool vsock_conn_sync(struct virtio_vsock *v, struct vsock_conn *c);
static bool vsock_check_reset_done(struct virtio_vsock *v);

static struct virtq *vsock_queue(struct virtio_vsock *v, unsigned int q)
{
	return v->bound ? v->qs.q[q] : NULL;
}

static void vsock_set_broken(struct virtio_vsock *v, const char *why)
{
	if (v->bound && v->qs.set_broken)
		v->qs.set_broken(v->qs.opaque, why);
	else
		log_warn("virtio-vsock: %s", why);
}

static void vsock_notify(struct virtio_vsock *v, unsigned int q)
{
	if (v->bound && v->qs.notify_used)
		v->qs.notify_used(v->qs.opaque, q);
}

/* ---- timers ---------------------------------------------------------- */

static void vsock_timer_arm(struct virtio_vsock *v, bool on)
{
	struct itimerspec its = {0};

	if (v->timer_armed == on)
		return;
	if (on) {
		its.it_interval.tv_nsec = VSOCK_TICK_MS * 1000000L;
		its.it_value = its.it_interval;
	}
	if (timerfd_settime(v->timer_fd, 0, &its, NULL) < 0) {
		log_warn("virtio-vsock: timerfd_settime: %s", strerror(errno));
		return;
	}
	v->timer_armed = on;
}

static void vsock_set_deadline(struct virtio_vsock *v, struct vsock_conn *c, unsigned int ms)
{
	c->deadline_ns = ms ? clock_mono_ns() + (uint64_t)ms * 1000000ULL : 0;
	if (ms)
		vsock_timer_arm(v, true);
}

/* ---- connection lifecycle -------------------------------------------- */

static void vsock_listen_resume(struct virtio_vsock *v)
{
	if (v->listen_paused && evloop_mod(v->loop, v->listen_fd, EPOLLIN) == 0)
		v->listen_paused = false;
}

static void vsock_conn_free(struct virtio_vsock *v, struct vsock_conn *c)
{
	vsock_table_remove(&v->table, c);
	vsock_list_del(&c->all);
	vsock_list_del(&c->ctrl);
	vsock_list_del(&c->data);
	v->nconns--;
	vsock_conn_destroy(c);
	vsock_listen_resume(v);
}

static void vsock_queue_rst(struct virtio_vsock *v, uint32_t guest_port, uint32_t host_port)
{
	if (v->rst_count == VSOCK_RST_RING) {
		log_debug("virtio-vsock: RST ring full; dropping RST for %u:%u", guest_port,
			  host_port);
		return;
	}
	v->rst[(v->rst_head + v->rst_count) % VSOCK_RST_RING] =
		(struct vsock_rst){.guest_port = guest_port, .host_port = host_port};
	v->rst_count++;
}

/* Ends a connection: the guest gets an RST (unless it never heard of it),
 * the unix side is closed. `why` is NULL for an orderly end. */
static void vsock_conn_reset(struct virtio_vsock *v, struct vsock_conn *c, const char *why)
{
	if (why)
		log_debug("virtio-vsock: reset guest port %u / host port %u: %s", c->guest_port,
			  c->host_port, why);
	if (c->state != VSOCK_CONN_HOST_LINE)
		vsock_queue_rst(v, c->guest_port, c->host_port);
	vsock_conn_free(v, c);
}

static void vsock_conn_owe(struct virtio_vsock *v, struct vsock_conn *c, uint32_t what)
{
	c->pending |= what;
	if (!vsock_list_linked(&c->ctrl))
		vsock_list_add_tail(&v->ctrl, &c->ctrl);
}

static struct vsock_conn *vsock_conn_new(struct virtio_vsock *v, int fd,
					 enum vsock_conn_state state)
{
	struct vsock_conn *c = vsock_conn_create(v->loop, fd, state, v->buf_alloc);

	if (!c)
		return NULL;
	c->owner = v;
	vsock_list_add_tail(&v->all, &c->all);
	v->nconns++;
	return c;
}

/* Recomputes what epoll watches and whether the connection is on the data
 * list. Returns false when it had to reset (and free) the connection. */
static bool vsock_conn_sync(struct virtio_vsock *v, struct vsock_conn *c)
{
	uint32_t events = 0;
	bool can_send;
	int ret;

	switch (c->state) {
	case VSOCK_CONN_HOST_LINE:
		events = EPOLLIN;
		break;
	case VSOCK_CONN_GUEST_CONNECT:
		events = EPOLLOUT;
		break;
	case VSOCK_CONN_HOST_REQUEST:
		events = 0; /* only hang-ups: nothing is read before the guest accepts */
		break;
	case VSOCK_CONN_CLOSING:
		events = UINT32_MAX;
		break;
	case VSOCK_CONN_PARKED:
		vsock_list_del(&c->data);
		return true; /* no unix socket to watch */
	case VSOCK_CONN_ESTABLISHED:
		can_send = !c->rd_eof && !(c->guest_shutdown & VSOCK_SHUTDOWN_RCV) &&
			   vsock_conn_peer_credit(c) > 0;
		if (can_send && c->readable) {
			if (!vsock_list_linked(&c->data))
				vsock_list_add_tail(&v->data, &c->data);
		} else {
			vsock_list_del(&c->data);
		}
		if (c->hup)
			events = UINT32_MAX; /* epoll has nothing more to tell */
		else
			events = (can_send && !c->readable ? EPOLLIN : 0) |
				 (c->out_bytes ? EPOLLOUT : 0);
		break;
	}
	ret = vsock_conn_watch(c, events, vsock_conn_event, c);
	if (ret < 0) {
		log_warn("virtio-vsock: cannot watch a unix socket: %s", strerror(-ret));
		vsock_conn_reset(v, c, "event loop failure");
		return false;
	}
	return true;
}

/* Writes what the unix socket takes; owes a credit update when due. */
static bool vsock_conn_flush(struct virtio_vsock *v, struct vsock_conn *c)
{
	int ret = vsock_conn_out_flush(c);

	if (ret < 0 && ret != -EAGAIN) {
		vsock_conn_reset(v, c, "unix socket write failed");
		return false;
	}
	if (vsock_conn_wants_credit_update(c))
		vsock_conn_owe(v, c, VSOCK_PEND_CREDIT);
	return true;
}

/* Applies shutdowns once buffered data is out and ends the connection when
 * neither side sends any more. */
static bool vsock_conn_check_done(struct virtio_vsock *v, struct vsock_conn *c)
{
	bool host_done, guest_done;

	if (c->state != VSOCK_CONN_ESTABLISHED)
		return true;
	if ((c->guest_shutdown & VSOCK_SHUTDOWN_SEND) && !c->out_bytes && !c->wr_shut &&
	    c->fd >= 0) {
		shutdown(c->fd, SHUT_WR);
		c->wr_shut = true;
	}
	if ((c->guest_shutdown & VSOCK_SHUTDOWN_RCV) && !c->rd_shut && c->fd >= 0) {
		shutdown(c->fd, SHUT_RD);
		c->rd_shut = true;
	}
	host_done = c->rd_eof || (c->guest_shutdown & VSOCK_SHUTDOWN_RCV);
	guest_done = (c->guest_shutdown & VSOCK_SHUTDOWN_SEND) && !c->out_bytes;
	if (host_done && guest_done) {
		vsock_conn_reset(v, c, NULL);
		return false;
	}
	if (c->rd_eof && c->hup && !c->out_bytes) {
		/* The host process closed its socket: tell the guest nothing
		 * more goes either way and wait for its RST. */
		vsock_conn_close_fd(c);
		c->state = VSOCK_CONN_CLOSING;
		c->shutdown_flags |= VSOCK_SHUTDOWN_BOTH;
		vsock_conn_owe(v, c, VSOCK_PEND_SHUTDOWN);
		vsock_list_del(&c->data);
		vsock_set_deadline(v, c, v->close_ms);
	}
	return true;
}

/* ---- the host side: listener, CONNECT line, guest-initiated connect ---- */

static uint32_t vsock_alloc_host_port(struct virtio_vsock *v, uint32_t guest_port)
{
	for (;;) {
		uint32_t p = v->next_host_port;

		v->next_host_port = p == UINT32_MAX ? VSOCK_HOST_PORT_FIRST : p + 1;
		if (!vsock_table_find(&v->table, guest_port, p))
			return p; /* terminates: the table holds fewer than 2^30 entries */
	}
}

/* A host client's CONNECT names a guest port that has a parked connection
 * (a snapshot held it open for a host client, and the guest still has it):
 * the client takes that stream over at once, with no REQUEST, since the
 * guest's side is already established. Returns true when it did: `c` is
 * then freed and its socket belongs to the parked connection. */
static bool vsock_claim_parked(struct virtio_vsock *v, struct vsock_conn *c, uint32_t port)
{
	struct vsock_conn *p = NULL;
	char ok[24];
	int fd, n;

	for (struct vsock_list *l = v->all.next; l != &v->all && !p; l = l->next) {
		struct vsock_conn *x = vsock_list_entry(l, struct vsock_conn, all);

		if (x->state == VSOCK_CONN_PARKED && x->guest_port == port)
			p = x;
	}
	if (!p)
		return false;
	n = snprintf(ok, sizeof(ok), "OK %u\n", p->host_port);
	/* In front of anything the guest sent while it was parked. */
	if (vsock_conn_out_prepend(p, ok, (size_t)n) < 0)
		return false; /* a new connection instead */
	vsock_conn_watch(c, UINT32_MAX, NULL, NULL);
	fd = c->fd;
	c->fd = -1;
	vsock_conn_free(v, c);
	p->fd = fd;
	p->state = VSOCK_CONN_ESTABLISHED;
	log_debug("virtio-vsock: a host client took over parked guest port %u / host port %u",
		  p->guest_port, p->host_port);
	if (vsock_conn_flush(v, p))
		vsock_conn_sync(v, p);
	return true;
}

static void vsock_host_line(struct virtio_vsock *v, struct vsock_conn *c)
{
	for (;;) {
		uint32_t port;
		ssize_t n;
		int ret;

		n = read(c->fd, c->line + c->line_len, 1); /* never past the newline */
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			vsock_conn_free(v, c);
			return;
		}
		c->line_len++;
		ret = vsock_parse_connect(c->line, c->line_len, &port);
		if (ret < 0) {
			log_debug("virtio-vsock: bad CONNECT line from a host client; closing");
			vsock_conn_free(v, c);
			return;
		}
		if (ret == 0)
			continue;
		if (vsock_claim_parked(v, c, port))
			return;
		c->guest_port = port;
		c->host_initiated = true;
		c->host_port = vsock_alloc_host_port(v, port);
		vsock_table_insert(&v->table, c);
		c->state = VSOCK_CONN_HOST_REQUEST;
		vsock_set_deadline(v, c, v->connect_ms);
		vsock_conn_owe(v, c, VSOCK_PEND_REQUEST);
		vsock_conn_sync(v, c);
		return;
	}
}

static void vsock_accept(void *opaque, uint32_t events)
{
	struct virtio_vsock *v = opaque;

	(void)events;
	for (int i = 0; i < VSOCK_ACCEPT_BURST; i++) {
		struct vsock_conn *c;
		int fd = accept4(v->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOMEM ||
			    errno == ENOBUFS) {
				log_warn("virtio-vsock: accept: %s; pausing", strerror(errno));
				if (evloop_mod(v->loop, v->listen_fd, 0) == 0)
					v->listen_paused = true;
			}
			return;
		}
		if (v->nconns >= v->max_conns) {
			log_debug("virtio-vsock: %u connections; refusing a host client",
				  v->nconns);
			close(fd);
			continue;
		}
		c = vsock_conn_new(v, fd, VSOCK_CONN_HOST_LINE);
		if (!c) {
			close(fd);
			continue;
		}
		vsock_set_deadline(v, c, v->connect_ms);
		vsock_conn_sync(v, c);
	}
}

static void vsock_guest_connect_done(struct virtio_vsock *v, struct vsock_conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		vsock_conn_reset(v, c, "connect to the host socket failed");
		return;
	}
	c->state = VSOCK_CONN_ESTABLISHED;
	vsock_set_deadline(v, c, 0);
	vsock_conn_owe(v, c, VSOCK_PEND_RESPONSE);
	vsock_conn_sync(v, c);
}

/* The guest asks for host port `h->dst_port`: connect to "<uds_path>_<port>". */
static void vsock_guest_request(struct virtio_vsock *v, const struct vsock_hdr *h)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct vsock_conn *c;
	int fd, ret;

	if (v->nconns >= v->max_conns) {
		log_debug("virtio-vsock: %u connections; refusing the guest", v->nconns);
		goto out_rst;
	}
	ret = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", v->uds_path, h->dst_port);
	if (ret < 0 || (size_t)ret >= sizeof(sa.sun_path))
		goto out_rst;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto out_rst;
	ret = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (ret < 0 && errno != EINPROGRESS) {
		log_debug("virtio-vsock: guest port %u -> %s: %s", h->src_port, sa.sun_path,
			  strerror(errno));
		goto out_close_fd;
	}
	c = vsock_conn_new(v, fd, ret == 0 ? VSOCK_CONN_ESTABLISHED : VSOCK_CONN_GUEST_CONNECT);
	if (!c)
		goto out_close_fd;
	c->guest_port = h->src_port;
	c->host_port = h->dst_port;
	vsock_conn_set_peer_credit(c, h->buf_alloc, h->fwd_cnt);
	vsock_table_insert(&v->table, c); /* the caller checked the key is free */
	if (ret == 0)
		vsock_conn_owe(v, c, VSOCK_PEND_RESPONSE);
	else
		vsock_set_deadline(v, c, v->connect_ms);
	vsock_conn_sync(v, c);
	return;

out_close_fd:
	close(fd);
out_rst:
	vsock_queue_rst(v, h->src_port, h->dst_port);
}

/* ---- unix socket events ---------------------------------------------- */

static void vsock_conn_io(struct virtio_vsock *v, struct vsock_conn *c, uint32_t events)
{
	if (events & EPOLLERR) {
		vsock_conn_reset(v, c, "unix socket error");
		return;
	}
	if (events & EPOLLHUP)
		c->hup = true;
	if (events & (EPOLLIN | EPOLLHUP))
		c->readable = true;
	if ((events & (EPOLLOUT | EPOLLHUP)) && c->out_bytes) {
		if (!vsock_conn_flush(v, c))
			return;
	}
	if (!vsock_conn_check_done(v, c))
		return;
	vsock_conn_sync(v, c);
}

static void vsock_process_rx(struct virtio_vsock *v);

static void vsock_conn_event(void *opaque, uint32_t events)
{
	struct vsock_conn *c = opaque;
	struct virtio_vsock *v = c->owner;

	switch (c->state) {
	case VSOCK_CONN_HOST_LINE:
		if (events & EPOLLERR)
			vsock_conn_free(v, c);
		else
			vsock_host_line(v, c);
		break;
	case VSOCK_CONN_GUEST_CONNECT:
		vsock_guest_connect_done(v, c);
		break;
	case VSOCK_CONN_HOST_REQUEST:
		if (events & (EPOLLHUP | EPOLLERR))
			vsock_conn_reset(v, c, "host client left before the guest answered");
		break;
	case VSOCK_CONN_ESTABLISHED:
		vsock_conn_io(v, c, events);
		break;
	case VSOCK_CONN_CLOSING:
	case VSOCK_CONN_PARKED:
		break;
	}
	vsock_process_rx(v);
}

static void vsock_timer_event(void *opaque, uint32_t events)
{
	struct virtio_vsock *v = opaque;
	uint64_t now = clock_mono_ns(), ticks;
	struct vsock_list *n, *next;
	bool any = false;

	(void)events;
	if (read(v->timer_fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		log_debug("virtio-vsock: timerfd read: %s", strerror(errno));
	for (n = v->all.next; n != &v->all; n = next) {
		struct vsock_conn *c = vsock_list_entry(n, struct vsock_conn, all);

		next = n->next;
		if (!c->deadline_ns)
			continue;
		if (now < c->deadline_ns) {
			any = true;
			continue;
		}
		if (c->state == VSOCK_CONN_HOST_LINE)
			vsock_conn_free(v, c); /* the client never sent its line */
		else
			vsock_conn_reset(v, c, "timed out");
	}
	if (!any)
		vsock_timer_arm(v, false);
	vsock_check_reset_done(v);
	vsock_process_rx(v);
}

/* ---- rx: device → guest ---------------------------------------------- */

/* Collects in v->iov the part [off, off + len) of the chain's segments
 * first..first+num. Returns how many iovecs it used. */
static unsigned int vsock_slice(struct virtio_vsock *v, const struct iovec *segs, unsigned int num,
				size_t off, size_t len)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < num && len; i++) {
		size_t seg = segs[i].iov_len, take;

		if (off >= seg) {
			off -= seg;
			continue;
		}
		take = seg - off < len ? seg - off : len;
		v->iov[n++] = (struct iovec){.iov_base = (uint8_t *)segs[i].iov_base + off,
					     .iov_len = take};
		len -= take;
		off = 0;
	}
	return n;
}

static void vsock_hdr_for(struct virtio_vsock *v, struct vsock_conn *c, struct vsock_hdr *h,
			  uint16_t op)
{
	*h = (struct vsock_hdr){
		.src_cid = VSOCK_HOST_CID,
		.dst_cid = v->guest_cid,
		.src_port = c->host_port,
		.dst_port = c->guest_port,
		.type = VSOCK_TYPE_STREAM,
		.op = op,
		.buf_alloc = c->buf_alloc,
		.fwd_cnt = c->fwd_cnt,
	};
	/* Every packet tells the guest our credit. */
	c->last_fwd_sent = c->fwd_cnt;
	c->pending &= ~VSOCK_PEND_CREDIT;
	if (!c->pending)
		vsock_list_del(&c->ctrl);
}

static uint32_t vsock_put_hdr(struct virtq_chain *ch, const struct vsock_hdr *h)
{
	uint8_t raw[VSOCK_HDR_SIZE];

	vsock_hdr_encode(h, raw);
	virtq_chain_write(ch, 0, raw, sizeof(raw));
	return VSOCK_HDR_SIZE + h->len;
}

/* Builds the next control packet of the first connection on the ctrl list. */
static uint32_t vsock_rx_ctrl(struct virtio_vsock *v, struct virtq_chain *ch)
{
	struct vsock_conn *c = vsock_list_entry(v->ctrl.next, struct vsock_conn, ctrl);
	struct vsock_hdr h;
	uint16_t op;

	if (c->pending & VSOCK_PEND_REQUEST) {
		op = VSOCK_OP_REQUEST;
		c->pending &= ~VSOCK_PEND_REQUEST;
	} else if (c->pending & VSOCK_PEND_RESPONSE) {
		op = VSOCK_OP_RESPONSE;
		c->pending &= ~VSOCK_PEND_RESPONSE;
	} else if (c->pending & VSOCK_PEND_SHUTDOWN) {
		op = VSOCK_OP_SHUTDOWN;
		c->pending &= ~VSOCK_PEND_SHUTDOWN;
	} else {
		op = VSOCK_OP_CREDIT_UPDATE; /* cleared by vsock_hdr_for */
	}
	vsock_hdr_for(v, c, &h, op);
	if (op == VSOCK_OP_SHUTDOWN)
		h.flags = c->shutdown_flags;
	return vsock_put_hdr(ch, &h);
}

/* Reads the first data connection's unix socket into the buffer. Returns the
 * bytes used, or 0 when it produced no packet (the buffer stays ours). */
static uint32_t vsock_rx_data(struct virtio_vsock *v, struct virtq_chain *ch)
{
	struct vsock_conn *c = vsock_list_entry(v->data.next, struct vsock_conn, data);
	uint64_t room = ch->in_len - VSOCK_HDR_SIZE;
	uint32_t credit = vsock_conn_peer_credit(c), want;
	struct vsock_hdr h;
	unsigned int n;
	ssize_t r;

	vsock_list_del(&c->data); /* back at the tail after this turn */
	want = credit < VSOCK_MAX_PAYLOAD ? credit : VSOCK_MAX_PAYLOAD;
	if (room < want)
		want = (uint32_t)room;
	if (want == 0 && credit) {
		/* A buffer with room for a header only: use it for a credit
		 * update, so every turn consumes a buffer. */
		vsock_hdr_for(v, c, &h, VSOCK_OP_CREDIT_UPDATE);
		vsock_conn_sync(v, c);
		return vsock_put_hdr(ch, &h);
	}
	if (want == 0) {
		vsock_conn_sync(v, c);
		return 0;
	}
	n = vsock_slice(v, ch->iov + ch->out_num, ch->in_num, VSOCK_HDR_SIZE, want);
	r = readv(c->fd, v->iov, (int)n);
	if (r > 0) {
		vsock_hdr_for(v, c, &h, VSOCK_OP_RW);
		h.len = (uint32_t)r;
		c->tx_cnt += (uint32_t)r;
		vsock_conn_sync(v, c);
		return vsock_put_hdr(ch, &h);
	}
	if (r == 0) {
		c->rd_eof = true;
		c->readable = false;
		c->shutdown_flags |= VSOCK_SHUTDOWN_SEND | (c->hup ? VSOCK_SHUTDOWN_RCV : 0);
		vsock_conn_owe(v, c, VSOCK_PEND_SHUTDOWN);
		if (vsock_conn_check_done(v, c))
			vsock_conn_sync(v, c);
		return 0;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
		c->readable = errno == EINTR;
		vsock_conn_sync(v, c);
		return 0;
	}
	vsock_conn_reset(v, c, "unix socket read failed");
	return 0;
}

static bool vsock_rx_has_work(const struct virtio_vsock *v)
{
	if (v->rst_count)
		return true;
	return !v->reset_wait && (!vsock_list_empty(&v->ctrl) || !vsock_list_empty(&v->data));
}

static void vsock_process_rx(struct virtio_vsock *v)
{
	struct virtq *q = vsock_queue(v, VSOCK_QUEUE_RX);
	struct virtq_chain *ch = &v->rx_chain;
	bool pushed = false;

	if (!q || !virtq_usable(q))
		return;
	while (vsock_rx_has_work(v)) {
		uint32_t used;

		if (!v->rx_held) {
			int r = virtq_pop(q, ch);

			if (r == 0)
				break; /* resumes on the rx queue's notification */
			if (r < 0) {
				vsock_set_broken(v, "malformed rx queue");
				break;
			}
			if (ch->in_len < VSOCK_HDR_SIZE || ch->out_num) {
				vsock_set_broken(v, "rx buffer without room for a header");
				break;
			}
			v->rx_held = true;
		}
		if (v->rst_count) {
			struct vsock_rst *r = &v->rst[v->rst_head];
			struct vsock_hdr h = {
				.src_cid = VSOCK_HOST_CID,
				.dst_cid = v->guest_cid,
				.src_port = r->host_port,
				.dst_port = r->guest_port,
				.type = VSOCK_TYPE_STREAM,
				.op = VSOCK_OP_RST,
			};

			v->rst_head = (v->rst_head + 1) % VSOCK_RST_RING;
			v->rst_count--;
			used = vsock_put_hdr(ch, &h);
		} else if (!vsock_list_empty(&v->ctrl)) {
			used = vsock_rx_ctrl(v, ch);
		} else {
			used = vsock_rx_data(v, ch);
		}
		if (!used)
			continue;
		v->rx_held = false;
		if (virtq_push(q, ch->head, used) < 0) {
			vsock_set_broken(v, "rx queue broken");
			break;
		}
		pushed = true;
	}
	if (pushed)
		vsock_notify(v, VSOCK_QUEUE_RX);
}

/* ---- tx: guest → device ---------------------------------------------- */

static bool vsock_rx_guest_data(struct virtio_vsock *v, struct vsock_conn *c,
				const struct virtq_chain *ch, uint32_t len)
{
	size_t off = VSOCK_HDR_SIZE, left = len;
	unsigned int n;

	bool parked = c->state == VSOCK_CONN_PARKED;

	/* A parked connection keeps what the guest sends for the client that
	 * claims it (within the window it was given). */
	if ((c->state != VSOCK_CONN_ESTABLISHED && !parked) ||
	    (c->guest_shutdown & VSOCK_SHUTDOWN_SEND) || c->wr_shut || (c->fd < 0 && !parked)) {
		vsock_conn_reset(v, c, "data the host side cannot take");
		return false;
	}
	if (!vsock_conn_rx_fits(c, len)) {
		vsock_conn_reset(v, c, "guest sent beyond its credit");
		return false;
	}
	c->rx_cnt += len;
	if (len == 0)
		return true;
	if (!c->out_bytes && !parked) {
		struct msghdr msg = {0};
		ssize_t w;

		msg.msg_iov = v->iov;
		msg.msg_iovlen = vsock_slice(v, ch->iov, ch->out_num, off, left);
		do {
			w = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		} while (w < 0 && errno == EINTR);
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			vsock_conn_reset(v, c, "unix socket write failed");
			return false;
		}
		if (w > 0) {
			c->fwd_cnt += (uint32_t)w;
			off += (size_t)w;
			left -= (size_t)w;
		}
	}
	if (left) {
		n = vsock_slice(v, ch->iov, ch->out_num, off, left);
		if (vsock_conn_out_append(c, v->iov, n, left, true) < 0) {
			vsock_conn_reset(v, c, "out of memory");
			return false;
		}
	}
	if (vsock_conn_wants_credit_update(c))
		vsock_conn_owe(v, c, VSOCK_PEND_CREDIT);
	return true;
}

static bool vsock_rx_guest_shutdown(struct virtio_vsock *v, struct vsock_conn *c, uint32_t flags)
{
	if (c->state != VSOCK_CONN_ESTABLISHED) {
		/* CLOSING: the guest closes too; PARKED: the guest closed a
		 * stream nobody has claimed; anything else is out of turn. */
		vsock_conn_reset(v, c,
				 c->state == VSOCK_CONN_CLOSING || c->state == VSOCK_CONN_PARKED
					 ? NULL
					 : "early SHUTDOWN");
		return false;
	}
	c->guest_shutdown |= flags & VSOCK_SHUTDOWN_BOTH;
	if (c->guest_shutdown == VSOCK_SHUTDOWN_BOTH && c->out_bytes && !c->deadline_ns)
		vsock_set_deadline(v, c, v->close_ms);
	return vsock_conn_check_done(v, c);
}

static bool vsock_rx_guest_response(struct virtio_vsock *v, struct vsock_conn *c)
{
	char ok[24];
	struct iovec iov;
	int n;

	if (c->state != VSOCK_CONN_HOST_REQUEST) {
		vsock_conn_reset(v, c, "unexpected RESPONSE");
		return false;
	}
	c->state = VSOCK_CONN_ESTABLISHED;
	vsock_set_deadline(v, c, 0);
	n = snprintf(ok, sizeof(ok), "OK %u\n", c->host_port);
	iov = (struct iovec){.iov_base = ok, .iov_len = (size_t)n};
	if (vsock_conn_out_append(c, &iov, 1, (size_t)n, false) < 0) {
		vsock_conn_reset(v, c, "out of memory");
		return false;
	}
	return vsock_conn_flush(v, c);
}

/* Acts on one packet from the guest for an existing connection. */
static void vsock_rx_guest_packet(struct virtio_vsock *v, struct vsock_conn *c,
				  const struct vsock_hdr *h, const struct virtq_chain *ch)
{
	bool alive = true;

	vsock_conn_set_peer_credit(c, h->buf_alloc, h->fwd_cnt);
	switch (h->op) {
	case VSOCK_OP_RESPONSE:
		alive = vsock_rx_guest_response(v, c);
		break;
	case VSOCK_OP_RST:
		vsock_conn_free(v, c);
		return;
	case VSOCK_OP_SHUTDOWN:
		alive = vsock_rx_guest_shutdown(v, c, h->flags);
		break;
	case VSOCK_OP_RW:
		if (c->state == VSOCK_CONN_CLOSING) {
			vsock_conn_reset(v, c, NULL); /* nobody left to read it */
			return;
		}
		alive = vsock_rx_guest_data(v, c, ch, h->len);
		break;
	case VSOCK_OP_CREDIT_UPDATE:
		break;
	case VSOCK_OP_CREDIT_REQUEST:
		if (c->state == VSOCK_CONN_ESTABLISHED || c->state == VSOCK_CONN_PARKED)
			vsock_conn_owe(v, c, VSOCK_PEND_CREDIT);
		break;
	case VSOCK_OP_REQUEST: /* for a connection that exists */
	default:
		vsock_conn_reset(v, c, "unexpected op");
		return;
	}
	if (alive)
		vsock_conn_sync(v, c);
}

static void vsock_tx_one(struct virtio_vsock *v, const struct virtq_chain *ch)
{
	uint8_t raw[VSOCK_HDR_SIZE];
	struct vsock_conn *c;
	struct vsock_hdr h;

	if (ch->out_len < VSOCK_HDR_SIZE) {
		log_debug("virtio-vsock: tx packet shorter than a header; dropped");
		return;
	}
	virtq_chain_read(ch, 0, raw, sizeof(raw));
	vsock_hdr_decode(raw, &h);
	if (h.src_cid != v->guest_cid || h.dst_cid != VSOCK_HOST_CID) {
		log_debug("virtio-vsock: tx packet %llu -> %llu not for the host; dropped",
			  (unsigned long long)h.src_cid, (unsigned long long)h.dst_cid);
		return;
	}
	c = vsock_table_find(&v->table, h.src_port, h.dst_port);
	if (h.type != VSOCK_TYPE_STREAM || h.len > VSOCK_MAX_PAYLOAD ||
	    h.len > ch->out_len - VSOCK_HDR_SIZE || (h.len && h.op != VSOCK_OP_RW)) {
		if (c)
			vsock_conn_reset(v, c, "malformed packet");
		else if (h.op != VSOCK_OP_RST)
			vsock_queue_rst(v, h.src_port, h.dst_port);
		return;
	}
	if (c) {
		vsock_rx_guest_packet(v, c, &h, ch);
		return;
	}
	if (h.op == VSOCK_OP_REQUEST)
		vsock_guest_request(v, &h);
	else if (h.op != VSOCK_OP_RST)
		vsock_queue_rst(v, h.src_port, h.dst_port); /* unknown connection */
}

static void vsock_process_tx(struct virtio_vsock *v)
{
	struct virtq *q = vsock_queue(v, VSOCK_QUEUE_TX);
	bool pushed = false;

	if (!q || !virtq_usable(q))
		return;
	for (;;) {
		int r = virtq_pop(q, &v->tx_chain);

		if (r == 0)
			break;
		if (r < 0) {
			vsock_set_broken(v, "malformed tx queue");
			break;
		}
		vsock_tx_one(v, &v->tx_chain);
		if (virtq_push(q, v->tx_chain.head, 0) < 0) {
			vsock_set_broken(v, "tx queue broken");
			break;
		}
		pushed = true;
	}
	if (pushed)
		vsock_notify(v, VSOCK_QUEUE_TX);
}

/* ---- event queue ------------------------------------------------------ */

/* Reads the guest's available index of `q` into *idx. Returns false when the
 * ring is not in guest RAM. */
/* Ends the wait for the guest to handle a TRANSPORT_RESET once it has put an
 * event buffer back (Linux's virtio_transport_event_work handles each event
 * before it refills and kicks), or when it cannot be waited for. Returns true
 * when the wait ended now. */
static bool vsock_check_reset_done(struct virtio_vsock *v)
{
	struct virtq *q = vsock_queue(v, VSOCK_QUEUE_EVENT);
	uint16_t idx;

	if (!v->reset_wait || v->event_pending)
		return false;
	if (q && virtq_usable(q) && virtq_avail_idx(q, &idx) && idx == v->reset_avail)
		return false;
	log_debug("virtio-vsock: the guest handled the transport reset");
	v->reset_wait = false;
	return true;
}

static void vsock_post_event(struct virtio_vsock *v)
{
	struct virtq *q = vsock_queue(v, VSOCK_QUEUE_EVENT);
	uint8_t ev[VSOCK_EVENT_SIZE];
	int r;

	if (!v->event_pending || !q || !virtq_usable(q))
		return;
	r = virtq_pop(q, &v->ev_chain);
	if (r == 0)
		return; /* resumes on the event queue's notification */
	if (r < 0 || v->ev_chain.in_len < VSOCK_EVENT_SIZE) {
		vsock_set_broken(v, r < 0 ? "malformed event queue" : "event buffer too small");
		return;
	}
	le32_put(ev, VSOCK_EVENT_TRANSPORT_RESET);
	virtq_chain_write(&v->ev_chain, 0, ev, sizeof(ev));
	if (!virtq_avail_idx(q, &v->reset_avail)) {
		vsock_set_broken(v, "event queue outside guest RAM");
		return;
	}
	if (virtq_push(q, v->ev_chain.head, VSOCK_EVENT_SIZE) < 0) {
		vsock_set_broken(v, "event queue broken");
		return;
	}
	v->event_pending = false;
	/* Ask for a notification when the guest puts a buffer back: with
	 * VIRTIO_F_EVENT_IDX it kicks only when asked to (avail_event). */
	virtq_set_notification(q, true);
	vsock_notify(v, VSOCK_QUEUE_EVENT);
}

/* ---- device ops ---------------------------------------------------------- */

static void vsock_drop_all(struct virtio_vsock *v)
{
	while (!vsock_list_empty(&v->all))
		vsock_conn_free(v, vsock_list_entry(v->all.next, struct vsock_conn, all));
	v->rst_head = v->rst_count = 0;
	vsock_timer_arm(v, false);
}

static void vsock_config_read(void *dev, uint64_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_vsock *v = dev;
	uint8_t cfg[8];

	le64_put(cfg, v->guest_cid);
	for (uint32_t i = 0; i < len; i++)
		data[i] = offset < sizeof(cfg) && i < sizeof(cfg) - offset ? cfg[offset + i] : 0;
}

static void vsock_config_write(void *dev, uint64_t offset, const uint8_t *data, uint32_t len)
{
	(void)dev;
	(void)data;
	log_debug("virtio-vsock: guest wrote %u bytes at config offset %llu; ignored", len,
		  (unsigned long long)offset);
}

static void vsock_activate(void *dev)
{
	struct virtio_vsock *v = dev;

	v->rx_held = false;
	vsock_post_event(v);
	vsock_process_rx(v);
}

static void vsock_queue_notify(void *dev, unsigned int q)
{
	struct virtio_vsock *v = dev;

	/* Whatever the guest notifies, it may have handled a transport reset
	 * by now (its event-queue kick is what normally tells us). */
	vsock_check_reset_done(v);
	switch (q) {
	case VSOCK_QUEUE_RX:
		vsock_process_rx(v);
		break;
	case VSOCK_QUEUE_TX:
		vsock_process_tx(v);
		vsock_process_rx(v);
		break;
	case VSOCK_QUEUE_EVENT:
		vsock_post_event(v);
		if (vsock_check_reset_done(v))
			vsock_process_rx(v);
		break;
	default:
		break;
	}
}

static void vsock_reset(void *dev)
{
	struct virtio_vsock *v = dev;

	vsock_drop_all(v);
	v->rx_held = false;
	v->event_pending = false;
	v->reset_wait = false;
}

const struct virtio_device_ops *virtio_vsock_ops(void)
{
	return &virtio_vsock_device;
}

int virtio_vsock_transport_reset(struct virtio_vsock *v)
{
	struct virtq *q = vsock_queue(v, VSOCK_QUEUE_EVENT);

	vsock_drop_all(v);
	if (!q || !virtq_usable(q))
		return 0; /* no driver: it starts afresh when it comes */
	v->event_pending = true;
	v->reset_wait = true;
	vsock_post_event(v);
	return 0;
}

unsigned int virtio_vsock_conn_count(const struct virtio_vsock *v)
{
	return v->nconns;
}

void virtio_vsock_bind(struct virtio_vsock *v, const struct virtio_vsock_queues *queues)
{
	v->qs = *queues;
	v->bound = true;
	v->rx_held = false;
}

/* ---- creation ------------------------------------------------------------ */

/* Unlinks a stale socket file at `path`; refuses to touch anything else or
 * a socket somebody still listens on. Returns 0 or -errno. */
static int vsock_listen(struct virtio_vsock *v, const struct virtio_vsock_config *cfg)
{
	int ret;

	if (cfg->has_listener) {
		v->listen_fd = cfg->listen_fd;
		v->listen_ino = cfg->listen_ino;
	} else {
		v->listen_fd = unixsock_listen(v->uds_path, "virtio-vsock", VSOCK_LISTEN_BACKLOG,
					       &v->listen_ino);
	}
	if (v->listen_fd < 0)
		return v->listen_fd;
	v->listen_owned = true;
	ret = evloop_add(v->loop, v->listen_fd, EPOLLIN, vsock_accept, v);
	if (ret < 0)
		return ret;
	v->listen_watched = true;
	return 0;
}

/* A listener given in `cfg` is the device's even when creation fails:
 * closes it and removes its socket file. Returns NULL. */
static struct virtio_vsock *vsock_create_failed(const struct virtio_vsock_config *cfg)
{
	if (cfg->has_listener)
		unixsock_close_own(cfg->listen_fd, cfg->uds_path, cfg->listen_ino);
	return NULL;
}

struct virtio_vsock *virtio_vsock_create(struct evloop *loop, const struct virtio_vsock_config *cfg)
{
	struct sockaddr_un sa;
	struct virtio_vsock *v;
	int ret;

	if (cfg->guest_cid < 3 || cfg->guest_cid > 0xfffffffeULL) {
		log_error("virtio-vsock: guest CID must be 3 to 4294967294, not %llu",
			  (unsigned long long)cfg->guest_cid);
		return vsock_create_failed(cfg);
	}
	/* "<path>_<10 digits>" must fit a socket address. */
	if (!cfg->uds_path || !*cfg->uds_path || strlen(cfg->uds_path) + 12 > sizeof(sa.sun_path)) {
		log_error("virtio-vsock: the socket path must be 1 to %zu bytes",
			  sizeof(sa.sun_path) - 12);
		return vsock_create_failed(cfg);
	}
	v = calloc(1, sizeof(*v));
	if (!v) {
		log_error("out of memory");
		return vsock_create_failed(cfg);
	}
	v->loop = loop;
	v->listen_fd = -1;
	v->timer_fd = -1;
	v->guest_cid = cfg->guest_cid;
	v->buf_alloc = cfg->buf_alloc ? cfg->buf_alloc : VSOCK_DEFAULT_BUF_ALLOC;
	v->max_conns = cfg->max_conns ? cfg->max_conns : VSOCK_DEFAULT_MAX_CONNS;
	v->connect_ms = cfg->connect_ms ? cfg->connect_ms : VSOCK_DEFAULT_CONNECT_MS;
	v->close_ms = cfg->close_ms ? cfg->close_ms : VSOCK_DEFAULT_CLOSE_MS;
	v->next_host_port = VSOCK_HOST_PORT_FIRST;
	vsock_list_init(&v->all);
	vsock_list_init(&v->ctrl);
	vsock_list_init(&v->data);
	v->uds_path = strdup(cfg->uds_path);
	if (!v->uds_path || vsock_table_init(&v->table) < 0) {
		log_error("out of memory");
		goto out_destroy;
	}
	v->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (v->timer_fd < 0) {
		log_error("virtio-vsock: timerfd_create: %s", strerror(errno));
		goto out_destroy;
	}
	ret = evloop_add(loop, v->timer_fd, EPOLLIN, vsock_timer_event, v);
	if (ret < 0) {
		log_error("virtio-vsock: cannot watch the timer: %s", strerror(-ret));
		close(v->timer_fd);
		v->timer_fd = -1;
		goto out_destroy;
	}
	ret = vsock_listen(v, cfg);
	if (ret < 0) {
		log_error("virtio-vsock: cannot listen on %s: %s", cfg->uds_path, strerror(-ret));
		goto out_destroy;
	}
	return v;

out_destroy:
	if (v->listen_fd < 0)
		vsock_create_failed(cfg); /* not taken over yet */
	virtio_vsock_destroy(v);
	return NULL;
}

static void vsock_mmio_notify(void *opaque, unsigned int q)
{
	virtio_mmio_notify_used(opaque, q);
}

static void vsock_mmio_broken(void *opaque, const char *why)
{
	virtio_mmio_set_broken(opaque, why);
}

int virtio_vsock_attach(struct virtio_vsock *v, struct vm *vm, struct iobus *bus, uint64_t base,
			unsigned int irq)
{
	struct virtio_vsock_queues qs = {
		.notify_used = vsock_mmio_notify,
		.set_broken = vsock_mmio_broken,
	};

	v->mmio = virtio_mmio_create(vm, bus, v->loop, base, irq, &virtio_vsock_device, v);
	if (!v->mmio)
		return -EIO;
	for (unsigned int i = 0; i < VSOCK_NUM_QUEUES; i++)
		qs.q[i] = virtio_mmio_queue(v->mmio, i);
	qs.opaque = v->mmio;
	virtio_vsock_bind(v, &qs);
	return 0;
}

void virtio_vsock_detach(struct virtio_vsock *v)
{
	if (!v || !v->mmio)
		return;
	virtio_mmio_destroy(v->mmio);
	v->mmio = NULL;
	v->bound = false;
}

struct virtio_mmio *virtio_vsock_transport(struct virtio_vsock *v)
{
	return v->mmio;
}

/* Drops every connection and the listener and timer (on the loop thread). */
static void vsock_teardown(void *opaque, uint32_t events)
{
	struct virtio_vsock *v = opaque;

	(void)events;
	if (v->table.buckets)
		vsock_drop_all(v);
	if (v->listen_watched)
		evloop_del(v->loop, v->listen_fd);
	if (v->listen_fd >= 0)
		close(v->listen_fd);
	/* Remove the socket file if it is still ours. */
	if (v->listen_owned)
		unixsock_unlink_own(v->uds_path, v->listen_ino);
	if (v->timer_fd >= 0) {
		evloop_del(v->loop, v->timer_fd);
		close(v->timer_fd);
	}
}

void virtio_vsock_destroy(struct virtio_vsock *v)
{
	if (!v)
		return;
	virtio_vsock_detach(v);
	/* Inline when the loop does not run or this is its thread. */
	evloop_call_sync(v->loop, vsock_teardown, v);
	vsock_table_release(&v->table);
	free(v->uds_path);
	free(v);
}

/* ---- snapshots ------------------------------------------------------------- */

/* A connection a snapshot keeps open, parked, instead of resetting: one a
 * host client made that is established and idle (nothing buffered or owed
 * either way but a credit update, no shutdown). A restore then lets the
 * next host client for its guest port take it over without a new
 * handshake; the guest sees the same stream go on (docs/vsock.md). */
static bool vsock_conn_parkable(const struct vsock_conn *c)
{
	return c->host_initiated &&
	       (c->state == VSOCK_CONN_ESTABLISHED || c->state == VSOCK_CONN_PARKED) &&
	       !c->out_bytes && !c->readable && !c->hup && !c->rd_eof && !c->wr_shut &&
	       !c->rd_shut && !c->guest_shutdown && !(c->pending & ~VSOCK_PEND_CREDIT);
}

/* Connections the guest may know about that a restore resets: every one
 * past its CONNECT line (a REQUEST may have gone out) that is not parked,
 * and every RST still owed. *parked counts the parked ones. */
static uint32_t vsock_guest_known(const struct virtio_vsock *v, uint32_t *parked)
{
	uint32_t n = v->rst_count;

	*parked = 0;
	for (const struct vsock_list *l = v->all.next; l != &v->all; l = l->next) {
		const struct vsock_conn *c = vsock_list_entry(l, const struct vsock_conn, all);

		if (c->state == VSOCK_CONN_HOST_LINE)
			continue;
		if (vsock_conn_parkable(c))
			(*parked)++;
		else
			n++;
	}
	return n;
}

/* A parked connection's record in the snapshot section: these u32 fields,
 * in this order (vsock_save writes them, vsock_restore reads them back). */
static const size_t vsock_parked_fields[] = {
	offsetof(struct vsock_conn, guest_port),     offsetof(struct vsock_conn, host_port),
	offsetof(struct vsock_conn, peer_buf_alloc), offsetof(struct vsock_conn, peer_fwd_cnt),
	offsetof(struct vsock_conn, tx_cnt),	     offsetof(struct vsock_conn, buf_alloc),
	offsetof(struct vsock_conn, rx_cnt),	     offsetof(struct vsock_conn, fwd_cnt),
	offsetof(struct vsock_conn, last_fwd_sent),  offsetof(struct vsock_conn, pending),
};
#define VSOCK_PARKED_FIELDS (sizeof(vsock_parked_fields) / sizeof(vsock_parked_fields[0]))
#define VSOCK_PARKED_RECORD (4 * VSOCK_PARKED_FIELDS) /* bytes per parked connection */

static uint32_t vsock_parked_get(const struct vsock_conn *c, size_t i)
{
	uint32_t v;

	memcpy(&v, (const char *)c + vsock_parked_fields[i], sizeof(v));
	return v;
}

static void vsock_parked_set(struct vsock_conn *c, size_t i, uint32_t v)
{
	memcpy((char *)c + vsock_parked_fields[i], &v, sizeof(v));
}

static void vsock_save(void *dev, struct snap_writer *w, uint16_t slot)
{
	struct virtio_vsock *v = dev;
	struct virtq *q = vsock_queue(v, VSOCK_QUEUE_RX);
	uint32_t parked, n = vsock_guest_known(v, &parked);

	if (v->rx_held && q) {
		/* virtq_pop took exactly one entry for it. */
		virtq_unpop(q);
		v->rx_held = false;
	}
	/* A guest still to handle a TRANSPORT_RESET gets another one. */
	if (n > VSOCK_RST_RING || parked > v->max_conns || v->reset_wait)
		n = VSOCK_SAVED_ALL;
	snap_begin(w, SNAP_SEC_VIRTIO_VSOCK, slot);
	snap_put_u64(w, v->guest_cid);
	snap_put_u32(w, v->next_host_port);
	snap_put_u32(w, n);
	if (n != VSOCK_SAVED_ALL) {
		for (unsigned int i = 0; i < v->rst_count; i++) {
			const struct vsock_rst *r = &v->rst[(v->rst_head + i) % VSOCK_RST_RING];

			snap_put_u32(w, r->guest_port);
			snap_put_u32(w, r->host_port);
		}
		for (const struct vsock_list *l = v->all.next; l != &v->all; l = l->next) {
			const struct vsock_conn *c =
				vsock_list_entry(l, const struct vsock_conn, all);

			if (c->state == VSOCK_CONN_HOST_LINE || vsock_conn_parkable(c))
				continue;
			snap_put_u32(w, c->guest_port);
			snap_put_u32(w, c->host_port);
		}
		/* Then the parked ones, with their credit state. */
		snap_put_u32(w, parked);
		for (const struct vsock_list *l = v->all.next; l != &v->all; l = l->next) {
			const struct vsock_conn *c =
				vsock_list_entry(l, const struct vsock_conn, all);

			if (c->state == VSOCK_CONN_HOST_LINE || !vsock_conn_parkable(c))
				continue;
			for (size_t k = 0; k < VSOCK_PARKED_FIELDS; k++)
				snap_put_u32(w, vsock_parked_get(c, k));
		}
	}
	snap_end(w);
}

/* A parsed SNAP_SEC_VIRTIO_VSOCK section; `r` is left at the first
 * (guest port, host port) pair. */
struct vsock_saved {
	uint64_t cid;
	uint32_t next_host_port;
	uint32_t n;	 /* pairs, or VSOCK_SAVED_ALL */
	uint32_t parked; /* parked connections after the pairs */
	struct snap_rd r;
};

/* Reads and checks the section: u64 guest CID, then (absent in sections
 * written before kiln-vmm listed connections) u32 next host port, u32 count,
 * count x {u32 guest port, u32 host port}, then (absent in sections written
 * before connections were parked) u32 parked, parked x {u32 guest port,
 * host port, peer buf_alloc, peer fwd_cnt, tx_cnt, buf_alloc, rx_cnt,
 * fwd_cnt, last fwd_cnt sent, owed control packets}. Returns 0 or -EINVAL. */
static int vsock_saved_parse(const struct snap_section *sec, struct vsock_saved *s)
{
	snap_rd_init(&s->r, sec);
	s->cid = snap_get_u64(&s->r);
	if (s->r.err || s->cid < 3 || s->cid > 0xfffffffeULL)
		return -EINVAL;
	if (snap_rd_done(&s->r)) {
		s->next_host_port = VSOCK_LEGACY_HOST_PORT;
		s->n = VSOCK_SAVED_ALL;
		return 0;
	}
	s->next_host_port = snap_get_u32(&s->r);
	s->n = snap_get_u32(&s->r);
	s->parked = 0;
	if (s->r.err || s->next_host_port < VSOCK_HOST_PORT_FIRST)
		return -EINVAL;
	if (s->n == VSOCK_SAVED_ALL)
		return snap_rd_done(&s->r) ? 0 : -EINVAL;
	if (s->n > VSOCK_RST_RING || s->r.len - s->r.off < 8ULL * s->n)
		return -EINVAL;
	if (s->r.len - s->r.off == 8ULL * s->n)
		return 0;
	/* The pairs and parked records are read by vsock_restore. */
	if (s->r.len - s->r.off < 8ULL * s->n + 4)
		return -EINVAL;
	s->parked = le32_get(s->r.p + s->r.off + 8ULL * s->n);
	if (s->parked > VSOCK_RST_RING ||
	    s->r.len - s->r.off != 8ULL * s->n + 4 + (uint64_t)VSOCK_PARKED_RECORD * s->parked)
		return -EINVAL;
	return 0;
}

int virtio_vsock_saved_cid(const struct snap_section *sec, uint64_t *cid)
{
	struct vsock_saved s;
	int ret = vsock_saved_parse(sec, &s);

	if (ret == 0)
		*cid = s.cid;
	return ret;
}

/* A restore takes the guest CID from the snapshot. */
static int vsock_check(const struct snap_section *sec, struct virtio_host *host, char *why,
		       size_t why_len)
{
	if (virtio_vsock_saved_cid(sec, &host->cid) < 0)
		return reason_fail(why, why_len, -EINVAL, "malformed vsock device in the snapshot");
	return 0;
}

/* Loads the section into a fresh device: the next host port, and an RST
 * owed for every connection the guest may still hold (or, without the
 * list, a transport reset); vsock_reset_after_restore delivers them. */
static int vsock_restore(void *dev, const struct snap_section *sec, char *why, size_t why_len)
{
	struct virtio_vsock *v = dev;
	struct vsock_saved s;

	if (vsock_saved_parse(sec, &s) < 0 || s.cid != v->guest_cid)
		return reason_fail(why, why_len, -EINVAL, "malformed vsock device in the snapshot");
	vsock_drop_all(v);
	/* New connections never reuse a (guest port, host port) pair of a
	 * socket the guest may still hold until its owner closes it: Linux
	 * answers a REQUEST for such a pair with RST. */
	v->next_host_port = s.next_host_port;
	v->reset_on_restore = s.n == VSOCK_SAVED_ALL;
	if (v->reset_on_restore)
		return 0;
	/* The rx queue delivers in order, RSTs first: the guest has dropped
	 * these before it sees any REQUEST we send later. */
	for (uint32_t i = 0; i < s.n; i++) {
		uint32_t guest_port = snap_get_u32(&s.r);

		vsock_queue_rst(v, guest_port, snap_get_u32(&s.r));
	}
	if (s.r.off < s.r.len)
		(void)snap_get_u32(&s.r); /* the parked count, parsed already */
	for (uint32_t i = 0; i < s.parked; i++) {
		struct vsock_conn *c, rec = {0};

		for (size_t k = 0; k < VSOCK_PARKED_FIELDS; k++)
			vsock_parked_set(&rec, k, snap_get_u32(&s.r));
		if (s.r.err || (rec.pending & ~VSOCK_PEND_CREDIT) || v->nconns >= v->max_conns ||
		    vsock_table_find(&v->table, rec.guest_port, rec.host_port)) {
			vsock_drop_all(v);
			return reason_fail(why, why_len, -EINVAL,
					   "malformed parked vsock connection in the snapshot");
		}
		c = vsock_conn_new(v, -1, VSOCK_CONN_PARKED);
		if (!c) {
			vsock_drop_all(v);
			return reason_fail(why, why_len, -ENOMEM, "out of memory");
		}
		c->host_initiated = true;
		for (size_t k = 0; k < VSOCK_PARKED_FIELDS; k++)
			vsock_parked_set(c, k, vsock_parked_get(&rec, k));
		c->pending = 0; /* owed through the list, below */
		vsock_table_insert(&v->table, c);
		if (rec.pending)
			vsock_conn_owe(v, c, rec.pending);
	}
	return 0;
}

/* With the guest's queues and RAM back: tells the guest that its
 * connections are gone. */
static int vsock_reset_after_restore(void *dev)
{
	struct virtio_vsock *v = dev;

	if (v->reset_on_restore) {
		v->reset_on_restore = false;
		log_debug("virtio-vsock: restored; resetting the transport");
		return virtio_vsock_transport_reset(v);
	}
	log_debug("virtio-vsock: restored; %u RST(s) for connections of the snapshot, %u parked",
		  v->rst_count, v->nconns);
	vsock_process_rx(v);
	return 0;
}

void virtio_vsock_save(struct virtio_vsock *v, struct snap_writer *w, uint16_t slot)
{
	vsock_save(v, w, slot);
}

int virtio_vsock_restore(struct virtio_vsock *v, const struct snap_section *sec)
{
	int ret = vsock_restore(v, sec, NULL, 0);

	return ret < 0 ? ret : vsock_reset_after_restore(v);
}

static void *vsock_create(const struct virtio_slot *slot, const struct virtio_host *host,
			  struct virtio_mmio **t)
{
	struct virtio_vsock_config cfg = {
		.guest_cid = host->cid ? host->cid : VSOCK_DEFAULT_GUEST_CID,
		.uds_path = host->path,
		.connect_ms = host->connect_ms,
		.has_listener = host->has_listener,
		.listen_fd = host->listener,
		.listen_ino = host->listener_ino,
	};
	struct virtio_vsock *v = virtio_vsock_create(slot->loop, &cfg);

	if (!v)
		return NULL;
	if (virtio_vsock_attach(v, slot->vm, slot->bus, slot->base, slot->irq) < 0) {
		virtio_vsock_destroy(v);
		return NULL;
	}
	*t = v->mmio;
	return v;
}

static void vsock_destroy(void *dev)
{
	virtio_vsock_destroy(dev);
}

const struct virtio_device_ops virtio_vsock_device = {
	.name = "virtio-vsock",
	.noun = "vsock device",
	.device_id = VIRTIO_ID_VSOCK,
	.max_count = 1,
	.host_backed = true,
	.restore_hint = "give its host socket (--vsock-uds / \"vsock_uds\")",
	.snap_section = SNAP_SEC_VIRTIO_VSOCK,
	.features = 0,
	.num_queues = VSOCK_NUM_QUEUES,
	.queue_max = VSOCK_QUEUE_MAX,
	.config_read = vsock_config_read,
	.config_write = vsock_config_write,
	.activate = vsock_activate,
	.queue_notify = vsock_queue_notify,
	.reset = vsock_reset,
	.create = vsock_create,
	.destroy = vsock_destroy,
	.save = vsock_save,
	.check = vsock_check,
	.restore = vsock_restore,
	.reset_after_restore = vsock_reset_after_restore,
};
