/* daemon.h - the pieces of one running kilnd, shared by its route files. */
#ifndef KILN_DAEMON_DAEMON_H
#define KILN_DAEMON_DAEMON_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon/http.h"

struct kilnd {
	/* configuration */
	const char *state_dir;
	const char *run_dir;
	const char *cache_dir;
	const char *vmm;
	const char *kernel;
	const char *rootfs;
	uint64_t mem_budget_mb;

	struct registry *registry;
	struct store *store;
	struct logstore *logs;
	struct metrics *metrics;
	struct callback *callbacks;
	struct sched *sched;
	struct vmnet *net; /* functions' networks (vmnet.h) */
	struct deployer *deployer;
	struct http *http;
	volatile bool stopping;
	int64_t started_wall_ns;
};

/* The route table (routes.c), ending with a NULL pattern. */
extern const struct http_route kilnd_routes[];

/* Route handlers, one file per group. */
void route_functions_list(void *app, struct http_req *r);
void route_functions_deploy(void *app, struct http_req *r);
void route_functions_delete(void *app, struct http_req *r);
void route_function_describe(void *app, struct http_req *r);
void route_function_delete(void *app, struct http_req *r);
void route_invoke(void *app, struct http_req *r);
void route_invoke_async(void *app, struct http_req *r);
void route_lambda_invoke(void *app, struct http_req *r);
void route_call_get(void *app, struct http_req *r);
void route_logs(void *app, struct http_req *r);
void route_healthz(void *app, struct http_req *r);
void route_metrics(void *app, struct http_req *r);
void route_info(void *app, struct http_req *r);

/* Resubmits the async calls a previous kilnd left unfinished (at start). */
int kilnd_recover_calls(struct kilnd *k);
/* Hands every function's newest ready version to the scheduler (at start);
 * versions left "deploying" by a crash are marked failed. */
int kilnd_recover_functions(struct kilnd *k);
/* The callback worker's report of a delivery (callback_done_fn; opaque is
 * the kilnd): recorded with the call. */
void kilnd_callback_done(void *opaque, const char *call_id, int ok, const char *status);
/* Ends log-follow streams (at shutdown). */
void kilnd_logs_shutdown(struct kilnd *k);

#endif
