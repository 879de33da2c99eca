/* test_vsock.c - the virtio-vsock device without KVM: hand-made rx/tx/event
 * rings in guest memory, the test thread playing the guest driver (as a vCPU
 * would, concurrently with the event loop thread), real unix sockets on the
 * host side. Covers guest- and host-initiated connections, data both ways,
 * credit limits in both directions, shutdown and close, RSTs for unknown or
 * misbehaving connections, malformed packets, many connections, fairness,
 * transport reset (new connections wait until the guest handled it), the
 * snapshot section and restore (an RST per connection the guest may hold,
 * host ports continued), plus the pure pieces: header codec, CONNECT line parsing
 * and credit arithmetic. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmm/evloop.h"
#include "vmm/memory.h"
#include "vmm/snapshot/format.h"
#include "vmm/virtio/queue.h"
#include "vmm/virtio/vsock.h"
#include "vmm/virtio/vsock_conn.h"

#define GUEST_CID  3
#define MEM_SIZE   (8ULL << 20)
#define QSIZE	   64
#define QBASE(i)   (0x10000ULL + 0x1000ULL * (i))
#define RXBUF	   0x100000ULL /* rx buffers: header + payload, 0x2000 apart */
#define RX_PAYLOAD 4096
#define NRX	   (QSIZE / 2) /* two descriptors per rx buffer (Linux 6.1 style) */
#define TXBUF	   0x200000ULL /* tx packets: 0x11000 apart (64 KiB payload max) */
#define TXSTRIDE   0x11000ULL
#define NTX	   (QSIZE / 2)
#define EVBUF	   0x180000ULL

struct fx {
	char dir[32];
	char path[64];
	struct guest_mem mem;
	struct virtq q[VSOCK_NUM_QUEUES];
	struct evloop *loop;
	struct virtio_vsock *v;
	atomic_int irqs[VSOCK_NUM_QUEUES];
	atomic_int broken;
	uint16_t rx_seen; /* used entries of rx consumed */
	uint16_t ntx;	  /* tx packets queued since the last kick */
};

/* ---- guest memory and rings ------------------------------------------- */

static uint8_t *at(struct fx *f, uint64_t gpa)
{
	return f->mem.host + gpa;
}

static uint64_t q_desc(unsigned int q)
{
	return QBASE(q);
}

static uint64_t q_avail(unsigned int q)
{
	return QBASE(q) + 16ULL * QSIZE;
}

static uint64_t q_used(unsigned int q)
{
	return QBASE(q) + 0x800;
}

static void set_desc(struct fx *f, unsigned int q, uint16_t i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	struct virtq_desc d = {.addr = addr, .len = len, .flags = flags, .next = next};

	memcpy(at(f, q_desc(q) + 16ULL * i), &d, sizeof(d));
}

static void publish(struct fx *f, unsigned int q, uint16_t head)
{
	uint16_t *idxp = (uint16_t *)(void *)at(f, q_avail(q) + 2);
	uint16_t idx = __atomic_load_n(idxp, __ATOMIC_RELAXED);

	memcpy(at(f, q_avail(q) + 4 + 2ULL * (idx % QSIZE)), &head, 2);
	__atomic_store_n(idxp, (uint16_t)(idx + 1), __ATOMIC_RELEASE);
}

static uint16_t used_idx(struct fx *f, unsigned int q)
{
	return __atomic_load_n((uint16_t *)(void *)at(f, q_used(q) + 2), __ATOMIC_ACQUIRE);
}

static void used_elem(struct fx *f, unsigned int q, uint16_t n, uint32_t *id, uint32_t *len)
{
	uint64_t e = q_used(q) + 4 + 8ULL * (n % QSIZE);

	memcpy(id, at(f, e), 4);
	memcpy(len, at(f, e + 4), 4);
}

struct notify_arg {
	struct fx *f;
	unsigned int q;
};

static void notify_cb(void *opaque, uint32_t events)
{
	struct notify_arg *a = opaque;

	(void)events;
	virtio_vsock_ops()->queue_notify(a->f->v, a->q);
}

/* The guest's QueueNotify: runs the device's handler on the loop thread. */
static void kick(struct fx *f, unsigned int q)
{
	struct notify_arg a = {.f = f, .q = q};

	assert_int_equal(evloop_call_sync(f->loop, notify_cb, &a), 0);
}

static void dev_notify(void *opaque, unsigned int q)
{
	struct fx *f = opaque;

	atomic_fetch_add(&f->irqs[q], 1);
}

static void dev_broken(void *opaque, const char *why)
{
	struct fx *f = opaque;

	(void)why;
	atomic_fetch_add(&f->broken, 1);
}

static void post_rx(struct fx *f, uint16_t i)
{
	uint64_t b = RXBUF + 0x2000ULL * i;

	set_desc(f, VSOCK_QUEUE_RX, (uint16_t)(2 * i), b, VSOCK_HDR_SIZE,
		 VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, (uint16_t)(2 * i + 1));
	set_desc(f, VSOCK_QUEUE_RX, (uint16_t)(2 * i + 1), b + 64, RX_PAYLOAD, VIRTQ_DESC_F_WRITE,
		 0);
	publish(f, VSOCK_QUEUE_RX, (uint16_t)(2 * i));
}

struct fx_opts {
	uint32_t buf_alloc;
	unsigned int connect_ms;
	bool no_rx;	  /* post no rx buffers at start */
	unsigned int nrx; /* else this many (0: NRX) */
};

static void bind_cb(void *opaque, uint32_t events)
{
	struct fx *f = opaque;
	struct virtio_vsock_queues qs = {
		.notify_used = dev_notify,
		.set_broken = dev_broken,
		.opaque = f,
	};

	(void)events;
	for (unsigned int i = 0; i < VSOCK_NUM_QUEUES; i++)
		qs.q[i] = &f->q[i];
	virtio_vsock_bind(f->v, &qs);
	virtio_vsock_ops()->activate(f->v);
}

static struct fx *fx_new(const struct fx_opts *o)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct virtio_vsock_config cfg = {0};

	assert_non_null(f);
	strcpy(f->dir, "/tmp/kiln-vsock-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/v.sock", f->dir);
	assert_int_equal(guest_mem_init(&f->mem, MEM_SIZE), 0);
	for (unsigned int i = 0; i < VSOCK_NUM_QUEUES; i++) {
		f->q[i] = (struct virtq){
			.size = QSIZE,
			.ready = true,
			.desc_gpa = q_desc(i),
			.avail_gpa = q_avail(i),
			.used_gpa = q_used(i),
			.mem = &f->mem,
		};
		virtq_reset(&f->q[i]);
		assert_int_equal(virtq_validate(&f->q[i]), 0);
	}
	f->loop = evloop_create();
	assert_non_null(f->loop);
	cfg.guest_cid = GUEST_CID;
	cfg.uds_path = f->path;
	cfg.buf_alloc = o ? o->buf_alloc : 0;
	cfg.connect_ms = o && o->connect_ms ? o->connect_ms : 2000;
	cfg.close_ms = 1000;
	f->v = virtio_vsock_create(f->loop, &cfg);
	assert_non_null(f->v);
	for (unsigned int i = 0; i < (o && o->no_rx ? 0 : o && o->nrx ? o->nrx : NRX); i++)
		post_rx(f, (uint16_t)i);
	assert_int_equal(evloop_start(f->loop), 0);
	assert_int_equal(evloop_call_sync(f->loop, bind_cb, f), 0);
	return f;
}

static void destroy_cb(void *opaque, uint32_t events)
{
	(void)events;
	virtio_vsock_destroy(opaque);
}

