/* routes.c - kilnd's route table: (method, path pattern, body limit,
 * handler, the token it needs), the handlers in routes_*.c.
 * docs/http-api.md documents them; a route that names no scope needs the
 * management token (docs/security.md). */
#include "daemon/daemon.h"

#define KIB 1024UL
#define MIB (1024UL * 1024UL)

const struct http_route kilnd_routes[] = {
	{"GET", "/system/functions", 0, route_functions_list, AUTH_SCOPE_MANAGE},
	{"POST", "/system/functions", 100 * MIB, route_functions_deploy, AUTH_SCOPE_MANAGE},
	{"PUT", "/system/functions", 100 * MIB, route_functions_deploy, AUTH_SCOPE_MANAGE},
	{"DELETE", "/system/functions", 64 * KIB, route_functions_delete, AUTH_SCOPE_MANAGE},
	{"GET", "/system/function/{}", 0, route_function_describe, AUTH_SCOPE_MANAGE},
	{"DELETE", "/system/function/{}", 0, route_function_delete, AUTH_SCOPE_MANAGE},
	{NULL, "/function/{}{*}", 6 * MIB, route_invoke, AUTH_SCOPE_INVOKE},
	{NULL, "/async-function/{}{*}", 6 * MIB, route_invoke_async, AUTH_SCOPE_INVOKE},
	{"POST", "/2015-03-31/functions/{}/invocations", 6 * MIB, route_lambda_invoke,
	 AUTH_SCOPE_INVOKE},
	{"GET", "/system/calls/{}", 0, route_call_get, AUTH_SCOPE_MANAGE},
	{"GET", "/system/logs", 0, route_logs, AUTH_SCOPE_MANAGE},
	{"GET", "/healthz", 0, route_healthz, AUTH_SCOPE_OPEN},
	{"GET", "/metrics", 0, route_metrics, AUTH_SCOPE_MANAGE},
	{"GET", "/system/info", 0, route_info, AUTH_SCOPE_MANAGE},
	{NULL, NULL, 0, NULL, AUTH_SCOPE_MANAGE},
};
