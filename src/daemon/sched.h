/* sched.h - kilnd's scheduler: one event loop thread that owns every
 * microVM (the pool of pre-started kiln-vmm processes and the VMs serving
 * functions), every agent connection and every call in flight.
 *
 * Other threads hand it work through sched_submit / sched_function_* (a
 * locked inbox and an eventfd); it completes calls by calling their `done`
 * function on the loop thread. Waiting calls cost memory, not threads.
 *
 * Per function: warm VMs are reused (paused after --pause-after of idleness,
 * resumed by the next call, destroyed after keep_alive unless min_instances
 * keep them), otherwise a pool VM restores the function's snapshot. At most
 * `concurrency` calls run at once and at most max_instances VMs exist; more
 * calls wait in a queue up to queue_timeout (then 429). A host memory budget
 * admits a VM only when it fits, evicting idle VMs least recently used first.
 */
#ifndef KILN_DAEMON_SCHED_H
#define KILN_DAEMON_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/spec.h"

struct sched;
struct metrics;
struct logstore;

/* One invocation, sync or async. Created by the caller (call_new), handed to
 * sched_submit, completed on the loop thread: result fields set, then
 * done(call) called once. The reference count is shared: the submitter
 * holds one, the scheduler one until done() returned. */
struct call {
	char id[37];
	char function[SPEC_NAME_MAX + 1];
	bool async;
	bool wait_forever;  /* async calls never get 429 for waiting */
	char *callback_url; /* async: where the result is POSTed (owned), or NULL */
	char **ctx_keys;    /* context pairs (INVOKE's kv), owned */
	char **ctx_vals;
	unsigned nctx;
	uint8_t *body;
	size_t body_len;

	/* outcome */
	int http_status;  /* 200, 500, 502, 504, 429, 404, 410, 503 */
	int proto_status; /* enum proto_status when the guest answered, -1 */
	uint8_t *result;  /* body of the response (owned) */
	size_t result_len;
	char error_type[128];
	char error_msg[1024]; /* kilnd's own message for non-guest errors */
	uint32_t duration_us;
	bool cold;
	char vm_id[32];
	int64_t version;
	int64_t start_ns, end_ns; /* monotonic: submitted, completed */
	int64_t sent_ns, answered_ns; /* monotonic: INVOKE written, RESULT read; 0: not */

	void (*done)(struct call *c);
	void *opaque; /* the submitter's */

	/* scheduler-private */
	int refs;
	struct call *next;
	int64_t queue_deadline_ms;
	int64_t run_deadline_ms;
	uint32_t frame_id;
};

/* A new call for function with a fresh id (UUID). NULL when out of memory. */
struct call *call_new(const char *function);
/* Adds a context pair (copied). 0 or -ENOMEM. */
int call_add_ctx(struct call *c, const char *key, const char *val);
/* Drops a reference; frees at zero. Accepts NULL. Thread-safe. */
void call_unref(struct call *c);
/* Takes a reference. */
void call_ref(struct call *c);

struct sched_config {
	const char *vmm;	 /* kiln-vmm binary */
	const char *run_dir;	 /* VM directories (short path: unix sockets) */
	const char *rootfs;	 /* unused: spec_runtime_image() names each disk */
	unsigned pool_size;	 /* pre-started VMs kept per shape in use */
	uint64_t mem_budget_mb;	 /* guest memory of function VMs, at most */
	unsigned pause_after_ms; /* idle VMs are paused after this */
	struct metrics *metrics;
	struct logstore *logs;
	struct vmnet *net; /* taps for functions with a network; NULL: none */
	bool no_prefetch;  /* never record or use snapshots' working sets */
};

/* The working set of a function snapshot (docs/snapshots.md, "Working-set
 * prefetch"): recorded by the first VM restored from it at its first
 * answer, given to kiln-vmm by every later restore. */
#define SCHED_WORKING_SET "working-set"

/* Creates the scheduler and starts its thread. Returns 0 and *out, -errno. */
int sched_create(const struct sched_config *cfg, struct sched **out);

/* Stops accepting calls, waits up to drain_ms for calls in flight, fails
 * the rest (503), stops every VM and the thread, frees. Accepts NULL. */
void sched_destroy(struct sched *s, int drain_ms);

/* Hands a call to the loop (takes a reference). Never blocks on VMs. */
void sched_submit(struct sched *s, struct call *c);

/* A version of a function is ready: calls from now on use it (spec copied;
 * snapshot_dir is the function snapshot). Older versions' VMs finish their
 * calls and are then destroyed. */
void sched_function_ready(struct sched *s, const char *name, int64_t version,
			  const struct fn_spec *spec, const char *snapshot_dir);

/* Removes a function: its queued and running calls end with 410, its VMs
 * are destroyed. */
void sched_function_remove(struct sched *s, const char *name);

/* Live numbers of a function (0s for an unknown one). */
struct sched_fn_stats {
	unsigned running, busy, idle, paused, starting;
	uint64_t invocations;
	unsigned queued;
};
void sched_function_stats(struct sched *s, const char *name, struct sched_fn_stats *out);

/* VMs by state and memory in use. */
struct sched_stats {
	unsigned pool, starting, busy, idle, paused;
	uint64_t committed_mb, budget_mb;
};
void sched_stats(struct sched *s, struct sched_stats *out);

#endif
