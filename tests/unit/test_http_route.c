/* Unit tests for daemon/http's route matcher (http_route_find) against
 * kilnd's route table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "daemon/daemon.h"
#include "daemon/http.h"

static char params[HTTP_MAX_PARAMS][HTTP_URL_MAX];

static const struct http_route *find(const char *method, const char *path, unsigned *status,
				     unsigned *n)
{
	return http_route_find(kilnd_routes, method, path, params, n, status);
}

static void test_routes(void **state)
{
	const struct http_route *rt;
	unsigned status, n;

	(void)state;
	rt = find("GET", "/system/functions", &status, &n);
	assert_non_null(rt);
	assert_ptr_equal(rt->handler, route_functions_list);
	assert_int_equal(rt->scope, AUTH_SCOPE_MANAGE);
	assert_int_equal(n, 0);

	rt = find("PATCH", "/function/echo/a/b", &status, &n);
	assert_non_null(rt);
	assert_ptr_equal(rt->handler, route_invoke);
	assert_int_equal(rt->scope, AUTH_SCOPE_INVOKE);
	assert_int_equal(n, 2);
	assert_string_equal(params[0], "echo");
	assert_string_equal(params[1], "/a/b");

	rt = find("POST", "/function/echo", &status, &n);
	assert_non_null(rt);
	assert_string_equal(params[1], "");

	rt = find("POST", "/2015-03-31/functions/echo/invocations", &status, &n);
	assert_non_null(rt);
	assert_int_equal(rt->scope, AUTH_SCOPE_INVOKE);
	assert_string_equal(params[0], "echo");

	rt = find("GET", "/healthz", &status, &n);
	assert_non_null(rt);
	assert_int_equal(rt->scope, AUTH_SCOPE_OPEN);
}

static void test_no_route(void **state)
{
	unsigned status, n;

	(void)state;
	assert_null(find("POST", "/healthz", &status, &n));
	assert_int_equal(status, 405);
	assert_null(find("GET", "/nothing", &status, &n));
	assert_int_equal(status, 404);
	assert_null(find("GET", "/function/", &status, &n)); /* empty name */
	assert_int_equal(status, 404);
	assert_null(find("GET", "/system/function/a/b", &status, &n));
	assert_int_equal(status, 404);
	assert_null(find("GET", "/system/functionsx", &status, &n));
	assert_int_equal(status, 404);
	assert_null(find("GET", "", &status, &n));
	assert_int_equal(status, 404);
}

static void test_long_segment(void **state)
{
	static char path[HTTP_URL_MAX];
	unsigned status, n;

	(void)state;
	strcpy(path, "/system/function/");
	memset(path + strlen(path), 'a', HTTP_URL_MAX - 1 - strlen(path));
	path[HTTP_URL_MAX - 1] = 0;
	assert_non_null(find("GET", path, &status, &n));
	assert_int_equal(strlen(params[0]), HTTP_URL_MAX - 1 - strlen("/system/function/"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_no_route),
		cmocka_unit_test(test_long_segment),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