static void fx_free(struct fx *f)
{
	char p[160];

	evloop_call_sync(f->loop, destroy_cb, f->v);
	evloop_destroy(f->loop);
	guest_mem_release(&f->mem);
	snprintf(p, sizeof(p), "%s/v.sock", f->dir);
	assert_int_equal(access(p, F_OK), -1); /* removed on destroy */
	for (int port = 0; port < 100; port++) {
		snprintf(p, sizeof(p), "%s/v.sock_%d", f->dir, port);
		unlink(p);
	}
	rmdir(f->dir);
	free(f);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the guest's side of the protocol ------------------------------------ */

/* Queues one packet on tx (slot = packets since the last kick). */
static void guest_queue(struct fx *f, uint16_t op, uint32_t src_port, uint32_t dst_port,
			uint32_t flags, uint32_t buf_alloc, uint32_t fwd_cnt, const void *data,
			uint32_t len)
{
	uint16_t s = f->ntx++;
	uint64_t b = TXBUF + TXSTRIDE * s;
	struct vsock_hdr h = {
		.src_cid = GUEST_CID,
		.dst_cid = VSOCK_HOST_CID,
		.src_port = src_port,
		.dst_port = dst_port,
		.len = len,
		.type = VSOCK_TYPE_STREAM,
		.op = op,
		.flags = flags,
		.buf_alloc = buf_alloc,
		.fwd_cnt = fwd_cnt,
	};

	assert_true(s < NTX);
	vsock_hdr_encode(&h, at(f, b));
	if (len) {
		memcpy(at(f, b + 64), data, len);
		set_desc(f, VSOCK_QUEUE_TX, (uint16_t)(2 * s), b, VSOCK_HDR_SIZE, VIRTQ_DESC_F_NEXT,
			 (uint16_t)(2 * s + 1));
		set_desc(f, VSOCK_QUEUE_TX, (uint16_t)(2 * s + 1), b + 64, len, 0, 0);
	} else {
		set_desc(f, VSOCK_QUEUE_TX, (uint16_t)(2 * s), b, VSOCK_HDR_SIZE, 0, 0);
	}
	publish(f, VSOCK_QUEUE_TX, (uint16_t)(2 * s));
}

/* Notifies tx; the device consumes every queued packet before returning. */
static void guest_kick_tx(struct fx *f)
{
	uint16_t want = (uint16_t)(used_idx(f, VSOCK_QUEUE_TX) + f->ntx);

	kick(f, VSOCK_QUEUE_TX);
	assert_int_equal(used_idx(f, VSOCK_QUEUE_TX), want);
	f->ntx = 0;
}

static void guest_send(struct fx *f, uint16_t op, uint32_t src_port, uint32_t dst_port,
		       uint32_t flags, uint32_t buf_alloc, uint32_t fwd_cnt, const void *data,
		       uint32_t len)
{
	guest_queue(f, op, src_port, dst_port, flags, buf_alloc, fwd_cnt, data, len);
	guest_kick_tx(f);
}

/* Takes the next rx packet if one arrives within `ms`: decodes the header,
 * copies the payload to `data` (up to `max`), gives the buffer back. */
static bool guest_recv(struct fx *f, struct vsock_hdr *h, void *data, size_t max, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;
	uint32_t id, len;
	uint64_t b;

	while (used_idx(f, VSOCK_QUEUE_RX) == f->rx_seen) {
		if (now_ms() >= end)
			return false;
		usleep(1000);
	}
	used_elem(f, VSOCK_QUEUE_RX, f->rx_seen, &id, &len);
	f->rx_seen++;
	assert_true(id % 2 == 0 && id < QSIZE);
	b = RXBUF + 0x2000ULL * (id / 2);
	assert_true(len >= VSOCK_HDR_SIZE);
	vsock_hdr_decode(at(f, b), h);
	assert_int_equal(len, VSOCK_HDR_SIZE + h->len);
	assert_true(h->len <= RX_PAYLOAD);
	assert_int_equal(h->src_cid, VSOCK_HOST_CID);
	assert_int_equal(h->dst_cid, GUEST_CID);
	assert_int_equal(h->type, VSOCK_TYPE_STREAM);
	if (data) {
		assert_true(h->len <= max);
		memcpy(data, at(f, b + 64), h->len);
	}
	post_rx(f, (uint16_t)(id / 2));
	kick(f, VSOCK_QUEUE_RX);
	return true;
}

static void guest_expect(struct fx *f, uint16_t op, uint32_t host_port, uint32_t guest_port,
			 struct vsock_hdr *out)
{
	struct vsock_hdr h;

	assert_true(guest_recv(f, &h, NULL, 0, 3000));
	assert_int_equal(h.op, op);
	if (host_port)
		assert_int_equal(h.src_port, host_port);
	assert_int_equal(h.dst_port, guest_port);
	if (out)
		*out = h;
}

static void guest_expect_nothing(struct fx *f, int ms)
{
	struct vsock_hdr h;

	assert_false(guest_recv(f, &h, NULL, 0, ms));
}

/* ---- the host's side ---------------------------------------------------- */

static int host_listen(struct fx *f, uint32_t port)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", f->path, port);
	unlink(sa.sun_path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 256), 0);
	return fd;
}

static int host_dial(struct fx *f)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static bool wait_fd(int fd, short events, int ms)
{
	struct pollfd p = {.fd = fd, .events = events};

	return poll(&p, 1, ms) == 1;
}

/* Reads exactly `n` bytes within 3 s. */
static void host_read_exact(int fd, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r;

		assert_true(wait_fd(fd, POLLIN, 3000));
		r = read(fd, (uint8_t *)buf + got, n - got);
		assert_true(r > 0);
		got += (size_t)r;
	}
}

static void host_expect_eof(int fd)
{
	char c;

	assert_true(wait_fd(fd, POLLIN, 3000));
	assert_int_equal(read(fd, &c, 1), 0);
}

/* The device closed the socket, maybe with our bytes unread (ECONNRESET). */
static void host_expect_closed(int fd)
{
	char c;
	ssize_t r;

	assert_true(wait_fd(fd, POLLIN, 3000));
	r = read(fd, &c, 1);
	assert_true(r == 0 || (r < 0 && errno == ECONNRESET));
}

/* Reads a "OK <port>\n" line and returns the port. */
static uint32_t host_read_ok(int fd)
{
	char line[32] = {0};
	unsigned int port;
	size_t i = 0;

	while (i < sizeof(line) - 1) {
		host_read_exact(fd, line + i, 1);
		if (line[i++] == '\n')
			break;
	}
	assert_int_equal(sscanf(line, "OK %u\n", &port), 1);
	return port;
}

struct count_arg {
	struct fx *f;
	unsigned int n;
};

static void count_cb(void *opaque, uint32_t events)
{
	struct count_arg *a = opaque;

	(void)events;
	a->n = virtio_vsock_conn_count(a->f->v);
}

static unsigned int conn_count(struct fx *f)
{
	struct count_arg a = {.f = f};

	evloop_call_sync(f->loop, count_cb, &a);
	return a.n;
}

static void wait_conn_count(struct fx *f, unsigned int n)
{
	uint64_t end = now_ms() + 3000;

	while (conn_count(f) != n && now_ms() < end)
		usleep(2000);
	assert_int_equal(conn_count(f), n);
}

/* Guest port `gport` connects to host port `hport` (listener `lfd`): returns
 * the accepted host socket. */
