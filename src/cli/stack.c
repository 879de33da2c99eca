/* stack.c - stack files (kiln.yml) with libyaml (see stack.h). */
#include "cli/stack.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "cli/units.h"

struct ctx {
	yaml_document_t *doc;
	const char *file;
	const char *base_dir;
	char *err;
	size_t err_size;
};

static int fail(struct ctx *c, const yaml_node_t *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct ctx *c, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;
	int off = snprintf(c->err, c->err_size, "%s:%zu:%zu: ", c->file, n->start_mark.line + 1,
			   n->start_mark.column + 1);

	if (off < 0 || (size_t)off >= c->err_size)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(c->err + off, c->err_size - (size_t)off, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static const char *kind_name(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return "a value";
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_MAPPING_NODE:
		return "a mapping";
	default:
		return "nothing";
	}
}

/* The text of a scalar node (NUL-terminated by libyaml), or NULL when it
 * is null-like (empty, ~, null, Null, NULL) and plain. */
static const char *scalar(const yaml_node_t *n)
{
	const char *s = (const char *)n->data.scalar.value;

	if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	    (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
	     !strcmp(s, "NULL")))
		return NULL;
	return s;
}

/* Gets a string from a scalar node into *dst (NULL for null-like). */
static int get_string(struct ctx *c, const yaml_node_t *n, const char *what, char **dst)
{
	const char *s;

	if (n->type != YAML_SCALAR_NODE)
		return fail(c, n, "%s must be a value, not %s", what, kind_name(n));
	s = scalar(n);
	if (s && strlen(s) != n->data.scalar.length)
		return fail(c, n, "%s contains a NUL character", what);
	return fn_set_string(dst, s) ? -ENOMEM : 0;
}

static int get_int(struct ctx *c, const yaml_node_t *n, const char *what, int64_t *dst)
{
	const char *s;
	int rc;

	if (n->type != YAML_SCALAR_NODE)
		return fail(c, n, "%s must be a number, not %s", what, kind_name(n));
	s = scalar(n);
	if (!s)
		return 0;
	rc = units_parse_int(s, 0, 1000000, dst);
	if (rc)
		return fail(c, n, "%s: '%.40s' is not a whole number from 0 to 1000000", what, s);
	return 0;
}

/* YAML 1.1's booleans as kiln.yml writes them: true/false, yes/no, on/off. */
static int get_bool(struct ctx *c, const yaml_node_t *n, const char *what, int *dst)
{
	static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "on", "On"};
	static const char *const no[] = {"false", "False", "FALSE", "no", "No", "off", "Off"};
	const char *s;

	if (n->type != YAML_SCALAR_NODE)
		return fail(c, n, "%s must be true or false, not %s", what, kind_name(n));
	s = scalar(n);
	if (!s)
		return 0;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcmp(s, yes[i]) || !strcmp(s, no[i])) {
			*dst = !strcmp(s, yes[i]);
			return 0;
		}
	}
	return fail(c, n, "%s: '%.40s' is not true or false", what, s);
}

static int get_duration(struct ctx *c, const yaml_node_t *n, const char *what, int64_t *dst)
{
	const char *s;

	if (n->type != YAML_SCALAR_NODE)
		return fail(c, n, "%s must be a duration, not %s", what, kind_name(n));
	s = scalar(n);
	if (!s)
		return 0;
	if (units_parse_duration_ms(s, dst))
		return fail(c, n, "%s: '%.40s' is not a duration (e.g. 30, 30s, 500ms, 10m, 2h)",
			    what, s);
	return 0;
}

static int get_memory(struct ctx *c, const yaml_node_t *n, int64_t *dst)
{
	const char *s;

	if (n->type != YAML_SCALAR_NODE)
		return fail(c, n, "memory must be a size, not %s", kind_name(n));
	s = scalar(n);
	if (!s)
		return 0;
	if (units_parse_memory_mib(s, dst))
		return fail(c, n, "memory: '%.40s' is not a size in MiB (e.g. 128, 256M, 1G)", s);
	return 0;
}

static int join_path(struct ctx *c, const yaml_node_t *n, struct fn_spec *f)
{
	char *p;

	if (!f->code || f->code[0] == '/' || !c->base_dir || !*c->base_dir)
		return 0;
	if (asprintf(&p, "%s/%s", c->base_dir, f->code) < 0)
		return -ENOMEM;
	free(f->code);
	f->code = p;
	(void)n;
	return 0;
}

