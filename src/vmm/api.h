/* api.h - kiln-vmm's control socket: JSON lines over a unix stream socket.
 *
 * Each request is one JSON object on one line; each reply is one JSON
 * object on one line, {"ok":true,...} or {"ok":false,"error":"..."}
 * (docs/control-api.md). Many clients may connect; each gets its replies in
 * order, one request at a time.
 *
 * Threads: everything (accepting, reading, parsing, executing, writing
 * replies) happens on the control thread (the VMM's main thread), which
 * polls api_wakeup_fd() and calls api_dispatch(); nothing blocks there but
 * the handler itself. Requests must not run on the I/O event loop thread:
 * pausing vCPUs may have to wait for a vCPU that itself waits for the event
 * loop (a virtio register write does). Serving the socket on the control
 * thread too means a round trip wakes one VMM thread, not three (see
 * api.c). Malformed lines (not JSON, not an object, no "op") are answered
 * without reaching the handler; a line longer than API_MAX_LINE bytes is
 * answered with an error and the connection is closed.
 */
#ifndef KILN_VMM_API_H
#define KILN_VMM_API_H

#include <jansson.h>
#include <stddef.h>

#include "vmm/evloop.h"

#define API_MAX_LINE (64 * 1024)

struct api;

/* Executes `request` (a JSON object with a string "op"; borrowed) and
 * returns the reply object, which the API takes over. NULL means "out of
 * memory" (an error reply is sent). Runs on the control thread. */
typedef json_t *(*api_handler_fn)(void *opaque, json_t *request);

/* Listens on the unix socket `path` (replacing a stale socket file, never
 * anything else or a live socket). `loop` is not used: the socket is served
 * on the control thread. Returns NULL after logging. */
struct api *api_create(const char *path, struct evloop *loop);

/* Closes every connection and the listener, removes the socket file, frees.
 * Control thread. Accepts NULL. */
void api_destroy(struct api *a);

/* A descriptor (epoll) that is readable while the control socket has work
 * for api_dispatch(): a client to accept, bytes to read or write, lines left
 * from the last round. */
int api_wakeup_fd(const struct api *a);

/* Serves the control socket without blocking: accepts, reads, executes
 * complete lines with `fn` on the calling thread (a few per client per
 * call, in order) and sends each reply before taking the next. */
void api_dispatch(struct api *a, api_handler_fn fn, void *opaque);

/* Work a handler leaves for after its reply: see api_after_reply(). */
typedef void (*api_after_fn)(void *opaque);

/* From inside a handler: runs fn(opaque) once, on the control thread, right
 * after this request's reply has been written (as far as the socket takes
 * it; also when the client has gone). For work whose wake-ups would
 * otherwise delay the reply, such as letting restored vCPUs run. A second
 * call in the same request replaces the first. */
void api_after_reply(struct api *a, api_after_fn fn, void *opaque);

/* Returns a new {"ok":false,"error":<formatted message>} (NULL when out of memory). */
json_t *api_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Returns a new {"ok":true}. */
json_t *api_ok(void);

/* Client side: connects to `path`, sends `request` (borrowed) as one line
 * and waits for one reply line, parsed into *reply (caller owns it).
 * Returns 0 or -errno with a reason in `why`. */
int api_request(const char *path, json_t *request, json_t **reply, char *why, size_t why_len);

#endif
