/* main.c - the kiln command-line client: global options, then one command
 * (cli.h). Exit codes are documented in docs/kiln.1 and docs/cli.md. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cli/cli.h"
#include "cli/output.h"

#define KILN_VERSION "0.1.0"

static const struct command {
	const char *name;
	cli_command_fn fn;
	const char *summary;
} commands[] = {
	{"deploy", cmd_deploy, "create or update a function and wait until it is ready"},
	{"invoke", cmd_invoke, "call a function"},
	{"list", cmd_list, "list the functions"},
	{"describe", cmd_describe, "show a function's settings and state"},
	{"remove", cmd_remove, "remove a function"},
	{"logs", cmd_logs, "print (or follow) a function's log lines"},
	{"calls", cmd_calls, "show an async call's status and result"},
	{"new", cmd_new, "write a starter function and its stack file entry"},
	{"up", cmd_up, "deploy every function of a stack file (kiln.yml)"},
	{"run", cmd_run, "run a Cloudlet configuration (TOML)"},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	fputs("Usage: kiln [--gateway URL] [-v] COMMAND [ARGS...]\n"
	      "\n"
	      "The command-line client of kiln, functions in KVM microVMs.\n"
	      "\n"
	      "Commands:\n",
	      f);
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fputs("\n"
	      "Global options:\n"
	      "  -g, --gateway URL   kilnd's address: http://HOST:PORT, https://HOST:PORT or\n"
	      "                      unix:/path.sock\n"
	      "                      (default $KILN_GATEWAY, else " KILN_DEFAULT_GATEWAY ")\n"
	      "  -v, --verbose       more detail (kiln invoke: call id, cold/warm, VM)\n"
	      "      --token-file FILE\n"
	      "                      send the token in FILE to kilnd (its first line; default\n"
	      "                      $KILN_TOKEN_FILE, else the token in $KILN_TOKEN)\n"
	      "      --cacert FILE   check an https gateway's certificate against the CA\n"
	      "                      certificates in FILE (default $KILN_CACERT, else the\n"
	      "                      system's)\n"
	      "  -k, --insecure      https without checking the gateway's certificate\n"
	      "  -h, --help          this help; kiln COMMAND --help for a command's\n"
	      "      --version       the version\n"
	      "\n"
	      "Exit codes: 0 ok, 1 the function failed, 2 usage or bad local input,\n"
	      "3 gateway unreachable, 4 not found, 5 request rejected (4xx), 6 server\n"
	      "error (5xx). See kiln(1).\n",
	      f);
}

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

int main(int argc, char **argv)
{
	struct cli_ctx ctx = {
		.gateway_env = getenv("KILN_GATEWAY"),
		.stdout_tty = isatty(1),
	};
	const struct command *cmd;
	int i, rc;

	/* A closed pipe is a write error, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return KILN_EXIT_OK;
		} else if (!strcmp(a, "--version")) {
			printf("kiln %s\n", KILN_VERSION);
			return KILN_EXIT_OK;
		} else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
			ctx.verbose++;
		} else if (!strcmp(a, "-g") || !strcmp(a, "--gateway")) {
			if (i + 1 >= argc) {
				out_error("option '%s' needs a value (see 'kiln --help')", a);
				return KILN_EXIT_USAGE;
			}
			ctx.gateway = argv[++i];
		} else if (!strncmp(a, "--gateway=", 10)) {
			ctx.gateway = a + 10;
		} else if (!strcmp(a, "--token-file") || !strcmp(a, "--cacert")) {
			if (i + 1 >= argc) {
				out_error("option '%s' needs a value (see 'kiln --help')", a);
				return KILN_EXIT_USAGE;
			}
			*(a[2] == 't' ? &ctx.token_file : &ctx.cacert) = argv[++i];
		} else if (!strncmp(a, "--token-file=", 13)) {
			ctx.token_file = a + 13;
		} else if (!strncmp(a, "--cacert=", 9)) {
			ctx.cacert = a + 9;
		} else if (!strcmp(a, "-k") || !strcmp(a, "--insecure")) {
			ctx.insecure = true;
		} else {
			out_error("unknown option '%s' (see 'kiln --help')", a);
			return KILN_EXIT_USAGE;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return KILN_EXIT_USAGE;
	}
	if (!strcmp(argv[i], "help")) {
		if (i + 1 >= argc) {
			usage(stdout);
			return KILN_EXIT_OK;
		}
		cmd = find_command(argv[i + 1]);
		if (!cmd) {
			out_error("unknown command '%s' (see 'kiln --help')", argv[i + 1]);
			return KILN_EXIT_USAGE;
		}
		{
			char *hargv[] = {argv[i + 1], (char *)"--help", NULL};

			return cmd->fn(&ctx, 2, hargv);
		}
	}
	cmd = find_command(argv[i]);
	if (!cmd) {
		out_error("unknown command '%s' (see 'kiln --help')", argv[i]);
		return KILN_EXIT_USAGE;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		out_error("cannot initialize libcurl");
		return KILN_EXIT_SERVER;
	}
	rc = cmd->fn(&ctx, argc - i, argv + i);
	curl_global_cleanup();
	if (fflush(stdout) == EOF && rc == KILN_EXIT_OK)
		rc = KILN_EXIT_SERVER;
	return rc;
}
