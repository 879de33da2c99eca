/* spec.c - function specs: parsing, checking, JSON. */
#include "daemon/spec.h"

#include "common/archive.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool spec_name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > SPEC_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && (i == 0 || (c != '-' && c != '_')))
			return false;
	}
	return true;
}

/* Every runtime kiln knows, and the image option that serves it. c and rust
 * functions run as native ones on --rootfs; their source is compiled in a
 * microVM booted from --rootfs-builder, so they need both. */
static const struct {
	const char *name;
	bool node_image; /* --rootfs-node; else --rootfs */
	bool built;	 /* compiled in the builder first */
} runtimes[] = {{"python", false, false}, {"sh", false, false}, {"native", false, false},
		{"node", true, false},	  {"c", false, true},	{"rust", false, true}};
static const char *image_base, *image_node, *image_builder;
static char runtimes_have[64] = "python, sh, native, node, c, rust"; /* until spec_set_images */
static bool images_set;

static const char *nonempty(const char *s)
{
	return s && s[0] ? s : NULL;
}

void spec_set_images(const char *rootfs, const char *rootfs_node, const char *rootfs_builder)
{
	size_t len = 0;

	image_base = nonempty(rootfs);
	image_node = nonempty(rootfs_node);
	image_builder = nonempty(rootfs_builder);
	images_set = true;
	runtimes_have[0] = 0;
	for (size_t i = 0; i < sizeof(runtimes) / sizeof(runtimes[0]); i++)
		if (spec_runtime_image(runtimes[i].name))
			len += (size_t)snprintf(runtimes_have + len, sizeof(runtimes_have) - len,
						"%s%s", len ? ", " : "", runtimes[i].name);
}

const char *spec_runtime_image(const char *runtime)
{
	for (size_t i = 0; i < sizeof(runtimes) / sizeof(runtimes[0]); i++) {
		if (strcmp(runtime, runtimes[i].name))
			continue;
		if (runtimes[i].built && !image_builder)
			return NULL;
		return runtimes[i].node_image ? image_node : image_base;
	}
	return NULL;
}

bool spec_runtime_built(const char *runtime)
{
	for (size_t i = 0; i < sizeof(runtimes) / sizeof(runtimes[0]); i++)
		if (strcmp(runtime, runtimes[i].name) == 0)
			return runtimes[i].built;
	return false;
}

const char *spec_builder_image(void)
{
	return image_builder;
}

const char *spec_runtime_name(size_t i)
{
	return i < sizeof(runtimes) / sizeof(runtimes[0]) ? runtimes[i].name : NULL;
}

const char *spec_runtimes_list(void)
{
	return runtimes_have;
}

bool spec_runtime_known(const char *runtime)
{
	if (images_set)
		return spec_runtime_image(runtime) != NULL;
	for (size_t i = 0; i < sizeof(runtimes) / sizeof(runtimes[0]); i++)
		if (strcmp(runtime, runtimes[i].name) == 0)
			return true;
	return false;
}

static bool env_name_ok(const char *k)
{
	size_t n = strlen(k);

	if (n == 0 || n > 128 || (k[0] >= '0' && k[0] <= '9'))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = k[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_'))
			return false;
	}
	return true;
}

/* A string field; *dst (size bytes) keeps its default when absent. */
static int get_str(json_t *obj, const char *key, char *dst, size_t size, char *err, size_t esz)
{
	json_t *v = json_object_get(obj, key);
	const char *s;

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		snprintf(err, esz, "%s: must be a string", key);
		return -EINVAL;
	}
	s = json_string_value(v);
	if (strlen(s) != json_string_length(v)) {
		snprintf(err, esz, "%s: contains a NUL byte", key);
		return -EINVAL;
	}
	if (strlen(s) >= size) {
		snprintf(err, esz, "%s: longer than %zu bytes", key, size - 1);
		return -EINVAL;
	}
	memcpy(dst, s, strlen(s) + 1);
	return 0;
}