static int guest_connect(struct fx *f, int lfd, uint32_t gport, uint32_t hport, uint32_t buf_alloc)
{
	struct vsock_hdr h;
	int fd;

	guest_send(f, VSOCK_OP_REQUEST, gport, hport, 0, buf_alloc, 0, NULL, 0);
	guest_expect(f, VSOCK_OP_RESPONSE, hport, gport, &h);
	assert_true(h.buf_alloc > 0);
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

/* ---- pure pieces ----------------------------------------------------------- */

static void test_hdr_codec(void **state)
{
	static const uint8_t want[VSOCK_HDR_SIZE] = {
		3,    0,    0,	  0,	0, 0, 0, 0, /* src_cid */
		2,    0,    0,	  0,	0, 0, 0, 0, /* dst_cid */
		0x34, 0x12, 0,	  0,		    /* src_port */
		0x78, 0x56, 0,	  0,		    /* dst_port */
		5,    0,    0,	  0,		    /* len */
		1,    0,			    /* type */
		5,    0,			    /* op */
		2,    0,    0,	  0,		    /* flags */
		0,    0,    4,	  0,		    /* buf_alloc 256 KiB */
		0xff, 0xff, 0xff, 0xff,		    /* fwd_cnt */
	};
	struct vsock_hdr h = {3, 2, 0x1234, 0x5678, 5, 1, 5, 2, 256 * 1024, 0xffffffff}, back;
	uint8_t raw[VSOCK_HDR_SIZE];

	(void)state;
	vsock_hdr_encode(&h, raw);
	assert_memory_equal(raw, want, sizeof(raw));
	vsock_hdr_decode(raw, &back);
	assert_int_equal(back.src_cid, h.src_cid);
	assert_int_equal(back.dst_cid, h.dst_cid);
	assert_int_equal(back.src_port, h.src_port);
	assert_int_equal(back.dst_port, h.dst_port);
	assert_int_equal(back.len, h.len);
	assert_int_equal(back.type, h.type);
	assert_int_equal(back.op, h.op);
	assert_int_equal(back.flags, h.flags);
	assert_int_equal(back.buf_alloc, h.buf_alloc);
	assert_int_equal(back.fwd_cnt, h.fwd_cnt);
}

static void test_parse_connect(void **state)
{
	static const char *const bad[] = {
		"connect 5\n",
		"CONNECT\n",
		"CONNECT \n",
		"CONNECT  5\n",
		"CONNECT +5\n",
		"CONNECT -1\n",
		"CONNECT 5 \n",
		"CONNECT 5\r\n",
		"CONNECT 0x10\n",
		"CONNECT 4294967296\n",
		"CONNECT 99999999999\n",
		"CONNECT 12345678901\n",
		"HELLO\n",
		"GET / HTTP/1.1\r\n",
	};
	char longline[64];
	uint32_t port = 7;

	(void)state;
	assert_int_equal(vsock_parse_connect("CONNECT 52\n", 11, &port), 11);
	assert_int_equal(port, 52);
	assert_int_equal(vsock_parse_connect("CONNECT 0\n", 10, &port), 10);
	assert_int_equal(port, 0);
	assert_int_equal(vsock_parse_connect("CONNECT 4294967295\nxyz", 22, &port), 19);
	assert_int_equal(port, 4294967295U);
	/* Incomplete but valid beginnings ask for more. */
	assert_int_equal(vsock_parse_connect("", 0, &port), 0);
	assert_int_equal(vsock_parse_connect("CONN", 4, &port), 0);
	assert_int_equal(vsock_parse_connect("CONNECT ", 8, &port), 0);
	assert_int_equal(vsock_parse_connect("CONNECT 12", 10, &port), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_true(vsock_parse_connect(bad[i], strlen(bad[i]), &port) < 0);
	/* Bytes past `len` are never looked at. */
	assert_int_equal(vsock_parse_connect("CONNECT 5\n", 9, &port), 0);
	memset(longline, 'C', sizeof(longline));
	assert_true(vsock_parse_connect(longline, sizeof(longline), &port) < 0);
	memcpy(longline, "CONNECT ", 8);
	memset(longline + 8, '0', sizeof(longline) - 8);
	assert_true(vsock_parse_connect(longline, sizeof(longline), &port) < 0);
}

static void test_credit_math(void **state)
{
	struct vsock_conn *c = vsock_conn_create(NULL, -1, VSOCK_CONN_ESTABLISHED, 1000);

	(void)state;
	assert_non_null(c);
	/* Host → guest: buf_alloc minus what is in flight. */
	vsock_conn_set_peer_credit(c, 4096, 0);
	assert_int_equal(vsock_conn_peer_credit(c), 4096);
	c->tx_cnt = 4000;
	assert_int_equal(vsock_conn_peer_credit(c), 96);
	vsock_conn_set_peer_credit(c, 4096, 3000);
	assert_int_equal(vsock_conn_peer_credit(c), 3096);
	/* Counters wrap around 2^32. */
	c->tx_cnt = 10;
	vsock_conn_set_peer_credit(c, 100, 0xfffffff0U);
	assert_int_equal(vsock_conn_peer_credit(c), 100 - 26);
	/* A guest claiming more consumed than sent, or a shrunk window: 0. */
	vsock_conn_set_peer_credit(c, 100, 11);
	assert_int_equal(vsock_conn_peer_credit(c), 0);
	c->tx_cnt = 500;
	vsock_conn_set_peer_credit(c, 100, 0);
	assert_int_equal(vsock_conn_peer_credit(c), 0);

	/* Guest → host: what we advertised bounds what may arrive. */
	assert_true(vsock_conn_rx_fits(c, 1000));
	assert_false(vsock_conn_rx_fits(c, 1001));
	c->rx_cnt = 600;
	assert_true(vsock_conn_rx_fits(c, 400));
	assert_false(vsock_conn_rx_fits(c, 401));
	assert_false(vsock_conn_rx_fits(c, 0xffffffffU));
	c->fwd_cnt = 600; /* consumed, but not yet advertised */
	assert_false(vsock_conn_rx_fits(c, 401));
	assert_true(vsock_conn_wants_credit_update(c));
	c->last_fwd_sent = 600;
	assert_true(vsock_conn_rx_fits(c, 1000));
	assert_false(vsock_conn_wants_credit_update(c));
	c->fwd_cnt = 1099;
	assert_false(vsock_conn_wants_credit_update(c));
	c->fwd_cnt = 1100;
	assert_true(vsock_conn_wants_credit_update(c));
	vsock_conn_destroy(c);
}

/* ---- guest-initiated ----------------------------------------------------- */

static void test_guest_connect_and_data(void **state)
{
	struct fx *f = fx_new(NULL);
	int lfd = host_listen(f, 52);
	int fd = guest_connect(f, lfd, 1000, 52, 65536);
	struct vsock_hdr h;
	char buf[64];

	(void)state;
	guest_send(f, VSOCK_OP_RW, 1000, 52, 0, 65536, 0, "hello", 5);
	host_read_exact(fd, buf, 5);
	assert_memory_equal(buf, "hello", 5);

	assert_int_equal(write(fd, "world!", 6), 6);
	assert_true(guest_recv(f, &h, buf, sizeof(buf), 3000));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_int_equal(h.src_port, 52);
	assert_int_equal(h.dst_port, 1000);
	assert_int_equal(h.len, 6);
	assert_memory_equal(buf, "world!", 6);
	assert_int_equal(h.buf_alloc, VSOCK_DEFAULT_BUF_ALLOC);
	assert_int_equal(h.fwd_cnt, 5); /* the 5 bytes went to the unix socket */
	assert_int_equal(conn_count(f), 1);

	/* The guest closes: SHUTDOWN both → the host sees EOF, the guest an RST. */
	guest_send(f, VSOCK_OP_SHUTDOWN, 1000, 52, VSOCK_SHUTDOWN_BOTH, 65536, 6, NULL, 0);
	guest_expect(f, VSOCK_OP_RST, 52, 1000, NULL);
	host_expect_eof(fd);
	assert_int_equal(conn_count(f), 0);
	close(fd);
	close(lfd);
	assert_int_equal(atomic_load(&f->broken), 0);
	fx_free(f);
}

static void test_guest_connect_refused(void **state)
{
	struct fx *f = fx_new(NULL);

	(void)state;
	guest_send(f, VSOCK_OP_REQUEST, 1001, 53, 0, 65536, 0, NULL, 0);
	guest_expect(f, VSOCK_OP_RST, 53, 1001, NULL);
	assert_int_equal(conn_count(f), 0);
	fx_free(f);
}

static void test_unknown_connection_gets_rst(void **state)
{
	struct fx *f = fx_new(NULL);

	(void)state;
	guest_send(f, VSOCK_OP_RW, 2000, 99, 0, 65536, 0, "x", 1);
	guest_expect(f, VSOCK_OP_RST, 99, 2000, NULL);
	guest_send(f, VSOCK_OP_CREDIT_UPDATE, 2001, 99, 0, 65536, 0, NULL, 0);
	guest_expect(f, VSOCK_OP_RST, 99, 2001, NULL);
	guest_send(f, VSOCK_OP_RESPONSE, 2002, 99, 0, 65536, 0, NULL, 0);
	guest_expect(f, VSOCK_OP_RST, 99, 2002, NULL);
	/* An RST is never answered. */
	guest_send(f, VSOCK_OP_RST, 2003, 99, 0, 0, 0, NULL, 0);
	guest_expect_nothing(f, 100);
	fx_free(f);
}

static void test_malformed_packets(void **state)
{
	struct fx *f = fx_new(NULL);
	int lfd = host_listen(f, 54);
	int fd = guest_connect(f, lfd, 1002, 54, 65536);
	struct vsock_hdr h = {0};
	uint8_t raw[VSOCK_HDR_SIZE];

	(void)state;
	/* A header cut short: dropped, nothing else happens. */
	h = (struct vsock_hdr){.src_cid = GUEST_CID,
			       .dst_cid = 2,
			       .src_port = 1002,
			       .dst_port = 54,
			       .type = 1,
			       .op = VSOCK_OP_RW,
			       .len = 0};
	vsock_hdr_encode(&h, raw);
	memcpy(at(f, TXBUF), raw, sizeof(raw));
	set_desc(f, VSOCK_QUEUE_TX, 0, TXBUF, 20, 0, 0);
	publish(f, VSOCK_QUEUE_TX, 0);
	f->ntx = 1;
	guest_kick_tx(f);
	/* Not addressed to the host, or not from the guest's CID: dropped. */
	h.dst_cid = 7;
	vsock_hdr_encode(&h, at(f, TXBUF));
	set_desc(f, VSOCK_QUEUE_TX, 0, TXBUF, VSOCK_HDR_SIZE, 0, 0);
	publish(f, VSOCK_QUEUE_TX, 0);
	h.dst_cid = 2;
	h.src_cid = 9;
	vsock_hdr_encode(&h, at(f, TXBUF + TXSTRIDE));
	set_desc(f, VSOCK_QUEUE_TX, 2, TXBUF + TXSTRIDE, VSOCK_HDR_SIZE, 0, 0);
	publish(f, VSOCK_QUEUE_TX, 2);
	f->ntx = 2;
	guest_kick_tx(f);
	guest_expect_nothing(f, 100);
	assert_int_equal(conn_count(f), 1);

	/* A length larger than the bytes present: the connection is reset. */
	h.src_cid = GUEST_CID;
	h.len = 100;
	vsock_hdr_encode(&h, at(f, TXBUF));
	memcpy(at(f, TXBUF + 64), "abc", 3);
	set_desc(f, VSOCK_QUEUE_TX, 0, TXBUF, VSOCK_HDR_SIZE, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, VSOCK_QUEUE_TX, 1, TXBUF + 64, 3, 0, 0);
	publish(f, VSOCK_QUEUE_TX, 0);
	f->ntx = 1;
	guest_kick_tx(f);
	guest_expect(f, VSOCK_OP_RST, 54, 1002, NULL);
	host_expect_eof(fd);
	close(fd);
	assert_int_equal(conn_count(f), 0);

	/* A type other than STREAM, a bad op, data on a REQUEST: RST. */
	fd = guest_connect(f, lfd, 1003, 54, 65536);
	guest_queue(f, VSOCK_OP_RW, 1003, 54, 0, 65536, 0, "ab", 2);
	vsock_hdr_decode(at(f, TXBUF), &h);
	h.type = 2;
	vsock_hdr_encode(&h, at(f, TXBUF));
	guest_kick_tx(f);
	guest_expect(f, VSOCK_OP_RST, 54, 1003, NULL);
	host_expect_eof(fd);
	close(fd);
	fd = guest_connect(f, lfd, 1004, 54, 65536);
	guest_send(f, 42, 1004, 54, 0, 65536, 0, NULL, 0);
	guest_expect(f, VSOCK_OP_RST, 54, 1004, NULL);
	host_expect_eof(fd);
	close(fd);
	guest_send(f, VSOCK_OP_REQUEST, 1005, 54, 0, 65536, 0, "zz", 2);
	guest_expect(f, VSOCK_OP_RST, 54, 1005, NULL);
	/* A REQUEST for a connection that exists resets it. */
	fd = guest_connect(f, lfd, 1006, 54, 65536);
	guest_send(f, VSOCK_OP_REQUEST, 1006, 54, 0, 65536, 0, NULL, 0);
	guest_expect(f, VSOCK_OP_RST, 54, 1006, NULL);
	host_expect_eof(fd);
	close(fd);
	assert_int_equal(conn_count(f), 0);
	assert_int_equal(atomic_load(&f->broken), 0);
	close(lfd);
	fx_free(f);
}

static void test_bad_rx_buffer_breaks_device(void **state)
{
	struct fx_opts o = {.no_rx = true};
	struct fx *f;

	(void)state;
	f = fx_new(&o);
	/* The only rx buffer is too small for a header. */
	set_desc(f, VSOCK_QUEUE_RX, 0, RXBUF, 10, VIRTQ_DESC_F_WRITE, 0);
	publish(f, VSOCK_QUEUE_RX, 0);
	guest_send(f, VSOCK_OP_RW, 3001, 99, 0, 0, 0, NULL, 0); /* owes an RST */
	assert_true(atomic_load(&f->broken) > 0);
	assert_int_equal(used_idx(f, VSOCK_QUEUE_RX), 0);
	fx_free(f);
}

/* ---- host-initiated ------------------------------------------------------ */

static void test_host_connect(void **state)
{
	struct fx *f = fx_new(NULL);
	int fd = host_dial(f);
	struct vsock_hdr h;
	uint32_t hport;
	char buf[64];

	(void)state;
	/* The client may send data right behind its line. */
	assert_int_equal(write(fd, "CONNECT 5000\nping", 17), 17);
	guest_expect(f, VSOCK_OP_REQUEST, 0, 5000, &h);
	hport = h.src_port;
	assert_true(hport >= VSOCK_HOST_PORT_FIRST);
	assert_int_equal(h.buf_alloc, VSOCK_DEFAULT_BUF_ALLOC);
	guest_send(f, VSOCK_OP_RESPONSE, 5000, hport, 0, 65536, 0, NULL, 0);
	assert_int_equal(host_read_ok(fd), hport);
	assert_true(guest_recv(f, &h, buf, sizeof(buf), 3000));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_int_equal(h.len, 4);
	assert_memory_equal(buf, "ping", 4);
	guest_send(f, VSOCK_OP_RW, 5000, hport, 0, 65536, 4, "pong", 4);
	host_read_exact(fd, buf, 4);
	assert_memory_equal(buf, "pong", 4);

	/* The host half-closes: the guest hears SHUTDOWN SEND; it can still send. */
	shutdown(fd, SHUT_WR);
	guest_expect(f, VSOCK_OP_SHUTDOWN, hport, 5000, &h);
	assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND);
	guest_send(f, VSOCK_OP_RW, 5000, hport, 0, 65536, 4, "late", 4);
	host_read_exact(fd, buf, 4);
	assert_memory_equal(buf, "late", 4);
	/* Then the guest shuts down sending: both directions done → RST. */
	guest_send(f, VSOCK_OP_SHUTDOWN, 5000, hport, VSOCK_SHUTDOWN_SEND, 65536, 4, NULL, 0);
	guest_expect(f, VSOCK_OP_RST, hport, 5000, NULL);
	host_expect_eof(fd);
	close(fd);
	assert_int_equal(conn_count(f), 0);

	/* A second client gets a different host port. */
	fd = host_dial(f);
	assert_int_equal(write(fd, "CONNECT 5000\n", 13), 13);
	guest_expect(f, VSOCK_OP_REQUEST, 0, 5000, &h);
	assert_true(h.src_port != hport);
	/* Nobody listens in the guest: RST → the client's socket closes. */
	guest_send(f, VSOCK_OP_RST, 5000, h.src_port, 0, 0, 0, NULL, 0);
	host_expect_eof(fd);
	close(fd);
	wait_conn_count(f, 0);
	fx_free(f);
}

static void test_host_connect_bad_lines(void **state)
{
	static const char *const lines[] = {
		"CONNECT x\n",
		"HELLO\n",
		"CONNECT 4294967296\n",
		"CONNECT 123456789012345678\n",
		"CONNECTXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
		"connect 5\n",
	};
	struct fx *f = fx_new(NULL);

	(void)state;
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		int fd = host_dial(f);

		assert_int_equal(write(fd, lines[i], strlen(lines[i])), (ssize_t)strlen(lines[i]));
		host_expect_closed(fd);
		close(fd);
	}
	/* A client that closes before finishing its line. */
	{
		int fd = host_dial(f);

		assert_int_equal(write(fd, "CONNE", 5), 5);
		close(fd);
	}
	guest_expect_nothing(f, 100);
	wait_conn_count(f, 0);
	fx_free(f);
}

