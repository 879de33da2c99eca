/* vsock_conn.h - one virtio-vsock stream connection and the table of them.
 *
 * A connection joins a guest stream socket (guest CID, guest port) to a host
 * unix stream socket, keyed by (guest port, host port). This module holds
 * what a connection is and knows: its wire header, its state, its credit
 * arithmetic (virtio 1.2, 5.10.6.3 "Buffer Space Management"), the bytes the
 * guest sent that the unix socket could not take yet, its unix socket and
 * its registration on the event loop, the hash table and the lists the
 * device schedules connections on. The protocol engine that drives it from
 * the virtqueues is vsock.c.
 *
 * Everything here runs on the I/O event loop thread; nothing is locked.
 */
#ifndef KILN_VMM_VIRTIO_VSOCK_CONN_H
#define KILN_VMM_VIRTIO_VSOCK_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/evloop.h"

/* ---- the packet header (virtio 1.2, 5.10.6), 44 bytes little-endian ---- */
#define VSOCK_HOST_CID	  2ULL
#define VSOCK_HDR_SIZE	  44
#define VSOCK_TYPE_STREAM 1
#define VSOCK_MAX_PAYLOAD (64U * 1024) /* largest payload kiln accepts or sends */

enum vsock_op {
	VSOCK_OP_INVALID = 0,
	VSOCK_OP_REQUEST = 1,
	VSOCK_OP_RESPONSE = 2,
	VSOCK_OP_RST = 3,
	VSOCK_OP_SHUTDOWN = 4,
	VSOCK_OP_RW = 5,
	VSOCK_OP_CREDIT_UPDATE = 6,
	VSOCK_OP_CREDIT_REQUEST = 7,
};

#define VSOCK_SHUTDOWN_RCV  1U /* the sender will receive no more */
#define VSOCK_SHUTDOWN_SEND 2U /* the sender will send no more */
#define VSOCK_SHUTDOWN_BOTH (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND)

/* The event queue's one event (struct virtio_vsock_event: le32 id). */
#define VSOCK_EVENT_TRANSPORT_RESET 0U
#define VSOCK_EVENT_SIZE	    4

/* A decoded header, in host byte order. */
struct vsock_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port;
	uint32_t len;
	uint16_t type, op;
	uint32_t flags;
	uint32_t buf_alloc, fwd_cnt;
};

/* Decodes the 44 wire bytes at `raw` into `h`. */
void vsock_hdr_decode(const uint8_t *raw, struct vsock_hdr *h);

/* Encodes `h` into 44 wire bytes at `raw`. */
void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t *raw);

/* ---- the host side's first line: "CONNECT <port>\n" ---- */
#define VSOCK_CONNECT_LINE_MAX 32 /* longest line accepted, newline included */

/* Parses the start of a host client's stream, `buf` of `len` bytes (need not
 * be NUL-terminated). The line must be exactly "CONNECT ", 1 to 10 decimal
 * digits whose value fits in 32 bits, and "\n". Returns the line's length
 * (bytes consumed, newline included) and sets *port; 0 when `buf` is a valid
 * beginning without its newline yet; -EINVAL when it cannot become a valid
 * line; -E2BIG when VSOCK_CONNECT_LINE_MAX bytes came without a newline. */
int vsock_parse_connect(const char *buf, size_t len, uint32_t *port);

/* ---- intrusive doubly linked lists (circular, with a head node) ---- */
struct vsock_list {
	struct vsock_list *prev, *next;
};

static inline void vsock_list_init(struct vsock_list *l)
{
	l->prev = l->next = l;
}

static inline bool vsock_list_empty(const struct vsock_list *l)
{
	return l->next == l;
}

/* True when node `n` (initialised) is on some list. */
static inline bool vsock_list_linked(const struct vsock_list *n)
{
	return n->next != n;
}

