/* cmd_new.c - kiln new: a starter function (NAME/handler.py or
 * NAME/handler.sh) and its entry in the stack file (kiln.yml). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/opts.h"
#include "cli/output.h"
#include "cli/spec.h"
#include "cli/stack.h"

static const char new_usage[] =
	"Usage: kiln new NAME --runtime python|node|sh [-f kiln.yml]\n"
	"\n"
	"Writes a starter function into the directory NAME (handler.py, index.js\n"
	"or handler.sh) and adds it to the stack file: creates kiln.yml, or appends\n"
	"NAME to the functions: of an existing one (when functions: is its last\n"
	"top-level key). Deploy it with kiln up.\n"
	"\n"
	"Options:\n"
	"  -r, --runtime RUNTIME   python, node or sh\n"
	"  -f, --file FILE         the stack file (default kiln.yml)\n"
	"  -g, --gateway URL       the gateway written into a new stack file\n"
	"  -h, --help              this help\n";

static const char python_handler[] =
	"\"\"\"A kiln function. kiln calls handle() once per request.\n"
	"\n"
	"event is the request body decoded from JSON (or the raw text when it is\n"
	"not JSON); the return value is sent back as JSON. What the function\n"
	"prints shows in `kiln logs %s`.\n"
	"\"\"\"\n"
	"\n"
	"\n"
	"def handle(event, context):\n"
	"    name = event.get(\"name\", \"world\") if isinstance(event, dict) else (event or "
	"\"world\")\n"
	"    print(f\"greeting {name}\")\n"
	"    return {\"message\": f\"Hello, {name}!\"}\n";

static const char node_handler[] =
	"// A kiln function. kiln calls handler() once per request, as AWS Lambda\n"
	"// does: event is the request body decoded from JSON (or the raw text when\n"
	"// it is not JSON); the value it resolves to is sent back as JSON. What it\n"
	"// logs with console.log shows in `kiln logs %s`.\n"
	"exports.handler = async (event, context) => {\n"
	"    const name = (event && event.name) || (typeof event === 'string' && event) || "
	"'world';\n"
	"    console.log(`greeting ${name}`);\n"
	"    return { message: `Hello, ${name}!` };\n"
	"};\n";

static const char sh_handler[] =
	"#!/bin/sh\n"
	"# A kiln function: the request body arrives on standard input and\n"
	"# what this prints on standard output is the result. Standard error\n"
	"# shows in `kiln logs %s`.\n"
	"name=$(cat)\n"
	"echo \"greeting ${name:-world}\" >&2\n"
	"echo \"Hello, ${name:-world}!\"\n";

/* Writes text (a format with one %s: the name) to dir/file, new. */
static int write_new(const char *dir, const char *file, const char *fmt, const char *name,
		     mode_t mode)
{
	char path[512];
	FILE *f;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0) {
		out_error("new: %s: %s", path, strerror(errno));
		return KILN_EXIT_USAGE;
	}
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		out_error("new: %s: %s", path, strerror(errno));
		return KILN_EXIT_USAGE;
	}
	fprintf(f, fmt, name);
	if (fclose(f)) {
		out_error("new: %s: %s", path, strerror(errno));
		return KILN_EXIT_USAGE;
	}
	printf("created %s\n", path);
	return KILN_EXIT_OK;
}

/* The stack file entry for the function, indented by `indent` spaces. */
static char *entry_text(const char *name, const char *runtime, int indent)
{
	char *s = NULL;

	if (asprintf(&s,
		     "%*s%s:\n"
		     "%*sruntime: %s\n"
		     "%*shandler: %s\n"
		     "%*scode: ./%s\n",
		     indent, "", name, indent * 2, "", runtime, indent * 2, "",
		     !strcmp(runtime, "python") ? "handler.handle"
		     : !strcmp(runtime, "node") ? "index.handler"
						: "sh handler.sh",
		     indent * 2, "", name) < 0)
		return NULL;
	return s;
}

/* Where an entry can be appended to an existing stack file's text: true
 * when a line "functions:" at column 0 is followed by block entries only
 * (no other top-level key after it); *indent is the first entry's. */
