/* cli.h - what the kiln command-line client's commands share: exit codes,
 * the global context and the command entry points (one cmd_*.c each). */
#ifndef KILN_CLI_CLI_H
#define KILN_CLI_CLI_H

#include <stdbool.h>

/* The documented exit codes (docs/kiln.1, docs/cli.md). */
enum kiln_exit {
	KILN_EXIT_OK = 0,
	KILN_EXIT_FUNCTION = 1,	   /* the function failed: raised, crashed, timed out */
	KILN_EXIT_USAGE = 2,	   /* bad command line or local input (flags, files) */
	KILN_EXIT_UNREACHABLE = 3, /* the gateway could not be reached */
	KILN_EXIT_NOT_FOUND = 4,   /* no such function or call */
	KILN_EXIT_REJECTED = 5,	   /* the server rejected the request (other 4xx) */
	KILN_EXIT_SERVER = 6,	   /* the server failed (5xx) */
};

#define KILN_DEFAULT_GATEWAY "http://127.0.0.1:8080"

/* Options that come before the command, and the gateway each command uses. */
struct cli_ctx {
	const char *gateway;	 /* --gateway, else NULL */
	const char *gateway_env; /* $KILN_GATEWAY, else NULL */
	int verbose;		 /* -v count */
	const char *token_file;	 /* --token-file, else NULL ($KILN_TOKEN_FILE, $KILN_TOKEN) */
	const char *cacert;	 /* --cacert, else NULL ($KILN_CACERT) */
	bool insecure;		 /* -k, --insecure */
	bool stdout_tty;	 /* isatty(1) */
};

/* The gateway to use: --gateway, else $KILN_GATEWAY, else `fallback` (a
 * stack file's provider.gateway; may be NULL), else the default. */
const char *cli_gateway(const struct cli_ctx *ctx, const char *fallback);

/* One command: argv[0] is the command's name; returns an exit code. */
typedef int (*cli_command_fn)(struct cli_ctx *ctx, int argc, char **argv);

/* kiln deploy NAME --runtime R --code DIR|FILE [...]: create or update, wait. */
int cmd_deploy(struct cli_ctx *ctx, int argc, char **argv);
/* kiln invoke NAME [...]: call a function, the result on stdout. */
int cmd_invoke(struct cli_ctx *ctx, int argc, char **argv);
/* kiln list [--json]: the functions as an aligned table. */
int cmd_list(struct cli_ctx *ctx, int argc, char **argv);
/* kiln describe NAME [--json]: a function's settings and state. */
int cmd_describe(struct cli_ctx *ctx, int argc, char **argv);
/* kiln remove NAME: remove a function. */
int cmd_remove(struct cli_ctx *ctx, int argc, char **argv);
/* kiln logs NAME [--follow] [--since W] [--tail N] [--json]. */
int cmd_logs(struct cli_ctx *ctx, int argc, char **argv);
/* kiln calls ID [--wait] [--json]: an async call's status and result. */
int cmd_calls(struct cli_ctx *ctx, int argc, char **argv);
/* kiln new NAME --runtime python|sh: a starter function and stack entry. */
int cmd_new(struct cli_ctx *ctx, int argc, char **argv);
/* kiln up [-f kiln.yml]: deploy every function of a stack file. */
int cmd_up(struct cli_ctx *ctx, int argc, char **argv);
/* kiln run --config-path FILE: run a Cloudlet configuration once. */
int cmd_run(struct cli_ctx *ctx, int argc, char **argv);

#endif