static int parse_env(struct ctx *c, const yaml_node_t *n, struct fn_spec *f)
{
	if (n->type == YAML_SCALAR_NODE && !scalar(n))
		return 0;
	if (n->type != YAML_MAPPING_NODE)
		return fail(c, n, "environment must be a mapping of NAME: value, not %s",
			    kind_name(n));
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
		const char *val;
		int rc;

		if (k->type != YAML_SCALAR_NODE ||
		    !fn_env_name_ok((const char *)k->data.scalar.value))
			return fail(c, k,
				    "environment: not a valid variable name (letters, digits, "
				    "'_', not starting with a digit)");
		if (v->type != YAML_SCALAR_NODE)
			return fail(c, v, "environment: %s must be a value, not %s",
				    (const char *)k->data.scalar.value, kind_name(v));
		val = (const char *)v->data.scalar.value;
		if (strlen(val) != v->data.scalar.length)
			return fail(c, v, "environment: %s contains a NUL character",
				    (const char *)k->data.scalar.value);
		rc = fn_spec_set_env(f, (const char *)k->data.scalar.value, val);
		if (rc == -E2BIG)
			return fail(c, k, "environment: more than %d variables", FN_MAX_ENV);
		if (rc)
			return rc;
	}
	return 0;
}

/* Adds one item of dns: (search false) or dns_search: (true) to f. */
static int add_dns(struct ctx *c, const yaml_node_t *n, const char *what, struct fn_spec *f,
		   bool search)
{
	const char *s;
	int rc;

	if (n->type != YAML_SCALAR_NODE)
		return fail(c, n, "%s: each item must be a value, not %s", what, kind_name(n));
	s = (const char *)n->data.scalar.value;
	if (strlen(s) != n->data.scalar.length)
		return fail(c, n, "%s contains a NUL character", what);
	rc = search ? fn_spec_add_dns_search(f, s) : fn_spec_add_dns(f, s);
	if (rc == -EINVAL && search)
		return fail(c, n,
			    "%s: '%.64s' is not a domain (letters, digits, '-' and '.', labels "
			    "of 1 to 63 characters)",
			    what, s);
	if (rc == -EINVAL)
		return fail(c, n, "%s: '%.64s' is not an IPv4 address (e.g. 10.0.0.2)", what, s);
	if (rc == -E2BIG && search)
		return fail(c, n, "%s: more than %d domains or %d characters in all", what,
			    FN_MAX_DNS_SEARCH, FN_MAX_SEARCH_LEN);
	if (rc == -E2BIG)
		return fail(c, n, "%s: more than %d nameservers", what, FN_MAX_DNS);
	return rc;
}

/* Gets dns: or dns_search: (a list of values, or one value as a list of
 * one) into f, replacing an earlier one. */
static int get_dns(struct ctx *c, const yaml_node_t *n, const char *what, struct fn_spec *f,
		   bool search)
{
	char **list = search ? f->dns_search : f->dns;
	size_t *len = search ? &f->n_dns_search : &f->n_dns;

	while (*len)
		free(list[--*len]);
	if (n->type == YAML_SCALAR_NODE)
		return scalar(n) ? add_dns(c, n, what, f, search) : 0;
	if (n->type != YAML_SEQUENCE_NODE)
		return fail(c, n, "%s must be a list of values, not %s", what, kind_name(n));
	for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top;
	     i++) {
		int rc = add_dns(c, yaml_document_get_node(c->doc, *i), what, f, search);

		if (rc)
			return rc;
	}
	return 0;
}

static int parse_function(struct ctx *c, const yaml_node_t *key, const yaml_node_t *n,
			  struct fn_spec *f)
{
	const char *name = (const char *)key->data.scalar.value;
	const yaml_node_t *dns_key = NULL;
	char what[128];
	int rc;

	if (!fn_name_ok(name))
		return fail(c, key,
			    "'%.64s' is not a valid function name ([a-z0-9][a-z0-9_-]{0,62})",
			    name);
	if (fn_set_string(&f->name, name))
		return -ENOMEM;
	if (n->type != YAML_MAPPING_NODE)
		return fail(c, n, "function %s must be a mapping of settings, not %s", name,
			    kind_name(n));
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
		const char *ks;

