/* test_toml.c - the strict TOML subset parser (common/toml.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/toml.h"

static struct toml_value *parse_ok(const char *text)
{
	struct toml_value *root = NULL;
	struct toml_error err;
	int rc = toml_parse(text, strlen(text), &root, &err);

	if (rc)
		print_error("unexpected error: line %d col %d: %s\n", err.line, err.column,
			    err.msg);
	assert_int_equal(rc, 0);
	assert_non_null(root);
	return root;
}

/* Checks that text fails on `line` with a message containing `needle`. */
static void parse_fails(const char *text, int line, const char *needle)
{
	struct toml_value *root = (struct toml_value *)(uintptr_t)0x1;
	struct toml_error err;
	int rc = toml_parse(text, strlen(text), &root, &err);

	if (rc == 0)
		print_error("parsed, but should fail: %s\n", text);
	assert_int_equal(rc, -EINVAL);
	assert_ptr_equal(root, (struct toml_value *)(uintptr_t)0x1);
	if (err.line != line || !strstr(err.msg, needle))
		print_error("got line %d: %s (wanted line %d: %s)\n", err.line, err.msg, line,
			    needle);
	assert_int_equal(err.line, line);
	assert_non_null(strstr(err.msg, needle));
}

static void test_cloudlet_config(void **state)
{
	(void)state;
	const char *text = "workload-name = \"fibonacci\"\n"
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
	struct toml_value *root = parse_ok(text);
	const struct toml_value *server, *build;
	int64_t port;
	bool release;

	assert_int_equal(toml_type_of(root), TOML_TABLE);
	assert_int_equal(toml_table_size(root), 5);
	assert_string_equal(toml_table_key(root, 0), "workload-name");
	assert_string_equal(toml_string(toml_get(root, "workload-name")), "fibonacci");
	assert_string_equal(toml_string(toml_get(root, "language")), "rust");
	server = toml_get(root, "server");
	assert_int_equal(toml_type_of(server), TOML_TABLE);
	assert_int_equal(toml_line(server), 5);
	assert_int_equal(toml_integer(toml_get(server, "port"), &port), 0);
	assert_int_equal(port, 50051);
	build = toml_get(root, "build");
	assert_string_equal(toml_string(toml_get(build, "source-code-path")),
			    "/home/user/cloudlet/src/cli/examples/main.rs");
	assert_int_equal(toml_boolean(toml_get(build, "release"), &release), 0);
	assert_true(release);
	assert_int_equal(toml_line(toml_get(build, "release")), 11);
	/* Wrong-type accessors. */
	assert_null(toml_string(toml_get(server, "port")));
	assert_int_equal(toml_integer(toml_get(build, "release"), &port), -EINVAL);
	assert_int_equal(toml_boolean(NULL, &release), -EINVAL);
	assert_null(toml_get(root, "missing"));
	assert_null(toml_get(NULL, "x"));
	assert_null(toml_table_key(root, 5));
	toml_free(root);
	toml_free(NULL);
}

static void test_strings(void **state)
{
	(void)state;
	struct toml_value *root = parse_ok("a = \"q\\\"b\\\\s\\nn\\tt\"\n"
					   "b = 'C:\\path\\no \"escapes\"'\n"
					   "c = \"\\u00e9\\U0001F600\"\n"
					   "d = \"\"\n"
					   "e = \"caf\xc3\xa9 # not a comment\" # a comment\n"
					   "f = \"\\b\\f\\r\"\n"
					   "g = \"tab\there\"\n");

	assert_string_equal(toml_string(toml_get(root, "a")), "q\"b\\s\nn\tt");
	assert_string_equal(toml_string(toml_get(root, "b")), "C:\\path\\no \"escapes\"");
	assert_string_equal(toml_string(toml_get(root, "c")), "\xc3\xa9\xf0\x9f\x98\x80");
	assert_string_equal(toml_string(toml_get(root, "d")), "");
	assert_string_equal(toml_string(toml_get(root, "e")), "caf\xc3\xa9 # not a comment");
	assert_string_equal(toml_string(toml_get(root, "f")), "\b\f\r");
	assert_string_equal(toml_string(toml_get(root, "g")), "tab\there");
	toml_free(root);
}

