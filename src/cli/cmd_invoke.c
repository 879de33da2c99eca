/* cmd_invoke.c - kiln invoke (call a function) and kiln calls (an async
 * call's status and result). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/api.h"
#include "cli/cli.h"
#include "cli/invoke.h"
#include "cli/opts.h"
#include "cli/output.h"
#include "cli/spec.h"

#define MAX_EVENT (64U * 1024U * 1024U)

static const char invoke_usage[] =
	"Usage: kiln invoke NAME [--data STR | --data-file FILE] [options]\n"
	"\n"
	"Calls the function NAME with an event: --data, --data-file, else standard\n"
	"input when it is not a terminal, else an empty body. The result goes to\n"
	"standard output; a function error (raised, crashed, timed out) is one line\n"
	"on standard error and exit code 1.\n"
	"\n"
	"Options:\n"
	"  -d, --data STR          the event\n"
	"      --data-file FILE    the event from a file ('-': standard input)\n"
	"  -H, --header 'K: V'     a request header (repeatable)\n"
	"      --query K=V         a query parameter (repeatable)\n"
	"  -X, --method METHOD     the HTTP method (default POST)\n"
	"      --path /SUB/PATH    a path after the function's name\n"
	"      --async             queue the call; prints its id (see kiln calls)\n"
	"      --callback URL      with --async: kilnd POSTs the result there\n"
	"  -v, --verbose           show the call id, cold or warm start, duration,\n"
	"                          VM and version on standard error, and a function\n"
	"                          error's stack trace\n"
	"  -g, --gateway URL       kilnd's address\n"
	"      --token-file FILE, --cacert FILE, -k\n"
	"                          kilnd's token and TLS (see kiln --help)\n"
	"  -h, --help              this help\n";

enum {
	OPT_DATA_FILE = 1000,
	OPT_QUERY,
	OPT_PATH,
	OPT_ASYNC,
	OPT_CALLBACK,
	OPT_JSON,
	OPT_WAIT,
};

/* Reads all of fd (at most MAX_EVENT bytes). */
static int read_all(int fd, char **out, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);

	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t r;

		if (n == cap) {
			char *b;

			if (cap >= MAX_EVENT) {
				free(buf);
				return -EFBIG;
			}
			cap *= 2;
			b = realloc(buf, cap);
			if (!b) {
				free(buf);
				return -ENOMEM;
			}
			buf = b;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;

			free(buf);
			return -e;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*out = buf;
	*len = n;
	return 0;
}

static int read_event(const char *file, char **out, size_t *len)
{
	int fd = 0, rc;

	if (file && strcmp(file, "-")) {
		fd = open(file, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			out_error("invoke: %s: %s", file, strerror(errno));
			return KILN_EXIT_USAGE;
		}
	}
	rc = read_all(fd, out, len);
	if (fd)
		close(fd);
	if (rc) {
		out_error("invoke: %s: %s", file && strcmp(file, "-") ? file : "standard input",
			  rc == -EFBIG ? "larger than 64 MiB" : strerror(-rc));
		return KILN_EXIT_USAGE;
	}
	return KILN_EXIT_OK;
}