		if (k->type != YAML_SCALAR_NODE)
			return fail(c, k, "function %s: keys must be names", name);
		ks = (const char *)k->data.scalar.value;
		snprintf(what, sizeof(what), "%s.%s", name, ks);
		if (!strcmp(ks, "runtime"))
			rc = get_string(c, v, what, &f->runtime);
		else if (!strcmp(ks, "handler"))
			rc = get_string(c, v, what, &f->handler);
		else if (!strcmp(ks, "mode"))
			rc = get_string(c, v, what, &f->mode);
		else if (!strcmp(ks, "network"))
			rc = get_string(c, v, what, &f->network);
		else if (!strcmp(ks, "release"))
			rc = get_bool(c, v, what, &f->release);
		else if (!strcmp(ks, "dns") || !strcmp(ks, "dns_search")) {
			bool search = !strcmp(ks, "dns_search");

			rc = get_dns(c, v, what, f, search);
			/* The key the egress error points at: one that is set. */
			if (search ? f->n_dns_search : f->n_dns)
				dns_key = k;
		} else if (!strcmp(ks, "code"))
			rc = get_string(c, v, what, &f->code);
		else if (!strcmp(ks, "code_path"))
			rc = get_string(c, v, what, &f->code_path);
		else if (!strcmp(ks, "environment") || !strcmp(ks, "env"))
			rc = parse_env(c, v, f);
		else if (!strcmp(ks, "memory"))
			rc = get_memory(c, v, &f->memory_mib);
		else if (!strcmp(ks, "vcpus"))
			rc = get_int(c, v, what, &f->vcpus);
		else if (!strcmp(ks, "concurrency"))
			rc = get_int(c, v, what, &f->concurrency);
		else if (!strcmp(ks, "min") || !strcmp(ks, "min_instances"))
			rc = get_int(c, v, what, &f->min_instances);
		else if (!strcmp(ks, "max") || !strcmp(ks, "max_instances"))
			rc = get_int(c, v, what, &f->max_instances);
		else if (!strcmp(ks, "timeout"))
			rc = get_duration(c, v, what, &f->timeout_ms);
		else if (!strcmp(ks, "keep_alive"))
			rc = get_duration(c, v, what, &f->keep_alive_ms);
		else if (!strcmp(ks, "queue_timeout"))
			rc = get_duration(c, v, what, &f->queue_timeout_ms);
		else
			rc = fail(c, k, "function %s: unknown setting '%.64s'", name, ks);
		if (rc)
			return rc;
	}
	if (!f->runtime)
		return fail(c, key, "function %s: runtime is required", name);
	if (!f->code && !f->code_path)
		return fail(c, key, "function %s: code is required (a directory or file)", name);
	if (f->code && f->code_path)
		return fail(c, key, "function %s: give code or code_path, not both", name);
	if (!fn_spec_dns_allowed(f))
		return fail(c, dns_key, "function %s: %s needs network: egress", name,
			    (const char *)dns_key->data.scalar.value);
	return join_path(c, key, f);
}

static int parse_functions(struct ctx *c, const yaml_node_t *n, struct stack *s)
{
	size_t count;

	if (n->type != YAML_MAPPING_NODE)
		return fail(c, n, "functions must be a mapping of NAME: settings, not %s",
			    kind_name(n));
	count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	if (count == 0)
		return fail(c, n, "functions is empty");
	s->fns = calloc(count, sizeof(*s->fns));
	if (!s->fns)
		return -ENOMEM;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
		int rc;

		if (k->type != YAML_SCALAR_NODE)
			return fail(c, k, "function names must be plain names");
		for (size_t i = 0; i < s->n_fns; i++)
			if (!strcmp(s->fns[i].name, (const char *)k->data.scalar.value))
				return fail(c, k, "function %s is defined twice", s->fns[i].name);
		fn_spec_init(&s->fns[s->n_fns]);
		s->n_fns++;
		rc = parse_function(c, k, v, &s->fns[s->n_fns - 1]);
		if (rc)
			return rc;
	}
	return 0;
}

static int parse_provider(struct ctx *c, const yaml_node_t *n, struct stack *s)
{
	if (n->type != YAML_MAPPING_NODE)
		return fail(c, n, "provider must be a mapping (name, gateway), not %s",
			    kind_name(n));
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
		const char *ks =
			k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "";
		int rc;

		if (!strcmp(ks, "name"))
			rc = get_string(c, v, "provider.name", &s->provider_name);
		else if (!strcmp(ks, "gateway"))
			rc = get_string(c, v, "provider.gateway", &s->gateway);
		else
			rc = fail(c, k, "provider: unknown setting '%.64s' (name, gateway)", ks);
		if (rc)
			return rc;
	}
	return 0;
}

