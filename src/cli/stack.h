/* stack.h - kiln's stack file (kiln.yml), shaped like faas-cli's stack.yml:
 *
 *   version: 1.0
 *   provider:
 *     name: kiln
 *     gateway: http://127.0.0.1:8080
 *   functions:
 *     echo:
 *       runtime: python
 *       handler: handler.handle
 *       code: ./echo            # relative to the stack file's directory
 *       mode: server            # or exec
 *       environment: {GREETING: hello}
 *       memory: 128             # MiB; or 128M, 1G
 *       vcpus: 1
 *       timeout: 30s            # durations: 30, 30s, 500ms, 10m, 1h30m
 *       concurrency: 10
 *       queue_timeout: 10s
 *       min: 0                  # alias min_instances
 *       max: 10                 # alias max_instances
 *       keep_alive: 60s
 *       network: egress         # or none (the default)
 *       dns: [10.0.0.2, 1.1.1.1]     # IPv4 nameservers, 1 to 3
 *       dns_search: [corp.example]   # search domains, up to 6
 *
 * dns and dns_search need network: egress; each is a list of values, and a
 * single value counts as a list of one.
 *
 * Parsed with libyaml. Unknown keys, wrong shapes and bad values are errors
 * that name the file, line and column ("kiln.yml:7:5: ..."). Empty values,
 * `~` and `null` count as not set.
 */
#ifndef KILN_CLI_STACK_H
#define KILN_CLI_STACK_H

#include <stddef.h>

#include "cli/spec.h"

struct stack {
	char *version;	     /* NULL when absent */
	char *provider_name; /* NULL when absent */
	char *gateway;	     /* provider.gateway, NULL when absent */
	struct fn_spec *fns; /* in file order */
	size_t n_fns;
};

/* Largest stack file read. */
#define STACK_MAX_BYTES (4U * 1024U * 1024U)

/* Parses a stack file's text. `file` names it in messages; relative code
 * paths are joined to base_dir (NULL or "": left as written). Returns 0 and
 * *out (caller frees with stack_destroy), -EINVAL with "FILE:LINE:COL:
 * message" in err (err_size bytes), -ENOMEM. */
int stack_parse(const char *text, size_t len, const char *file, const char *base_dir,
		struct stack **out, char *err, size_t err_size);

/* Reads and parses the stack file at path; code paths are relative to its
 * directory. Returns as stack_parse, plus -errno when it cannot be read
 * (message in err). */
int stack_load(const char *path, struct stack **out, char *err, size_t err_size);

/* Frees a stack. Accepts NULL. */
void stack_destroy(struct stack *s);

/* Reads a whole file of at most max bytes into a malloc'd NUL-terminated
 * buffer. Returns 0, -EFBIG when larger, -errno. */
int stack_read_file(const char *path, size_t max, char **out, size_t *len);

#endif