static inline void vsock_list_add_tail(struct vsock_list *head, struct vsock_list *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

/* Unlinks `n` if it is linked (and leaves it initialised). */
static inline void vsock_list_del(struct vsock_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	vsock_list_init(n);
}

#define vsock_list_entry(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---- a connection ---- */
enum vsock_conn_state {
	VSOCK_CONN_HOST_LINE,	  /* a host client connected; reading its CONNECT line */
	VSOCK_CONN_HOST_REQUEST,  /* REQUEST for the guest queued or sent; awaiting RESPONSE */
	VSOCK_CONN_GUEST_CONNECT, /* the guest asked; our connect() to PATH_port is pending */
	VSOCK_CONN_ESTABLISHED,	  /* bytes flow both ways */
	VSOCK_CONN_CLOSING,	  /* the unix side is gone; awaiting the guest's RST */
	VSOCK_CONN_PARKED,	  /* established in a snapshot; no unix side until a host
				     client's CONNECT for its guest port claims it */
};

/* Control packets a connection owes the guest (bits of `pending`). */
#define VSOCK_PEND_REQUEST  1U
#define VSOCK_PEND_RESPONSE 2U
#define VSOCK_PEND_CREDIT   4U
#define VSOCK_PEND_SHUTDOWN 8U

/* One chunk of guest data the unix socket has not taken yet. */
struct vsock_chunk {
	struct vsock_chunk *next;
	uint32_t len, off; /* bytes in data[], bytes already written */
	bool counted;	   /* counts toward fwd_cnt (false for our own "OK" line) */
	uint8_t data[];
};

struct vsock_conn {
	struct vsock_conn *hnext; /* hash chain */
	struct vsock_list all;	  /* every connection (timeouts, reset) */
	struct vsock_list ctrl;	  /* owes the guest a control packet */
	struct vsock_list data;	  /* has unix bytes for the guest (round robin) */
	bool in_table;
	void *owner; /* the device driving it (handed to event handlers) */

	enum vsock_conn_state state;
	bool host_initiated; /* a host client's CONNECT made it (it may be parked) */
	uint32_t guest_port, host_port;
	uint64_t deadline_ns; /* 0: none; else CLOCK_MONOTONIC time it gives up */

	/* The unix socket, owned; -1 once closed. */
	struct evloop *loop;
	int fd;
	bool watched;	 /* registered on `loop` */
	uint32_t events; /* what is asked of epoll while watched */
	bool readable;	 /* epoll said readable (or hung up); cleared on EAGAIN */
	bool hup;	 /* the unix peer closed its socket entirely */
	bool rd_eof;	 /* read returned 0: the host sends no more */
	bool wr_shut;	 /* we shut our writing side (guest sent SHUTDOWN SEND) */
	bool rd_shut;	 /* we shut our reading side (guest sent SHUTDOWN RCV) */

	/* The host client's CONNECT line, while state == HOST_LINE. */
	char line[VSOCK_CONNECT_LINE_MAX];
	size_t line_len;

	/* Control packets owed to the guest, VSOCK_PEND_*, and the flags of
	 * the SHUTDOWN we owe. */
	uint32_t pending;
	uint32_t shutdown_flags;
	uint32_t guest_shutdown; /* VSOCK_SHUTDOWN_* the guest has sent us */

	/* Credit, host → guest: what the guest advertised and what we sent. */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	/* Credit, guest → host: our window and what we took and consumed. */
	uint32_t buf_alloc;	/* our advertised window, bytes */
	uint32_t rx_cnt;	/* payload bytes the guest sent us */
	uint32_t fwd_cnt;	/* of those, written to the unix socket */
	uint32_t last_fwd_sent; /* fwd_cnt as last advertised to the guest */

	/* Guest bytes waiting for the unix socket. */
	struct vsock_chunk *out_head, *out_tail;
	size_t out_bytes;
};

/* Returns a new connection in `state` owning unix socket `fd` (may be -1),
 * with our window `buf_alloc`, not watched and on no list; NULL when out of
 * memory (then `fd` is left open). Free it with vsock_conn_destroy. */
struct vsock_conn *vsock_conn_create(struct evloop *loop, int fd, enum vsock_conn_state state,
				     uint32_t buf_alloc);

/* Unwatches and closes the unix socket, frees buffered data and the
 * connection. The caller removes it from the table and lists first (see
 * vsock_table_remove). Accepts NULL. */
void vsock_conn_destroy(struct vsock_conn *c);

/* Stops watching and closes the unix socket (idempotent). */
void vsock_conn_close_fd(struct vsock_conn *c);

/* Makes epoll watch `events` for the unix socket, registering it with
 * handler `fn`/`opaque` the first time. events == UINT32_MAX unwatches it.
 * Returns 0 or -errno. */
int vsock_conn_watch(struct vsock_conn *c, uint32_t events, evloop_fn fn, void *opaque);

/* Bytes we may still send the guest: its buf_alloc minus what is in flight
 * (tx_cnt - peer_fwd_cnt); 0 when the guest's numbers make no sense. */
uint32_t vsock_conn_peer_credit(const struct vsock_conn *c);

/* Records the guest's buf_alloc and fwd_cnt from any packet it sent. */
void vsock_conn_set_peer_credit(struct vsock_conn *c, uint32_t buf_alloc, uint32_t fwd_cnt);

/* Returns true when `len` more guest bytes fit in the window we last
 * advertised (rx_cnt + len - last_fwd_sent <= buf_alloc). */
bool vsock_conn_rx_fits(const struct vsock_conn *c, uint32_t len);

/* Returns true when we consumed at least half our window since we last told
 * the guest, so it should get a CREDIT_UPDATE. */
bool vsock_conn_wants_credit_update(const struct vsock_conn *c);

/* Appends `len` bytes gathered from `iov` (`iovcnt` segments) to the output
 * buffer. `counted` bytes are guest payload (they advance fwd_cnt once
 * written). Returns 0 or -ENOMEM. */
int vsock_conn_out_append(struct vsock_conn *c, const struct iovec *iov, unsigned int iovcnt,
			  size_t len, bool counted);

/* Puts `len` bytes at `data` in front of the output buffer, not counted as
 * guest payload (the "OK" line of a parked connection claimed after the
 * guest already sent data). Returns 0 or -ENOMEM. */
int vsock_conn_out_prepend(struct vsock_conn *c, const void *data, size_t len);

/* Writes buffered bytes to the unix socket until it would block, advancing
 * fwd_cnt. Returns 0 when the buffer is empty, -EAGAIN when bytes remain, or
 * another -errno when the socket failed (EPIPE: the peer stopped reading). */
int vsock_conn_out_flush(struct vsock_conn *c);

/* ---- the table of connections, keyed by (guest port, host port) ---- */
struct vsock_table {
	struct vsock_conn **buckets;
	size_t nbuckets; /* power of two */
	size_t count;
};

/* Initialises an empty table. Returns 0 or -ENOMEM. */
int vsock_table_init(struct vsock_table *t);

/* Frees the buckets (not the connections). Accepts a zeroed table. */
void vsock_table_release(struct vsock_table *t);

/* Returns the connection for the key, or NULL. */
struct vsock_conn *vsock_table_find(const struct vsock_table *t, uint32_t guest_port,
				    uint32_t host_port);

/* Adds `c` under its (guest_port, host_port). Returns 0 or -EEXIST. */
int vsock_table_insert(struct vsock_table *t, struct vsock_conn *c);

/* Removes `c` if it is in the table. */
void vsock_table_remove(struct vsock_table *t, struct vsock_conn *c);

#endif