static int parse_root(struct ctx *c, struct stack *s)
{
	yaml_node_t *root = yaml_document_get_root_node(c->doc);
	bool have_functions = false;

	if (root->type != YAML_MAPPING_NODE)
		return fail(c, root, "a stack file is a mapping with functions:, not %s",
			    kind_name(root));
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
		const char *ks =
			k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "";
		int rc;

		if (!strcmp(ks, "version"))
			rc = get_string(c, v, "version", &s->version);
		else if (!strcmp(ks, "provider"))
			rc = parse_provider(c, v, s);
		else if (!strcmp(ks, "functions")) {
			if (have_functions)
				return fail(c, k, "functions is given twice");
			have_functions = true;
			rc = parse_functions(c, v, s);
		} else
			rc = fail(c, k, "unknown key '%.64s' (version, provider, functions)", ks);
		if (rc)
			return rc;
	}
	if (!have_functions)
		return fail(c, root, "no functions: in the stack file");
	return 0;
}

int stack_parse(const char *text, size_t len, const char *file, const char *base_dir,
		struct stack **out, char *err, size_t err_size)
{
	struct ctx c = {.file = file, .base_dir = base_dir, .err = err, .err_size = err_size};
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	struct stack *s;
	int rc;

	if (err_size)
		err[0] = '\0';
	if (len > STACK_MAX_BYTES) {
		snprintf(err, err_size, "%s: larger than %u bytes", file, STACK_MAX_BYTES);
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	if (!yaml_parser_initialize(&parser)) {
		free(s);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		const yaml_mark_t *m = parser.problem_mark.line || parser.problem_mark.column
					       ? &parser.problem_mark
					       : &parser.context_mark;

		snprintf(err, err_size, "%s:%zu:%zu: YAML syntax error: %s%s%s", file, m->line + 1,
			 m->column + 1, parser.problem ? parser.problem : "unknown problem",
			 parser.context ? " " : "", parser.context ? parser.context : "");
		rc = parser.error == YAML_MEMORY_ERROR ? -ENOMEM : -EINVAL;
		goto free_parser;
	}
	c.doc = &doc;
	if (!yaml_document_get_root_node(&doc)) {
		snprintf(err, err_size, "%s: the stack file is empty", file);
		rc = -EINVAL;
		goto free_doc;
	}
	rc = parse_root(&c, s);
	if (rc)
		goto free_doc;
	if (!yaml_parser_load(&parser, &extra)) {
		snprintf(err, err_size, "%s:%zu:%zu: YAML syntax error: %s", file,
			 parser.problem_mark.line + 1, parser.problem_mark.column + 1,
			 parser.problem ? parser.problem : "unknown problem");
		rc = -EINVAL;
		goto free_doc;
	}
	if (yaml_document_get_root_node(&extra)) {
		yaml_node_t *r = yaml_document_get_root_node(&extra);

		snprintf(err, err_size, "%s:%zu:%zu: more than one YAML document", file,
			 r->start_mark.line + 1, r->start_mark.column + 1);
		rc = -EINVAL;
	}
	yaml_document_delete(&extra);
free_doc:
	yaml_document_delete(&doc);
free_parser:
	yaml_parser_delete(&parser);
	if (rc) {
		stack_destroy(s);
		return rc;
	}
	*out = s;
	return 0;
}

void stack_destroy(struct stack *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_fns; i++)
		fn_spec_clear(&s->fns[i]);
	free(s->fns);
	free(s->version);
	free(s->provider_name);
	free(s->gateway);
	free(s);
}

int stack_read_file(const char *path, size_t max, char **out, size_t *len)
{
	struct stat st;
	char *buf;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		rc = -errno;
		goto close_fd;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = -EISDIR;
		goto close_fd;
	}
	if (st.st_size < 0 || (uint64_t)st.st_size > max) {
		rc = -EFBIG;
		goto close_fd;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto close_fd;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	*out = buf;
	*len = got;
	rc = 0;
close_fd:
	close(fd);
	return rc;
}

int stack_load(const char *path, struct stack **out, char *err, size_t err_size)
{
	char *text = NULL, *dir;
	size_t len = 0;
	const char *slash;
	int rc = stack_read_file(path, STACK_MAX_BYTES, &text, &len);

	if (rc) {
		snprintf(err, err_size, "%s: %s", path,
			 rc == -EFBIG ? "file too large" : strerror(-rc));
		return rc;
	}
	slash = strrchr(path, '/');
	dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup("");
	if (!dir) {
		free(text);
		return -ENOMEM;
	}
	rc = stack_parse(text, len, path, dir, out, err, err_size);
	free(dir);
	free(text);
	return rc;
}
