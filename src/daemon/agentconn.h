/* agentconn.h - kilnd's end of one connection to kiln-init's agent in a
 * microVM (docs/protocol.md): a non-blocking unix stream socket to the VM's
 * hybrid vsock (`CONNECT <port>\n` / `OK <hostport>\n`), then frames.
 *
 * The owner drives it from its event loop: agentconn_io() on readiness,
 * agentconn_frame() to take complete frames. Also usable blocking
 * (agentconn_wait) from a worker thread.
 */
#ifndef KILN_DAEMON_AGENTCONN_H
#define KILN_DAEMON_AGENTCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/proto.h"

enum agentconn_state {
	AGENTCONN_HANDSHAKE, /* CONNECT sent, waiting for OK */
	AGENTCONN_OPEN,	     /* frames flow */
	AGENTCONN_CLOSED,    /* the peer closed or an error happened */
};

struct agentconn {
	int fd;
	enum agentconn_state state;
	int error; /* -errno once CLOSED (-ECONNRESET, -EPIPE, -EBADMSG ...) */
	uint8_t *in;
	size_t in_len, in_cap, in_off;
	uint8_t *out;
	size_t out_len, out_cap, out_off;
	bool handshake_seen; /* the OK line arrived */
};

/* Connects to the VM's vsock socket at uds_path and queues `CONNECT port`.
 * Returns 0 and *out (caller owns; agentconn_destroy), or -errno. */
int agentconn_open(const char *uds_path, uint32_t port, struct agentconn **out);

/* Closes and frees. Accepts NULL. */
void agentconn_destroy(struct agentconn *c);

/* Bytes agentconn_io reads at most per call (the owner's loop is
 * level-triggered and calls again while more is there). */
#define AGENTCONN_READ_BURST (1024U * 1024)

/* Reads (at most AGENTCONN_READ_BURST) and writes what the socket allows.
 * Returns 0 (check c->state), or the connection's error once it is closed. */
int agentconn_io(struct agentconn *c);

/* True when output is waiting (poll for POLLOUT). */
bool agentconn_want_write(const struct agentconn *c);

/* Takes the next complete frame: returns 1 with *h and *payload (valid
 * until the next call of any agentconn function), 0 when none is complete,
 * or -EBADMSG for a malformed stream (the connection is closed). */
int agentconn_frame(struct agentconn *c, struct proto_header *h, const uint8_t **payload);

/* Appends an encoded frame (or any bytes) to the output. 0 or -ENOMEM. */
int agentconn_send(struct agentconn *c, const void *buf, size_t len);

/* Room for the frames agentconn_encode_reseed writes. */
#define AGENTCONN_RESEED_MAX 128

/* Encodes ENTROPY (64 fresh bytes from the host's CSPRNG) and TIME (now)
 * frames, ids id and id + 1, into buf (size bytes; AGENTCONN_RESEED_MAX is
 * enough): what the host sends after every restore. Returns the bytes
 * written, or -errno (-EIO: no entropy, -ENOSPC). */
ssize_t agentconn_encode_reseed(void *buf, size_t size, uint32_t id);

/* Appends the frames of agentconn_encode_reseed to the output. 0 or
 * -errno. */
int agentconn_send_reseed(struct agentconn *c, uint32_t id);

/* Blocking: runs agentconn_io until a frame is complete, the connection
 * closes, or timeout_ms passes. Returns 1 with the frame as
 * agentconn_frame, -ETIMEDOUT, or the connection's error. */
int agentconn_wait(struct agentconn *c, struct proto_header *h, const uint8_t **payload,
		   int timeout_ms);

#endif
