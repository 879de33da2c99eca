/* opts.h - command-line parsing shared by the commands (getopt_long with
 * a leading ':' in optstring): one-line usage errors, --help, positional
 * arguments. */
#ifndef KILN_CLI_OPTS_H
#define KILN_CLI_OPTS_H

#include <stdbool.h>
#include <stdint.h>

struct cli_ctx;

/* getopt_long values of the connection options every command that talks
 * to kilnd takes (opts_global handles them; --insecure is 'k', which goes in
 * the command's optstring). */
enum {
	OPTS_TOKEN_FILE = 2000,
	OPTS_CACERT,
};

/* Their struct option entries, for a command's longopts array. */
/* clang-format off */
#define OPTS_CONN_LONGOPTS                                        \
	{"token-file", required_argument, NULL, OPTS_TOKEN_FILE}, \
	{"cacert", required_argument, NULL, OPTS_CACERT},         \
	{"insecure", no_argument, NULL, 'k'}
/* clang-format on */

/* Reports getopt_long's '?' (unknown option) or ':' (missing value) for
 * command cmd as one error line. Returns KILN_EXIT_USAGE. */
int opts_fail(const char *cmd, int c, char **argv);

/* Reports a bad value of option opt ("--memory") for cmd. Returns
 * KILN_EXIT_USAGE. */
int opts_bad_value(const char *cmd, const char *opt, const char *value, const char *expected);

/* Handles the options every command takes (-g/--gateway URL, -v,
 * --token-file FILE, --cacert FILE, --insecure): true when c was one of them
 * (ctx updated from optarg). */
bool opts_global(struct cli_ctx *ctx, int c);

/* Reports a function NAME that is not [a-z0-9][a-z0-9_-]{0,62} for cmd.
 * Returns KILN_EXIT_USAGE. */
int opts_bad_name(const char *cmd, const char *name);

/* Checks that there are between min and max positional arguments after
 * optind; otherwise prints an error naming what is expected (e.g. "NAME")
 * and returns KILN_EXIT_USAGE, else KILN_EXIT_OK. */
int opts_positional(const char *cmd, int argc, char **argv, int min, int max, const char *what);

/* Parses an integer option value in [min, max] into *out, or reports it.
 * Returns KILN_EXIT_OK or KILN_EXIT_USAGE. */
int opts_int(const char *cmd, const char *opt, const char *value, int64_t min, int64_t max,
	     int64_t *out);

/* Parses a duration option value into milliseconds, or reports it.
 * Returns KILN_EXIT_OK or KILN_EXIT_USAGE. */
int opts_duration(const char *cmd, const char *opt, const char *value, int64_t *ms);

#endif
