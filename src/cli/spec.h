/* spec.h - a function's spec as the CLI builds it from flags (kiln deploy),
 * a stack file (kiln up) or a Cloudlet config (kiln run), and its JSON for
 * POST/PUT /system/functions (docs/http-api.md). Unset fields are left out
 * of the JSON so kilnd's defaults apply. */
#ifndef KILN_CLI_SPEC_H
#define KILN_CLI_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct fn_env {
	char *key;
	char *value;
};

struct fn_spec {
	char *name;
	char *runtime;
	char *handler;	 /* NULL: kilnd's default for the runtime */
	char *mode;	 /* "server", "exec", or NULL: kilnd's default */
	char *code;	 /* a local directory or file to pack, or NULL */
	char *code_path; /* a path on kilnd's host, or NULL */
	char *network;	 /* "none", "egress", or NULL: kilnd's default (none) */
	struct fn_env *env;
	size_t n_env;
	/* -1: not set */
	int64_t memory_mib, vcpus, concurrency, min_instances, max_instances;
	int64_t timeout_ms, keep_alive_ms, queue_timeout_ms;
};

/* Largest number of environment variables a spec takes. */
#define FN_MAX_ENV 1024

/* Initializes s: no strings, every number unset. */
void fn_spec_init(struct fn_spec *s);

/* Frees what s holds and re-initializes it. Accepts NULL. */
void fn_spec_clear(struct fn_spec *s);

/* Replaces *dst with a copy of src (NULL: unset). Returns 0 or -ENOMEM. */
int fn_set_string(char **dst, const char *src);

/* True for a valid function name: [a-z0-9][a-z0-9_-]{0,62}. */
bool fn_name_ok(const char *name);

/* True for a valid environment variable name: [A-Za-z_][A-Za-z0-9_]*, at
 * most 256 bytes. */
bool fn_env_name_ok(const char *key);

/* Sets key=value in s's environment (replacing an earlier value of key).
 * Returns 0, -EINVAL for a bad name, -E2BIG past FN_MAX_ENV, -ENOMEM. */
int fn_spec_set_env(struct fn_spec *s, const char *key, const char *value);

/* Parses "KEY=VALUE" (the value may be empty or hold '=') into s's
 * environment. Returns as fn_spec_set_env, -EINVAL without '='. */
int fn_spec_parse_env(struct fn_spec *s, const char *kv);

/* The spec's JSON object; code_b64 (may be NULL) is the packed code as
 * base64, else s->code_path is sent. Returns 0 and *out (caller
 * json_decref's), -ENOMEM. */
int fn_spec_to_json(const struct fn_spec *s, const char *code_b64, json_t **out);

/* A duration in milliseconds as the API's seconds: an integer when whole,
 * else a real. NULL when out of memory. */
json_t *fn_seconds_json(int64_t ms);

#endif