static int get_num(json_t *obj, const char *key, double lo, double hi, bool integer, double *dst,
		   char *err, size_t esz)
{
	json_t *v = json_object_get(obj, key);
	double d;

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v)) {
		snprintf(err, esz, "%s: must be a number", key);
		return -EINVAL;
	}
	d = json_number_value(v);
	if (!isfinite(d) || d < lo || d > hi || (integer && d != floor(d))) {
		snprintf(err, esz, "%s: must be %s from %g to %g", key,
			 integer ? "an integer" : "a number", lo, hi);
		return -EINVAL;
	}
	*dst = d;
	return 0;
}

/* "dns": 1..DNSNAME_NS_MAX IPv4 nameservers; "dns_search": up to
 * DNSNAME_SEARCH_MAX domains (dnsname_ok), DNSNAME_SEARCH_LEN joined. */
static int get_dns(json_t *obj, struct fn_spec *out, char *err, size_t esz)
{
	json_t *ns = json_object_get(obj, "dns"), *search = json_object_get(obj, "dns_search");
	json_t *v;
	size_t i, used = 0;

	if (ns && !json_is_null(ns)) {
		if (!json_is_array(ns) || json_array_size(ns) < 1 ||
		    json_array_size(ns) > DNSNAME_NS_MAX) {
			snprintf(err, esz, "dns: a list of 1 to %d IPv4 nameserver addresses",
				 DNSNAME_NS_MAX);
			return -EINVAL;
		}
		json_array_foreach(ns, i, v)
		{
			struct in_addr a;
			const char *ip = json_string_value(v);
			if (!ip || strlen(ip) >= sizeof(out->dns[0]) ||
			    inet_pton(AF_INET, ip, &a) != 1) {
				snprintf(err, esz, "dns: '%.64s' is not an IPv4 address",
					 ip ? ip : "(not a string)");
				return -EINVAL;
			}
			snprintf(out->dns[out->ndns++], sizeof(out->dns[0]), "%s", ip);
		}
	}
	if (search && !json_is_null(search)) {
		if (!json_is_array(search) || json_array_size(search) > DNSNAME_SEARCH_MAX) {
			snprintf(err, esz, "dns_search: a list of at most %d domains",
				 DNSNAME_SEARCH_MAX);
			return -EINVAL;
		}
		out->dns_search_set = true;
		json_array_foreach(search, i, v)
		{
			const char *d = json_string_value(v);
			size_t len = d ? json_string_length(v) : 0;
			if (!d || !dnsname_ok(d, len)) {
				snprintf(err, esz,
					 "dns_search: '%.64s' is not a domain name (letters, "
					 "digits, '-' and '.')",
					 d ? d : "(not a string)");
				return -EINVAL;
			}
			if (used + (used ? 1 : 0) + len > DNSNAME_SEARCH_LEN) {
				snprintf(err, esz, "dns_search: longer than %d characters in all",
					 DNSNAME_SEARCH_LEN);
				return -EINVAL;
			}
			if (used)
				out->dns_search[used++] = ' ';
			memcpy(out->dns_search + used, d, len + 1);
			used += len;
		}
	}
	if ((out->ndns || out->dns_search_set) && strcmp(out->network, "egress")) {
		snprintf(err, esz, "%s: only for a function with \"network\": \"egress\"",
			 out->ndns ? "dns" : "dns_search");
		return -EINVAL;
	}
	return 0;
}

