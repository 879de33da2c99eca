/* cmd_run.c - kiln run --config-path FILE: runs a Cloudlet configuration
 * (cloudlet.h): deploys the program as an exec-mode function named after
 * the workload, calls it once, and prints what it wrote. The stages
 * (preparing, running, done or failed) go to standard error, the program's
 * output to standard output. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/api.h"
#include "cli/cli.h"
#include "cli/cloudlet.h"
#include "cli/deploy.h"
#include "cli/invoke.h"
#include "cli/opts.h"
#include "cli/output.h"
#include "cli/progress.h"
#include "cli/stack.h"
#include "cli/units.h"

static const char run_usage[] =
	"Usage: kiln run --config-path FILE [--rm]\n"
	"\n"
	"Runs a Cloudlet configuration (TOML: workload-name, language, action =\n"
	"\"prepare-and-run\", [server], [build] source-code-path, release): deploys\n"
	"the program as the function workload-name in exec mode, runs it once and\n"
	"prints its output. A relative source-code-path is looked up next to the\n"
	"config file first, then in the current directory. [server] is checked but\n"
	"not used: the gateway is --gateway, $KILN_GATEWAY or " KILN_DEFAULT_GATEWAY ".\n"
	"Stages go to standard error, the program's output to standard output.\n"
	"\n"
	"Options:\n"
	"  -c, --config-path FILE  the Cloudlet configuration\n"
	"  -t, --timeout DURATION  the program's run time limit (default 900s, kilnd's\n"
	"                          largest: a program is started afresh by each run)\n"
	"      --rm                remove the function afterwards\n"
	"  -q, --quiet             no stages, only the program's output\n"
	"  -g, --gateway URL       kilnd's address\n"
	"      --token-file FILE, --cacert FILE, -k\n"
	"                          kilnd's token and TLS (see kiln --help)\n"
	"  -h, --help              this help\n";

enum {
	OPT_RM = 1000,
};

/* A Cloudlet program runs to completion: kilnd's largest time-out. */
#define RUN_DEFAULT_TIMEOUT_MS (900 * 1000)

/* The exec-mode command for the program file `base`, single-quoted for
 * sh; NULL for rust (kilnd's rust runtime builds and runs the source). */
static char *exec_handler(const char *language, const char *base)
{
	const char *cmd = !strcmp(language, "python") ? "python3"
			  : !strcmp(language, "node") ? "node"
						      : NULL;
	size_t n = 0;
	char *out, *o;

	if (!cmd)
		return NULL;
	for (const char *p = base; *p; p++)
		n += *p == '\'' ? 4 : 1;
	out = malloc(strlen(cmd) + n + 4);
	if (!out)
		return NULL;
	o = out + sprintf(out, "%s '", cmd);
	for (const char *p = base; *p; p++) {
		if (*p == '\'') {
			memcpy(o, "'\\''", 4);
			o += 4;
		} else {
			*o++ = *p;
		}
	}
	*o++ = '\'';
	*o = '\0';
	return out;
}

/* Prints the call's stderr lines from kilnd's logs on stderr (best
 * effort: nothing when they cannot be read). */
