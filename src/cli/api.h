/* api.h - calling kilnd's API from a command: connecting, sending JSON,
 * and turning failures into one error line and the documented exit code. */
#ifndef KILN_CLI_API_H
#define KILN_CLI_API_H

#include <jansson.h>

#include "cli/cli.h"
#include "cli/http.h"

/* Creates the client for ctx's gateway (fallback as in cli_gateway).
 * Returns KILN_EXIT_OK and *out, or prints an error and returns
 * KILN_EXIT_USAGE (bad gateway) or KILN_EXIT_SERVER (out of memory). */
int api_connect(const struct cli_ctx *ctx, const char *fallback, struct http_client **out);

/* Sends method path with the JSON body (may be NULL) and reads the whole
 * reply into resp (cleared by the caller). Returns KILN_EXIT_OK when a
 * reply came (any status), else prints "cannot reach the gateway" and
 * returns KILN_EXIT_UNREACHABLE. */
int api_request(struct http_client *c, const char *method, const char *path, const json_t *body,
		struct http_response *resp);

/* The exit code for an HTTP status that is not a success: 404
 * KILN_EXIT_NOT_FOUND, other 4xx KILN_EXIT_REJECTED, 5xx (and anything
 * else) KILN_EXIT_SERVER. */
int api_exit_for_status(long status);

/* The server's error text of resp: the "error" member of a JSON body, else
 * Lambda's "message"/"errorMessage", else the body itself when short
 * text, else NULL. Points into a static buffer. */
const char *api_error_text(const struct http_response *resp);

/* Prints "kiln: error: WHAT: MESSAGE (HTTP status)" for a failed reply and
 * returns its exit code (api_exit_for_status). */
int api_fail(const struct http_response *resp, const char *what);

/* Parses resp's body as JSON. Returns a new reference, or NULL (and prints
 * an error naming `what`) when the body is not JSON. */
json_t *api_json(const struct http_response *resp, const char *what);

#endif
