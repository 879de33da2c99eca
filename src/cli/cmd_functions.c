/* cmd_functions.c - kiln list, kiln describe and kiln remove. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/api.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "cli/output.h"
#include "cli/spec.h"
#include "cli/table.h"
#include "cli/units.h"

enum {
	OPT_JSON = 1000,
};

static const char list_usage[] =
	"Usage: kiln list [--json]\n"
	"\n"
	"Lists the functions: name, status, version, runtime, memory, vCPUs,\n"
	"invocations and replicas, as an aligned table.\n"
	"\n"
	"Options:\n"
	"      --json          print kilnd's JSON\n"
	"  -g, --gateway URL   kilnd's address\n"
	"      --token-file FILE, --cacert FILE, -k\n"
	"                      kilnd's token and TLS (see kiln --help)\n"
	"  -h, --help          this help\n";

/* Parses the options shared by list/describe/remove: --json, -g, -v, -h. */
static int common_opts(struct cli_ctx *ctx, const char *cmd, const char *usage, int argc,
		       char **argv, bool *json, bool *help)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, OPT_JSON},
		{"gateway", required_argument, NULL, 'g'},
		OPTS_CONN_LONGOPTS,
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int opt;

	*help = false;
	optind = 0;
	while ((opt = getopt_long(argc, argv, ":g:vkh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			fputs(usage, stdout);
			*help = true;
			return KILN_EXIT_OK;
		case OPT_JSON:
			if (!json)
				return opts_fail(cmd, '?', argv);
			*json = true;
			break;
		default:
			if (opts_global(ctx, opt))
				break;
			return opts_fail(cmd, opt, argv);
		}
	}
	return KILN_EXIT_OK;
}

/* An integer member as text ("-" when absent). */
static const char *int_text(json_t *o, const char *key, char *buf, size_t size)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v))
		return NULL;
	snprintf(buf, size, "%lld", (long long)json_integer_value(v));
	return buf;
}

/* Seconds (integer or real) as a duration ("30s", "1.5s"). */
static const char *seconds_text(json_t *o, const char *key, char *buf, size_t size)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_number(v))
		return NULL;
	units_format_duration((int64_t)(json_number_value(v) * 1000.0 + 0.5), buf, size);
	return buf;
}

/* The strings of an array member joined with sep ("?" for others), or NULL
 * when it is absent or empty. */
static const char *strings_text(json_t *o, const char *key, const char *sep, char *buf, size_t size)
{
	json_t *a = json_object_get(o, key), *v;
	size_t i, off = 0;

	if (!json_is_array(a) || !json_array_size(a))
		return NULL;
	buf[0] = '\0';
	json_array_foreach(a, i, v)
	{
		int n = snprintf(buf + off, size - off, "%s%s", i ? sep : "",
				 json_is_string(v) ? json_string_value(v) : "?");

		if (n < 0 || (size_t)n >= size - off)
			break;
		off += (size_t)n;
	}
	return buf;
}

int cmd_list(struct cli_ctx *ctx, int argc, char **argv)
{
	static const char *const headers[] = {"NAME",	"STATUS", "VERSION",	 "RUNTIME",
					      "MEMORY", "VCPUS",  "INVOCATIONS", "REPLICAS"};
	struct http_client *c = NULL;
	struct http_response r = {0};
	struct table *t = NULL;
	bool json = false, help;
	json_t *j = NULL, *fn;
	char *text;
	size_t i;
	int rc;

	rc = common_opts(ctx, "list", list_usage, argc, argv, &json, &help);
	if (rc || help)
		return rc;
	rc = opts_positional("list", argc, argv, 0, 0, "");
	if (rc)
		return rc;
	rc = api_connect(ctx, NULL, &c);
	if (rc)
		return rc;
	rc = api_request(c, "GET", "/system/functions", NULL, &r);
	if (rc)
		goto destroy_client;
	if (r.status != 200) {
		rc = api_fail(&r, "list");
		goto clear_response;
	}
	j = api_json(&r, "list");
	if (!json_is_array(j)) {
		if (j)
			out_error("list: the gateway's reply is not a JSON array");
		rc = KILN_EXIT_SERVER;
		goto decref;
	}
	if (json) {
		out_json(stdout, j);
		goto decref;
	}
	t = table_create(8, headers);
	if (!t)
		goto oom;
	for (size_t col = 2; col < 8; col++)
		if (col != 3)
			table_align_right(t, col);
	json_array_foreach(j, i, fn)
	{
		char ver[24], mem[32], vcpus[24], inv[24], rep[48];
		const char *cells[8];
		json_t *av = json_object_get(fn, "availableReplicas");

		cells[0] = json_string_value(json_object_get(fn, "name"));
		cells[1] = json_string_value(json_object_get(fn, "status"));
		cells[2] = int_text(fn, "version", ver, sizeof(ver));
		cells[3] = json_string_value(json_object_get(fn, "runtime"));
		cells[4] = int_text(fn, "memory", mem, sizeof(mem) - 4);
		if (cells[4])
			strcat(mem, "Mi");
		cells[5] = int_text(fn, "vcpus", vcpus, sizeof(vcpus));
		cells[6] = int_text(fn, "invocationCount", inv, sizeof(inv));
		cells[7] = int_text(fn, "replicas", rep, sizeof(rep) / 2);
		if (cells[7] && json_is_integer(av))
			snprintf(rep + strlen(rep), sizeof(rep) - strlen(rep), "/%lld",
				 (long long)json_integer_value(av));
		if (table_add_row(t, cells))
			goto oom;
	}
	text = table_render(t);
	if (!text)
		goto oom;
	fputs(text, stdout);
	free(text);
	goto destroy_table;
oom:
	out_error("out of memory");
	rc = KILN_EXIT_SERVER;
destroy_table:
	table_destroy(t);
decref:
	json_decref(j);
clear_response:
	http_response_clear(&r);
destroy_client:
	http_client_destroy(c);
	return rc;
}