int cmd_invoke(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"data", required_argument, NULL, 'd'},
		{"data-file", required_argument, NULL, OPT_DATA_FILE},
		{"header", required_argument, NULL, 'H'},
		{"query", required_argument, NULL, OPT_QUERY},
		{"method", required_argument, NULL, 'X'},
		{"path", required_argument, NULL, OPT_PATH},
		{"async", no_argument, NULL, OPT_ASYNC},
		{"callback", required_argument, NULL, OPT_CALLBACK},
		{"gateway", required_argument, NULL, 'g'},
		OPTS_CONN_LONGOPTS,
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char **headers = calloc((size_t)argc + 1, sizeof(*headers));
	struct invoke_req req = {0};
	struct http_response resp = {0};
	struct http_client *c = NULL;
	const char *data = NULL, *data_file = NULL;
	char *query = NULL, *event = NULL;
	size_t n_headers = 0, event_len = 0;
	int opt, rc = KILN_EXIT_OK;

	if (!headers) {
		out_error("out of memory");
		return KILN_EXIT_SERVER;
	}
	optind = 0;
	while ((opt = getopt_long(argc, argv, ":d:H:X:g:vkh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			fputs(invoke_usage, stdout);
			goto free_all;
		case 'd':
			data = optarg;
			break;
		case OPT_DATA_FILE:
			data_file = optarg;
			break;
		case 'H':
			if (!invoke_header_ok(optarg)) {
				rc = opts_bad_value("invoke", "--header", optarg,
						    "expected 'Name: value'");
				goto free_all;
			}
			headers[n_headers++] = optarg;
			break;
		case OPT_QUERY:
			if (invoke_add_query(&query, optarg)) {
				rc = opts_bad_value("invoke", "--query", optarg,
						    "expected KEY=VALUE");
				goto free_all;
			}
			break;
		case 'X':
			if (!*optarg ||
			    strspn(optarg, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(optarg)) {
				rc = opts_bad_value("invoke", "--method", optarg,
						    "expected an upper-case HTTP method");
				goto free_all;
			}
			req.method = optarg;
			break;
		case OPT_PATH:
			if (optarg[0] != '/' || strpbrk(optarg, "?# \t\r\n")) {
				rc = opts_bad_value("invoke", "--path", optarg,
						    "expected /a/path without query");
				goto free_all;
			}
			req.subpath = optarg;
			break;
		case OPT_ASYNC:
			req.async = true;
			break;
		case OPT_CALLBACK:
			if (strpbrk(optarg, "\r\n") || !*optarg) {
				rc = opts_bad_value("invoke", "--callback", optarg,
						    "expected a URL");
				goto free_all;
			}
			req.callback = optarg;
			break;
		default:
			if (opts_global(ctx, opt))
				break;
			rc = opts_fail("invoke", opt, argv);
			goto free_all;
		}
	}
	rc = opts_positional("invoke", argc, argv, 1, 1, "the function's NAME");
	if (rc)
		goto free_all;
	if (!fn_name_ok(argv[optind])) {
		rc = opts_bad_name("invoke", argv[optind]);
		goto free_all;
	}
	if (data && data_file) {
		out_error("invoke: give --data or --data-file, not both");
		rc = KILN_EXIT_USAGE;
		goto free_all;
	}
	if (req.callback && !req.async) {
		out_error("invoke: --callback needs --async");
		rc = KILN_EXIT_USAGE;
		goto free_all;
	}
	if (!data && (data_file || !isatty(0))) {
		rc = read_event(data_file, &event, &event_len);
		if (rc)
			goto free_all;
	}
	req.name = argv[optind];
	req.query = query;
	req.headers = headers;
	req.body = data ? data : event;
	req.body_len = data ? strlen(data) : event_len;
	rc = api_connect(ctx, NULL, &c);
	if (rc)
		goto free_all;
	rc = invoke_send(c, &req, &resp);
	if (rc)
		goto destroy_client;
	if (req.async) {
		const char *id = http_response_header(&resp, "X-Call-Id");

		if (ctx->verbose)
			invoke_print_details(&resp);
		if (resp.status == 404) {
			out_error("function %s not found", req.name);
			rc = KILN_EXIT_NOT_FOUND;
		} else if (resp.status < 200 || resp.status >= 300) {
			rc = api_fail(&resp, req.name);
		} else if (!id) {
			out_error("%s: the gateway accepted the call but sent no X-Call-Id",
				  req.name);
			rc = KILN_EXIT_SERVER;
		} else {
			out_text(stdout, id, 0);
		}
	} else {
		rc = invoke_report(req.name, &resp, ctx->verbose, stdout, ctx->stdout_tty);
	}
	http_response_clear(&resp);
destroy_client:
	http_client_destroy(c);
free_all:
	free(event);
	free(query);
	free(headers);
	return rc;
}

static const char calls_usage[] =
	"Usage: kiln calls ID [--wait] [--json]\n"
	"\n"
	"Shows an async call (kiln invoke --async): its status (queued, running,\n"
	"done), and when done its HTTP status and result. The exit code follows the\n"
	"result as for kiln invoke (1 when the function failed).\n"
	"\n"
	"Options:\n"
	"  -w, --wait          poll until the call is done\n"
	"      --json          print kilnd's JSON\n"
	"  -g, --gateway URL   kilnd's address\n"
	"      --token-file FILE, --cacert FILE, -k\n"
	"                      kilnd's token and TLS (see kiln --help)\n"
	"  -h, --help          this help\n";

static void kv(const char *key, const char *value)
{
	char line[1024];

	snprintf(line, sizeof(line), "%-12s %s", key, value ? value : "-");
	out_text(stdout, line, 0);
}

/* The exit code of a finished call's status code. */
static int call_exit(json_int_t code, json_t *j)
{
	(void)j;
	if (code >= 200 && code < 300)
		return KILN_EXIT_OK;
	if (code == 500 || code == 502 || code == 504)
		return KILN_EXIT_FUNCTION;
	return api_exit_for_status((long)code);
}

static int print_call(json_t *j)
{
	const char *status = json_string_value(json_object_get(j, "status"));
	json_int_t code = json_integer_value(json_object_get(j, "status_code"));
	const char *body = json_string_value(json_object_get(j, "body"));
	const char *b64 = json_string_value(json_object_get(j, "body_base64"));
	const char *error = json_string_value(json_object_get(j, "error"));
	const char *cb = json_string_value(json_object_get(j, "callback_url"));
	const char *cbs = json_string_value(json_object_get(j, "callback_status"));
	char buf[256];
	bool done = status && !strcmp(status, "done");

	kv("Call:", json_string_value(json_object_get(j, "id")));
	kv("Function:", json_string_value(json_object_get(j, "function")));
	if (done)
		snprintf(buf, sizeof(buf), "done (HTTP %lld)", (long long)code);
	else
		snprintf(buf, sizeof(buf), "%s", status ? status : "?");
	kv("Status:", buf);
	snprintf(buf, sizeof(buf), "%lld",
		 (long long)json_integer_value(json_object_get(j, "attempts")));
	kv("Attempts:", buf);
	kv("Created:", json_string_value(json_object_get(j, "created_at")));
	kv("Started:", json_string_value(json_object_get(j, "started_at")));
	kv("Finished:", json_string_value(json_object_get(j, "finished_at")));
	if (cb) {
		snprintf(buf, sizeof(buf), "%.180s (%.60s)", cb, cbs ? cbs : "not sent yet");
		kv("Callback:", buf);
	}
	if (error && *error)
		kv("Error:", error);
	if (!done)
		return KILN_EXIT_OK;
	if (body) {
		fputs("Result:\n", stdout);
		fputs(body, stdout);
		if (!*body || body[strlen(body) - 1] != '\n')
			fputc('\n', stdout);
	} else if (b64) {
		kv("Result:", "(binary, base64)");
		out_text(stdout, b64, 0);
	}
	fflush(stdout);
	return call_exit(code, j);
}

int cmd_calls(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"wait", no_argument, NULL, 'w'},
		{"json", no_argument, NULL, OPT_JSON},
		{"gateway", required_argument, NULL, 'g'},
		OPTS_CONN_LONGOPTS,
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct http_client *c = NULL;
	bool json = false, wait = false;
	char *id = NULL, *path = NULL;
	int opt, rc;

	optind = 0;
	while ((opt = getopt_long(argc, argv, ":wg:vkh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			fputs(calls_usage, stdout);
			return KILN_EXIT_OK;
		case 'w':
			wait = true;
			break;
		case OPT_JSON:
			json = true;
			break;
		default:
			if (opts_global(ctx, opt))
				break;
			return opts_fail("calls", opt, argv);
		}
	}
	rc = opts_positional("calls", argc, argv, 1, 1, "the call's ID");
	if (rc)
		return rc;
	id = http_escape(argv[optind]);
	if (!id || asprintf(&path, "/system/calls/%s", id) < 0) {
		free(id);
		out_error("out of memory");
		return KILN_EXIT_SERVER;
	}
	rc = api_connect(ctx, NULL, &c);
	while (!rc) {
		struct http_response r;
		json_t *j;
		const char *status;

		rc = api_request(c, "GET", path, NULL, &r);
		if (rc)
			break;
		if (r.status == 404) {
			out_error("call %s not found", argv[optind]);
			rc = KILN_EXIT_NOT_FOUND;
		} else if (r.status != 200) {
			rc = api_fail(&r, "calls");
		}
		j = rc ? NULL : api_json(&r, "calls");
		http_response_clear(&r);
		if (rc)
			break;
		if (!j) {
			rc = KILN_EXIT_SERVER;
			break;
		}
		status = json_string_value(json_object_get(j, "status"));
		if (wait && (!status || strcmp(status, "done"))) {
			struct timespec ts = {0, 250 * 1000000L};

			json_decref(j);
			nanosleep(&ts, NULL);
			continue;
		}
		if (json) {
			out_json(stdout, j);
			rc = status && !strcmp(status, "done")
				     ? call_exit(json_integer_value(
							 json_object_get(j, "status_code")),
						 j)
				     : KILN_EXIT_OK;
		} else {
			rc = print_call(j);
		}
		json_decref(j);
		break;
	}
	http_client_destroy(c);
	free(path);
	free(id);
	return rc;
}