static void test_host_connect_timeouts(void **state)
{
	struct fx_opts o = {.connect_ms = 300};
	struct fx *f = fx_new(&o);
	int fd = host_dial(f), idle = host_dial(f);
	struct vsock_hdr h;
	uint64_t t0 = now_ms();

	(void)state;
	assert_int_equal(write(fd, "CONNECT 6000\n", 13), 13);
	guest_expect(f, VSOCK_OP_REQUEST, 0, 6000, &h);
	/* The guest never answers: the client is closed, the guest gets RST. */
	host_expect_eof(fd);
	assert_true(now_ms() - t0 >= 250);
	guest_expect(f, VSOCK_OP_RST, h.src_port, 6000, NULL);
	/* A client that never sends its line is closed too. */
	host_expect_eof(idle);
	close(fd);
	close(idle);
	wait_conn_count(f, 0);
	fx_free(f);
}

/* ---- credit ---------------------------------------------------------------- */

static void test_credit_to_guest_respected(void **state)
{
	struct fx *f = fx_new(NULL);
	int lfd = host_listen(f, 55);
	int fd = guest_connect(f, lfd, 1010, 55, 1000);
	static uint8_t big[5000], got[5000];
	uint32_t total = 0;
	struct vsock_hdr h;

	(void)state;
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7 + 1);
	assert_int_equal(write(fd, big, sizeof(big)), (ssize_t)sizeof(big));
	while (total < 1000) {
		assert_true(guest_recv(f, &h, got + total, sizeof(got) - total, 3000));
		assert_int_equal(h.op, VSOCK_OP_RW);
		total += h.len;
		assert_true(total <= 1000);
	}
	guest_expect_nothing(f, 150);
	/* The guest consumed 600 bytes: 600 more may come, no more. */
	guest_send(f, VSOCK_OP_CREDIT_UPDATE, 1010, 55, 0, 1000, 600, NULL, 0);
	while (total < 1600) {
		assert_true(guest_recv(f, &h, got + total, sizeof(got) - total, 3000));
		assert_int_equal(h.op, VSOCK_OP_RW);
		total += h.len;
		assert_true(total <= 1600);
	}
	guest_expect_nothing(f, 150);
	/* A bigger window: everything else comes. */
	guest_send(f, VSOCK_OP_CREDIT_UPDATE, 1010, 55, 0, 65536, 1600, NULL, 0);
	while (total < sizeof(big)) {
		assert_true(guest_recv(f, &h, got + total, sizeof(got) - total, 3000));
		total += h.len;
	}
	assert_int_equal(total, sizeof(big));
	assert_memory_equal(got, big, sizeof(big));
	/* A credit request is answered with a credit update. */
	guest_send(f, VSOCK_OP_CREDIT_REQUEST, 1010, 55, 0, 65536, 5000, NULL, 0);
	guest_expect(f, VSOCK_OP_CREDIT_UPDATE, 55, 1010, &h);
	assert_int_equal(h.buf_alloc, VSOCK_DEFAULT_BUF_ALLOC);
	close(fd);
	close(lfd);
	fx_free(f);
}