static const char describe_usage[] =
	"Usage: kiln describe NAME [--json]\n"
	"\n"
	"Shows a function: every value of its spec, its status, version, snapshot,\n"
	"instances, invocations, last deploy and URL.\n"
	"\n"
	"Options:\n"
	"      --json          print kilnd's JSON\n"
	"  -g, --gateway URL   kilnd's address\n"
	"      --token-file FILE, --cacert FILE, -k\n"
	"                      kilnd's token and TLS (see kiln --help)\n"
	"  -h, --help          this help\n";

static void field(const char *key, const char *value)
{
	char line[2048];

	snprintf(line, sizeof(line), "%-16s %s", key, value ? value : "-");
	out_text(stdout, line, 0);
}

static void describe_print(struct http_client *c, json_t *j)
{
	json_t *env = json_object_get(j, "env"), *snap = json_object_get(j, "snapshot");
	json_t *inst = json_object_get(j, "instances"), *dep = json_object_get(j, "deploy");
	const char *name = json_string_value(json_object_get(j, "name"));
	char buf[512], b2[64];
	const char *k;
	json_t *v;
	bool first = true;

	field("Name:", name);
	field("Status:", json_string_value(json_object_get(j, "status")));
	field("Version:", int_text(j, "version", buf, sizeof(buf)));
	field("Runtime:", json_string_value(json_object_get(j, "runtime")));
	field("Handler:", json_string_value(json_object_get(j, "handler")));
	field("Mode:", json_string_value(json_object_get(j, "mode")));
	if (int_text(j, "memory", b2, sizeof(b2))) {
		snprintf(buf, sizeof(buf), "%s MiB", b2);
		field("Memory:", buf);
	} else {
		field("Memory:", NULL);
	}
	field("vCPUs:", int_text(j, "vcpus", buf, sizeof(buf)));
	field("Timeout:", seconds_text(j, "timeout", buf, sizeof(buf)));
	field("Concurrency:", int_text(j, "concurrency", buf, sizeof(buf)));
	field("Queue timeout:", seconds_text(j, "queue_timeout", buf, sizeof(buf)));
	field("Min instances:", int_text(j, "min_instances", buf, sizeof(buf)));
	field("Max instances:", int_text(j, "max_instances", buf, sizeof(buf)));
	field("Keep alive:", seconds_text(j, "keep_alive", buf, sizeof(buf)));
	field("Network:", json_string_value(json_object_get(j, "network")));
	if (strings_text(j, "dns", ", ", buf, sizeof(buf)))
		field("DNS:", buf);
	if (strings_text(j, "dns_search", " ", buf, sizeof(buf)))
		field("DNS search:", buf);
	json_object_foreach(env, k, v)
	{
		snprintf(buf, sizeof(buf), "%s=%s", k,
			 json_is_string(v) ? json_string_value(v) : "?");
		field(first ? "Environment:" : "", buf);
		first = false;
	}
	if (first)
		field("Environment:", "(none)");
	field("Code SHA-256:", json_string_value(json_object_get(j, "code_sha256")));
	if (json_is_object(snap)) {
		snprintf(buf, sizeof(buf), "%s (memory %.1f MiB, state %.1f KiB)",
			 json_string_value(json_object_get(snap, "id"))
				 ? json_string_value(json_object_get(snap, "id"))
				 : "?",
			 (double)json_integer_value(json_object_get(snap, "memory_bytes")) /
				 1048576.0,
			 (double)json_integer_value(json_object_get(snap, "state_bytes")) / 1024.0);
		field("Snapshot:", buf);
	}
	if (json_is_object(inst)) {
		snprintf(buf, sizeof(buf),
			 "running %lld, busy %lld, idle %lld, paused %lld, "
			 "starting %lld",
			 (long long)json_integer_value(json_object_get(inst, "running")),
			 (long long)json_integer_value(json_object_get(inst, "busy")),
			 (long long)json_integer_value(json_object_get(inst, "idle")),
			 (long long)json_integer_value(json_object_get(inst, "paused")),
			 (long long)json_integer_value(json_object_get(inst, "starting")));
		field("Instances:", buf);
	}
	if (int_text(j, "replicas", b2, sizeof(b2))) {
		snprintf(buf, sizeof(buf), "%s (%lld available)", b2,
			 (long long)json_integer_value(json_object_get(j, "availableReplicas")));
		field("Replicas:", buf);
	}
	field("Invocations:", int_text(j, "invocationCount", buf, sizeof(buf)));
	if (json_is_object(dep)) {
		const char *err = json_string_value(json_object_get(dep, "error"));

		units_format_elapsed(json_integer_value(json_object_get(dep, "elapsed_ms")), b2,
				     sizeof(b2));
		snprintf(buf, sizeof(buf), "version %lld, %s, %s%s%.300s",
			 (long long)json_integer_value(json_object_get(dep, "version")),
			 json_string_value(json_object_get(dep, "stage"))
				 ? json_string_value(json_object_get(dep, "stage"))
				 : "?",
			 b2, err && *err ? ": " : "", err ? err : "");
		field("Last deploy:", buf);
	}
	if (name) {
		char path[128], *url;

		snprintf(path, sizeof(path), "/function/%s", name);
		url = http_client_url(c, path);
		field("URL:", url);
		free(url);
	}
	field("Created:", json_string_value(json_object_get(j, "created_at")));
	field("Updated:", json_string_value(json_object_get(j, "updated_at")));
}

