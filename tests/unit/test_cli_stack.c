/* test_cli_stack.c - stack files (kiln.yml) parsed with libyaml
 * (cli/stack.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cli/stack.h"

static struct stack *parse_ok(const char *text, const char *base)
{
	struct stack *s = NULL;
	char err[512];
	int rc = stack_parse(text, strlen(text), "kiln.yml", base, &s, err, sizeof(err));

	if (rc)
		print_error("unexpected error: %s\n", err);
	assert_int_equal(rc, 0);
	assert_non_null(s);
	return s;
}

static void parse_fails(const char *text, const char *want)
{
	struct stack *s = (struct stack *)(uintptr_t)1;
	char err[512];
	int rc = stack_parse(text, strlen(text), "kiln.yml", "", &s, err, sizeof(err));

	if (rc == 0 || !strstr(err, want))
		print_error("got rc %d: '%s', wanted '%s'\n", rc, rc ? err : "", want);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(err, want));
	assert_ptr_equal(s, (struct stack *)(uintptr_t)1);
}

static void test_full_stack(void **state)
{
	(void)state;
	struct stack *s = parse_ok("version: 1.0\n"
				   "provider:\n"
				   "  name: kiln\n"
				   "  gateway: http://127.0.0.1:9999\n"
				   "functions:\n"
				   "  echo:\n"
				   "    runtime: python\n"
				   "    handler: handler.handle\n"
				   "    code: ./echo\n"
				   "    environment:\n"
				   "      GREETING: hello\n"
				   "      COUNT: 3\n"
				   "      EMPTY: ''\n"
				   "    memory: 256M\n"
				   "    vcpus: 2\n"
				   "    timeout: 1m30s\n"
				   "    concurrency: 4\n"
				   "    queue_timeout: 500ms\n"
				   "    min: 1\n"
				   "    max: 3\n"
				   "    keep_alive: 2m\n"
				   "  shell:\n"
				   "    runtime: sh\n"
				   "    code: /abs/shell\n"
				   "    mode: exec\n"
				   "    timeout: 30\n"
				   "    min_instances: 0\n"
				   "    max_instances: 5\n",
				   "/srv/proj");
	const struct fn_spec *e, *sh;

	assert_string_equal(s->version, "1.0");
	assert_string_equal(s->provider_name, "kiln");
	assert_string_equal(s->gateway, "http://127.0.0.1:9999");
	assert_int_equal(s->n_fns, 2);
	e = &s->fns[0];
	assert_string_equal(e->name, "echo");
	assert_string_equal(e->runtime, "python");
	assert_string_equal(e->handler, "handler.handle");
	assert_string_equal(e->code, "/srv/proj/./echo");
	assert_null(e->mode);
	assert_int_equal(e->n_env, 3);
	assert_string_equal(e->env[0].key, "GREETING");
	assert_string_equal(e->env[0].value, "hello");
	assert_string_equal(e->env[1].value, "3");
	assert_string_equal(e->env[2].value, "");
	assert_int_equal(e->memory_mib, 256);
	assert_int_equal(e->vcpus, 2);
	assert_int_equal(e->timeout_ms, 90000);
	assert_int_equal(e->concurrency, 4);
	assert_int_equal(e->queue_timeout_ms, 500);
	assert_int_equal(e->min_instances, 1);
	assert_int_equal(e->max_instances, 3);
	assert_int_equal(e->keep_alive_ms, 120000);
	sh = &s->fns[1];
	assert_string_equal(sh->code, "/abs/shell"); /* absolute: unchanged */
	assert_string_equal(sh->mode, "exec");
	assert_null(sh->handler);
	assert_int_equal(sh->timeout_ms, 30000);
	assert_int_equal(sh->memory_mib, -1); /* unset: kilnd's default */
	assert_int_equal(sh->keep_alive_ms, -1);
	assert_int_equal(sh->max_instances, 5);
	stack_destroy(s);
	stack_destroy(NULL);
}

static void test_minimal_and_nulls(void **state)
{
	(void)state;
	struct stack *s = parse_ok("functions:\n"
				   "  f1: {runtime: sh, code: f1, handler: ~, memory: null}\n",
				   "");

	assert_null(s->version);
	assert_null(s->gateway);
	assert_string_equal(s->fns[0].code, "f1"); /* no base directory: as written */
	assert_null(s->fns[0].handler);
	assert_int_equal(s->fns[0].memory_mib, -1);
	stack_destroy(s);
}

