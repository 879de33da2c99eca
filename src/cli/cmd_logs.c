/* cmd_logs.c - kiln logs: a function's log lines from GET /system/logs
 * (NDJSON), printed as "TIMESTAMP NAME STREAM TEXT", or raw with --json. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/api.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "cli/output.h"
#include "cli/spec.h"
#include "cli/units.h"

#define MAX_LINE (1024U * 1024U)

static const char logs_usage[] =
	"Usage: kiln logs NAME [--follow] [--since WHEN] [--tail N] [--json]\n"
	"\n"
	"Prints what the function's handlers wrote to stdout and stderr, one line\n"
	"each: TIMESTAMP NAME STREAM TEXT.\n"
	"\n"
	"Options:\n"
	"  -f, --follow        keep printing new lines as they are written\n"
	"      --since WHEN    only lines since WHEN: a duration back from now (10m,\n"
	"                      90s, 2h), an RFC 3339 time or a Unix time in seconds\n"
	"  -n, --tail N        only the last N lines\n"
	"      --json          print kilnd's NDJSON lines as they are\n"
	"  -g, --gateway URL   kilnd's address\n"
	"      --token-file FILE, --cacert FILE, -k\n"
	"                      kilnd's token and TLS (see kiln --help)\n"
	"  -h, --help          this help\n";

enum {
	OPT_SINCE = 1000,
	OPT_JSON,
};

struct lines {
	char *buf;
	size_t len, cap;
	bool json;
	bool failed; /* writing to stdout failed */
};

static void print_line(struct lines *l, const char *line, size_t len)
{
	json_t *j;
	char out[256];
	const char *ts, *name, *stream, *text;
	char *clean;

	if (len == 0)
		return;
	if (l->json) {
		fwrite(line, 1, len, stdout);
		fputc('\n', stdout);
		goto flush;
	}
	j = json_loadb(line, len, 0, NULL);
	ts = json_string_value(json_object_get(j, "timestamp"));
	name = json_string_value(json_object_get(j, "name"));
	stream = json_string_value(json_object_get(j, "stream"));
	text = json_string_value(json_object_get(j, "text"));
	if (!text) {
		clean = out_sanitize(line, len, OUT_KEEP_TABS);
		if (clean)
			puts(clean);
		free(clean);
		json_decref(j);
		goto flush;
	}
	snprintf(out, sizeof(out), "%s %s %s ", ts ? ts : "-", name ? name : "-",
		 stream ? stream : "-");
	clean = out_sanitize(out, strlen(out), 0);
	if (clean)
		fputs(clean, stdout);
	free(clean);
	{
		size_t n = strlen(text);

		while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
			n--;
		clean = out_sanitize(text, n, OUT_KEEP_TABS);
		if (clean)
			puts(clean);
		free(clean);
	}
	json_decref(j);
flush:
	if (fflush(stdout) == EOF || ferror(stdout))
		l->failed = true;
}

static int on_data(void *ud, const char *data, size_t len)
{
	struct lines *l = ud;

	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\n') {
			print_line(l, l->buf, l->len);
			l->len = 0;
			continue;
		}
		if (l->len + 1 > l->cap) {
			size_t cap = l->cap ? l->cap * 2 : 4096;
			char *b;

			if (cap > MAX_LINE) {
				/* An overlong line: print what we have, go on. */
				print_line(l, l->buf, l->len);
				l->len = 0;
				continue;
			}
			b = realloc(l->buf, cap);
			if (!b)
				return -1;
			l->buf = b;
			l->cap = cap;
		}
		l->buf[l->len++] = data[i];
	}
	return l->failed ? -1 : 0;
}

/* True for what kilnd's since= takes: a duration, Unix seconds, or an
 * RFC 3339 time (checked loosely: YYYY-MM-DDT...). */
static bool since_ok(const char *s)
{
	int64_t v;

	if (units_parse_duration_ms(s, &v) == 0 && strspn(s, "0123456789") != strlen(s))
		return true;
	if (*s && strspn(s, "0123456789") == strlen(s))
		return true;
	return strlen(s) >= 20 && strspn(s, "0123456789") == 4 && s[4] == '-' && s[7] == '-' &&
	       (s[10] == 'T' || s[10] == 't') && !strpbrk(s, " \t\r\n");
}