/* GET or DELETE /system/function/NAME with the usual failures. */
static int function_request(struct http_client *c, const char *method, const char *name,
			    struct http_response *r)
{
	char path[128];
	int rc;

	snprintf(path, sizeof(path), "/system/function/%s", name);
	rc = api_request(c, method, path, NULL, r);
	if (rc)
		return rc;
	if (r->status == 404) {
		out_error("function %s not found", name);
		return KILN_EXIT_NOT_FOUND;
	}
	if (r->status < 200 || r->status >= 300)
		return api_fail(r, name);
	return KILN_EXIT_OK;
}

/* The NAME argument of describe/remove. */
static int name_arg(const char *cmd, int argc, char **argv, const char **name)
{
	int rc = opts_positional(cmd, argc, argv, 1, 1, "the function's NAME");

	if (rc)
		return rc;
	if (!fn_name_ok(argv[optind]))
		return opts_bad_name(cmd, argv[optind]);
	*name = argv[optind];
	return KILN_EXIT_OK;
}

int cmd_describe(struct cli_ctx *ctx, int argc, char **argv)
{
	struct http_client *c = NULL;
	struct http_response r = {0};
	bool json = false, help;
	const char *name;
	json_t *j;
	int rc;

	rc = common_opts(ctx, "describe", describe_usage, argc, argv, &json, &help);
	if (rc || help)
		return rc;
	rc = name_arg("describe", argc, argv, &name);
	if (rc)
		return rc;
	rc = api_connect(ctx, NULL, &c);
	if (rc)
		return rc;
	rc = function_request(c, "GET", name, &r);
	if (rc)
		goto clear_response;
	j = api_json(&r, name);
	if (!json_is_object(j)) {
		if (j)
			out_error("%s: the gateway's reply is not a JSON object", name);
		rc = KILN_EXIT_SERVER;
	} else if (json) {
		out_json(stdout, j);
	} else {
		describe_print(c, j);
	}
	json_decref(j);
clear_response:
	http_response_clear(&r);
	http_client_destroy(c);
	return rc;
}

static const char remove_usage[] =
	"Usage: kiln remove NAME\n"
	"\n"
	"Removes the function NAME: its VMs are stopped, calls in flight end with\n"
	"HTTP 410, its versions and logs are deleted.\n"
	"\n"
	"Options:\n"
	"  -g, --gateway URL   kilnd's address\n"
	"      --token-file FILE, --cacert FILE, -k\n"
	"                      kilnd's token and TLS (see kiln --help)\n"
	"  -h, --help          this help\n";

int cmd_remove(struct cli_ctx *ctx, int argc, char **argv)
{
	struct http_client *c = NULL;
	struct http_response r = {0};
	const char *name;
	bool help;
	int rc;

	rc = common_opts(ctx, "remove", remove_usage, argc, argv, NULL, &help);
	if (rc || help)
		return rc;
	rc = name_arg("remove", argc, argv, &name);
	if (rc)
		return rc;
	rc = api_connect(ctx, NULL, &c);
	if (rc)
		return rc;
	rc = function_request(c, "DELETE", name, &r);
	if (!rc)
		printf("removed %s\n", name);
	http_response_clear(&r);
	http_client_destroy(c);
	return rc;
}
