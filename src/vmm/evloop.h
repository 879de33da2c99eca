/* evloop.h - kiln-vmm's I/O event loop (epoll), in the spirit of Redis's ae.c.
 *
 * One loop runs in its own thread (the "I/O thread") and calls a handler
 * when its file descriptor is ready. Device back ends (virtio queues woken by
 * ioeventfds, vsock's unix sockets, the control socket) live on it, so vCPU
 * threads never block on host I/O.
 *
 * Threading: evloop_add/mod/del may be called from any thread. evloop_del
 * called off the loop thread while the loop runs waits until the loop thread
 * has done it, so when it returns the handler is not running and never runs
 * again (do not hold a lock the handler takes while calling it). To run work
 * on the loop from another thread, use evloop_call() or evloop_call_sync().
 */
#ifndef KILN_VMM_EVLOOP_H
#define KILN_VMM_EVLOOP_H

#include <stdint.h>

/* Called on the loop thread with the epoll events (EPOLLIN, EPOLLOUT, EPOLLHUP...). */
typedef void (*evloop_fn)(void *opaque, uint32_t events);

struct evloop;

/* Returns a new loop (not running) or NULL after logging. Caller owns it. */
struct evloop *evloop_create(void);

/* Stops the loop if it runs, joins its thread and frees it. Registered fds are
 * not closed (their owners close them). Accepts NULL. */
void evloop_destroy(struct evloop *l);

/* Watches `fd` for `events` (EPOLLIN/EPOLLOUT/...; level-triggered). Returns 0
 * or -errno (-EEXIST when fd is already watched). */
int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_fn fn, void *opaque);

/* Changes the events watched for `fd`. Returns 0 or -errno. */
int evloop_mod(struct evloop *l, int fd, uint32_t events);

/* Stops watching `fd`; its handler is not called again, even for events
 * already collected in the current iteration. Returns 0 or -errno. */
int evloop_del(struct evloop *l, int fd);

/* Starts the loop thread. Returns 0 or -errno. */
int evloop_start(struct evloop *l);

/* Asks the loop thread to run fn(opaque, 0) soon. Thread-safe. Returns 0 or
 * -ENOMEM. */
int evloop_call(struct evloop *l, evloop_fn fn, void *opaque);

/* Runs fn(opaque, 0) on the loop thread and waits until it has returned.
 * Runs it at once on the calling thread when that is the loop thread, or when
 * the loop thread is not running (not started yet, or stopped). Never call it
 * while holding a lock that a loop handler may take. Returns 0 or -ENOMEM. */
int evloop_call_sync(struct evloop *l, evloop_fn fn, void *opaque);

/* Runs fn(opaque, 0) on the calling thread while the loop thread is held
 * between batches (it finishes the batch it is dispatching first, then
 * waits), so fn is serialised with every handler and call as if it ran on
 * the loop thread, and evloop_on_loop_thread() is true inside it (loop
 * calls made from fn run inline; fds deleted in it are parked like the
 * loop thread's). Unlike evloop_call_sync() it wakes no thread: use it for
 * work whose latency matters on a thread that can take signals only if fn
 * is ready for EINTR. fn must not wait for the loop thread. Returns 0. */
int evloop_run_paused(struct evloop *l, evloop_fn fn, void *opaque);

/* Returns true when called on the loop's own thread (or inside
 * evloop_run_paused). */
_Bool evloop_on_loop_thread(const struct evloop *l);

#endif
