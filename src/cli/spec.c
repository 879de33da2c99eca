/* spec.c - function specs and their JSON (see spec.h). */
#include "cli/spec.h"

#include "common/dnsname.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void fn_spec_init(struct fn_spec *s)
{
	memset(s, 0, sizeof(*s));
	s->memory_mib = s->vcpus = s->concurrency = -1;
	s->min_instances = s->max_instances = -1;
	s->timeout_ms = s->keep_alive_ms = s->queue_timeout_ms = -1;
	s->release = -1;
}

void fn_spec_clear(struct fn_spec *s)
{
	if (!s)
		return;
	free(s->name);
	free(s->runtime);
	free(s->handler);
	free(s->mode);
	free(s->code);
	free(s->code_path);
	free(s->network);
	for (size_t i = 0; i < s->n_dns; i++)
		free(s->dns[i]);
	for (size_t i = 0; i < s->n_dns_search; i++)
		free(s->dns_search[i]);
	for (size_t i = 0; i < s->n_env; i++) {
		free(s->env[i].key);
		free(s->env[i].value);
	}
	free(s->env);
	fn_spec_init(s);
}

int fn_set_string(char **dst, const char *src)
{
	char *c = NULL;

	if (src) {
		c = strdup(src);
		if (!c)
			return -ENOMEM;
	}
	free(*dst);
	*dst = c;
	return 0;
}

bool fn_name_ok(const char *name)
{
	size_t n = 0;

	if (!name)
		return false;
	for (const char *p = name; *p; p++, n++) {
		bool alnum = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9');

		if (!alnum && (n == 0 || (*p != '-' && *p != '_')))
			return false;
	}
	return n >= 1 && n <= 63;
}

bool fn_env_name_ok(const char *key)
{
	size_t n = 0;

	if (!key)
		return false;
	for (const char *p = key; *p; p++, n++) {
		bool ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_' ||
			  (n > 0 && *p >= '0' && *p <= '9');

		if (!ok)
			return false;
	}
	return n >= 1 && n <= 256;
}

int fn_spec_set_env(struct fn_spec *s, const char *key, const char *value)
{
	struct fn_env *e;
	char *v;

	if (!fn_env_name_ok(key) || !value)
		return -EINVAL;
	for (size_t i = 0; i < s->n_env; i++) {
		if (strcmp(s->env[i].key, key) == 0) {
			v = strdup(value);
			if (!v)
				return -ENOMEM;
			free(s->env[i].value);
			s->env[i].value = v;
			return 0;
		}
	}
	if (s->n_env >= FN_MAX_ENV)
		return -E2BIG;
	e = realloc(s->env, (s->n_env + 1) * sizeof(*e));
	if (!e)
		return -ENOMEM;
	s->env = e;
	e[s->n_env].key = strdup(key);
	e[s->n_env].value = strdup(value);
	if (!e[s->n_env].key || !e[s->n_env].value) {
		free(e[s->n_env].key);
		free(e[s->n_env].value);
		return -ENOMEM;
	}
	s->n_env++;
	return 0;
}

int fn_spec_parse_env(struct fn_spec *s, const char *kv)
{
	const char *eq = strchr(kv, '=');
	char *key;
	int rc;

	if (!eq)
		return -EINVAL;
	key = strndup(kv, (size_t)(eq - kv));
	if (!key)
		return -ENOMEM;
	rc = fn_spec_set_env(s, key, eq + 1);
	free(key);
	return rc;
}

bool fn_ipv4_ok(const char *ip)
{
	struct in_addr a;

	return ip && inet_pton(AF_INET, ip, &a) == 1;
}

int fn_spec_add_dns(struct fn_spec *s, const char *ip)
{
	if (!fn_ipv4_ok(ip))
		return -EINVAL;
	if (s->n_dns >= FN_MAX_DNS)
		return -E2BIG;
	s->dns[s->n_dns] = strdup(ip);
	if (!s->dns[s->n_dns])
		return -ENOMEM;
	s->n_dns++;
	return 0;
}

