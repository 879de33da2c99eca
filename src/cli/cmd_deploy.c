/* cmd_deploy.c - kiln deploy (one function from flags) and kiln up (every
 * function of a stack file). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/api.h"
#include "cli/cli.h"
#include "cli/deploy.h"
#include "cli/opts.h"
#include "cli/output.h"
#include "cli/stack.h"
#include "cli/units.h"

static const char deploy_usage[] =
	"Usage: kiln deploy NAME --runtime RUNTIME --code DIR|FILE [options]\n"
	"\n"
	"Creates the function NAME, or updates it when it exists, and waits until\n"
	"its snapshot is ready, showing the deploy's stage and elapsed time. Ends\n"
	"with the function's URL.\n"
	"\n"
	"Options:\n"
	"  -r, --runtime RUNTIME     python, node, sh, native, or c or rust (source\n"
	"                            compiled by kilnd in a builder microVM)\n"
	"      --handler HANDLER     python: MODULE.FUNCTION (default handler.handle);\n"
	"                            node: FILE.EXPORT (default index.handler);\n"
	"                            sh: the command to run (default sh handler.sh)\n"
	"      --mode MODE           server or exec (kilnd's default for the runtime)\n"
	"      --release, --debug    c and rust: an optimised (the default) or an\n"
	"                            unoptimised build\n"
	"  -c, --code DIR|FILE       the code: a directory (packed as a tar here), an\n"
	"                            archive (tar, tar.gz, zip) or a single file\n"
	"      --code-path PATH      instead of --code: a directory or archive on\n"
	"                            kilnd's host (absolute path)\n"
	"  -e, --env KEY=VALUE       an environment variable (repeatable)\n"
	"  -m, --memory SIZE         guest memory: MiB, or 256M, 1G (default 128)\n"
	"      --vcpus N             virtual CPUs (default 1)\n"
	"  -t, --timeout DURATION    a call's run time limit, e.g. 30s, 500ms, 10m\n"
	"      --concurrency N       calls in flight at once (default 10)\n"
	"      --queue-timeout DURATION  how long a call may wait for a slot\n"
	"      --min N               VMs kept warm even when idle (default 0)\n"
	"      --max N               VMs at most (default 10)\n"
	"      --keep-alive DURATION an idle VM is destroyed after this (default 60s)\n"
	"      --network none|egress a network: egress reaches out through NAT\n"
	"                            (default none: no network at all)\n"
	"      --dns IP              with --network egress: an IPv4 nameserver\n"
	"                            (repeatable, up to 3; default: kilnd's)\n"
	"      --dns-search DOMAIN   with --network egress: a search domain\n"
	"                            (repeatable, up to 6)\n"
	"  -q, --quiet               no progress, only the URL\n"
	"      --json                print the function's description as JSON\n"
	"  -g, --gateway URL         kilnd's address (default $KILN_GATEWAY or\n"
	"                            " KILN_DEFAULT_GATEWAY ")\n"
	"      --token-file FILE, --cacert FILE, -k\n"
	"                            kilnd's token and TLS (see kiln --help)\n"
	"  -h, --help                this help\n";

enum {
	OPT_HANDLER = 1000,
	OPT_MODE,
	OPT_CODE_PATH,
	OPT_VCPUS,
	OPT_CONCURRENCY,
	OPT_QUEUE_TIMEOUT,
	OPT_MIN,
	OPT_MAX,
	OPT_KEEP_ALIVE,
	OPT_NETWORK,
	OPT_DNS,
	OPT_DNS_SEARCH,
	OPT_JSON,
	OPT_FILTER,
	OPT_RELEASE,
	OPT_DEBUG,
};

/* Parses one option of kiln deploy into s. Returns an exit code. */
static int deploy_option(int c, const char *arg, struct fn_spec *s)
{
	int rc;

	switch (c) {
	case 'r':
		return fn_set_string(&s->runtime, arg) ? KILN_EXIT_SERVER : 0;
	case OPT_HANDLER:
		return fn_set_string(&s->handler, arg) ? KILN_EXIT_SERVER : 0;
	case OPT_MODE:
		if (strcmp(arg, "server") && strcmp(arg, "exec"))
			return opts_bad_value("deploy", "--mode", arg, "expected server or exec");
		return fn_set_string(&s->mode, arg) ? KILN_EXIT_SERVER : 0;
	case 'c':
		return fn_set_string(&s->code, arg) ? KILN_EXIT_SERVER : 0;
	case OPT_CODE_PATH:
		if (arg[0] != '/')
			return opts_bad_value("deploy", "--code-path", arg,
					      "expected an absolute path on kilnd's host");
		return fn_set_string(&s->code_path, arg) ? KILN_EXIT_SERVER : 0;
	case 'e':
		rc = fn_spec_parse_env(s, arg);
		if (rc)
			return opts_bad_value("deploy", "--env", arg,
					      rc == -E2BIG ? "too many variables"
							   : "expected KEY=VALUE with KEY of "
							     "letters, digits and '_'");
		return 0;
	case 'm':
		if (units_parse_memory_mib(arg, &s->memory_mib))
			return opts_bad_value("deploy", "--memory", arg,
					      "expected MiB, or a size such as 256M, 1G");
		return 0;
	case OPT_VCPUS:
		return opts_int("deploy", "--vcpus", arg, 0, 1000000, &s->vcpus);
	case 't':
		return opts_duration("deploy", "--timeout", arg, &s->timeout_ms);
	case OPT_CONCURRENCY:
		return opts_int("deploy", "--concurrency", arg, 0, 1000000, &s->concurrency);
	case OPT_QUEUE_TIMEOUT:
		return opts_duration("deploy", "--queue-timeout", arg, &s->queue_timeout_ms);
	case OPT_MIN:
		return opts_int("deploy", "--min", arg, 0, 1000000, &s->min_instances);
	case OPT_MAX:
		return opts_int("deploy", "--max", arg, 0, 1000000, &s->max_instances);
	case OPT_KEEP_ALIVE:
		return opts_duration("deploy", "--keep-alive", arg, &s->keep_alive_ms);
	case OPT_RELEASE:
	case OPT_DEBUG:
		s->release = c == OPT_RELEASE;
		return 0;
	case OPT_NETWORK:
		if (strcmp(arg, "none") && strcmp(arg, "egress"))
			return opts_bad_value("deploy", "--network", arg,
					      "expected none or egress");
		return fn_set_string(&s->network, arg) ? KILN_EXIT_SERVER : 0;
	case OPT_DNS:
		rc = fn_spec_add_dns(s, arg);
		if (rc == -EINVAL)
			return opts_bad_value("deploy", "--dns", arg,
					      "expected an IPv4 address such as 10.0.0.2");
		if (rc == -E2BIG)
			return opts_bad_value("deploy", "--dns", arg, "at most 3 nameservers");
		return rc ? KILN_EXIT_SERVER : 0;
	case OPT_DNS_SEARCH:
		rc = fn_spec_add_dns_search(s, arg);
		if (rc == -EINVAL)
			return opts_bad_value("deploy", "--dns-search", arg,
					      "expected a domain: letters, digits, '-' and '.', "
					      "labels of 1 to 63 characters");
		if (rc == -E2BIG)
			return opts_bad_value("deploy", "--dns-search", arg,
					      "at most 6 domains, 255 characters in all");
		return rc ? KILN_EXIT_SERVER : 0;
	}
	return KILN_EXIT_USAGE;
}

