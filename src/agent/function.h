/* function.h - the function kiln-init runs: LOAD (code extraction, runtime
 * start), INVOKE (exec mode: one process per event; server mode: a
 * long-lived runtime fed over a private channel), deadlines, crashes and
 * restarts, captured output. docs/protocol.md describes the behaviour.
 *
 * Single-threaded: the agent's poll loop asks for the descriptors to watch
 * (fn_pollfds), hands back their events (fn_handle), reports exited children
 * (fn_child_exited) and the time (fn_tick). Frames for the host are written
 * through the sink, addressed by connection id: a connection that has gone
 * away is simply not found.
 */
#ifndef KILN_AGENT_FUNCTION_H
#define KILN_AGENT_FUNCTION_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/proto.h"

/* Where frames go: reserve room for at most max bytes in connection conn's
 * output (NULL: the connection is gone or memory ran out), then commit the
 * bytes actually written. */
struct fn_sink {
	uint8_t *(*reserve)(void *opaque, uint64_t conn, size_t max);
	void (*commit)(void *opaque, uint64_t conn, size_t n);
	void *opaque;
};

struct fn_config {
	const char *base_dir;	 /* functions go to base_dir/<generation> */
	const char *runtime_dir; /* runtime_dir/python/bootstrap.py, ... */
	const char *python;	 /* the python3 interpreter */
};

/* Most descriptors fn_pollfds fills. */
#define FN_MAX_POLLFDS 4
/* Most invocations waiting behind the running one. */
#define FN_MAX_QUEUED 64
/* Most log bytes sent per invocation (the rest is dropped with a note). */
#define FN_MAX_LOG (1U * 1024 * 1024)

struct fn;

/* Creates the (empty) function state; the strings in cfg are copied.
 * Returns NULL on failure. */
struct fn *fn_create(const struct fn_config *cfg, const struct fn_sink *sink);

/* Kills any runtime or handler (SIGKILL to its process group), removes the
 * function's directory and frees. Accepts NULL. */
void fn_destroy(struct fn *f);

/* Handles a LOAD frame (id) from connection conn: replaces any previous
 * function, extracts the archive into a fresh directory and starts it. The
 * answer (LOAD_OK or ERROR) is sent now (exec mode, errors) or when the
 * runtime reports (server mode). */
void fn_load(struct fn *f, uint64_t conn, uint32_t id, const struct proto_load *m);

/* Handles a PRESTART frame (id) from conn: stops any function and starts
 * the interpreted runtime m->runtime (python, node) with no function; it
 * is answered LOAD_OK (generation 0) once the runtime waits, or ERROR. The
 * next LOAD of that runtime in server mode, with an environment the
 * runtime can take in-process, hands it the function instead of starting
 * another: a base snapshot taken then holds a started interpreter. */
void fn_prestart(struct fn *f, uint64_t conn, uint32_t id, const struct proto_prestart *m);

/* Handles an INVOKE frame (payload copied): runs it now or queues it. The
 * RESULT (or an ERROR) goes to conn. */
void fn_invoke(struct fn *f, uint64_t conn, uint32_t id, const uint8_t *payload, size_t len);

/* Forgets the invocations queued by conn; a running one goes on (its result
 * is dropped). */
void fn_conn_closed(struct fn *f, uint64_t conn);

/* Fills the function fields of a HELLO_OK (views valid until the next call
 * into f). */
void fn_describe(const struct fn *f, struct proto_hello_ok *out);

/* Fills pfds (room for FN_MAX_POLLFDS) with the descriptors to watch and
 * returns how many. */
int fn_pollfds(const struct fn *f, struct pollfd *pfds);

/* Handles the events of the n descriptors fn_pollfds returned. */
void fn_handle(struct fn *f, const struct pollfd *pfds, int n);

/* Monotonic ms of the next deadline (an invocation's, a LOAD's), or -1. */
int64_t fn_next_deadline(const struct fn *f);

/* Acts on deadlines that passed by now_ms. */
void fn_tick(struct fn *f, int64_t now_ms);

/* A child ended (waitpid status): returns true when it was one of f's. */
bool fn_child_exited(struct fn *f, pid_t pid, int wstatus);

#endif