static void test_error_positions(void **state)
{
	(void)state;
	/* A bad value on line 7 names line 7 and its column. */
	parse_fails("version: 1.0\n"
		    "functions:\n"
		    "  echo:\n"
		    "    runtime: python\n"
		    "    code: ./echo\n"
		    "    memory: 128\n"
		    "    timeout: soon\n",
		    "kiln.yml:7:14: echo.timeout: 'soon' is not a duration");
	/* A YAML syntax error on line 7. */
	parse_fails("version: 1.0\n"
		    "functions:\n"
		    "  echo:\n"
		    "    runtime: python\n"
		    "    code: ./echo\n"
		    "    memory: 128\n"
		    "   bad indentation: [\n",
		    "kiln.yml:7:");
	parse_fails("functions:\n  echo:\n    runtime: python\n    code: x\n    colour: red\n",
		    "kiln.yml:5:5: function echo: unknown setting 'colour'");
	parse_fails("function:\n  echo: {}\n", "kiln.yml:1:1: unknown key 'function'");
	parse_fails("functions:\n  Echo:\n    runtime: python\n    code: x\n",
		    "kiln.yml:2:3: 'Echo' is not a valid function name");
	parse_fails("functions:\n  echo:\n    code: x\n", "kiln.yml:2:3: function echo: runtime is "
							  "required");
	parse_fails("functions:\n  echo:\n    runtime: sh\n", "code is required");
	parse_fails("functions:\n  echo:\n    runtime: sh\n    code: a\n    code_path: /b\n",
		    "not both");
	parse_fails("functions:\n  echo:\n    runtime: [sh]\n    code: a\n",
		    "kiln.yml:3:14: echo.runtime must be a value, not a list");
	parse_fails("functions:\n  echo:\n    runtime: sh\n    code: a\n    memory: lots\n",
		    "kiln.yml:5:13: memory: 'lots' is not a size");
	parse_fails("functions:\n  echo:\n    runtime: sh\n    code: a\n    vcpus: -1\n",
		    "echo.vcpus: '-1' is not a whole number");
	parse_fails("functions:\n  echo:\n    runtime: sh\n    code: a\n    environment:\n"
		    "      1BAD: x\n",
		    "kiln.yml:6:7: environment: not a valid variable name");
	parse_fails("functions:\n  echo:\n    runtime: sh\n    code: a\n    environment: [A]\n",
		    "environment must be a mapping");
	parse_fails("functions:\n  a: {runtime: sh, code: a}\n  a: {runtime: sh, code: a}\n",
		    "kiln.yml:3:3: function a is defined twice");
	parse_fails("functions: {}\n", "functions is empty");
	parse_fails("version: 1\n", "no functions");
	parse_fails("- a\n- b\n", "a stack file is a mapping");
	parse_fails("", "the stack file is empty");
	parse_fails("provider:\n  name: kiln\n  url: x\nfunctions:\n  a: {runtime: sh, code: a}\n",
		    "kiln.yml:3:3: provider: unknown setting 'url'");
	parse_fails("functions:\n  a: {runtime: sh, code: a}\n---\nfunctions: {}\n",
		    "more than one YAML document");
	parse_fails("functions:\n  a: {runtime: \"sh\\0\", code: a}\n", "NUL");
	parse_fails("functions:\n  a: {runtime: sh, code: a}\n  b: *nowhere\n",
		    "YAML syntax error");
	parse_fails("functions:\n  a: {runtime: sh, code: \"\xff\"}\n", "YAML syntax error");
}

