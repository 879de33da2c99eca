/* api.c - requests to kilnd and their failures (see api.h). */
#include "cli/api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/output.h"

const char *cli_gateway(const struct cli_ctx *ctx, const char *fallback)
{
	if (ctx->gateway && *ctx->gateway)
		return ctx->gateway;
	if (ctx->gateway_env && *ctx->gateway_env)
		return ctx->gateway_env;
	if (fallback && *fallback)
		return fallback;
	return KILN_DEFAULT_GATEWAY;
}

int api_connect(const struct cli_ctx *ctx, const char *fallback, struct http_client **out)
{
	char err[256];
	int rc = http_client_create(cli_gateway(ctx, fallback), out, err, sizeof(err));

	if (rc == -EINVAL) {
		out_error("%s", err);
		return KILN_EXIT_USAGE;
	}
	if (rc) {
		out_error("out of memory");
		return KILN_EXIT_SERVER;
	}
	return KILN_EXIT_OK;
}

int api_request(struct http_client *c, const char *method, const char *path, const json_t *body,
		struct http_response *resp)
{
	const char *const json_hdr[] = {"Content-Type: application/json", NULL};
	struct http_request req = {.method = method, .path = path};
	char *text = NULL;
	int rc;

	if (body) {
		text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(10));
		if (!text) {
			memset(resp, 0, sizeof(*resp));
			out_error("out of memory");
			return KILN_EXIT_SERVER;
		}
		req.body = text;
		req.body_len = strlen(text);
		req.headers = json_hdr;
	}
	rc = http_do(c, &req, resp);
	free(text);
	if (rc == -ENOMEM) {
		out_error("out of memory");
		return KILN_EXIT_SERVER;
	}
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
}

int api_exit_for_status(long status)
{
	if (status == 404)
		return KILN_EXIT_NOT_FOUND;
	if (status >= 400 && status < 500)
		return KILN_EXIT_REJECTED;
	return KILN_EXIT_SERVER;
}

const char *api_error_text(const struct http_response *resp)
{
	static char buf[1024];
	static const char *const keys[] = {"error", "message", "errorMessage"};
	json_t *j;

	buf[0] = '\0';
	if (!resp->body || !resp->len)
		return NULL;
	j = json_loadb(resp->body, resp->len, 0, NULL);
	if (j && json_is_object(j)) {
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
			const char *s = json_string_value(json_object_get(j, keys[i]));

			if (s && *s) {
				snprintf(buf, sizeof(buf), "%s", s);
				break;
			}
		}
	}
	json_decref(j);
	if (!buf[0] && resp->len < 300 && !memchr(resp->body, '\0', resp->len))
		snprintf(buf, sizeof(buf), "%s", resp->body);
	return buf[0] ? buf : NULL;
}

int api_fail(const struct http_response *resp, const char *what)
{
	const char *msg = api_error_text(resp);

	if (msg)
		out_error("%s: %s (HTTP %ld)", what, msg, resp->status);
	else
		out_error("%s: HTTP %ld", what, resp->status);
	return api_exit_for_status(resp->status);
}

json_t *api_json(const struct http_response *resp, const char *what)
{
	json_error_t e;
	json_t *j = json_loadb(resp->body ? resp->body : "", resp->len, 0, &e);

	if (!j)
		out_error("%s: the gateway's reply is not JSON: %s", what, e.text);
	return j;
}