int cmd_deploy(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"runtime", required_argument, NULL, 'r'},
		{"handler", required_argument, NULL, OPT_HANDLER},
		{"mode", required_argument, NULL, OPT_MODE},
		{"code", required_argument, NULL, 'c'},
		{"code-path", required_argument, NULL, OPT_CODE_PATH},
		{"env", required_argument, NULL, 'e'},
		{"memory", required_argument, NULL, 'm'},
		{"vcpus", required_argument, NULL, OPT_VCPUS},
		{"timeout", required_argument, NULL, 't'},
		{"concurrency", required_argument, NULL, OPT_CONCURRENCY},
		{"queue-timeout", required_argument, NULL, OPT_QUEUE_TIMEOUT},
		{"min", required_argument, NULL, OPT_MIN},
		{"max", required_argument, NULL, OPT_MAX},
		{"keep-alive", required_argument, NULL, OPT_KEEP_ALIVE},
		{"network", required_argument, NULL, OPT_NETWORK},
		{"release", no_argument, NULL, OPT_RELEASE},
		{"debug", no_argument, NULL, OPT_DEBUG},
		{"dns", required_argument, NULL, OPT_DNS},
		{"dns-search", required_argument, NULL, OPT_DNS_SEARCH},
		{"quiet", no_argument, NULL, 'q'},
		{"json", no_argument, NULL, OPT_JSON},
		{"gateway", required_argument, NULL, 'g'},
		OPTS_CONN_LONGOPTS,
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct fn_spec s;
	struct http_client *c = NULL;
	struct deploy_opts o = {.out = stdout, .tty = ctx->stdout_tty, .print_url = true};
	bool json = false;
	json_t *desc = NULL;
	int opt, rc = KILN_EXIT_OK;

	fn_spec_init(&s);
	optind = 0;
	while ((opt = getopt_long(argc, argv, ":r:c:e:m:t:qg:vkh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			fputs(deploy_usage, stdout);
			goto clear_spec;
		case 'q':
			o.quiet = true;
			break;
		case OPT_JSON:
			json = true;
			break;
		case '?':
		case ':':
			rc = opts_fail("deploy", opt, argv);
			goto clear_spec;
		default:
			if (opts_global(ctx, opt))
				break;
			rc = deploy_option(opt, optarg, &s);
			if (rc)
				goto clear_spec;
		}
	}
	rc = opts_positional("deploy", argc, argv, 1, 1, "the function's NAME");
	if (rc)
		goto clear_spec;
	if (!fn_name_ok(argv[optind])) {
		rc = opts_bad_name("deploy", argv[optind]);
		goto clear_spec;
	}
	if (fn_set_string(&s.name, argv[optind])) {
		rc = KILN_EXIT_SERVER;
		goto clear_spec;
	}
	if (!s.runtime) {
		out_error("deploy: --runtime is required (python, node or sh)");
		rc = KILN_EXIT_USAGE;
		goto clear_spec;
	}
	if (!s.code == !s.code_path) {
		out_error("deploy: give the code with --code DIR|FILE (or --code-path PATH)");
		rc = KILN_EXIT_USAGE;
		goto clear_spec;
	}
	if (!fn_spec_dns_allowed(&s)) {
		out_error("deploy: %s needs --network egress", s.n_dns ? "--dns" : "--dns-search");
		rc = KILN_EXIT_USAGE;
		goto clear_spec;
	}
	if (json)
		o.print_url = false;
	rc = api_connect(ctx, NULL, &c);
	if (rc)
		goto clear_spec;
	rc = deploy_function(c, &s, &o, json ? &desc : NULL);
	if (!rc && json)
		out_json(stdout, desc);
	json_decref(desc);
	http_client_destroy(c);
clear_spec:
	fn_spec_clear(&s);
	return rc;
}

