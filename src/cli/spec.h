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

#include "common/dnsname.h"

/* Most nameservers and search domains a spec takes (kilnd's limits), and the
 * longest the search domains joined with single spaces may be. */
#define FN_MAX_DNS	  DNSNAME_NS_MAX
#define FN_MAX_DNS_SEARCH DNSNAME_SEARCH_MAX
#define FN_MAX_SEARCH_LEN DNSNAME_SEARCH_LEN

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
	/* With network "egress" only; none given: left out of the JSON. */
	char *dns[FN_MAX_DNS]; /* IPv4 nameservers as dotted quads */
	size_t n_dns;
	char *dns_search[FN_MAX_DNS_SEARCH];
	size_t n_dns_search;
	struct fn_env *env;
	size_t n_env;
	/* -1: not set */
	int64_t memory_mib, vcpus, concurrency, min_instances, max_instances;
	int64_t timeout_ms, keep_alive_ms, queue_timeout_ms;
	int release; /* c and rust: 1 optimised, 0 debug build; -1: not set */
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

/* True for an IPv4 address as a dotted quad ("10.0.0.2", read by
 * inet_pton). */
bool fn_ipv4_ok(const char *ip);

/* Appends the nameserver ip to s->dns. Returns 0, -EINVAL when ip is not an
 * IPv4 dotted quad, -E2BIG when s has FN_MAX_DNS already, -ENOMEM. */
int fn_spec_add_dns(struct fn_spec *s, const char *ip);

/* Appends a search domain to s->dns_search. Returns 0, -EINVAL for a bad
 * domain (dnsname_ok), -E2BIG when s has FN_MAX_DNS_SEARCH already or the
 * domains joined with spaces would pass FN_MAX_SEARCH_LEN, -ENOMEM. */
int fn_spec_add_dns_search(struct fn_spec *s, const char *domain);

/* True unless s has dns or dns_search without network "egress" (kilnd
 * refuses them then). */
bool fn_spec_dns_allowed(const struct fn_spec *s);

/* The spec's JSON object; code_b64 (may be NULL) is the packed code as
 * base64, else s->code_path is sent. Returns 0 and *out (caller
 * json_decref's), -ENOMEM. */
int fn_spec_to_json(const struct fn_spec *s, const char *code_b64, json_t **out);

/* A duration in milliseconds as the API's seconds: an integer when whole,
 * else a real. NULL when out of memory. */
json_t *fn_seconds_json(int64_t ms);

#endif
