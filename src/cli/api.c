/* api.c - requests to kilnd and their failures (see api.h). */
#include "cli/api.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/output.h"
#include "cli/token.h"

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

/* Gives c the token and TLS settings of ctx and the environment. Returns
 * an exit code. */
static int connect_options(const struct cli_ctx *ctx, struct http_client *c)
{
	const char *file = ctx->token_file ? ctx->token_file : getenv("KILN_TOKEN_FILE");
	const char *env = getenv("KILN_TOKEN");
	const char *cacert = ctx->cacert ? ctx->cacert : getenv("KILN_CACERT");
	char err[PATH_MAX + 128], *token = NULL;
	int rc;

	if (file && *file) {
		rc = token_read_file(file, &token, err, sizeof(err));
		if (rc == -ENOMEM) {
			out_error("out of memory");
			return KILN_EXIT_SERVER;
		}
		if (rc) {
			out_error("%s", err);
			return KILN_EXIT_USAGE;
		}
	} else if (env && *env) {
		if (token_check(env)) {
			out_error("KILN_TOKEN: the token must be printable ASCII without spaces, "
				  "at most 4096 bytes");
			return KILN_EXIT_USAGE;
		}
		token = strdup(env);
		if (!token) {
			out_error("out of memory");
			return KILN_EXIT_SERVER;
		}
	}
	rc = http_client_set_token(c, token);
	if (token) {
		memset(token, 0, strlen(token));
		free(token);
	}
	if (!rc)
		rc = http_client_set_tls(c, cacert && *cacert ? cacert : NULL, ctx->insecure);
	if (rc) {
		out_error("out of memory");
		return KILN_EXIT_SERVER;
	}
	return KILN_EXIT_OK;
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
	rc = connect_options(ctx, *out);
	if (rc) {
		http_client_destroy(*out);
		*out = NULL;
	}
	return rc;
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

	if (resp->status == 401) {
		out_error("%s: the gateway refused the request: %s (HTTP 401); give kilnd's token "
			  "with --token-file FILE or $KILN_TOKEN",
			  what, msg ? msg : "a token is needed");
		return api_exit_for_status(resp->status);
	}
	if (resp->status == 403) {
		out_error("%s: the gateway refused the request: %s (HTTP 403)", what,
			  msg ? msg : "the token may not do this");
		return api_exit_for_status(resp->status);
	}
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