static void test_integers_booleans(void **state)
{
	(void)state;
	struct toml_value *root = parse_ok("a = 0\nb = +17\nc = -5\nd = 1_000_000\n"
					   "e = 9223372036854775807\nf = -9223372036854775808\n"
					   "g = true\nh = false\ni = -0\n");
	int64_t v;
	bool b;

	assert_int_equal(toml_integer(toml_get(root, "a"), &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(toml_integer(toml_get(root, "b"), &v), 0);
	assert_int_equal(v, 17);
	assert_int_equal(toml_integer(toml_get(root, "c"), &v), 0);
	assert_int_equal(v, -5);
	assert_int_equal(toml_integer(toml_get(root, "d"), &v), 0);
	assert_int_equal(v, 1000000);
	assert_int_equal(toml_integer(toml_get(root, "e"), &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(toml_integer(toml_get(root, "f"), &v), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(toml_boolean(toml_get(root, "g"), &b), 0);
	assert_true(b);
	assert_int_equal(toml_boolean(toml_get(root, "h"), &b), 0);
	assert_false(b);
	assert_int_equal(toml_integer(toml_get(root, "i"), &v), 0);
	assert_int_equal(v, 0);
	toml_free(root);
}

static void test_keys_and_tables(void **state)
{
	(void)state;
	struct toml_value *root = parse_ok("# leading comment\r\n"
					   "\"quoted key\" = 1\r\n"
					   "'lit.key' = 2\n"
					   "a.b.c = 3\n"
					   "a . b . d = 4\n"
					   "[ x . \"y z\" ]\n"
					   "k = 5\n"
					   "[x]\n"
					   "j = 6\n"
					   "[fruit]\n"
					   "apple.color = \"red\"\n"
					   "[fruit.apple.texture]\n"
					   "smooth = true\n"
					   "[  empty  ]   # nothing here\n"
					   "\"\" = 7\n");
	const struct toml_value *a, *b, *x, *tex;
	int64_t v;

	assert_int_equal(toml_integer(toml_get(root, "quoted key"), &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(toml_integer(toml_get(root, "lit.key"), &v), 0);
	assert_int_equal(v, 2);
	a = toml_get(root, "a");
	b = toml_get(a, "b");
	assert_int_equal(toml_table_size(b), 2);
	assert_int_equal(toml_integer(toml_get(b, "d"), &v), 0);
	assert_int_equal(v, 4);
	x = toml_get(root, "x");
	assert_int_equal(toml_integer(toml_get(toml_get(x, "y z"), "k"), &v), 0);
	assert_int_equal(v, 5);
	assert_int_equal(toml_integer(toml_get(x, "j"), &v), 0);
	assert_int_equal(v, 6);
	assert_int_equal(toml_line(x), 8);
	tex = toml_get(toml_get(toml_get(root, "fruit"), "apple"), "texture");
	assert_non_null(toml_get(tex, "smooth"));
	assert_int_equal(toml_integer(toml_get(toml_get(root, "empty"), ""), &v), 0);
	assert_int_equal(v, 7);
	toml_free(root);
}

static void test_empty_and_bom(void **state)
{
	(void)state;
	struct toml_value *root = parse_ok("");

	assert_int_equal(toml_table_size(root), 0);
	toml_free(root);
	root = parse_ok("\xef\xbb\xbf"
			"a = 1");
	assert_int_equal(toml_table_size(root), 1);
	toml_free(root);
	root = parse_ok("\n\n   \t\n# only comments\n");
	assert_int_equal(toml_table_size(root), 0);
	toml_free(root);
}

static void test_unsupported(void **state)
{
	(void)state;
	parse_fails("a = 1\nb = [1, 2]\n", 2, "arrays are not supported");
	parse_fails("a = {x = 1}\n", 1, "inline tables are not supported");
	parse_fails("a = 1\n\nb = 1.5\n", 3, "floats are not supported");
	parse_fails("b = 1e6\n", 1, "floats are not supported");
	parse_fails("b = -inf\n", 1, "floats are not supported");
	parse_fails("b = nan\n", 1, "floats are not supported");
	parse_fails("d = 1979-05-27\n", 1, "dates and times are not supported");
	parse_fails("d = 07:32:00\n", 1, "dates and times are not supported");
	parse_fails("d = 1979-05-27T07:32:00Z\n", 1, "dates and times are not supported");
	parse_fails("h = 0xff\n", 1, "only decimal integers");
	parse_fails("s = \"\"\"multi\nline\"\"\"\n", 1, "multi-line strings");
	parse_fails("s = '''x'''\n", 1, "multi-line strings");
	parse_fails("[[servers]]\n", 1, "arrays of tables");
}

static void test_syntax_errors(void **state)
{
	(void)state;
	parse_fails("a = 1\na = 2\n", 2, "duplicate key 'a'");
	parse_fails("[s]\nx = 1\n[s]\n", 3, "defined twice");
	parse_fails("a.b = 1\na = 2\n", 2, "duplicate key");
	parse_fails("a = 1\na.b = 2\n", 2, "already defined as a integer");
	parse_fails("a = 1\n[a]\n", 2, "already defined");
	parse_fails("[a.b]\nx = 1\n[a]\nb.y = 2\n", 4, "defined elsewhere");
	parse_fails("[t1]\nt2.t3.v = 0\n[t1.t2]\n", 3, "defined twice");
	parse_fails("a = \n", 1, "expected a value");
	parse_fails("a\n", 1, "expected '='");
	parse_fails("= 1\n", 1, "expected a key");
	parse_fails("a = 1 b = 2\n", 1, "expected the end of the line");
	parse_fails("a = \"open\n", 1, "unterminated string");
	parse_fails("a = \"bad \\x escape\"\n", 1, "invalid escape");
	parse_fails("a = \"\\u12\"\n", 1, "hexadecimal digits");
	parse_fails("a = \"\\ud800\"\n", 1, "not a Unicode scalar value");
	parse_fails("a = \"\\u0000\"\n", 1, "NUL");
	parse_fails("a = 01\n", 1, "leading zeros");
	parse_fails("a = 1__0\n", 1, "between digits");
	parse_fails("a = _1\n", 1, "expected a value");
	parse_fails("a = 1_\n", 1, "between digits");
	parse_fails("a = 9223372036854775808\n", 1, "64-bit range");
	parse_fails("a = -\n", 1, "expected a value");
	parse_fails("a = yes\n", 1, "expected a value, found 'yes'");
	parse_fails("a = True\n", 1, "expected a value");
	parse_fails("x = 1\n[a\n", 2, "expected ']'");
	parse_fails("[]\n", 1, "expected a key");
	parse_fails("a = 1\rb = 2\n", 1, "carriage return");
	parse_fails("a = \"x\x01y\"\n", 1, "control character");
	parse_fails("a = 1 # bell\x07\n", 1, "control character");
	parse_fails("ok = 1\na = \"\xc3\x28\"\n", 2, "invalid UTF-8");
	parse_fails("a = \"\xed\xa0\x80\"\n", 1, "invalid UTF-8");
	parse_fails("a.b.\n", 1, "expected a key");
	parse_fails("a = 'x'y\n", 1, "expected the end of the line");
}

static void test_column_and_binary(void **state)
{
	(void)state;
	struct toml_value *root = (struct toml_value *)(uintptr_t)0x1;
	struct toml_error err;
	const char nul[] = "a = 1\nb\0 = 2\n";

	assert_int_equal(toml_parse("a = 1\n  b = [1]\n", 16, &root, &err), -EINVAL);
	assert_int_equal(err.line, 2);
	assert_int_equal(err.column, 7);
	assert_int_equal(toml_parse(nul, sizeof(nul) - 1, &root, &err), -EINVAL);
	assert_int_equal(err.line, 2);
	assert_non_null(strstr(err.msg, "NUL"));
	/* Not NUL-terminated: only len bytes are read. */
	assert_int_equal(toml_parse("a = 12345", 5, &root, NULL), 0);
	{
		int64_t v;

		assert_int_equal(toml_integer(toml_get(root, "a"), &v), 0);
		assert_int_equal(v, 1);
	}
	toml_free(root);
}

static void test_limits(void **state)
{
	(void)state;
	struct toml_value *root = NULL;
	size_t n = 70 * 2 + 8;
	char *deep = malloc(n);

	assert_non_null(deep);
	deep[0] = '\0';
	for (int i = 0; i < 70; i++)
		strcat(deep, i ? ".a" : "a");
	strcat(deep, " = 1\n");
	assert_int_equal(toml_parse(deep, strlen(deep), &root, NULL), -E2BIG);
	free(deep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cloudlet_config),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_integers_booleans),
		cmocka_unit_test(test_keys_and_tables),
		cmocka_unit_test(test_empty_and_bom),
		cmocka_unit_test(test_unsupported),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_column_and_binary),
		cmocka_unit_test(test_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