static const char up_usage[] =
	"Usage: kiln up [-f kiln.yml] [--filter NAME]... [options]\n"
	"\n"
	"Deploys every function of a stack file (faas-cli's stack.yml shape: version,\n"
	"provider: {name, gateway}, functions: NAME: {runtime, handler, code, mode, network,\n"
	"dns, dns_search, environment, memory, vcpus, timeout, concurrency,\n"
	"queue_timeout, min, max, keep_alive, release}). release (c and rust): true\n"
	"for an optimised build (the default), false for a debug one. dns (IPv4\n"
	"nameservers) and dns_search (search domains) are lists and need network:\n"
	"egress. code paths are\n"
	"relative to the stack file's directory. The gateway is --gateway, else\n"
	"$KILN_GATEWAY, else provider.gateway, else " KILN_DEFAULT_GATEWAY ".\n"
	"\n"
	"Options:\n"
	"  -f, --file FILE     the stack file (default kiln.yml)\n"
	"      --filter NAME   deploy only this function (repeatable)\n"
	"  -q, --quiet         no progress, only the URLs\n"
	"  -g, --gateway URL   kilnd's address\n"
	"      --token-file FILE, --cacert FILE, -k\n"
	"                      kilnd's token and TLS (see kiln --help)\n"
	"  -h, --help          this help\n";