static int get_env(json_t *obj, struct fn_spec *out, char *err, size_t esz)
{
	json_t *env = json_object_get(obj, "env");
	const char *k;
	json_t *v;
	size_t n;

	if (!env || json_is_null(env))
		env = json_object_get(obj, "envVars");
	if (!env || json_is_null(env))
		return 0;
	if (!json_is_object(env)) {
		snprintf(err, esz, "env: must be an object of strings");
		return -EINVAL;
	}
	n = json_object_size(env);
	if (n > SPEC_ENV_MAX) {
		snprintf(err, esz, "env: more than %d variables", SPEC_ENV_MAX);
		return -EINVAL;
	}
	out->env = calloc(n ? n : 1, sizeof(*out->env));
	if (!out->env)
		return -ENOMEM;
	json_object_foreach(env, k, v)
	{
		if (!env_name_ok(k)) {
			snprintf(err, esz, "env: bad variable name '%.64s'", k);
			return -EINVAL;
		}
		if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
		    json_string_length(v) > 64 * 1024) {
			snprintf(err, esz,
				 "env: %.64s: must be a string without NUL, at most 64 KiB", k);
			return -EINVAL;
		}
		out->env[out->nenv].key = strdup(k);
		out->env[out->nenv].value = strdup(json_string_value(v));
		if (!out->env[out->nenv].key || !out->env[out->nenv].value) {
			free(out->env[out->nenv].key);
			free(out->env[out->nenv].value);
			return -ENOMEM;
		}
		out->nenv++;
	}
	return 0;
}

static const char *const known_fields[] = {
	"name",		 "service",    "runtime",     "mode",	       "handler",
	"code",		 "code_path",  "env",	      "envVars",       "memory",
	"vcpus",	 "timeout",    "concurrency", "queue_timeout", "min_instances",
	"max_instances", "keep_alive", "code_sha256", "network",       "dns",
	"dns_search",	 "release",    NULL,
};

/* "release" (c and rust only): an optimised build, the default. */
static int get_release(json_t *obj, bool built, struct fn_spec *out, char *err, size_t esz)
{
	json_t *v = json_object_get(obj, "release");

	out->release = built;
	if (!v || json_is_null(v))
		return 0;
	if (!built) {
		snprintf(err, esz, "release: only the c and rust runtimes are built");
		return -EINVAL;
	}
	if (!json_is_boolean(v)) {
		snprintf(err, esz, "release: must be true or false");
		return -EINVAL;
	}
	out->release = json_is_true(v);
	return 0;
}

