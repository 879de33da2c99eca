/* opts.c - shared command-line parsing helpers (see opts.h). */
#include "cli/opts.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/output.h"
#include "cli/units.h"

int opts_fail(const char *cmd, int c, char **argv)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "";
	char opt[64];

	if (optopt && optopt < 256 && (arg[0] != '-' || arg[1] != '-'))
		snprintf(opt, sizeof(opt), "-%c", optopt);
	else
		snprintf(opt, sizeof(opt), "%.*s", (int)strcspn(arg, "="), arg);
	if (c == ':')
		out_error("%s: option '%s' needs a value (see 'kiln %s --help')", cmd, opt, cmd);
	else
		out_error("%s: unknown option '%s' (see 'kiln %s --help')", cmd, opt, cmd);
	return KILN_EXIT_USAGE;
}

int opts_bad_value(const char *cmd, const char *opt, const char *value, const char *expected)
{
	out_error("%s: %s '%s': %s", cmd, opt, value, expected);
	return KILN_EXIT_USAGE;
}

bool opts_global(struct cli_ctx *ctx, int c)
{
	switch (c) {
	case 'g':
		ctx->gateway = optarg;
		return true;
	case 'v':
		ctx->verbose++;
		return true;
	case OPTS_TOKEN_FILE:
		ctx->token_file = optarg;
		return true;
	case OPTS_CACERT:
		ctx->cacert = optarg;
		return true;
	case 'k':
		ctx->insecure = true;
		return true;
	default:
		return false;
	}
}

int opts_bad_name(const char *cmd, const char *name)
{
	return opts_bad_value(cmd, "NAME", name, "a name is [a-z0-9][a-z0-9_-]{0,62}");
}

int opts_positional(const char *cmd, int argc, char **argv, int min, int max, const char *what)
{
	int n = argc - optind;

	if (n < min) {
		out_error("%s: missing %s (see 'kiln %s --help')", cmd, what, cmd);
		return KILN_EXIT_USAGE;
	}
	if (n > max) {
		out_error("%s: unexpected argument '%s' (see 'kiln %s --help')", cmd,
			  argv[optind + max], cmd);
		return KILN_EXIT_USAGE;
	}
	return KILN_EXIT_OK;
}

int opts_int(const char *cmd, const char *opt, const char *value, int64_t min, int64_t max,
	     int64_t *out)
{
	char expected[96];

	if (units_parse_int(value, min, max, out) == 0)
		return KILN_EXIT_OK;
	snprintf(expected, sizeof(expected), "expected a whole number from %lld to %lld",
		 (long long)min, (long long)max);
	return opts_bad_value(cmd, opt, value, expected);
}

int opts_duration(const char *cmd, const char *opt, const char *value, int64_t *ms)
{
	if (units_parse_duration_ms(value, ms) == 0)
		return KILN_EXIT_OK;
	return opts_bad_value(cmd, opt, value,
			      "expected a duration such as 30, 30s, 500ms, 10m, 2h");
}