static bool can_append(const char *text, int *indent)
{
	bool seen_fn = false, seen_entry = false;

	*indent = 2;
	for (const char *p = text; *p;) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p), sp = strspn(p, " ");
		bool top = len && p[0] != ' ' && p[0] != '#' && p[0] != '\t' && p[0] != '\r';

		if (top) {
			size_t n = len;

			if (seen_fn)
				return false; /* another top-level key after functions: */
			while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\r'))
				n--;
			if (n == 10 && !strncmp(p, "functions:", 10))
				seen_fn = true;
			else if (!strncmp(p, "---", 3) || !strncmp(p, "...", 3))
				return false;
		} else if (seen_fn && !seen_entry && sp > 0 && sp < len && p[sp] != '#' &&
			   p[sp] != '\r') {
			*indent = sp < 16 ? (int)sp : 2;
			seen_entry = true;
		}
		p = eol ? eol + 1 : p + len;
	}
	return seen_fn;
}

/* Checks that name can be added to the stack file (absent: it will be
 * created). Returns an exit code, the error printed. */
static int check_stack(const char *file, const char *name)
{
	char *text = NULL, err[512];
	struct stack *st = NULL;
	size_t len = 0;
	int indent, rc;

	rc = stack_read_file(file, STACK_MAX_BYTES, &text, &len);
	if (rc == -ENOENT)
		return KILN_EXIT_OK;
	if (rc) {
		out_error("new: %s: %s", file, strerror(-rc));
		return KILN_EXIT_USAGE;
	}
	rc = stack_load(file, &st, err, sizeof(err));
	if (rc) {
		out_error("new: cannot add %s to %s: %s", name, file, err);
		rc = KILN_EXIT_USAGE;
		goto free_text;
	}
	rc = KILN_EXIT_OK;
	for (size_t i = 0; i < st->n_fns; i++) {
		if (!strcmp(st->fns[i].name, name)) {
			out_error("new: %s already has a function %s", file, name);
			rc = KILN_EXIT_USAGE;
			goto free_text;
		}
	}
	if (!can_append(text, &indent)) {
		out_error("new: cannot append to %s: functions: is not its last top-level block; "
			  "add %s there yourself",
			  file, name);
		rc = KILN_EXIT_USAGE;
	}
free_text:
	stack_destroy(st);
	free(text);
	return rc;
}

static int add_to_stack(struct cli_ctx *ctx, const char *file, const char *name,
			const char *runtime)
{
	char *text = NULL, *entry = NULL, err[512];
	struct stack *st = NULL;
	size_t len = 0;
	int indent, rc;
	FILE *f;

	rc = stack_read_file(file, STACK_MAX_BYTES, &text, &len);
	if (rc == -ENOENT) {
		entry = entry_text(name, runtime, 2);
		f = fopen(file, "wx");
		if (!entry || !f) {
			out_error("new: %s: %s", file, entry ? strerror(errno) : "out of memory");
			free(entry);
			if (f)
				fclose(f);
			return KILN_EXIT_USAGE;
		}
		fprintf(f, "version: 1.0\nprovider:\n  name: kiln\n  gateway: %s\nfunctions:\n%s",
			cli_gateway(ctx, NULL), entry);
		free(entry);
		if (fclose(f)) {
			out_error("new: %s: %s", file, strerror(errno));
			return KILN_EXIT_USAGE;
		}
		printf("created %s\n", file);
		return KILN_EXIT_OK;
	}
	if (rc) {
		out_error("new: %s: %s", file, strerror(-rc));
		return KILN_EXIT_USAGE;
	}
	rc = stack_load(file, &st, err, sizeof(err));
	if (rc) {
		out_error("new: cannot add %s to %s: %s", name, file, err);
		rc = KILN_EXIT_USAGE;
		goto free_text;
	}
	for (size_t i = 0; i < st->n_fns; i++) {
		if (!strcmp(st->fns[i].name, name)) {
			out_error("new: %s already has a function %s", file, name);
			rc = KILN_EXIT_USAGE;
			goto free_text;
		}
	}
	if (!can_append(text, &indent)) {
		out_error("new: cannot append to %s: functions: is not its last top-level block; "
			  "add %s there yourself",
			  file, name);
		rc = KILN_EXIT_USAGE;
		goto free_text;
	}
	entry = entry_text(name, runtime, indent);
	f = fopen(file, "a");
	if (!entry || !f) {
		out_error("new: %s: %s", file, entry ? strerror(errno) : "out of memory");
		if (f)
			fclose(f);
		rc = KILN_EXIT_USAGE;
		goto free_text;
	}
	fprintf(f, "%s%s", len && text[len - 1] != '\n' ? "\n" : "", entry);
	if (fclose(f)) {
		out_error("new: %s: %s", file, strerror(errno));
		rc = KILN_EXIT_USAGE;
		goto free_text;
	}
	stack_destroy(st);
	st = NULL;
	/* Check the result; put the original back when it does not parse. */
	rc = stack_load(file, &st, err, sizeof(err));
	if (rc) {
		f = fopen(file, "w");
		if (f) {
			fwrite(text, 1, len, f);
			fclose(f);
		}
		out_error("new: appending %s to %s would break it (%s); file left unchanged", name,
			  file, err);
		rc = KILN_EXIT_USAGE;
		goto free_text;
	}
	printf("added %s to %s\n", name, file);
	rc = KILN_EXIT_OK;
free_text:
	stack_destroy(st);
	free(entry);
	free(text);
	return rc;
}