static bool selected(const char *name, char **filters, size_t n)
{
	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(filters[i], name))
			return true;
	return false;
}

int cmd_up(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"file", required_argument, NULL, 'f'},
		{"yaml", required_argument, NULL, 'f'},
		{"filter", required_argument, NULL, OPT_FILTER},
		{"quiet", no_argument, NULL, 'q'},
		{"gateway", required_argument, NULL, 'g'},
		OPTS_CONN_LONGOPTS,
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *file = "kiln.yml";
	char **filters = calloc((size_t)argc + 1, sizeof(*filters));
	size_t n_filters = 0, deployed = 0;
	struct deploy_opts o = {.out = stdout, .tty = ctx->stdout_tty, .print_url = true};
	struct stack *st = NULL;
	struct http_client *c = NULL;
	char err[512];
	int opt, rc = KILN_EXIT_OK;

	if (!filters) {
		out_error("out of memory");
		return KILN_EXIT_SERVER;
	}
	optind = 0;
	while ((opt = getopt_long(argc, argv, ":f:qg:vkh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			fputs(up_usage, stdout);
			goto free_filters;
		case 'f':
			file = optarg;
			break;
		case OPT_FILTER:
			filters[n_filters++] = optarg;
			break;
		case 'q':
			o.quiet = true;
			break;
		default:
			if (opts_global(ctx, opt))
				break;
			rc = opts_fail("up", opt, argv);
			goto free_filters;
		}
	}
	rc = opts_positional("up", argc, argv, 0, 0, "");
	if (rc)
		goto free_filters;
	rc = stack_load(file, &st, err, sizeof(err));
	if (rc) {
		out_error("%s", err);
		rc = KILN_EXIT_USAGE;
		goto free_filters;
	}
	for (size_t i = 0; i < n_filters; i++) {
		bool found = false;

		for (size_t j = 0; j < st->n_fns; j++)
			found = found || !strcmp(st->fns[j].name, filters[i]);
		if (!found) {
			out_error("up: %s has no function %s", file, filters[i]);
			rc = KILN_EXIT_USAGE;
			goto destroy_stack;
		}
	}
	rc = api_connect(ctx, st->gateway, &c);
	if (rc)
		goto destroy_stack;
	for (size_t i = 0; i < st->n_fns; i++) {
		int one;

		if (!selected(st->fns[i].name, filters, n_filters))
			continue;
		one = deploy_function(c, &st->fns[i], &o, NULL);
		deployed++;
		if (one && !rc)
			rc = one;
		/* An unreachable gateway stays unreachable: stop there. */
		if (one == KILN_EXIT_UNREACHABLE)
			break;
	}
	if (!rc && !o.quiet && deployed > 1)
		printf("%zu functions deployed\n", deployed);
	http_client_destroy(c);
destroy_stack:
	stack_destroy(st);
free_filters:
	free(filters);
	return rc;
}
