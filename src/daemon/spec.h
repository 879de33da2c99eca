/* spec.h - a function's spec: what a deploy says about it (docs/http-api.md,
 * "The spec"), parsed and checked from JSON, and written back as JSON.
 */
#ifndef KILN_DAEMON_SPEC_H
#define KILN_DAEMON_SPEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/dnsname.h"

#define SPEC_NAME_MAX	 63
#define SPEC_HANDLER_MAX 1024
#define SPEC_ENV_MAX	 64 /* variables */

struct spec_env {
	char *key;
	char *value;
};

struct fn_spec {
	char name[SPEC_NAME_MAX + 1];
	char runtime[33];
	char mode[8]; /* "server" or "exec" */
	char handler[SPEC_HANDLER_MAX + 1];
	struct spec_env *env;
	unsigned nenv;
	unsigned memory_mb;
	unsigned vcpus;
	double timeout_s;
	unsigned concurrency;
	double queue_timeout_s;
	unsigned min_instances;
	unsigned max_instances;
	double keep_alive_s;
	char code_sha256[65]; /* filled by the deploy, "" before */
	char network[8];      /* "none" (the default) or "egress" (docs/networking.md) */
	/* The guest's resolver (egress only): nameservers, 0 for kilnd's
	 * default (the host's); search domains joined by spaces, valid when
	 * dns_search_set (else kilnd's default). */
	char dns[DNSNAME_NS_MAX][16];
	unsigned ndns;
	char dns_search[DNSNAME_SEARCH_LEN + 1];
	bool dns_search_set;
	bool release; /* c and rust: an optimised build (the default); else false */
};

/* True when name is a valid function name: [a-z0-9][a-z0-9_-]{0,62}. */
bool spec_name_ok(const char *name);

/* True when the runtime is one kiln serves (python, sh, native, node, c,
 * rust) and this kilnd has a root image for it (any of them before
 * spec_set_images). */
bool spec_runtime_known(const char *runtime);

/* Sets each runtime's root image (at start, before any other spec_ call):
 * rootfs serves python, sh, native and the built runtimes' functions,
 * rootfs_node node, rootfs_builder the microVM that compiles c and rust;
 * NULL or "": none. The strings are borrowed for the life of the process. */
void spec_set_images(const char *rootfs, const char *rootfs_node, const char *rootfs_builder);

/* True for the runtimes whose source kilnd compiles in a builder microVM
 * (c, rust) into a native function. */
bool spec_runtime_built(const char *runtime);

/* The i-th runtime kiln knows (from 0, in kiln's order), or NULL past the
 * last. */
const char *spec_runtime_name(size_t i);

/* The builder microVM's root image, or NULL when kilnd has none. */
const char *spec_builder_image(void);

/* The root image a runtime's microVMs boot and restore with; NULL when kilnd
 * has none for it (or the runtime is unknown). */
const char *spec_runtime_image(const char *runtime);

/* The runtimes that have an image, as "python, sh, node" (a static string). */
const char *spec_runtimes_list(void);

/* Parses a deploy body. Fills *out (free with spec_clear) from obj with the
 * defaults for what is missing; the code (base64 "code" or "code_path") is
 * left in obj for the caller. Returns 0, or -EINVAL with a message naming
 * the field in err (or -ENOMEM); on failure *out holds nothing to free. */
int spec_from_json(json_t *obj, struct fn_spec *out, char *err, size_t err_size);

/* As spec_from_json, from a spec as the registry stores it (JSON text). */
int spec_from_text(const char *text, struct fn_spec *out, char *err, size_t err_size);

/* The spec as a new JSON object (with code_sha256). NULL when out of memory. */
json_t *spec_to_json(const struct fn_spec *s);

/* Deep copy; returns 0 or -ENOMEM. */
int spec_copy(struct fn_spec *dst, const struct fn_spec *src);

/* Frees the env of s (the struct itself is the caller's). Accepts NULL. */
void spec_clear(struct fn_spec *s);

/* True when a snapshot taken for a can serve b: same code, runtime, mode,
 * handler, env, memory and vCPUs (limits may differ). */
bool spec_same_image(const struct fn_spec *a, const struct fn_spec *b);

#endif
