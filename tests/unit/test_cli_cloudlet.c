/* test_cli_cloudlet.c - Cloudlet run configurations (cli/cloudlet.c) and
 * the function spec JSON they and the flags become (cli/spec.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cli/cloudlet.h"
#include "cli/spec.h"
#include "common/dnsname.h"

static struct cloudlet_config *parse_ok(const char *text)
{
	struct cloudlet_config *c = NULL;
	char err[512];
	int rc = cloudlet_parse(text, strlen(text), "run.toml", &c, err, sizeof(err));

	if (rc)
		print_error("unexpected error: %s\n", err);
	assert_int_equal(rc, 0);
	return c;
}

static void parse_fails(const char *text, const char *want)
{
	struct cloudlet_config *c = (struct cloudlet_config *)(uintptr_t)1;
	char err[512];
	int rc = cloudlet_parse(text, strlen(text), "run.toml", &c, err, sizeof(err));

	if (rc == 0 || !strstr(err, want))
		print_error("got %d '%s', wanted '%s'\n", rc, rc ? err : "", want);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(err, want));
	assert_ptr_equal(c, (struct cloudlet_config *)(uintptr_t)1);
}

static const char reference[] =
	"workload-name = \"fibonacci\"\n"
	"language = \"rust\"\n"
	"action = \"prepare-and-run\"\n"
	"\n"
	"[server]\n"
	"address = \"localhost\"\n"
	"port = 50051\n"
	"\n"
	"[build]\n"
	"source-code-path = \"/home/user/cloudlet/src/cli/examples/main.rs\"\n"
	"release = true\n";

static void test_reference_config(void **state)
{
	(void)state;
	struct cloudlet_config *c = parse_ok(reference);

	assert_string_equal(c->workload_name, "fibonacci");
	assert_string_equal(c->language, "rust");
	assert_string_equal(c->action, "prepare-and-run");
	assert_string_equal(c->server_address, "localhost");
	assert_int_equal(c->server_port, 50051);
	assert_string_equal(c->source_path, "/home/user/cloudlet/src/cli/examples/main.rs");
	assert_true(c->has_release);
	assert_true(c->release);
	assert_int_equal(c->n_warnings, 0);
	cloudlet_destroy(c);
	cloudlet_destroy(NULL);
}

static void test_minimal_and_warnings(void **state)
{
	(void)state;
	struct cloudlet_config *c = parse_ok("workload-name = 'hello'\n"
					     "language = 'python'\n"
					     "action = 'prepare-and-run'\n"
					     "colour = 'blue'\n"
					     "[build]\n"
					     "source-code-path = 'main.py'\n"
					     "optimize = true\n");

	assert_null(c->server_address);
	assert_int_equal(c->server_port, -1);
	assert_false(c->has_release);
	assert_int_equal(c->n_warnings, 2);
	assert_string_equal(c->warnings[0], "run.toml:7: unknown key 'build.optimize' ignored");
	assert_string_equal(c->warnings[1], "run.toml:4: unknown key 'colour' ignored");
	cloudlet_destroy(c);
}

static void test_errors(void **state)
{
	(void)state;
	parse_fails("workload-name = \"x\"\nlanguage = \"python\"\naction = 1.5\n",
		    "run.toml:3:10: floats are not supported");
	parse_fails("language = \"python\"\naction = \"prepare-and-run\"\n",
		    "run.toml:1: workload-name is required");
	parse_fails("workload-name = 7\n", "run.toml:1: workload-name must be a string, not a "
					   "integer");
	parse_fails("workload-name = \"Fib App\"\n", "is not a valid kiln function name");
	parse_fails("workload-name = \"fib\"\nlanguage = \"go\"\n",
		    "run.toml:2: language 'go' is not one of rust, python, node");
	parse_fails("workload-name = \"fib\"\nlanguage = \"rust\"\naction = \"run\"\n",
		    "run.toml:3: action 'run' is not supported");
	parse_fails("workload-name = \"fib\"\nlanguage = \"rust\"\n", "action is required");
	parse_fails("workload-name = \"fib\"\nlanguage = \"rust\"\naction = \"prepare-and-run\"\n",
		    "[build] with source-code-path is required");
	parse_fails("workload-name = \"fib\"\nlanguage = \"rust\"\naction = \"prepare-and-run\"\n"
		    "[build]\nrelease = true\n",
		    "run.toml:4: build.source-code-path is required");
	parse_fails("workload-name = \"fib\"\nlanguage = \"rust\"\naction = \"prepare-and-run\"\n"
		    "[build]\nsource-code-path = \"a.rs\"\nrelease = \"yes\"\n",
		    "run.toml:6: build.release must be true or false, not a string");
	parse_fails("workload-name = \"fib\"\nlanguage = \"rust\"\naction = \"prepare-and-run\"\n"
		    "[server]\nport = 70000\n[build]\nsource-code-path = \"a.rs\"\n",
		    "run.toml:5: server.port must be an integer from 1 to 65535");
	parse_fails("workload-name = \"fib\"\nbuild = 3\nlanguage = \"rust\"\naction = "
		    "\"prepare-and-run\"\n",
		    "run.toml:2: build must be a table");
	parse_fails("workload-name = \"fib\"\nworkload-name = \"fib\"\n",
		    "run.toml:2:1: duplicate key 'workload-name'");
	parse_fails("[build\n", "run.toml:1:");
}

static void test_find_source(void **state)
{
	(void)state;
	char dir[] = "/tmp/kiln-cloudlet-XXXXXX", path[128], cwd[512], err[256], *out = NULL;
	struct cloudlet_config *c = parse_ok("workload-name = 'hello'\nlanguage = 'python'\n"
					     "action = 'prepare-and-run'\n[build]\n"
					     "source-code-path = 'main.py'\n");
	FILE *f;

	assert_non_null(mkdtemp(dir));
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	/* Not next to the config, not in the current directory. */
	assert_int_equal(cloudlet_find_source(c, dir, &out, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "main.py not found (looked in"));
	/* Next to the config file. */
	snprintf(path, sizeof(path), "%s/main.py", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(cloudlet_find_source(c, dir, &out, err, sizeof(err)), 0);
	assert_string_equal(out, path);
	free(out);
	/* Relative to the current directory when the config's directory lacks it. */
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(cloudlet_find_source(c, "/nonexistent", &out, err, sizeof(err)), 0);
	assert_string_equal(out, "main.py");
	free(out);
	assert_int_equal(cloudlet_find_source(c, "", &out, err, sizeof(err)), 0);
	free(out);
	assert_int_equal(chdir(cwd), 0);
	/* Absolute paths as they are. */
	free(c->source_path);
	c->source_path = strdup(path);
	assert_int_equal(cloudlet_find_source(c, "/elsewhere", &out, err, sizeof(err)), 0);
	assert_string_equal(out, path);
	free(out);
	unlink(path);
	assert_int_equal(cloudlet_find_source(c, "/elsewhere", &out, err, sizeof(err)), -ENOENT);
	rmdir(dir);
	cloudlet_destroy(c);
}

