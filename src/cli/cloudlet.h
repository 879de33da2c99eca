/* cloudlet.h - Cloudlet run configurations (TOML), taken unchanged by
 * `kiln run --config-path FILE` (see /work/shared/reference/cloudlet.md
 * and docs/cli.md):
 *
 *   workload-name = "fibonacci"     required, a kiln function name
 *   language = "python"             required: rust, python or node
 *   action = "prepare-and-run"      required, the only action
 *   [server] address, port          optional; checked, not used
 *   [build] source-code-path        required: the program's source file
 *           release                 optional boolean: rust, an optimised
 *                                   build (kilnd's default) or not
 *
 * Unknown keys are reported as warnings (Cloudlet ignores them too); a
 * value of the wrong type or a missing required key is an error naming the
 * file and line.
 */
#ifndef KILN_CLI_CLOUDLET_H
#define KILN_CLI_CLOUDLET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLOUDLET_MAX_WARNINGS 16

struct cloudlet_config {
	char *workload_name;
	char *language;
	char *action;
	char *server_address; /* NULL when absent */
	int64_t server_port;  /* -1 when absent */
	char *source_path;    /* as written */
	bool release;
	bool has_release;
	char *warnings[CLOUDLET_MAX_WARNINGS]; /* "FILE:LINE: unknown key 'x' ignored" */
	size_t n_warnings;
};

/* Largest config file read. */
#define CLOUDLET_MAX_BYTES (1024U * 1024U)

/* Parses a config's text; `file` names it in messages. Returns 0 and *out
 * (caller frees with cloudlet_destroy), -EINVAL with "FILE:LINE: message" in
 * err (err_size bytes), -ENOMEM. */
int cloudlet_parse(const char *text, size_t len, const char *file, struct cloudlet_config **out,
		   char *err, size_t err_size);

/* Frees a config. Accepts NULL. */
void cloudlet_destroy(struct cloudlet_config *c);

/* Finds the source file: an absolute path as it is; a relative path is
 * looked up first in config_dir (the config file's directory; "" or NULL
 * for the current one), then in the current directory. Stores a malloc'd
 * path in *out. Returns 0, -ENOENT (message in err naming the places
 * tried), -ENOMEM. */
int cloudlet_find_source(const struct cloudlet_config *c, const char *config_dir, char **out,
			 char *err, size_t err_size);

#endif