int cmd_new(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"runtime", required_argument, NULL, 'r'},
		{"lang", required_argument, NULL, 'r'},
		{"file", required_argument, NULL, 'f'},
		{"gateway", required_argument, NULL, 'g'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *runtime = NULL, *file = "kiln.yml", *name, *slash;
	char dir[512];
	int opt, rc;

	optind = 0;
	while ((opt = getopt_long(argc, argv, ":r:f:g:vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			fputs(new_usage, stdout);
			return KILN_EXIT_OK;
		case 'r':
			runtime = optarg;
			break;
		case 'f':
			file = optarg;
			break;
		default:
			if (opts_global(ctx, opt))
				break;
			return opts_fail("new", opt, argv);
		}
	}
	rc = opts_positional("new", argc, argv, 1, 1, "the function's NAME");
	if (rc)
		return rc;
	name = argv[optind];
	if (!fn_name_ok(name))
		return opts_bad_name("new", name);
	if (!runtime) {
		out_error("new: --runtime is required (python, node or sh)");
		return KILN_EXIT_USAGE;
	}
	if (strcmp(runtime, "python") && strcmp(runtime, "node") && strcmp(runtime, "sh"))
		return opts_bad_value("new", "--runtime", runtime, "expected python, node or sh");
	rc = check_stack(file, name);
	if (rc)
		return rc;
	/* The function's directory goes next to the stack file: code paths are
	 * relative to it. */
	slash = strrchr(file, '/');
	if (slash)
		snprintf(dir, sizeof(dir), "%.*s/%s", (int)(slash - file), file, name);
	else
		snprintf(dir, sizeof(dir), "%s", name);
	if (mkdir(dir, 0755)) {
		out_error("new: cannot create the directory %s: %s", dir, strerror(errno));
		return KILN_EXIT_USAGE;
	}
	if (!strcmp(runtime, "python"))
		rc = write_new(dir, "handler.py", python_handler, name, 0644);
	else if (!strcmp(runtime, "node"))
		rc = write_new(dir, "index.js", node_handler, name, 0644);
	else
		rc = write_new(dir, "handler.sh", sh_handler, name, 0755);
	if (rc)
		return rc;
	rc = add_to_stack(ctx, file, name, runtime);
	if (rc)
		return rc;
	printf("deploy it with: kiln up%s%s\n", strcmp(file, "kiln.yml") ? " -f " : "",
	       strcmp(file, "kiln.yml") ? file : "");
	return KILN_EXIT_OK;
}