static void test_dns(void **state)
{
	(void)state;
	struct stack *s = parse_ok("functions:\n"
				   "  a:\n"
				   "    runtime: sh\n"
				   "    code: a\n"
				   "    network: egress\n"
				   "    dns: [10.0.0.2, \"1.1.1.1\"]\n"
				   "    dns_search:\n"
				   "      - corp.example\n"
				   "      - kiln.test\n"
				   "  b:\n"
				   "    runtime: sh\n"
				   "    code: b\n"
				   "    network: egress\n"
				   "    dns: 10.0.0.3\n" /* one value: a list of one */
				   "    dns_search: ~\n"
				   "  c: {runtime: sh, code: c}\n",
				   "");
	const struct fn_spec *a = &s->fns[0], *b = &s->fns[1], *c = &s->fns[2];
	json_t *j;
	char *text;

	assert_int_equal(a->n_dns, 2);
	assert_string_equal(a->dns[0], "10.0.0.2");
	assert_string_equal(a->dns[1], "1.1.1.1");
	assert_int_equal(a->n_dns_search, 2);
	assert_string_equal(a->dns_search[1], "kiln.test");
	assert_int_equal(fn_spec_to_json(a, NULL, &j), 0);
	text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(text, "{\"dns\":[\"10.0.0.2\",\"1.1.1.1\"],"
				  "\"dns_search\":[\"corp.example\",\"kiln.test\"],"
				  "\"name\":\"a\",\"network\":\"egress\",\"runtime\":\"sh\"}");
	free(text);
	json_decref(j);
	assert_int_equal(b->n_dns, 1);
	assert_string_equal(b->dns[0], "10.0.0.3");
	assert_int_equal(b->n_dns_search, 0);
	/* Unset: not in the JSON, so kilnd's defaults apply. */
	assert_int_equal(fn_spec_to_json(c, NULL, &j), 0);
	assert_null(json_object_get(j, "dns"));
	assert_null(json_object_get(j, "dns_search"));
	json_decref(j);
	stack_destroy(s);

#define FN "functions:\n  a:\n    runtime: sh\n    code: a\n    network: egress\n"
	parse_fails(FN "    dns: [999.1.1.1]\n",
		    "kiln.yml:6:11: a.dns: '999.1.1.1' is not an IPv4 address");
	parse_fails(FN "    dns: [10.0.0.2, 1.2.3]\n", "kiln.yml:6:21: a.dns: '1.2.3' is not");
	parse_fails(FN "    dns: ['']\n", "a.dns: '' is not an IPv4 address");
	parse_fails(FN "    dns: [1.1.1.1, 1.1.1.2, 1.1.1.3, 1.1.1.4]\n",
		    "kiln.yml:6:38: a.dns: more than 3 nameservers");
	parse_fails(FN "    dns: {a: 1}\n", "kiln.yml:6:10: a.dns must be a list of values, not a "
					    "mapping");
	parse_fails(FN "    dns: [[1.1.1.1]]\n", "a.dns: each item must be a value, not a list");
	parse_fails(FN "    dns_search: [a..b]\n",
		    "kiln.yml:6:18: a.dns_search: 'a..b' is not a domain");
	parse_fails(FN "    dns_search: [-a.b]\n", "'-a.b' is not a domain");
	parse_fails(FN "    dns_search: ['a b']\n", "'a b' is not a domain");
	parse_fails(FN "    dns_search: "
		       "[a234567890123456789012345678901234567890123456789012345678901234.b]\n",
		    "is not a domain");
	parse_fails(FN "    dns_search: [a, b, c, d, e, f, g]\n",
		    "kiln.yml:6:36: a.dns_search: more than 6 domains");
	parse_fails(FN "    dns_search: \"a\\0b\"\n", "NUL");
#undef FN
	/* Without network: egress, pointing at the key. */
	parse_fails("functions:\n  a:\n    runtime: sh\n    code: a\n    dns: [1.1.1.1]\n",
		    "kiln.yml:5:5: function a: dns needs network: egress");
	parse_fails("functions:\n  a:\n    runtime: sh\n    network: none\n    code: a\n"
		    "    dns_search: corp.example\n",
		    "kiln.yml:6:5: function a: dns_search needs network: egress");
	/* An empty list is not set: no network needed. */
	s = parse_ok("functions:\n  a: {runtime: sh, code: a, dns: [], dns_search: ~}\n", "");
	assert_int_equal(s->fns[0].n_dns + s->fns[0].n_dns_search, 0);
	stack_destroy(s);
}

static void test_release(void **state)
{
	(void)state;
	struct stack *s = parse_ok("functions:\n"
				   "  a: {runtime: rust, code: a, release: false}\n"
				   "  b: {runtime: c, code: b, release: yes}\n"
				   "  c: {runtime: c, code: c, release: ~}\n",
				   "");
	json_t *j;

	assert_int_equal(s->fns[0].release, 0);
	assert_int_equal(s->fns[1].release, 1);
	assert_int_equal(s->fns[2].release, -1);
	assert_int_equal(fn_spec_to_json(&s->fns[0], NULL, &j), 0);
	assert_true(json_is_false(json_object_get(j, "release")));
	json_decref(j);
	/* Unset: not in the JSON, kilnd's default (optimised) applies. */
	assert_int_equal(fn_spec_to_json(&s->fns[2], NULL, &j), 0);
	assert_null(json_object_get(j, "release"));
	json_decref(j);
	stack_destroy(s);
	parse_fails("functions:\n  a:\n    runtime: c\n    code: a\n    release: maybe\n",
		    "kiln.yml:5:14: a.release: 'maybe' is not true or false");
	parse_fails("functions:\n  a: {runtime: c, code: a, release: [true]}\n",
		    "a.release must be true or false, not a list");
}

static void test_load_relative_to_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/kiln-stack-XXXXXX", path[64], err[256];
	struct stack *s = NULL;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/kiln.yml", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("functions:\n  hello:\n    runtime: python\n    code: ./hello\n", f);
	fclose(f);
	assert_int_equal(stack_load(path, &s, err, sizeof(err)), 0);
	assert_non_null(strstr(s->fns[0].code, dir));
	assert_non_null(strstr(s->fns[0].code, "/./hello"));
	stack_destroy(s);
	unlink(path);
	assert_int_equal(stack_load(path, &s, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "No such file"));
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_stack),
		cmocka_unit_test(test_minimal_and_nulls),
		cmocka_unit_test(test_error_positions),
		cmocka_unit_test(test_dns),
		cmocka_unit_test(test_release),
		cmocka_unit_test(test_load_relative_to_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