static void test_spec_json(void **state)
{
	(void)state;
	struct fn_spec s;
	json_t *j;
	char *text;

	fn_spec_init(&s);
	assert_int_equal(fn_set_string(&s.name, "echo"), 0);
	assert_int_equal(fn_set_string(&s.runtime, "python"), 0);
	assert_int_equal(fn_set_string(&s.mode, "exec"), 0);
	assert_int_equal(fn_spec_parse_env(&s, "A=1"), 0);
	assert_int_equal(fn_spec_parse_env(&s, "B=x=y"), 0);
	assert_int_equal(fn_spec_parse_env(&s, "A=2"), 0); /* replaces */
	assert_int_equal(fn_spec_parse_env(&s, "E="), 0);
	assert_int_equal(fn_spec_parse_env(&s, "noequals"), -EINVAL);
	assert_int_equal(fn_spec_parse_env(&s, "1A=x"), -EINVAL);
	assert_int_equal(fn_spec_parse_env(&s, "=x"), -EINVAL);
	s.memory_mib = 256;
	s.timeout_ms = 1500;
	s.keep_alive_ms = 600000;
	s.min_instances = 0;
	assert_int_equal(fn_spec_to_json(&s, "QUJD", &j), 0);
	text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
	assert_string_equal(text,
			    "{\"code\":\"QUJD\",\"env\":{\"A\":\"2\",\"B\":\"x=y\",\"E\":\"\"},"
			    "\"keep_alive\":600,\"memory\":256,\"min_instances\":0,"
			    "\"mode\":\"exec\",\"name\":\"echo\",\"runtime\":\"python\","
			    "\"timeout\":1.5}");
	free(text);
	json_decref(j);
	fn_spec_clear(&s);
	assert_true(fn_name_ok("a"));
	assert_true(fn_name_ok("0-a_b"));
	assert_false(fn_name_ok(""));
	assert_false(fn_name_ok("-a"));
	assert_false(fn_name_ok("A"));
	assert_false(fn_name_ok("a.b"));
	assert_false(
		fn_name_ok("a234567890123456789012345678901234567890123456789012345678901234"));
	assert_true(fn_name_ok("a23456789012345678901234567890123456789012345678901234567890123"));
	fn_spec_clear(NULL);
}

/* Fills buf with labels of the given lengths joined by dots. */
static char *labels(char *buf, const size_t *len, size_t n)
{
	char *p = buf;

	for (size_t i = 0; i < n; i++) {
		if (i)
			*p++ = '.';
		memset(p, 'a' + (char)i, len[i]);
		p += len[i];
	}
	*p = '\0';
	return buf;
}

/* The CLI's search domains follow kiln's one rule (common/dnsname.c). */
static bool domain_ok(const char *d)
{
	return d && dnsname_ok(d, strlen(d));
}

