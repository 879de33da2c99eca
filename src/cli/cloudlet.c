/* cloudlet.c - Cloudlet run configurations (see cloudlet.h). */
#include "cli/cloudlet.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/spec.h"
#include "common/toml.h"

struct ctx {
	const char *file;
	char *err;
	size_t err_size;
	struct cloudlet_config *c;
};

static int fail(struct ctx *x, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct ctx *x, int line, const char *fmt, ...)
{
	va_list ap;
	int off = snprintf(x->err, x->err_size, "%s:%d: ", x->file, line);

	if (off < 0 || (size_t)off >= x->err_size)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(x->err + off, x->err_size - (size_t)off, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int warn_unknown(struct ctx *x, const char *table, const char *key, int line)
{
	char *w;

	if (x->c->n_warnings >= CLOUDLET_MAX_WARNINGS)
		return 0;
	if (asprintf(&w, "%s:%d: unknown key '%s%s%.64s' ignored", x->file, line, table,
		     *table ? "." : "", key) < 0)
		return -ENOMEM;
	x->c->warnings[x->c->n_warnings++] = w;
	return 0;
}

/* Copies the string at key of t into *dst; required says whether a
 * missing key is an error. */
static int get_string(struct ctx *x, const struct toml_value *t, const char *table, const char *key,
		      bool required, char **dst)
{
	const struct toml_value *v = toml_get(t, key);

	if (!v) {
		if (required)
			return fail(x, toml_line(t), "%s%s%s is required", table, *table ? "." : "",
				    key);
		return 0;
	}
	if (toml_type_of(v) != TOML_STRING)
		return fail(x, toml_line(v), "%s%s%s must be a string, not a %s", table,
			    *table ? "." : "", key, toml_type_name(toml_type_of(v)));
	return fn_set_string(dst, toml_string(v)) ? -ENOMEM : 0;
}

static int parse_server(struct ctx *x, const struct toml_value *t)
{
	const struct toml_value *port;
	int rc;

	if (toml_type_of(t) != TOML_TABLE)
		return fail(x, toml_line(t), "server must be a table ([server])");
	rc = get_string(x, t, "server", "address", false, &x->c->server_address);
	if (rc)
		return rc;
	port = toml_get(t, "port");
	if (port) {
		if (toml_integer(port, &x->c->server_port) || x->c->server_port < 1 ||
		    x->c->server_port > 65535)
			return fail(x, toml_line(port),
				    "server.port must be an integer from 1 to "
				    "65535");
	}
	for (size_t i = 0; i < toml_table_size(t); i++) {
		const char *k = toml_table_key(t, i);

		if (strcmp(k, "address") && strcmp(k, "port")) {
			rc = warn_unknown(x, "server", k, toml_line(toml_table_value(t, i)));
			if (rc)
				return rc;
		}
	}
	return 0;
}

static int parse_build(struct ctx *x, const struct toml_value *t)
{
	const struct toml_value *rel;
	int rc;

	if (toml_type_of(t) != TOML_TABLE)
		return fail(x, toml_line(t), "build must be a table ([build])");
	rc = get_string(x, t, "build", "source-code-path", true, &x->c->source_path);
	if (rc)
		return rc;
	if (!*x->c->source_path)
		return fail(x, toml_line(toml_get(t, "source-code-path")),
			    "build.source-code-path is empty");
	rel = toml_get(t, "release");
	if (rel) {
		if (toml_boolean(rel, &x->c->release))
			return fail(x, toml_line(rel),
				    "build.release must be true or false, not a %s",
				    toml_type_name(toml_type_of(rel)));
		x->c->has_release = true;
	}
	for (size_t i = 0; i < toml_table_size(t); i++) {
		const char *k = toml_table_key(t, i);

		if (strcmp(k, "source-code-path") && strcmp(k, "release")) {
			rc = warn_unknown(x, "build", k, toml_line(toml_table_value(t, i)));
			if (rc)
				return rc;
		}
	}
	return 0;
}

static int parse_root(struct ctx *x, const struct toml_value *root)
{
	struct cloudlet_config *c = x->c;
	const struct toml_value *v;
	int rc;

	rc = get_string(x, root, "", "workload-name", true, &c->workload_name);
	if (rc)
		return rc;
	if (!fn_name_ok(c->workload_name))
		return fail(x, toml_line(toml_get(root, "workload-name")),
			    "workload-name '%.64s' is not a valid kiln function name (lower-case "
			    "letters, digits, '-' and '_', at most 63)",
			    c->workload_name);
	rc = get_string(x, root, "", "language", true, &c->language);
	if (rc)
		return rc;
	if (strcmp(c->language, "rust") && strcmp(c->language, "python") &&
	    strcmp(c->language, "node"))
		return fail(x, toml_line(toml_get(root, "language")),
			    "language '%.32s' is not one of rust, python, node", c->language);
	rc = get_string(x, root, "", "action", true, &c->action);
	if (rc)
		return rc;
	if (strcmp(c->action, "prepare-and-run"))
		return fail(x, toml_line(toml_get(root, "action")),
			    "action '%.32s' is not supported (only prepare-and-run)", c->action);
	v = toml_get(root, "server");
	if (v) {
		rc = parse_server(x, v);
		if (rc)
			return rc;
	}
	v = toml_get(root, "build");
	if (!v)
		return fail(x, 1, "[build] with source-code-path is required");
	rc = parse_build(x, v);
	if (rc)
		return rc;
	for (size_t i = 0; i < toml_table_size(root); i++) {
		const char *k = toml_table_key(root, i);

		if (strcmp(k, "workload-name") && strcmp(k, "language") && strcmp(k, "action") &&
		    strcmp(k, "server") && strcmp(k, "build")) {
			rc = warn_unknown(x, "", k, toml_line(toml_table_value(root, i)));
			if (rc)
				return rc;
		}
	}
	return 0;
}

int cloudlet_parse(const char *text, size_t len, const char *file, struct cloudlet_config **out,
		   char *err, size_t err_size)
{
	struct ctx x = {.file = file, .err = err, .err_size = err_size};
	struct toml_value *root = NULL;
	struct toml_error te;
	int rc;

	if (err_size)
		err[0] = '\0';
	rc = toml_parse(text, len, &root, &te);
	if (rc == -ENOMEM)
		return rc;
	if (rc) {
		if (te.line > 0)
			snprintf(err, err_size, "%s:%d:%d: %s", file, te.line, te.column, te.msg);
		else
			snprintf(err, err_size, "%s: %s", file, te.msg);
		return -EINVAL;
	}
	x.c = calloc(1, sizeof(*x.c));
	if (!x.c) {
		rc = -ENOMEM;
		goto free_root;
	}
	x.c->server_port = -1;
	rc = parse_root(&x, root);
	if (rc) {
		cloudlet_destroy(x.c);
		goto free_root;
	}
	*out = x.c;
free_root:
	toml_free(root);
	return rc;
}

void cloudlet_destroy(struct cloudlet_config *c)
{
	if (!c)
		return;
	free(c->workload_name);
	free(c->language);
	free(c->action);
	free(c->server_address);
	free(c->source_path);
	for (size_t i = 0; i < c->n_warnings; i++)
		free(c->warnings[i]);
	free(c);
}

static bool is_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int cloudlet_find_source(const struct cloudlet_config *c, const char *config_dir, char **out,
			 char *err, size_t err_size)
{
	const char *src = c->source_path;
	char *p = NULL;

	if (src[0] == '/' || !config_dir || !*config_dir) {
		if (is_file(src)) {
			*out = strdup(src);
			return *out ? 0 : -ENOMEM;
		}
		snprintf(err, err_size, "source file %s not found%s", src,
			 src[0] == '/' ? "" : " (relative to the current directory)");
		return -ENOENT;
	}
	if (asprintf(&p, "%s/%s", config_dir, src) < 0)
		return -ENOMEM;
	if (is_file(p)) {
		*out = p;
		return 0;
	}
	free(p);
	if (is_file(src)) {
		*out = strdup(src);
		return *out ? 0 : -ENOMEM;
	}
	snprintf(err, err_size, "source file %s not found (looked in %s and the current directory)",
		 src, config_dir);
	return -ENOENT;
}
