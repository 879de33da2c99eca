/* fuzz_http - the pieces of kilnd's request handling that need no socket:
 * the route matcher (daemon/http.c http_route_find over kilnd's route
 * table) and the Authorization check (daemon/auth.c). The input is
 * "METHOD\0PATH\0AUTHORIZATION". */
#include <string.h>

#include "daemon/auth.h"
#include "daemon/daemon.h"
#include "daemon/http.h"
#include "fuzz.h"

#define TOKEN  "fuzz-manage-token-0123456789"
#define ITOKEN "fuzz-invoke-token-0123456789"

static struct auth *tokens(void)
{
	static struct auth *a;
	char err[256];

	if (!a) {
		a = auth_create();
		FUZZ_ASSERT(a);
		FUZZ_ASSERT(auth_load_buffer(a, AUTH_SCOPE_MANAGE, TOKEN, strlen(TOKEN), "m", err,
					     sizeof(err)) == 0);
		FUZZ_ASSERT(auth_load_buffer(a, AUTH_SCOPE_INVOKE, ITOKEN, strlen(ITOKEN), "i", err,
					     sizeof(err)) == 0);
	}
	return a;
}

/* The next NUL-terminated field of data (copied into out, at most size-1
 * bytes); advances *pos past it. */
static void field(const uint8_t *data, size_t len, size_t *pos, char *out, size_t size)
{
	size_t n = 0;

	while (*pos < len && data[*pos] && n + 1 < size)
		out[n++] = (char)data[(*pos)++];
	out[n] = 0;
	while (*pos < len && data[*pos])
		(*pos)++;
	if (*pos < len)
		(*pos)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char params[HTTP_MAX_PARAMS][HTTP_URL_MAX];
	static char method[32], path[HTTP_URL_MAX], authz[8192];
	const struct http_route *rt;
	unsigned n, status;
	size_t pos = 0;

	field(data, size, &pos, method, sizeof(method));
	field(data, size, &pos, path, sizeof(path));
	field(data, size, &pos, authz, sizeof(authz));
	rt = http_route_find(kilnd_routes, method, path, params, &n, &status);
	if (rt) {
		FUZZ_ASSERT(status == 200 && n <= HTTP_MAX_PARAMS);
		FUZZ_ASSERT(!rt->method || strcmp(rt->method, method) == 0);
		for (unsigned i = 0; i < n; i++)
			FUZZ_ASSERT(strlen(params[i]) < HTTP_URL_MAX &&
				    strlen(params[i]) <= strlen(path));
	} else {
		FUZZ_ASSERT(status == 404 || status == 405);
	}
	for (int scope = AUTH_SCOPE_MANAGE; scope <= AUTH_SCOPE_OPEN; scope++) {
		enum auth_result r = auth_check(tokens(), (enum auth_scope)scope, authz);

		if (scope == AUTH_SCOPE_OPEN)
			FUZZ_ASSERT(r == AUTH_OK);
		/* Only the two tokens pass. */
		if (r == AUTH_OK && scope != AUTH_SCOPE_OPEN)
			FUZZ_ASSERT(strstr(authz, TOKEN) || strstr(authz, ITOKEN));
	}
	return 0;
}
