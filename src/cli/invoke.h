/* invoke.h - calling a function (POST /function/NAME, or
 * /async-function/NAME) and reporting its outcome the documented way:
 * the result on stdout, a function error as one line on stderr with exit
 * code 1. Shared by kiln invoke and kiln run. */
#ifndef KILN_CLI_INVOKE_H
#define KILN_CLI_INVOKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "cli/http.h"

struct invoke_req {
	const char *name;
	const char *method;	    /* NULL: POST */
	const char *subpath;	    /* NULL or "/a/b" after the name */
	const char *query;	    /* NULL or an encoded "k=v&k2=v2" */
	const char *const *headers; /* "Name: value", NULL-terminated, or NULL */
	const void *body;
	size_t body_len;
	bool async;
	const char *callback; /* async only: X-Callback-Url */
};

/* Sends the call. Returns KILN_EXIT_OK with *resp filled (any status), or
 * prints an error and returns KILN_EXIT_UNREACHABLE / KILN_EXIT_SERVER. */
int invoke_send(struct http_client *c, const struct invoke_req *r, struct http_response *resp);

/* Reports a synchronous call's response: the body on out (with a final
 * newline added when add_newline and it has none); a function error
 * (handled or not, time-out, VM died) as "kiln: error: NAME: ..." (its stack
 * trace follows when verbose); other failures as api_fail. With verbose,
 * prints the call's id, cold or warm start, duration, VM and version on
 * stderr. Returns the exit code. */
int invoke_report(const char *name, const struct http_response *resp, int verbose, FILE *out,
		  bool add_newline);

/* Prints the call's details line on stderr ("call ID: warm start, 0.012s,
 * VM vm-3, version 2"), from its X-Call-Id, X-Kiln-Start,
 * X-Duration-Seconds, X-Kiln-Vm and X-Kiln-Version headers. */
void invoke_print_details(const struct http_response *resp);

/* Appends "k=v" (both percent-encoded) from "k=v" to the query *q (malloc'd,
 * may be NULL at first). Returns 0, -EINVAL without '=', -ENOMEM. */
int invoke_add_query(char **q, const char *kv);

/* True when h is a header line "Name: value" kiln may send: a token name,
 * a colon, and no CR, LF or NUL. */
bool invoke_header_ok(const char *h);

#endif
