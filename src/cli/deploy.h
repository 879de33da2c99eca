/* deploy.h - deploying one function and following it to ready: pack the
 * code, POST /system/functions (PUT when it exists: 409), then poll
 * GET /system/function/NAME showing deploy.stage and the elapsed time on
 * the progress line until the new version is ready or failed. Shared by
 * kiln deploy, kiln up and kiln run. */
#ifndef KILN_CLI_DEPLOY_H
#define KILN_CLI_DEPLOY_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "cli/http.h"
#include "cli/spec.h"

struct deploy_opts {
	FILE *out;	   /* progress and result lines */
	bool tty;	   /* out is a terminal: live progress line */
	bool quiet;	   /* no progress at all */
	bool print_url;	   /* end with "NAME: version N ready" and the URL */
	const char *label; /* progress label; NULL: "deploying NAME" */
};

/* Deploys s through c. Errors are printed (one line, then the deploy's log
 * when kilnd gave one). Returns an exit code: KILN_EXIT_OK, KILN_EXIT_USAGE
 * (code cannot be packed), KILN_EXIT_FUNCTION (the handler failed to load),
 * or the gateway's failure. On success and when desc is not NULL, *desc is
 * the function's description (caller json_decref's). */
int deploy_function(struct http_client *c, const struct fn_spec *s, const struct deploy_opts *o,
		    json_t **desc);

/* The exit code for a deploy that failed after stage `last_stage` (the
 * last stage seen before "failed"): loading -> KILN_EXIT_FUNCTION, code ->
 * KILN_EXIT_REJECTED, else KILN_EXIT_SERVER. */
int deploy_failure_exit(const char *last_stage);

#endif
