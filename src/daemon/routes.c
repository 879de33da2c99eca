/* routes.c - kilnd's route table: (method, path pattern, body limit,
 * handler), the handlers in routes_*.c. docs/http-api.md documents them. */
#include "daemon/daemon.h"

#define KIB 1024UL
#define MIB (1024UL * 1024UL)

const struct http_route kilnd_routes[] = {
	{"GET", "/system/functions", 0, route_functions_list},
	{"POST", "/system/functions", 100 * MIB, route_functions_deploy},
	{"PUT", "/system/functions", 100 * MIB, route_functions_deploy},
	{"DELETE", "/system/functions", 64 * KIB, route_functions_delete},
	{"GET", "/system/function/{}", 0, route_function_describe},
	{"DELETE", "/system/function/{}", 0, route_function_delete},
	{NULL, "/function/{}{*}", 6 * MIB, route_invoke},
	{NULL, "/async-function/{}{*}", 6 * MIB, route_invoke_async},
	{"POST", "/2015-03-31/functions/{}/invocations", 6 * MIB, route_lambda_invoke},
	{"GET", "/system/calls/{}", 0, route_call_get},
	{"GET", "/system/logs", 0, route_logs},
	{"GET", "/healthz", 0, route_healthz},
	{"GET", "/metrics", 0, route_metrics},
	{"GET", "/system/info", 0, route_info},
	{NULL, NULL, 0, NULL},
};