static void print_call_stderr(struct http_client *c, const char *name, const char *call_id)
{
	struct http_response r;
	char path[160];
	char *line, *save = NULL;

	if (!call_id)
		return;
	snprintf(path, sizeof(path), "/system/logs?name=%s&tail=1000", name);
	if (http_do(c, &(struct http_request){.method = "GET", .path = path}, &r) ||
	    r.status != 200) {
		http_response_clear(&r);
		return;
	}
	for (line = strtok_r(r.body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(line, 0, NULL);
		const char *id = json_string_value(json_object_get(j, "call_id"));
		const char *text = json_string_value(json_object_get(j, "text"));

		if (id && text && !strcmp(id, call_id))
			out_text(stderr, text, OUT_KEEP_TABS);
		json_decref(j);
	}
	http_response_clear(&r);
}

static void stage(bool quiet, const char *name, const char *what)
{
	if (!quiet) {
		fflush(stdout);
		fprintf(stderr, "%s: %s\n", name, what);
		fflush(stderr);
	}
}

int cmd_run(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"config-path", required_argument, NULL, 'c'},
		{"rm", no_argument, NULL, OPT_RM},
		{"timeout", required_argument, NULL, 't'},
		{"quiet", no_argument, NULL, 'q'},
		{"gateway", required_argument, NULL, 'g'},
		OPTS_CONN_LONGOPTS,
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *config = NULL, *slash, *base;
	bool rm = false, quiet = false;
	char *text = NULL, *dir = NULL, *source = NULL, err[512], label[128], el[32];
	struct cloudlet_config *cfg = NULL;
	struct fn_spec s;
	struct http_client *c = NULL;
	struct http_response resp = {0};
	struct invoke_req req = {0};
	struct progress *p = NULL;
	int64_t timeout_ms = RUN_DEFAULT_TIMEOUT_MS;
	size_t len;
	int opt, rc;

	fn_spec_init(&s);
	optind = 0;
	while ((opt = getopt_long(argc, argv, ":c:t:qg:vkh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			fputs(run_usage, stdout);
			return KILN_EXIT_OK;
		case 'c':
			config = optarg;
			break;
		case OPT_RM:
			rm = true;
			break;
		case 't':
			rc = opts_duration("run", "--timeout", optarg, &timeout_ms);
			if (rc)
				return rc;
			break;
		case 'q':
			quiet = true;
			break;
		default:
			if (opts_global(ctx, opt))
				break;
			return opts_fail("run", opt, argv);
		}
	}
	rc = opts_positional("run", argc, argv, 0, 0, "");
	if (rc)
		return rc;
	if (!config) {
		out_error("run: --config-path FILE is required (see 'kiln run --help')");
		return KILN_EXIT_USAGE;
	}
	rc = stack_read_file(config, CLOUDLET_MAX_BYTES, &text, &len);
	if (rc) {
		out_error("run: %s: %s", config, rc == -EFBIG ? "file too large" : strerror(-rc));
		return KILN_EXIT_USAGE;
	}
	rc = cloudlet_parse(text, len, config, &cfg, err, sizeof(err));
	if (rc) {
		out_error("%s", rc == -ENOMEM ? "out of memory" : err);
		rc = rc == -ENOMEM ? KILN_EXIT_SERVER : KILN_EXIT_USAGE;
		goto free_text;
	}
	for (size_t i = 0; i < cfg->n_warnings; i++)
		out_warn("%s", cfg->warnings[i]);
	slash = strrchr(config, '/');
	dir = slash ? strndup(config, slash == config ? 1 : (size_t)(slash - config)) : strdup("");
	if (!dir) {
		rc = KILN_EXIT_SERVER;
		goto destroy_cfg;
	}
	rc = cloudlet_find_source(cfg, dir, &source, err, sizeof(err));
	if (rc) {
		out_error("run: %s: %s", config, rc == -ENOMEM ? "out of memory" : err);
		rc = rc == -ENOMEM ? KILN_EXIT_SERVER : KILN_EXIT_USAGE;
		goto destroy_cfg;
	}
	base = strrchr(source, '/');
	base = base ? base + 1 : source;
	s.handler = exec_handler(cfg->language, base);
	if ((!s.handler && strcmp(cfg->language, "rust")) ||
	    fn_set_string(&s.name, cfg->workload_name) ||
	    fn_set_string(&s.runtime, cfg->language) || fn_set_string(&s.mode, "exec") ||
	    fn_set_string(&s.code, source)) {
		out_error("out of memory");
		rc = KILN_EXIT_SERVER;
		goto destroy_cfg;
	}
	s.timeout_ms = timeout_ms;
	if (cfg->has_release && !strcmp(cfg->language, "rust"))
		s.release = cfg->release;
	rc = api_connect(ctx, NULL, &c);
	if (rc)
		goto destroy_cfg;
	snprintf(label, sizeof(label), "%s: preparing", cfg->workload_name);
	{
		struct deploy_opts o = {
			.out = stderr, .tty = isatty(2), .quiet = quiet, .label = label};

		rc = deploy_function(c, &s, &o, NULL);
	}
	if (rc) {
		stage(quiet, cfg->workload_name, "failed");
		goto destroy_client;
	}
	stage(quiet, cfg->workload_name, "running");
	p = progress_create(stderr, false, cfg->workload_name);
	req.name = cfg->workload_name;
	rc = invoke_send(c, &req, &resp);
	if (rc) {
		stage(quiet, cfg->workload_name, "failed");
		goto destroy_progress;
	}
	rc = invoke_report(cfg->workload_name, &resp, ctx->verbose, stdout, false);
	print_call_stderr(c, cfg->workload_name, http_response_header(&resp, "X-Call-Id"));
	units_format_elapsed(p ? progress_elapsed_ms(p) : 0, el, sizeof(el));
	snprintf(label, sizeof(label), "%s (%s)", rc ? "failed" : "done", el);
	stage(quiet, cfg->workload_name, label);
	if (rm) {
		struct http_response r;
		char path[128];

		snprintf(path, sizeof(path), "/system/function/%s", cfg->workload_name);
		if (!api_request(c, "DELETE", path, NULL, &r) &&
		    (r.status < 200 || r.status >= 300))
			api_fail(&r, "run: --rm");
		http_response_clear(&r);
	}
destroy_progress:
	http_response_clear(&resp);
	progress_destroy(p);
destroy_client:
	http_client_destroy(c);
destroy_cfg:
	fn_spec_clear(&s);
	free(source);
	free(dir);
	cloudlet_destroy(cfg);
free_text:
	free(text);
	return rc;
}