int cmd_logs(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"follow", no_argument, NULL, 'f'},
		{"since", required_argument, NULL, OPT_SINCE},
		{"tail", required_argument, NULL, 'n'},
		{"json", no_argument, NULL, OPT_JSON},
		{"gateway", required_argument, NULL, 'g'},
		OPTS_CONN_LONGOPTS,
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct lines l = {0};
	struct http_client *c = NULL;
	struct http_response r = {0};
	struct http_request req = {.method = "GET"};
	const char *since = NULL, *name;
	char *esince = NULL, *path = NULL, fpath[128], tailq[32] = "";
	bool follow = false;
	int64_t tail = -1;
	int opt, rc;

	optind = 0;
	while ((opt = getopt_long(argc, argv, ":fn:g:vkh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			fputs(logs_usage, stdout);
			return KILN_EXIT_OK;
		case 'f':
			follow = true;
			break;
		case OPT_SINCE:
			if (!since_ok(optarg))
				return opts_bad_value("logs", "--since", optarg,
						      "expected a duration (10m, 2h), an RFC 3339 "
						      "time or a Unix time");
			since = optarg;
			break;
		case 'n':
			rc = opts_int("logs", "--tail", optarg, 0, 100000000, &tail);
			if (rc)
				return rc;
			break;
		case OPT_JSON:
			l.json = true;
			break;
		default:
			if (opts_global(ctx, opt))
				break;
			return opts_fail("logs", opt, argv);
		}
	}
	rc = opts_positional("logs", argc, argv, 1, 1, "the function's NAME");
	if (rc)
		return rc;
	name = argv[optind];
	if (!fn_name_ok(name))
		return opts_bad_name("logs", name);
	rc = api_connect(ctx, NULL, &c);
	if (rc)
		return rc;
	/* An unknown function is an error, not an empty log. */
	snprintf(fpath, sizeof(fpath), "/system/function/%s", name);
	rc = api_request(c, "GET", fpath, NULL, &r);
	if (rc)
		goto destroy_client;
	if (r.status == 404) {
		out_error("function %s not found", name);
		rc = KILN_EXIT_NOT_FOUND;
		goto destroy_client;
	}
	http_response_clear(&r);
	if (tail >= 0)
		snprintf(tailq, sizeof(tailq), "&tail=%lld", (long long)tail);
	esince = since ? http_escape(since) : NULL;
	if ((since && !esince) ||
	    asprintf(&path, "/system/logs?name=%s%s%s%s%s", name, since ? "&since=" : "",
		     since ? esince : "", tailq, follow ? "&follow=1" : "") < 0) {
		path = NULL;
		out_error("out of memory");
		rc = KILN_EXIT_SERVER;
		goto destroy_client;
	}
	req.path = path;
	req.on_data = on_data;
	req.ud = &l;
	rc = http_do(c, &req, &r);
	if (rc == -ECANCELED && l.failed) {
		rc = KILN_EXIT_OK; /* the reader went away */
	} else if (rc == -ENOMEM || rc == -ECANCELED) {
		out_error("out of memory");
		rc = KILN_EXIT_SERVER;
	} else if (rc) {
		out_error("cannot reach the gateway at %s: %s", http_client_gateway(c),
			  http_client_error(c));
		rc = KILN_EXIT_UNREACHABLE;
	} else if (r.status == 404) {
		out_error("function %s not found", name);
		rc = KILN_EXIT_NOT_FOUND;
	} else if (r.status < 200 || r.status >= 300) {
		rc = api_fail(&r, "logs");
	} else {
		print_line(&l, l.buf, l.len);
		rc = KILN_EXIT_OK;
	}
destroy_client:
	http_response_clear(&r);
	free(l.buf);
	free(esince);
	free(path);
	http_client_destroy(c);
	return rc;
}