static void test_guest_beyond_credit_is_reset(void **state)
{
	struct fx_opts o = {.buf_alloc = 4096};
	struct fx *f = fx_new(&o);
	int lfd = host_listen(f, 56);
	int fd = guest_connect(f, lfd, 1020, 56, 65536);
	int other = guest_connect(f, lfd, 1021, 56, 65536);
	static uint8_t data[4096];
	struct vsock_hdr h;
	char buf[8];

	(void)state;
	memset(data, 'q', sizeof(data));
	/* Exactly the window is fine; one byte more in the same batch is not. */
	guest_queue(f, VSOCK_OP_RW, 1020, 56, 0, 65536, 0, data, 4096);
	guest_queue(f, VSOCK_OP_RW, 1020, 56, 0, 65536, 0, "!", 1);
	guest_kick_tx(f);
	/* Possibly a credit update first (the 4096 bytes were consumed). */
	do {
		assert_true(guest_recv(f, &h, NULL, 0, 3000));
	} while (h.op == VSOCK_OP_CREDIT_UPDATE);
	assert_int_equal(h.op, VSOCK_OP_RST);
	assert_int_equal(h.dst_port, 1020);
	host_read_exact(fd, data, sizeof(data));
	host_expect_eof(fd);
	close(fd);
	/* The other connection is unharmed. */
	guest_send(f, VSOCK_OP_RW, 1021, 56, 0, 65536, 0, "fine", 4);
	host_read_exact(other, buf, 4);
	assert_memory_equal(buf, "fine", 4);
	assert_int_equal(conn_count(f), 1);
	close(other);
	close(lfd);
	fx_free(f);
}

/* ---- shutdown, close ------------------------------------------------------------ */

static void test_shutdown_flows(void **state)
{
	struct fx *f = fx_new(NULL);
	int lfd = host_listen(f, 57);
	int fd = guest_connect(f, lfd, 1030, 57, 65536);
	struct vsock_hdr h;
	char buf[8];

	(void)state;
	/* The guest stops sending: the host reads EOF but can still write. */
	guest_send(f, VSOCK_OP_RW, 1030, 57, 0, 65536, 0, "last", 4);
	guest_send(f, VSOCK_OP_SHUTDOWN, 1030, 57, VSOCK_SHUTDOWN_SEND, 65536, 0, NULL, 0);
	host_read_exact(fd, buf, 4);
	assert_memory_equal(buf, "last", 4);
	host_expect_eof(fd);
	assert_int_equal(write(fd, "bye", 3), 3);
	assert_true(guest_recv(f, &h, buf, sizeof(buf), 3000));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_memory_equal(buf, "bye", 3);
	/* The host process closes its socket: both directions end → RST. */
	close(fd);
	guest_expect(f, VSOCK_OP_RST, 57, 1030, NULL);
	assert_int_equal(conn_count(f), 0);

	/* The host closes while the guest still has things to say: the guest
	 * hears SHUTDOWN (both), answers RST, the connection is freed. */
	fd = guest_connect(f, lfd, 1031, 57, 65536);
	assert_int_equal(write(fd, "end", 3), 3);
	close(fd);
	assert_true(guest_recv(f, &h, buf, sizeof(buf), 3000));
	assert_int_equal(h.op, VSOCK_OP_RW);
	guest_expect(f, VSOCK_OP_SHUTDOWN, 57, 1031, &h);
	assert_int_equal(h.flags & VSOCK_SHUTDOWN_SEND, VSOCK_SHUTDOWN_SEND);
	if (h.flags != VSOCK_SHUTDOWN_BOTH) {
		guest_expect(f, VSOCK_OP_SHUTDOWN, 57, 1031, &h);
		assert_int_equal(h.flags, VSOCK_SHUTDOWN_BOTH);
	}
	assert_int_equal(conn_count(f), 1);
	guest_send(f, VSOCK_OP_RST, 1031, 57, 0, 65536, 3, NULL, 0);
	assert_int_equal(conn_count(f), 0);
	guest_expect_nothing(f, 50);

	/* The guest RSTs an established connection: the host sees EOF. */
	fd = guest_connect(f, lfd, 1032, 57, 65536);
	guest_send(f, VSOCK_OP_RST, 1032, 57, 0, 65536, 0, NULL, 0);
	host_expect_eof(fd);
	close(fd);
	assert_int_equal(conn_count(f), 0);
	close(lfd);
	fx_free(f);
}

/* ---- many connections, fairness, bulk --------------------------------------- */

static void test_many_connections(void **state)
{
	enum { N = 200 };
	struct fx *f = fx_new(NULL);
	int lfd = host_listen(f, 58);
	static int fds[N];
	char b;

	(void)state;
	for (int i = 0; i < N; i++)
		fds[i] = guest_connect(f, lfd, 10000 + (uint32_t)i, 58, 65536);
	assert_int_equal(conn_count(f), N);
	for (int i = 0; i < N; i++) {
		char c = (char)('a' + i % 26);

		guest_send(f, VSOCK_OP_RW, 10000 + (uint32_t)i, 58, 0, 65536, 0, &c, 1);
	}
	for (int i = 0; i < N; i++) {
		host_read_exact(fds[i], &b, 1);
		assert_int_equal(b, 'a' + i % 26);
	}
	/* Reset one in the middle; the others carry on. */
	guest_send(f, VSOCK_OP_RST, 10000 + N / 2, 58, 0, 0, 0, NULL, 0);
	host_expect_eof(fds[N / 2]);
	assert_int_equal(conn_count(f), N - 1);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	close(lfd);
	fx_free(f);
}

static void test_round_robin(void **state)
{
	struct fx_opts o = {.nrx = 2}; /* the guest is slow to give buffers */
	struct fx *f = fx_new(&o);
	int lfd = host_listen(f, 59);
	int a = guest_connect(f, lfd, 1040, 59, 1 << 20);
	int b = guest_connect(f, lfd, 1041, 59, 1 << 20);
	static uint8_t blob[64 * 1024];
	struct vsock_hdr h;
	int seen[2] = {0, 0}, last = -1, switches = 0;

	(void)state;
	/* Both sockets hold far more than the guest's two rx buffers: the
	 * device must alternate between them as buffers come back. */
	memset(blob, 'r', sizeof(blob));
	assert_int_equal(write(a, blob, sizeof(blob)), (ssize_t)sizeof(blob));
	assert_int_equal(write(b, blob, sizeof(blob)), (ssize_t)sizeof(blob));
	for (int i = 0; i < 30; i++) { /* of 32 packets in all */
		int who;

		assert_true(guest_recv(f, &h, NULL, 0, 3000));
		assert_int_equal(h.op, VSOCK_OP_RW);
		who = h.dst_port == 1040 ? 0 : 1;
		seen[who]++;
		if (last >= 0 && who != last)
			switches++;
		last = who;
	}
	/* Neither connection starves the other. */
	assert_true(seen[0] >= 10 && seen[1] >= 10);
	assert_true(switches >= 10);
	close(a);
	close(b);
	close(lfd);
	fx_free(f);
}

/* One stream of the bulk test, seen from the guest and from the host. */
struct bulk {
	uint32_t gport, hport;
	int fd;
	/* guest → host */
	uint32_t g_sent, h_got;
	uint32_t dev_buf_alloc, dev_fwd_cnt; /* the device's credit as last heard */
	/* host → guest */
	uint32_t h_sent, g_got, g_fwd_adv; /* guest consumed and advertised */
};

#define BULK_BYTES  (1U << 20)
#define BULK_WINDOW (64U * 1024) /* the guest's buf_alloc */

static uint8_t bulk_byte(uint32_t stream, uint32_t dir, uint32_t i)
{
	return (uint8_t)((i * 131u + stream * 17u + dir * 101u) ^ (i >> 11));
}

static void test_bulk_both_ways(void **state)
{
	enum { N = 4 };
	struct fx *f = fx_new(NULL);
	int lfd = host_listen(f, 60);
	struct bulk s[N];
	static uint8_t buf[64 * 1024];
	uint64_t end = now_ms() + 60000;
	bool done = false;

	(void)state;
	for (uint32_t i = 0; i < N; i++) {
		s[i] = (struct bulk){
			.gport = 20000 + i, .hport = 60, .dev_buf_alloc = VSOCK_DEFAULT_BUF_ALLOC};
		s[i].fd = guest_connect(f, lfd, s[i].gport, 60, BULK_WINDOW);
		fcntl(s[i].fd, F_SETFL, O_NONBLOCK);
	}
	while (!done) {
		struct vsock_hdr h;

		assert_true(now_ms() < end);
		/* Guest: take what arrived, check it, hand credit back. */
		while (guest_recv(f, &h, buf, sizeof(buf), 0)) {
			struct bulk *b = NULL;

			for (int i = 0; i < N; i++)
				if (s[i].gport == h.dst_port)
					b = &s[i];
			assert_non_null(b);
			b->dev_buf_alloc = h.buf_alloc;
			b->dev_fwd_cnt = h.fwd_cnt;
			if (h.op != VSOCK_OP_RW) {
				assert_int_equal(h.op, VSOCK_OP_CREDIT_UPDATE);
				continue;
			}
			/* Never more than the window the guest advertised. */
			assert_true(b->g_got + h.len - b->g_fwd_adv <= BULK_WINDOW);
			for (uint32_t k = 0; k < h.len; k++)
				assert_int_equal(buf[k], bulk_byte(h.dst_port, 1, b->g_got + k));
			b->g_got += h.len;
			if (b->g_got - b->g_fwd_adv >= BULK_WINDOW / 2) {
				b->g_fwd_adv = b->g_got;
				guest_queue(f, VSOCK_OP_CREDIT_UPDATE, b->gport, 60, 0, BULK_WINDOW,
					    b->g_fwd_adv, NULL, 0);
			}
		}
		/* Guest: send what the device's credit allows. */
		for (int i = 0; i < N && f->ntx < NTX; i++) {
			struct bulk *b = &s[i];
			uint32_t credit = b->dev_buf_alloc - (b->g_sent - b->dev_fwd_cnt);
			uint32_t n = BULK_BYTES - b->g_sent;

			if (n > credit)
				n = credit;
			if (n > 16384)
				n = 16384;
			if (!n)
				continue;
			for (uint32_t k = 0; k < n; k++)
				buf[k] = bulk_byte(b->gport, 0, b->g_sent + k);
			guest_queue(f, VSOCK_OP_RW, b->gport, 60, 0, BULK_WINDOW, b->g_fwd_adv, buf,
				    n);
			b->g_sent += n;
		}
		if (f->ntx)
			guest_kick_tx(f);
		/* Host: write and read what the sockets take. */
		done = true;
		for (int i = 0; i < N; i++) {
			struct bulk *b = &s[i];
			ssize_t r;

			if (b->h_sent < BULK_BYTES) {
				uint32_t n = BULK_BYTES - b->h_sent;

				if (n > sizeof(buf))
					n = sizeof(buf);
				for (uint32_t k = 0; k < n; k++)
					buf[k] = bulk_byte(b->gport, 1, b->h_sent + k);
				r = write(b->fd, buf, n);
				if (r > 0)
					b->h_sent += (uint32_t)r;
			}
			r = read(b->fd, buf, sizeof(buf));
			if (r > 0) {
				for (ssize_t k = 0; k < r; k++)
					assert_int_equal(buf[k], bulk_byte(b->gport, 0,
									   b->h_got + (uint32_t)k));
				b->h_got += (uint32_t)r;
			}
			if (b->h_got < BULK_BYTES || b->g_got < BULK_BYTES)
				done = false;
		}
		usleep(200);
	}
	for (int i = 0; i < N; i++)
		close(s[i].fd);
	close(lfd);
	assert_int_equal(atomic_load(&f->broken), 0);
	fx_free(f);
}