int fn_spec_add_dns_search(struct fn_spec *s, const char *domain)
{
	size_t len;

	if (!domain || !dnsname_ok(domain, strlen(domain)))
		return -EINVAL;
	if (s->n_dns_search >= FN_MAX_DNS_SEARCH)
		return -E2BIG;
	len = strlen(domain);
	for (size_t i = 0; i < s->n_dns_search; i++)
		len += strlen(s->dns_search[i]) + 1;
	if (len > FN_MAX_SEARCH_LEN)
		return -E2BIG;
	s->dns_search[s->n_dns_search] = strdup(domain);
	if (!s->dns_search[s->n_dns_search])
		return -ENOMEM;
	s->n_dns_search++;
	return 0;
}

bool fn_spec_dns_allowed(const struct fn_spec *s)
{
	return (!s->n_dns && !s->n_dns_search) || (s->network && !strcmp(s->network, "egress"));
}

json_t *fn_seconds_json(int64_t ms)
{
	if (ms % 1000 == 0)
		return json_integer(ms / 1000);
	return json_real((double)ms / 1000.0);
}

/* Adds key: value to o, consuming value; false when out of memory. */
static bool put(json_t *o, const char *key, json_t *value)
{
	return value && json_object_set_new(o, key, value) == 0;
}

/* A JSON array of n strings; NULL when out of memory. */
static json_t *strings_json(char *const *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++) {
		if (json_array_append_new(a, json_string(v[i]))) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

int fn_spec_to_json(const struct fn_spec *s, const char *code_b64, json_t **out)
{
	json_t *o = json_object(), *env = json_object();
	bool ok = o && env;

	for (size_t i = 0; ok && i < s->n_env; i++)
		ok = put(env, s->env[i].key, json_string(s->env[i].value));
	ok = ok && put(o, "name", json_string(s->name));
	if (ok && s->runtime)
		ok = put(o, "runtime", json_string(s->runtime));
	if (ok && s->handler)
		ok = put(o, "handler", json_string(s->handler));
	if (ok && s->network)
		ok = put(o, "network", json_string(s->network));
	if (ok && s->n_dns)
		ok = put(o, "dns", strings_json(s->dns, s->n_dns));
	if (ok && s->n_dns_search)
		ok = put(o, "dns_search", strings_json(s->dns_search, s->n_dns_search));
	if (ok && s->mode)
		ok = put(o, "mode", json_string(s->mode));
	if (ok && s->release >= 0)
		ok = put(o, "release", json_boolean(s->release));
	if (ok && code_b64)
		ok = put(o, "code", json_string(code_b64));
	else if (ok && s->code_path)
		ok = put(o, "code_path", json_string(s->code_path));
	if (ok && s->n_env) {
		ok = put(o, "env", env);
		env = NULL;
	}
	if (ok && s->memory_mib >= 0)
		ok = put(o, "memory", json_integer(s->memory_mib));
	if (ok && s->vcpus >= 0)
		ok = put(o, "vcpus", json_integer(s->vcpus));
	if (ok && s->timeout_ms >= 0)
		ok = put(o, "timeout", fn_seconds_json(s->timeout_ms));
	if (ok && s->concurrency >= 0)
		ok = put(o, "concurrency", json_integer(s->concurrency));
	if (ok && s->queue_timeout_ms >= 0)
		ok = put(o, "queue_timeout", fn_seconds_json(s->queue_timeout_ms));
	if (ok && s->min_instances >= 0)
		ok = put(o, "min_instances", json_integer(s->min_instances));
	if (ok && s->max_instances >= 0)
		ok = put(o, "max_instances", json_integer(s->max_instances));
	if (ok && s->keep_alive_ms >= 0)
		ok = put(o, "keep_alive", fn_seconds_json(s->keep_alive_ms));
	json_decref(env);
	if (!ok) {
		json_decref(o);
		return -ENOMEM;
	}
	*out = o;
	return 0;
}
