/* agent.h - kiln-init's agent: serves kiln's wire protocol (common/proto.h,
 * docs/protocol.md) to the host on a vsock port, many connections at once,
 * from one poll() loop, while also supervising the main command (if any)
 * and every child process.
 */
#ifndef KILN_AGENT_AGENT_H
#define KILN_AGENT_AGENT_H

#include <stdbool.h>
#include <sys/types.h>

struct agent_config {
	const char *listen;	 /* "vsock:PORT" or "unix:PATH" */
	const char *fn_base;	 /* functions are extracted under it */
	const char *runtime_dir; /* the runtimes' bootstraps */
	const char *python;	 /* the python3 interpreter */
	bool set_clock;		 /* TIME sets CLOCK_REALTIME (else only checked) */
};

/* Most connections served at once; more are accepted and closed at once. */
#define AGENT_MAX_CONNS 256

struct agent;

/* Opens the listening socket and the signalfd for SIGCHLD, SIGTERM, SIGINT and
 * SIGPWR (which must be blocked already: supervise_signals_init). Strings in
 * cfg are copied. Returns NULL after logging why. */
struct agent *agent_create(const struct agent_config *cfg);

/* Kills the function's processes, closes every connection and the listener
 * (removing a unix socket file), frees. Accepts NULL. */
void agent_destroy(struct agent *a);

/* Serves until the main command main_pid ends, reaping every child meanwhile,
 * and returns the command's status as supervise_wait would (including the
 * SIGTERM forwarding and SIGKILL after grace_ms on a termination request).
 * With main_pid <= 0, serves until a termination request and returns 0. */
int agent_run(struct agent *a, pid_t main_pid, int grace_ms);

#endif