static void test_guest_data_buffered(void **state)
{
	struct fx_opts o = {.buf_alloc = 1U << 20};
	struct fx *f = fx_new(&o);
	int lfd = host_listen(f, 62);
	int fd = guest_connect(f, lfd, 1060, 62, 65536);
	static uint8_t chunk[16384], got[1U << 20];
	uint32_t sent = 0, fwd = 0;
	struct vsock_hdr h;

	(void)state;
	/* The host reads nothing while the guest sends its whole window: what
	 * the unix socket cannot hold waits in the device. */
	while (sent < sizeof(got)) {
		for (uint32_t k = 0; k < sizeof(chunk); k++)
			chunk[k] = bulk_byte(7, 0, sent + k);
		guest_queue(f, VSOCK_OP_RW, 1060, 62, 0, 65536, 0, chunk, sizeof(chunk));
		sent += sizeof(chunk);
		if (f->ntx == NTX)
			guest_kick_tx(f);
	}
	if (f->ntx)
		guest_kick_tx(f);
	assert_int_equal(conn_count(f), 1);
	host_read_exact(fd, got, sizeof(got));
	for (uint32_t k = 0; k < sizeof(got); k++)
		assert_int_equal(got[k], bulk_byte(7, 0, k));
	/* Credit comes back unasked once half the window is consumed... */
	while (fwd < sizeof(got) / 2) {
		assert_true(guest_recv(f, &h, NULL, 0, 3000));
		assert_int_equal(h.op, VSOCK_OP_CREDIT_UPDATE);
		fwd = h.fwd_cnt;
	}
	/* ...and all of it when asked. */
	guest_send(f, VSOCK_OP_CREDIT_REQUEST, 1060, 62, 0, 65536, 0, NULL, 0);
	guest_expect(f, VSOCK_OP_CREDIT_UPDATE, 62, 1060, &h);
	assert_int_equal(h.fwd_cnt, sizeof(got));
	close(fd);
	close(lfd);
	fx_free(f);
}

/* ---- transport reset, device reset, config ------------------------------------- */

static void reset_cb(void *opaque, uint32_t events)
{
	struct fx *f = opaque;

	(void)events;
	assert_int_equal(virtio_vsock_transport_reset(f->v), 0);
}

/* The guest's event buffer 0 goes (back) on the event queue. */
static void guest_post_event_buffer(struct fx *f)
{
	memset(at(f, EVBUF), 0xee, 4);
	set_desc(f, VSOCK_QUEUE_EVENT, 0, EVBUF, 4, VIRTQ_DESC_F_WRITE, 0);
	publish(f, VSOCK_QUEUE_EVENT, 0);
	kick(f, VSOCK_QUEUE_EVENT);
}

static void test_transport_reset(void **state)
{
	struct fx *f = fx_new(NULL);
	int lfd = host_listen(f, 61);
	int a = guest_connect(f, lfd, 1050, 61, 65536);
	int b = host_dial(f);
	struct vsock_hdr h, h2;
	uint32_t id = 0xffffffff;

	(void)state;
	assert_int_equal(write(b, "CONNECT 7\n", 10), 10);
	guest_expect(f, VSOCK_OP_REQUEST, 0, 7, NULL);
	assert_int_equal(conn_count(f), 2);
	/* No event buffer yet: the event waits for one. */
	evloop_call_sync(f->loop, reset_cb, f);
	host_expect_eof(a);
	host_expect_eof(b);
	close(a);
	close(b);
	assert_int_equal(conn_count(f), 0);
	assert_int_equal(used_idx(f, VSOCK_QUEUE_EVENT), 0);
	guest_post_event_buffer(f);
	assert_int_equal(used_idx(f, VSOCK_QUEUE_EVENT), 1);
	memcpy(&id, at(f, EVBUF), 4);
	assert_int_equal(id, VSOCK_EVENT_TRANSPORT_RESET);
	assert_true(atomic_load(&f->irqs[VSOCK_QUEUE_EVENT]) > 0);
	/* No RSTs were sent for the dropped connections. */
	guest_expect_nothing(f, 100);

	/* Until the guest has handled the event, new connections wait: a host
	 * CONNECT's REQUEST and the RESPONSE to a guest REQUEST. A packet for
	 * an unknown connection is still answered with RST. */
	b = host_dial(f);
	assert_int_equal(write(b, "CONNECT 7\n", 10), 10);
	guest_send(f, VSOCK_OP_REQUEST, 1051, 61, 0, 65536, 0, NULL, 0);
	wait_conn_count(f, 2);
	a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(a >= 0);
	guest_send(f, VSOCK_OP_RW, 2000, 99, 0, 65536, 0, "x", 1);
	guest_expect(f, VSOCK_OP_RST, 99, 2000, NULL);
	kick(f, VSOCK_QUEUE_EVENT); /* a notification without a new buffer */
	guest_expect_nothing(f, 100);
	/* The guest handled it and put the buffer back: both go out. */
	guest_post_event_buffer(f);
	assert_true(guest_recv(f, &h, NULL, 0, 3000));
	assert_true(guest_recv(f, &h2, NULL, 0, 3000));
	if (h.op != VSOCK_OP_REQUEST) {
		struct vsock_hdr t = h;

		h = h2;
		h2 = t;
	}
	assert_int_equal(h.op, VSOCK_OP_REQUEST);
	assert_int_equal(h.dst_port, 7);
	assert_int_equal(h2.op, VSOCK_OP_RESPONSE);
	assert_int_equal(h2.dst_port, 1051);
	assert_int_equal(h2.src_port, 61);
	/* No second event, and the device works as before. */
	assert_int_equal(used_idx(f, VSOCK_QUEUE_EVENT), 1);
	guest_send(f, VSOCK_OP_RESPONSE, 7, h.src_port, 0, 65536, 0, NULL, 0);
	assert_int_equal(host_read_ok(b), h.src_port);
	close(a);
	close(b);
	close(lfd);
	fx_free(f);
}

/* ---- snapshot section and restore ---------------------------------------------- */

struct snap_arg {
	struct fx *f;
	struct snap_writer *w;
	const struct snap_section *sec;
	int ret;
};

static void save_cb(void *opaque, uint32_t events)
{
	struct snap_arg *a = opaque;

	(void)events;
	virtio_vsock_save(a->f->v, a->w, 0);
}

static void restore_cb(void *opaque, uint32_t events)
{
	struct snap_arg *a = opaque;

	(void)events;
	a->ret = virtio_vsock_restore(a->f->v, a->sec);
}

/* Saves f's device into `w` (initialised here) and points `sec` at its
 * section. */
static void save_section(struct fx *f, struct snap_writer *w, struct snap_section *sec)
{
	struct snap_arg a = {.f = f, .w = w};
	struct snap_file file;
	char why[128];

	assert_int_equal(snap_writer_init(w), 0);
	evloop_call_sync(f->loop, save_cb, &a);
	assert_int_equal(snap_writer_seal(w, NULL), 0);
	assert_int_equal(snap_parse(w->buf, w->len, &file, why, sizeof(why)), 0);
	assert_true(snap_find(&file, SNAP_SEC_VIRTIO_VSOCK, 0, sec));
}