static int parse_spec(json_t *obj, struct fn_spec *out, char *err, size_t esz)
{
	bool native, built, exec;
	double d;
	const char *k;
	json_t *v;
	int r;

	memset(out, 0, sizeof(*out));
	out->memory_mb = 128;
	out->vcpus = 1;
	strcpy(out->network, "none");
	out->timeout_s = 30;
	out->concurrency = 10;
	out->queue_timeout_s = 10;
	out->max_instances = 10;
	out->keep_alive_s = 60;
	if (!json_is_object(obj)) {
		snprintf(err, esz, "the body must be a JSON object");
		return -EINVAL;
	}
	json_object_foreach(obj, k, v)
	{
		bool known = false;
		for (int i = 0; known_fields[i]; i++)
			known = known || strcmp(k, known_fields[i]) == 0;
		if (!known) {
			snprintf(err, esz, "unknown field '%.64s'", k);
			return -EINVAL;
		}
	}
	if ((r = get_str(obj, "service", out->name, sizeof(out->name), err, esz)) ||
	    (r = get_str(obj, "name", out->name, sizeof(out->name), err, esz)))
		return r;
	if (!out->name[0]) {
		snprintf(err, esz, "name: required");
		return -EINVAL;
	}
	if (!spec_name_ok(out->name)) {
		snprintf(err, esz, "name: '%.64s' is not a valid name ([a-z0-9][a-z0-9_-]{0,62})",
			 out->name);
		return -EINVAL;
	}
	if ((r = get_str(obj, "runtime", out->runtime, sizeof(out->runtime), err, esz)))
		return r;
	if (!out->runtime[0]) {
		snprintf(err, esz, "runtime: required (%s)", spec_runtimes_list());
		return -EINVAL;
	}
	if (strcmp(out->runtime, "node") == 0 && !spec_runtime_known(out->runtime)) {
		snprintf(err, esz,
			 "runtime: 'node' has no root image in this kilnd (start it with "
			 "--rootfs-node; available: %s)",
			 spec_runtimes_list());
		return -EINVAL;
	}
	if (spec_runtime_built(out->runtime) && !spec_runtime_known(out->runtime)) {
		snprintf(err, esz,
			 "runtime: '%.32s' is not available: it is compiled in a builder microVM "
			 "and this kilnd has no builder image (start it with --rootfs-builder; "
			 "available: %s)",
			 out->runtime, spec_runtimes_list());
		return -EINVAL;
	}
	if (!spec_runtime_known(out->runtime)) {
		snprintf(err, esz, "runtime: '%.32s' is not available (%s)", out->runtime,
			 spec_runtimes_list());
		return -EINVAL;
	}
	built = spec_runtime_built(out->runtime);
	native = built || strcmp(out->runtime, "native") == 0;
	strcpy(out->mode, strcmp(out->runtime, "sh") == 0 || native ? "exec" : "server");
	if ((r = get_str(obj, "mode", out->mode, sizeof(out->mode), err, esz)))
		return r;
	if (strcmp(out->mode, "server") && strcmp(out->mode, "exec")) {
		snprintf(err, esz, "mode: must be server or exec");
		return -EINVAL;
	}
	if (strcmp(out->runtime, "sh") == 0 && strcmp(out->mode, "exec")) {
		snprintf(err, esz, "mode: the sh runtime runs in exec mode only");
		return -EINVAL;
	}
	exec = strcmp(out->mode, "exec") == 0;
	strcpy(out->handler, native && exec			 ? "./bootstrap"
			     : native				 ? "bootstrap"
			     : exec				 ? "sh handler.sh"
			     : strcmp(out->runtime, "node") == 0 ? "index.handler"
								 : "handler.handle");
	if ((r = get_str(obj, "handler", out->handler, sizeof(out->handler), err, esz)))
		return r;
	if (!out->handler[0]) {
		snprintf(err, esz, "handler: must not be empty");
		return -EINVAL;
	}
	if (native && !exec && !archive_path_ok(out->handler, strlen(out->handler))) {
		snprintf(err, esz,
			 "handler: a native server handler is the executable's path in the code "
			 "(relative, no '.' or '..' component), not '%.64s'",
			 out->handler);
		return -EINVAL;
	}
	if ((r = get_release(obj, built, out, err, esz)))
		return r;
	if ((r = get_str(obj, "network", out->network, sizeof(out->network), err, esz)))
		return r;
	if (strcmp(out->network, "none") != 0 && strcmp(out->network, "egress") != 0) {
		snprintf(err, esz, "network: \"none\" or \"egress\"");
		return -EINVAL;
	}
	if ((r = get_dns(obj, out, err, esz)))
		return r;
	d = out->memory_mb;
	if ((r = get_num(obj, "memory", 64, 4096, true, &d, err, esz)))
		return r;
	out->memory_mb = (unsigned)d;
	d = out->vcpus;
	if ((r = get_num(obj, "vcpus", 1, 8, true, &d, err, esz)))
		return r;
	out->vcpus = (unsigned)d;
	if ((r = get_num(obj, "timeout", 0.1, 900, false, &out->timeout_s, err, esz)))
		return r;
	d = out->concurrency;
	if ((r = get_num(obj, "concurrency", 1, 1000, true, &d, err, esz)))
		return r;
	out->concurrency = (unsigned)d;
	if ((r = get_num(obj, "queue_timeout", 0, 900, false, &out->queue_timeout_s, err, esz)))
		return r;
	d = out->min_instances;
	if ((r = get_num(obj, "min_instances", 0, 1000, true, &d, err, esz)))
		return r;
	out->min_instances = (unsigned)d;
	d = out->max_instances;
	if ((r = get_num(obj, "max_instances", 1, 1000, true, &d, err, esz)))
		return r;
	out->max_instances = (unsigned)d;
	if (out->min_instances > out->max_instances) {
		snprintf(err, esz, "min_instances (%u) is above max_instances (%u)",
			 out->min_instances, out->max_instances);
		return -EINVAL;
	}
	if ((r = get_num(obj, "keep_alive", 0, 86400, false, &out->keep_alive_s, err, esz)))
		return r;
	if ((r = get_str(obj, "code_sha256", out->code_sha256, sizeof(out->code_sha256), err, esz)))
		return r;
	return get_env(obj, out, err, esz);
}

