/* vsock.h - virtio-vsock (device id 19) with a unix-socket host side, in the
 * "hybrid vsock" model Firecracker users know (docs/vsock.md):
 *
 *   - host → guest: a host process connects to the unix socket `uds_path`
 *     and writes "CONNECT <port>\n"; the device asks the guest for a
 *     connection from CID 2 to guest port <port>; when the guest accepts,
 *     the host process reads "OK <host port>\n" and from then on the unix
 *     stream is the guest socket's byte stream; when nobody listens (RST) or
 *     the guest does not answer in time, the unix connection is closed.
 *   - guest → host: a guest connection to CID 2 port P is a connection to the
 *     unix socket "<uds_path>_P".
 *
 * Queues: rx (0), tx (1), event (2). Config space: le64 guest_cid.
 * Everything runs on the I/O event loop thread: queue notifications, the
 * listening socket and every connection's unix socket.
 */
#ifndef KILN_VMM_VIRTIO_VSOCK_H
#define KILN_VMM_VIRTIO_VSOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/evloop.h"
#include "vmm/iobus.h"
#include "vmm/virtio/mmio.h"
#include "vmm/virtio/queue.h"
#include "vmm/vm.h"

#define VSOCK_QUEUE_RX	  0
#define VSOCK_QUEUE_TX	  1
#define VSOCK_QUEUE_EVENT 2
#define VSOCK_NUM_QUEUES  3

#define VSOCK_DEFAULT_GUEST_CID	 3
#define VSOCK_DEFAULT_BUF_ALLOC	 (256U * 1024) /* our window per connection */
#define VSOCK_DEFAULT_MAX_CONNS	 1024
#define VSOCK_DEFAULT_CONNECT_MS 5000	    /* CONNECT line + guest RESPONSE */
#define VSOCK_DEFAULT_CLOSE_MS	 10000	    /* flushing after close, awaiting RST */
#define VSOCK_LISTEN_BACKLOG	 128	    /* host connections waiting for accept */
#define VSOCK_HOST_PORT_FIRST	 (1U << 30) /* ephemeral host ports count from here */

struct virtio_vsock_config {
	uint64_t guest_cid;	 /* 3 .. 0xfffffffe */
	const char *uds_path;	 /* host unix socket (copied); must leave room for "_<port>" */
	uint32_t buf_alloc;	 /* 0: VSOCK_DEFAULT_BUF_ALLOC */
	unsigned int max_conns;	 /* 0: VSOCK_DEFAULT_MAX_CONNS */
	unsigned int connect_ms; /* 0: VSOCK_DEFAULT_CONNECT_MS */
	unsigned int close_ms;	 /* 0: VSOCK_DEFAULT_CLOSE_MS */
	bool has_listener;	 /* listen_fd already listens at uds_path (inode
				  * listen_ino): the device takes it over, also
				  * when creation fails, instead of binding */
	int listen_fd;
	ino_t listen_ino;
};

/* How the device reaches its virtqueues: normally the virtio-mmio transport
 * (virtio_vsock_attach does this), or a test's hand-made rings. */
struct virtio_vsock_queues {
	struct virtq *q[VSOCK_NUM_QUEUES];
	/* Interrupts the guest for used buffers on queue `q` if it wants one. */
	void (*notify_used)(void *opaque, unsigned int q);
	/* The guest broke the device: log `why`, report DEVICE_NEEDS_RESET. */
	void (*set_broken)(void *opaque, const char *why);
	void *opaque;
};

struct virtio_vsock;

/* Creates the device: copies `cfg`, replaces a stale socket file at
 * cfg->uds_path (only a socket is ever unlinked), listens there and watches
 * the listener on `loop` (not owned). Returns NULL after logging. */
struct virtio_vsock *virtio_vsock_create(struct evloop *loop,
					 const struct virtio_vsock_config *cfg);

/* Destroys the transport (if attached), closes every connection and the
 * listener (on the loop thread, waiting for it when the loop runs), removes
 * the socket file and frees. Call it before destroying the loop. Accepts
 * NULL. */
void virtio_vsock_destroy(struct virtio_vsock *v);

/* Creates the virtio-mmio transport for the device at `base`/`irq` on `bus`
 * and binds the device to its queues. Returns 0 or -errno after logging. The
 * transport is the device's; virtio_vsock_detach destroys it. */
int virtio_vsock_attach(struct virtio_vsock *v, struct vm *vm, struct iobus *bus, uint64_t base,
			unsigned int irq);

/* Destroys the transport made by virtio_vsock_attach (if any);
 * virtio_vsock_destroy does it too. */
void virtio_vsock_detach(struct virtio_vsock *v);

/* Returns the transport made by virtio_vsock_attach, or NULL. */
struct virtio_mmio *virtio_vsock_transport(struct virtio_vsock *v);

/* Returns the device's ops table (for a transport, or a test driving the
 * device directly). The `dev` argument of every op is the virtio_vsock. */
const struct virtio_device_ops *virtio_vsock_ops(void);

/* Binds the device to its queues (copied). virtio_vsock_attach does it with
 * the transport's queues; tests bind hand-made ones. Call before the queues
 * are used, on the loop thread or before it runs. */
void virtio_vsock_bind(struct virtio_vsock *v, const struct virtio_vsock_queues *queues);

/* Resets every connection (closing their unix sides; the guest is told with
 * the event below, not with RSTs) and posts VIRTIO_VSOCK_EVENT_TRANSPORT_RESET
 * on the event queue (now, or as soon as the guest provides an event buffer;
 * nothing when the driver has no live event queue). Until the guest has
 * handled the event (it put an event buffer back), the device sends it
 * nothing but RSTs: REQUESTs and RESPONSEs for new connections wait, so the
 * event cannot drop them. Call on the loop thread (or before it runs).
 * Returns 0 or -errno. */
int virtio_vsock_transport_reset(struct virtio_vsock *v);

/* After a snapshot restore, with the transport's queues restored: loads the
 * device's SNAP_SEC_VIRTIO_VSOCK section `sec` (whose guest CID must be the
 * device's) and ends the connections the guest may still hold from the
 * snapshot with one RST each, delivered before anything else; host ports
 * continue where the snapshot's left off. A section without the connection
 * list (older kiln-vmm, or more connections than fit) resets the transport
 * instead (virtio_vsock_transport_reset). Loop thread (or before it runs).
 * Returns 0 or -EINVAL (malformed section). */
int virtio_vsock_restore(struct virtio_vsock *v, const struct snap_section *sec);

/* Returns the number of live connections (any state). Loop thread only. */
unsigned int virtio_vsock_conn_count(const struct virtio_vsock *v);

/* Appends the device's state as SNAP_SEC_VIRTIO_VSOCK, instance `slot`: the
 * guest CID, the next host port, and the (guest port, host port) pair of
 * every connection the guest may know about (including RSTs still owed), so
 * that a restore can end them; the connections themselves are not saved. An
 * rx buffer taken from the guest but not used yet is handed back first (the
 * queue's position steps back), so the snapshot owes the guest nothing.
 * Loop thread, before the transport saves its queues. */
void virtio_vsock_save(struct virtio_vsock *v, struct snap_writer *w, uint16_t slot);

/* Checks a SNAP_SEC_VIRTIO_VSOCK section and reads its guest CID into *cid.
 * Returns 0 or -EINVAL when malformed. */
int virtio_vsock_saved_cid(const struct snap_section *sec, uint64_t *cid);

#endif