static void test_spec_dns(void **state)
{
	(void)state;
	static const size_t l63[] = {63}, l64[] = {64}, l253[] = {63, 63, 63, 61},
			    l254[] = {63, 63, 63, 62};
	struct fn_spec s;
	json_t *j;
	char *text, buf[300];

	fn_spec_init(&s);
	assert_int_equal(fn_set_string(&s.name, "echo"), 0);
	assert_int_equal(fn_set_string(&s.network, "egress"), 0);
	/* Unset: left out of the JSON, so kilnd's default nameserver applies. */
	assert_int_equal(fn_spec_to_json(&s, NULL, &j), 0);
	assert_null(json_object_get(j, "dns"));
	assert_null(json_object_get(j, "dns_search"));
	json_decref(j);
	assert_true(fn_spec_dns_allowed(&s));

	assert_int_equal(fn_spec_add_dns(&s, "10.0.0.2"), 0);
	assert_int_equal(fn_spec_add_dns(&s, "1.1.1.1"), 0);
	assert_int_equal(fn_spec_add_dns(&s, "999.1.1.1"), -EINVAL);
	assert_int_equal(fn_spec_add_dns(&s, "1.2.3"), -EINVAL);
	assert_int_equal(fn_spec_add_dns(&s, ""), -EINVAL);
	assert_int_equal(fn_spec_add_dns(&s, "1.2.3.4 "), -EINVAL);
	assert_int_equal(fn_spec_add_dns(&s, "::1"), -EINVAL);
	assert_int_equal(fn_spec_add_dns(&s, NULL), -EINVAL);
	assert_int_equal(s.n_dns, 2);
	assert_int_equal(fn_spec_add_dns_search(&s, "corp.example"), 0);
	assert_int_equal(fn_spec_add_dns_search(&s, "kiln.test"), 0);
	assert_int_equal(fn_spec_to_json(&s, NULL, &j), 0);
	text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(text, "{\"dns\":[\"10.0.0.2\",\"1.1.1.1\"],"
				  "\"dns_search\":[\"corp.example\",\"kiln.test\"],"
				  "\"name\":\"echo\",\"network\":\"egress\"}");
	free(text);
	json_decref(j);

	/* At most 3 nameservers. */
	assert_int_equal(fn_spec_add_dns(&s, "8.8.8.8"), 0);
	assert_int_equal(fn_spec_add_dns(&s, "8.8.4.4"), -E2BIG);
	assert_int_equal(s.n_dns, 3);

	/* Domains: labels of 1..63 of letters, digits, inner '-'. */
	assert_true(domain_ok("a"));
	assert_true(domain_ok("Corp-1.example"));
	assert_true(domain_ok(labels(buf, l63, 1)));
	assert_true(domain_ok(labels(buf, l253, 4)));
	assert_false(domain_ok(labels(buf, l254, 4)));
	assert_false(domain_ok(labels(buf, l64, 1)));
	assert_false(domain_ok(""));
	assert_false(domain_ok("a..b"));
	assert_false(domain_ok("-a.b"));
	assert_false(domain_ok("a-.b"));
	assert_false(domain_ok("a b"));
	assert_false(domain_ok(".a"));
	assert_false(domain_ok("a."));
	assert_false(domain_ok("a_b"));
	assert_false(domain_ok(NULL));
	assert_int_equal(fn_spec_add_dns_search(&s, "a..b"), -EINVAL);
	assert_int_equal(fn_spec_add_dns_search(&s, "-a.b"), -EINVAL);
	assert_int_equal(fn_spec_add_dns_search(&s, "a b"), -EINVAL);
	assert_int_equal(fn_spec_add_dns_search(&s, labels(buf, l64, 1)), -EINVAL);
	/* At most 6 domains. */
	for (int i = 0; i < 4; i++)
		assert_int_equal(fn_spec_add_dns_search(&s, "x.test"), 0);
	assert_int_equal(fn_spec_add_dns_search(&s, "seven.test"), -E2BIG);
	assert_int_equal(s.n_dns_search, 6);
	fn_spec_clear(&s);
	assert_int_equal(s.n_dns + s.n_dns_search, 0);

	/* At most 255 characters joined with spaces: 253 + 1 + 1 fits, one
	 * more domain does not. */
	assert_int_equal(fn_spec_add_dns_search(&s, labels(buf, l253, 4)), 0);
	assert_int_equal(fn_spec_add_dns_search(&s, "b"), 0);
	assert_int_equal(fn_spec_add_dns_search(&s, "c"), -E2BIG);
	assert_int_equal(s.n_dns_search, 2);

	/* dns and dns_search need network egress. */
	assert_false(fn_spec_dns_allowed(&s));
	assert_int_equal(fn_set_string(&s.network, "none"), 0);
	assert_false(fn_spec_dns_allowed(&s));
	assert_int_equal(fn_set_string(&s.network, "egress"), 0);
	assert_true(fn_spec_dns_allowed(&s));
	fn_spec_clear(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_config),
		cmocka_unit_test(test_minimal_and_warnings),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_find_source),
		cmocka_unit_test(test_spec_json),
		cmocka_unit_test(test_spec_dns),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