int spec_from_json(json_t *obj, struct fn_spec *out, char *err, size_t esz)
{
	int r = parse_spec(obj, out, err, esz);

	if (r)
		spec_clear(out);
	return r;
}

int spec_from_text(const char *text, struct fn_spec *out, char *err, size_t esz)
{
	json_t *obj = json_loads(text, 0, NULL);
	int r;

	if (!obj) {
		memset(out, 0, sizeof(*out));
		snprintf(err, esz, "the stored spec is not JSON");
		return -EINVAL;
	}
	r = spec_from_json(obj, out, err, esz);
	json_decref(obj);
	return r;
}

json_t *spec_to_json(const struct fn_spec *s)
{
	json_t *env = json_object();
	json_t *o;

	if (!env)
		return NULL;
	for (unsigned i = 0; i < s->nenv; i++)
		json_object_set_new(env, s->env[i].key, json_string(s->env[i].value));
	o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:i, s:i, s:f, s:i, s:f, s:i, s:i, s:f, s:s}",
		      "name", s->name, "runtime", s->runtime, "mode", s->mode, "handler",
		      s->handler, "env", env, "memory", (int)s->memory_mb, "vcpus", (int)s->vcpus,
		      "timeout", s->timeout_s, "concurrency", (int)s->concurrency, "queue_timeout",
		      s->queue_timeout_s, "min_instances", (int)s->min_instances, "max_instances",
		      (int)s->max_instances, "keep_alive", s->keep_alive_s, "code_sha256",
		      s->code_sha256);
	if (o)
		json_object_set_new(o, "network", json_string(s->network));
	if (o && spec_runtime_built(s->runtime))
		json_object_set_new(o, "release", json_boolean(s->release));
	if (o && s->ndns) {
		json_t *a = json_array();
		for (unsigned i = 0; a && i < s->ndns; i++)
			json_array_append_new(a, json_string(s->dns[i]));
		json_object_set_new(o, "dns", a);
	}
	if (o && s->dns_search_set) {
		json_t *a = json_array();
		const char *p = s->dns_search;
		while (a && *p) {
			size_t len = strcspn(p, " ");
			json_array_append_new(a, json_stringn(p, len));
			p += len + (p[len] == ' ');
		}
		json_object_set_new(o, "dns_search", a);
	}
	return o;
}

int spec_copy(struct fn_spec *dst, const struct fn_spec *src)
{
	*dst = *src;
	dst->env = calloc(src->nenv ? src->nenv : 1, sizeof(*dst->env));
	dst->nenv = 0;
	if (!dst->env)
		return -ENOMEM;
	for (unsigned i = 0; i < src->nenv; i++) {
		dst->env[i].key = strdup(src->env[i].key);
		dst->env[i].value = strdup(src->env[i].value);
		dst->nenv++;
		if (!dst->env[i].key || !dst->env[i].value) {
			spec_clear(dst);
			return -ENOMEM;
		}
	}
	return 0;
}

void spec_clear(struct fn_spec *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < s->nenv; i++) {
		free(s->env[i].key);
		free(s->env[i].value);
	}
	free(s->env);
	s->env = NULL;
	s->nenv = 0;
}

static const char *env_get(const struct fn_spec *s, const char *key)
{
	for (unsigned i = 0; i < s->nenv; i++)
		if (strcmp(s->env[i].key, key) == 0)
			return s->env[i].value;
	return NULL;
}

bool spec_same_image(const struct fn_spec *a, const struct fn_spec *b)
{
	if (strcmp(a->code_sha256, b->code_sha256) || strcmp(a->runtime, b->runtime) ||
	    strcmp(a->mode, b->mode) || strcmp(a->handler, b->handler) ||
	    a->memory_mb != b->memory_mb || a->vcpus != b->vcpus || a->nenv != b->nenv ||
	    a->release != b->release)
		return false;
	for (unsigned i = 0; i < a->nenv; i++) {
		const char *v = env_get(b, a->env[i].key);
		if (!v || strcmp(v, a->env[i].value))
			return false;
	}
	return true;
}