static int restore_section(struct fx *f, const void *data, uint32_t len)
{
	struct snap_section sec = {
		.type = SNAP_SEC_VIRTIO_VSOCK, .instance = 0, .len = len, .data = data};
	struct snap_arg a = {.f = f, .sec = &sec};

	evloop_call_sync(f->loop, restore_cb, &a);
	return a.ret;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void test_snapshot_restore_sends_rsts(void **state)
{
	struct fx *f = fx_new(NULL), *g;
	int lfd = host_listen(f, 61);
	int a = guest_connect(f, lfd, 1050, 61, 65536);
	int b = host_dial(f), c = host_dial(f), d = host_dial(f);
	struct snap_writer w;
	struct snap_section sec;
	struct vsock_hdr h;
	uint32_t hport, dport, cid;
	uint8_t raw[160];
	char buf[16];

	(void)state;
	assert_int_equal(write(b, "CONNECT 7\n", 10), 10);
	guest_expect(f, VSOCK_OP_REQUEST, 0, 7, &h);
	hport = h.src_port;
	guest_send(f, VSOCK_OP_RESPONSE, 7, hport, 0, 65536, 0, NULL, 0);
	assert_int_equal(host_read_ok(b), hport);
	/* d: established, but the guest has half-closed it: not idle. */
	assert_int_equal(write(d, "CONNECT 8\n", 10), 10);
	guest_expect(f, VSOCK_OP_REQUEST, 0, 8, &h);
	dport = h.src_port;
	guest_send(f, VSOCK_OP_RESPONSE, 8, dport, 0, 65536, 0, NULL, 0);
	assert_int_equal(host_read_ok(d), dport);
	guest_send(f, VSOCK_OP_SHUTDOWN, 8, dport, VSOCK_SHUTDOWN_SEND, 65536, 0, NULL, 0);
	/* b carries a few bytes each way, so its credit counters move. */
	assert_int_equal(write(b, "hi", 2), 2);
	assert_true(guest_recv(f, &h, buf, sizeof(buf), 3000));
	assert_int_equal(h.len, 2);
	guest_send(f, VSOCK_OP_RW, 7, hport, 0, 65536, 2, "yo", 2);
	host_read_exact(b, buf, 2);
	wait_conn_count(f, 4); /* c has not sent its line: the guest never heard of it */

	save_section(f, &w, &sec);
	/* cid, next host port, the pairs to reset: (1050, 61), guest-made,
	 * and (8, dport), half-closed; then b, parked, with its counters. */
	assert_int_equal(sec.len, 8 + 4 + 4 + 2 * 8 + 4 + 40);
	memcpy(&cid, sec.data, 4);
	assert_int_equal(cid, GUEST_CID);
	assert_int_equal(get32(sec.data + 8), dport + 1);
	assert_int_equal(get32(sec.data + 12), 2);
	assert_int_equal(get32(sec.data + 16), 1050);
	assert_int_equal(get32(sec.data + 20), 61);
	assert_int_equal(get32(sec.data + 24), 8);
	assert_int_equal(get32(sec.data + 28), dport);
	assert_int_equal(get32(sec.data + 32), 1);
	assert_int_equal(get32(sec.data + 36), 7);
	assert_int_equal(get32(sec.data + 40), hport);
	assert_int_equal(get32(sec.data + 52), 2); /* tx_cnt: "hi" */
	assert_int_equal(get32(sec.data + 60), 2); /* rx_cnt: "yo" */
	memcpy(raw, sec.data, sec.len);
	snap_writer_release(&w);

	/* The restored device: an RST for each listed pair, no TRANSPORT_RESET;
	 * a host CONNECT 7 takes the parked stream over at once (no REQUEST,
	 * the same host port) and bytes flow on it both ways. */
	g = fx_new(NULL);
	guest_post_event_buffer(g);
	assert_int_equal(restore_section(g, raw, 8 + 4 + 4 + 16 + 4 + 40), 0);
	guest_expect(g, VSOCK_OP_RST, 61, 1050, NULL);
	guest_expect(g, VSOCK_OP_RST, dport, 8, NULL);
	assert_int_equal(used_idx(g, VSOCK_QUEUE_EVENT), 0);
	assert_int_equal(conn_count(g), 1);
	close(b);
	b = host_dial(g);
	assert_int_equal(write(b, "CONNECT 7\nping", 14), 14);
	assert_int_equal(host_read_ok(b), hport);
	assert_true(guest_recv(g, &h, buf, sizeof(buf), 3000));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_int_equal(h.src_port, hport);
	assert_int_equal(h.dst_port, 7);
	assert_int_equal(h.len, 4);
	assert_memory_equal(buf, "ping", 4);
	guest_send(g, VSOCK_OP_RW, 7, hport, 0, 65536, 6, "pong", 4);
	host_read_exact(b, buf, 4);
	assert_memory_equal(buf, "pong", 4);
	/* Another client for port 7: a new connection, a host port never used. */
	close(c);
	c = host_dial(g);
	assert_int_equal(write(c, "CONNECT 7\n", 10), 10);
	guest_expect(g, VSOCK_OP_REQUEST, dport + 1, 7, NULL);
	guest_send(g, VSOCK_OP_RESPONSE, 7, dport + 1, 0, 65536, 0, NULL, 0);
	assert_int_equal(host_read_ok(c), dport + 1);
	close(b);
	close(a);
	close(c);
	close(d);
	close(lfd);
	fx_free(g);
	fx_free(f);
}

/* What the guest does with a parked stream before anyone claims it: bytes
 * it sends wait for the client (after its OK line); a SHUTDOWN ends it. */
static void test_parked_connection_guest_side(void **state)
{
	struct fx *f = fx_new(NULL), *g;
	int b = host_dial(f);
	struct snap_writer w;
	struct snap_section sec;
	struct vsock_hdr h;
	uint32_t hport;
	uint8_t raw[128];
	uint32_t len;
	char buf[16];

	(void)state;
	assert_int_equal(write(b, "CONNECT 9\n", 10), 10);
	guest_expect(f, VSOCK_OP_REQUEST, 0, 9, &h);
	hport = h.src_port;
	guest_send(f, VSOCK_OP_RESPONSE, 9, hport, 0, 65536, 0, NULL, 0);
	assert_int_equal(host_read_ok(b), hport);
	wait_conn_count(f, 1);
	save_section(f, &w, &sec);
	len = sec.len;
	memcpy(raw, sec.data, sec.len);
	snap_writer_release(&w);
	close(b);

	g = fx_new(NULL);
	assert_int_equal(restore_section(g, raw, len), 0);
	guest_send(g, VSOCK_OP_RW, 9, hport, 0, 65536, 0, "early", 5);
	guest_expect_nothing(g, 50);
	b = host_dial(g);
	assert_int_equal(write(b, "CONNECT 9\n", 10), 10);
	assert_int_equal(host_read_ok(b), hport);
	host_read_exact(b, buf, 5);
	assert_memory_equal(buf, "early", 5);
	close(b);
	fx_free(g);

	/* The guest closes it while parked: RST, and it is gone. */
	g = fx_new(NULL);
	assert_int_equal(restore_section(g, raw, len), 0);
	assert_int_equal(conn_count(g), 1);
	guest_send(g, VSOCK_OP_SHUTDOWN, 9, hport, VSOCK_SHUTDOWN_BOTH, 65536, 0, NULL, 0);
	guest_expect(g, VSOCK_OP_RST, hport, 9, NULL);
	wait_conn_count(g, 0);
	b = host_dial(g);
	assert_int_equal(write(b, "CONNECT 9\n", 10), 10);
	guest_expect(g, VSOCK_OP_REQUEST, hport + 1, 9, NULL);
	close(b);
	fx_free(g);
	fx_free(f);
}

static void test_snapshot_lists_owed_rsts(void **state)
{
	struct fx_opts o = {.no_rx = true};
	struct fx *f = fx_new(&o), *g;
	struct snap_writer w;
	struct snap_section sec;
	uint8_t raw[64];

	(void)state;
	/* No rx buffer: the RST for this unknown connection stays owed. */
	guest_send(f, VSOCK_OP_RW, 2000, 99, 0, 65536, 0, "x", 1);
	save_section(f, &w, &sec);
	assert_int_equal(sec.len, 8 + 4 + 4 + 8 + 4); /* no parked connection */
	assert_int_equal(get32(sec.data + 8), VSOCK_HOST_PORT_FIRST);
	assert_int_equal(get32(sec.data + 16), 2000);
	assert_int_equal(get32(sec.data + 20), 99);
	memcpy(raw, sec.data, sec.len);
	snap_writer_release(&w);
	g = fx_new(NULL);
	assert_int_equal(restore_section(g, raw, 28), 0);
	guest_expect(g, VSOCK_OP_RST, 99, 2000, NULL);
	guest_expect_nothing(g, 50);
	fx_free(g);
	fx_free(f);
}

static void test_restore_without_list_resets_transport(void **state)
{
	struct fx *f = fx_new(NULL);
	uint8_t raw[16] = {GUEST_CID};
	struct vsock_hdr h;
	int b;

	(void)state;
	/* A section from before the list (the CID alone): TRANSPORT_RESET,
	 * host ports from 2^31, and a host CONNECT waits for the guest to
	 * handle the event. */
	f->q[VSOCK_QUEUE_EVENT].event_idx = true; /* as Linux negotiates it */
	guest_post_event_buffer(f);
	assert_int_equal(restore_section(f, raw, 8), 0);
	assert_int_equal(used_idx(f, VSOCK_QUEUE_EVENT), 1);
	/* With event_idx the guest kicks only when asked to (avail_event):
	 * the device asks to hear of the next buffer put back. */
	{
		uint16_t ev;

		memcpy(&ev, at(f, q_used(VSOCK_QUEUE_EVENT) + 4 + 8ULL * QSIZE), 2);
		assert_int_equal(ev, 1);
	}
	b = host_dial(f);
	assert_int_equal(write(b, "CONNECT 7\n", 10), 10);
	wait_conn_count(f, 1);
	guest_expect_nothing(f, 100);
	guest_post_event_buffer(f);
	guest_expect(f, VSOCK_OP_REQUEST, 1U << 31, 7, &h);
	close(b); /* before the guest answered: RST */
	guest_expect(f, VSOCK_OP_RST, 1U << 31, 7, NULL);

	/* "All": the same with the saved host port. */
	put32(raw + 8, VSOCK_HOST_PORT_FIRST + 5);
	put32(raw + 12, 0xffffffff);
	assert_int_equal(restore_section(f, raw, 16), 0);
	assert_int_equal(used_idx(f, VSOCK_QUEUE_EVENT), 2);
	guest_post_event_buffer(f);
	b = host_dial(f);
	assert_int_equal(write(b, "CONNECT 7\n", 10), 10);
	guest_expect(f, VSOCK_OP_REQUEST, VSOCK_HOST_PORT_FIRST + 5, 7, NULL);
	close(b);
	fx_free(f);
}

static void test_restore_refuses_bad_sections(void **state)
{
	struct fx *f = fx_new(NULL);
	uint8_t raw[32] = {0};
	uint64_t cid;
	struct snap_section sec = {.type = SNAP_SEC_VIRTIO_VSOCK, .data = raw};

	(void)state;
	raw[0] = GUEST_CID;
	put32(raw + 8, VSOCK_HOST_PORT_FIRST);
	put32(raw + 12, 1);
	put32(raw + 16, 5);
	put32(raw + 20, 6);
	sec.len = 24;
	assert_int_equal(virtio_vsock_saved_cid(&sec, &cid), 0);
	assert_int_equal(cid, GUEST_CID);
	for (uint32_t len = 0; len < 24; len++) {
		sec.len = len;
		if (len == 8)
			continue; /* the old format */
		assert_int_equal(virtio_vsock_saved_cid(&sec, &cid), -EINVAL);
		assert_int_equal(restore_section(f, raw, len), -EINVAL);
	}
	/* More pairs than an RST ring holds; a host port below 2^30; bytes
	 * after "all"; a CID of 2; another CID than the device's. */
	put32(raw + 12, 1025);
	assert_int_equal(restore_section(f, raw, 24), -EINVAL);
	put32(raw + 12, 1);
	put32(raw + 8, 5);
	assert_int_equal(restore_section(f, raw, 24), -EINVAL);
	put32(raw + 8, VSOCK_HOST_PORT_FIRST);
	put32(raw + 12, 0xffffffff);
	assert_int_equal(restore_section(f, raw, 24), -EINVAL);
	raw[0] = 2;
	assert_int_equal(restore_section(f, raw, 8), -EINVAL);
	raw[0] = GUEST_CID + 1;
	assert_int_equal(restore_section(f, raw, 8), -EINVAL);
	raw[0] = GUEST_CID;
	assert_int_equal(restore_section(f, raw, 8), 0);
	/* Parked records: a count with no record, a partial record, owed
	 * packets other than a credit update, the same pair twice. */
	{
		uint8_t p[128] = {GUEST_CID};

		put32(p + 8, VSOCK_HOST_PORT_FIRST + 9);
		put32(p + 12, 0);
		put32(p + 16, 0);
		assert_int_equal(restore_section(f, p, 20), 0);
		put32(p + 16, 1);
		assert_int_equal(restore_section(f, p, 20), -EINVAL);
		assert_int_equal(restore_section(f, p, 20 + 39), -EINVAL);
		put32(p + 20, 7);
		put32(p + 24, VSOCK_HOST_PORT_FIRST);
		put32(p + 28, 65536);
		assert_int_equal(restore_section(f, p, 60), 0);
		put32(p + 56, VSOCK_PEND_REQUEST);
		assert_int_equal(restore_section(f, p, 60), -EINVAL);
		put32(p + 56, 0);
		put32(p + 16, 2);
		memcpy(p + 60, p + 20, 40);
		assert_int_equal(restore_section(f, p, 100), -EINVAL);
		assert_int_equal(conn_count(f), 0);
	}
	fx_free(f);
}

struct cfg_arg {
	struct fx *f;
	uint64_t off;
	uint32_t len;
	uint8_t data[8];
};

static void cfg_cb(void *opaque, uint32_t events)
{
	struct cfg_arg *a = opaque;

	(void)events;
	virtio_vsock_ops()->config_read(a->f->v, a->off, a->data, a->len);
}

static void test_config_and_ops(void **state)
{
	struct fx *f = fx_new(NULL);
	const struct virtio_device_ops *ops = virtio_vsock_ops();
	struct cfg_arg a = {.f = f, .off = 0, .len = 8};
	uint64_t cid;

	(void)state;
	assert_int_equal(ops->device_id, 19);
	assert_int_equal(ops->num_queues, 3);
	evloop_call_sync(f->loop, cfg_cb, &a);
	memcpy(&cid, a.data, 8);
	assert_int_equal(cid, GUEST_CID);
	a = (struct cfg_arg){.f = f, .off = 4, .len = 4};
	evloop_call_sync(f->loop, cfg_cb, &a);
	assert_int_equal(a.data[0], 0);
	a = (struct cfg_arg){.f = f, .off = 0x200, .len = 4};
	memset(a.data, 0xaa, sizeof(a.data));
	evloop_call_sync(f->loop, cfg_cb, &a);
	assert_int_equal(a.data[0], 0);
	fx_free(f);
}

static void test_create_refusals(void **state)
{
	struct evloop *loop = evloop_create();
	char dir[] = "/tmp/kiln-vsock-XXXXXX", path[64], longp[200];
	struct virtio_vsock_config cfg = {.guest_cid = 3};
	struct virtio_vsock *v;
	int fd;

	(void)state;
	assert_non_null(loop);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/v.sock", dir);
	cfg.uds_path = path;
	cfg.guest_cid = 2;
	assert_null(virtio_vsock_create(loop, &cfg));
	cfg.guest_cid = 0xffffffffULL;
	assert_null(virtio_vsock_create(loop, &cfg));
	cfg.guest_cid = 3;
	memset(longp, 'a', sizeof(longp));
	longp[100] = '\0';
	cfg.uds_path = longp;
	assert_null(virtio_vsock_create(loop, &cfg));
	/* A regular file in the way is never removed. */
	cfg.uds_path = path;
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_null(virtio_vsock_create(loop, &cfg));
	assert_int_equal(access(path, F_OK), 0);
	unlink(path);
	/* A stale socket file is replaced; a live one is not. */
	v = virtio_vsock_create(loop, &cfg);
	assert_non_null(v);
	assert_null(virtio_vsock_create(loop, &cfg));
	virtio_vsock_destroy(v);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	{
		struct sockaddr_un sa = {.sun_family = AF_UNIX};

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
		assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	}
	close(fd); /* leaves a stale socket file */
	v = virtio_vsock_create(loop, &cfg);
	assert_non_null(v);
	virtio_vsock_destroy(v);
	assert_int_equal(access(path, F_OK), -1);
	rmdir(dir);
	evloop_destroy(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_codec),
		cmocka_unit_test(test_parse_connect),
		cmocka_unit_test(test_credit_math),
		cmocka_unit_test(test_guest_connect_and_data),
		cmocka_unit_test(test_guest_connect_refused),
		cmocka_unit_test(test_unknown_connection_gets_rst),
		cmocka_unit_test(test_malformed_packets),
		cmocka_unit_test(test_bad_rx_buffer_breaks_device),
		cmocka_unit_test(test_host_connect),
		cmocka_unit_test(test_host_connect_bad_lines),
		cmocka_unit_test(test_host_connect_timeouts),
		cmocka_unit_test(test_credit_to_guest_respected),
		cmocka_unit_test(test_guest_beyond_credit_is_reset),
		cmocka_unit_test(test_shutdown_flows),
		cmocka_unit_test(test_many_connections),
		cmocka_unit_test(test_round_robin),
		cmocka_unit_test(test_bulk_both_ways),
		cmocka_unit_test(test_guest_data_buffered),
		cmocka_unit_test(test_transport_reset),
		cmocka_unit_test(test_snapshot_restore_sends_rsts),
		cmocka_unit_test(test_parked_connection_guest_side),
		cmocka_unit_test(test_snapshot_lists_owed_rsts),
		cmocka_unit_test(test_restore_without_list_resets_transport),
		cmocka_unit_test(test_restore_refuses_bad_sections),
		cmocka_unit_test(test_config_and_ops),
		cmocka_unit_test(test_create_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
