/* invoke.c - calling functions and reporting outcomes (see invoke.h). */
#include "cli/invoke.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "cli/api.h"
#include "cli/cli.h"
#include "cli/output.h"

int invoke_send(struct http_client *c, const struct invoke_req *r, struct http_response *resp)
{
	const char **hdrs;
	struct http_request req = {0};
	char *path = NULL, *cb = NULL;
	size_t n = 0;
	int rc;

	memset(resp, 0, sizeof(*resp));
	for (const char *const *h = r->headers; h && *h; h++)
		n++;
	hdrs = calloc(n + 2, sizeof(*hdrs));
	if (!hdrs)
		goto oom;
	for (size_t i = 0; i < n; i++)
		hdrs[i] = r->headers[i];
	if (r->async && r->callback) {
		if (asprintf(&cb, "X-Callback-Url: %s", r->callback) < 0) {
			cb = NULL;
			goto oom;
		}
		hdrs[n++] = cb;
	}
	if (asprintf(&path, "/%s/%s%s%s%s", r->async ? "async-function" : "function", r->name,
		     r->subpath ? r->subpath : "", r->query && *r->query ? "?" : "",
		     r->query ? r->query : "") < 0) {
		path = NULL;
		goto oom;
	}
	req.method = r->method ? r->method : "POST";
	req.path = path;
	req.headers = hdrs;
	req.body = r->body ? r->body : "";
	req.body_len = r->body ? r->body_len : 0;
	rc = http_do(c, &req, resp);
	free(path);
	free(cb);
	free(hdrs);
	if (rc == -ENOMEM)
		goto oom_done;
	if (rc == -EFBIG) {
		out_error("%s: %s", http_client_gateway(c), http_client_error(c));
		return KILN_EXIT_SERVER;
	}
	if (rc) {
		out_error("cannot reach the gateway at %s: %s", http_client_gateway(c),
			  http_client_error(c));
		return KILN_EXIT_UNREACHABLE;
	}
	return KILN_EXIT_OK;
oom:
	free(path);
	free(cb);
	free(hdrs);
oom_done:
	out_error("out of memory");
	return KILN_EXIT_SERVER;
}

void invoke_print_details(const struct http_response *resp)
{
	const char *id = http_response_header(resp, "X-Call-Id");
	const char *start = http_response_header(resp, "X-Kiln-Start");
	const char *dur = http_response_header(resp, "X-Duration-Seconds");
	const char *vm = http_response_header(resp, "X-Kiln-Vm");
	const char *ver = http_response_header(resp, "X-Kiln-Version");
	char line[512];

	snprintf(line, sizeof(line), "call %s: %s start, %ss, VM %s, version %s, HTTP %ld",
		 id ? id : "?", start ? start : "unknown", dur ? dur : "?", vm ? vm : "?",
		 ver ? ver : "?", resp->status);
	out_text(stderr, line, 0);
}

/* One line from a function error body {"errorMessage","errorType",...}. */
static void report_function_error(const char *name, const struct http_response *resp,
				  const char *kind, int verbose)
{
	json_t *j = json_loadb(resp->body, resp->len, 0, NULL);
	const char *type = json_string_value(json_object_get(j, "errorType"));
	const char *msg = json_string_value(json_object_get(j, "errorMessage"));
	json_t *trace = json_object_get(j, "stackTrace");

	if (!msg)
		msg = api_error_text(resp);
	if (type && *type)
		out_error("%s: %s: %s", name, type, msg ? msg : "(no message)");
	else
		out_error("%s: %s: %s", name, kind, msg ? msg : "(no message)");
	if (verbose && json_is_array(trace)) {
		size_t i;
		json_t *v;

		json_array_foreach(trace, i, v)
		{
			if (json_is_string(v))
				out_text(stderr, json_string_value(v), OUT_KEEP_NEWLINES);
		}
	} else if (verbose && json_is_string(trace)) {
		out_text(stderr, json_string_value(trace), OUT_KEEP_NEWLINES);
	}
	json_decref(j);
}

int invoke_report(const char *name, const struct http_response *resp, int verbose, FILE *out,
		  bool add_newline)
{
	const char *ferr = http_response_header(resp, "X-Kiln-Function-Error");
	char what[96];

	if (verbose)
		invoke_print_details(resp);
	if (resp->status >= 200 && resp->status < 300) {
		fwrite(resp->body, 1, resp->len, out);
		if (add_newline && resp->len && resp->body[resp->len - 1] != '\n')
			fputc('\n', out);
		fflush(out);
		return KILN_EXIT_OK;
	}
	if (ferr) {
		report_function_error(name, resp,
				      !strcasecmp(ferr, "Handled") ? "the handler raised an error"
								   : "the function crashed",
				      verbose);
		return KILN_EXIT_FUNCTION;
	}
	if (resp->status == 504) {
		const char *m = api_error_text(resp);

		out_error("%s: %s", name, m ? m : "the call timed out");
		return KILN_EXIT_FUNCTION;
	}
	if (resp->status == 502) {
		const char *m = api_error_text(resp);

		out_error("%s: the function's VM died during the call%s%s", name, m ? ": " : "",
			  m ? m : "");
		return KILN_EXIT_FUNCTION;
	}
	if (resp->status == 404) {
		out_error("function %s not found", name);
		return KILN_EXIT_NOT_FOUND;
	}
	snprintf(what, sizeof(what), "invoking %s", name);
	return api_fail(resp, what);
}

int invoke_add_query(char **q, const char *kv)
{
	const char *eq = strchr(kv, '=');
	char *k, *ek = NULL, *ev = NULL, *n = NULL;
	int rc = -ENOMEM;

	if (!eq)
		return -EINVAL;
	k = strndup(kv, (size_t)(eq - kv));
	if (!k)
		return -ENOMEM;
	ek = http_escape(k);
	ev = http_escape(eq + 1);
	if (ek && ev && asprintf(&n, "%s%s%s=%s", *q ? *q : "", *q ? "&" : "", ek, ev) >= 0) {
		free(*q);
		*q = n;
		rc = 0;
	}
	free(k);
	free(ek);
	free(ev);
	return rc;
}

bool invoke_header_ok(const char *h)
{
	static const char tchar[] = "!#$%&'*+-.^_`|~";
	const char *p = h;

	for (; *p && *p != ':'; p++) {
		bool ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			  (*p >= '0' && *p <= '9') || strchr(tchar, *p);

		if (!ok)
			return false;
	}
	if (p == h || *p != ':')
		return false;
	return !strpbrk(p, "\r\n");
}
