/* test_metrics.c - Prometheus text rendering, escaping, histograms,
 * forgetting series and concurrent updates (daemon/metrics.c). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "daemon/metrics.h"

static const char *const fn_code[] = {"function", "code", NULL};
static const char *const fn_only[] = {"function", NULL};

static char *render(struct metrics *m)
{
	size_t len = 0;
	char *out = NULL;

	assert_int_equal(metrics_render(m, &out, &len), 0);
	assert_non_null(out);
	assert_int_equal(strlen(out), len);
	return out;
}

static void assert_render(struct metrics *m, const char *expected)
{
	char *out = render(m);

	if (strcmp(out, expected) != 0)
		fprintf(stderr, "got:\n%s\nexpected:\n%s\n", out, expected);
	assert_string_equal(out, expected);
	free(out);
}

static void test_empty_and_null(void **state)
{
	struct metrics *m = metrics_create();

	(void)state;
	assert_non_null(m);
	assert_render(m, "");
	metrics_destroy(m);
	metrics_destroy(NULL);
}

static void test_counter_gauge(void **state)
{
	struct metrics *m = metrics_create();
	const char *v1[] = {"echo", "200"};
	const char *v2[] = {"echo", "500"};
	const char *v3[] = {"alpha", "200"};

	(void)state;
	assert_int_equal(metrics_declare(m, "kiln_invocations_total", METRICS_COUNTER,
					 "Invocations by function and HTTP status.", fn_code, NULL,
					 0),
			 0);
	assert_int_equal(metrics_declare(m, "kiln_restores_total", METRICS_COUNTER,
					 "Snapshot restores.", NULL, NULL, 0),
			 0);
	assert_int_equal(metrics_declare(m, "kiln_memory_budget_bytes", METRICS_GAUGE,
					 "Guest memory budget.", NULL, NULL, 0),
			 0);
	assert_int_equal(metrics_declare(m, "kiln_vms", METRICS_GAUGE, "VMs by state.",
					 (const char *const[]){"state", NULL}, NULL, 0),
			 0);
	/* Redeclaring is a no-op. */
	assert_int_equal(metrics_declare(m, "kiln_vms", METRICS_GAUGE, "other", NULL, NULL, 0), 0);

	/* Before anything happened: labelless series are 0, labelled ones absent. */
	assert_render(m, "# HELP kiln_invocations_total Invocations by function and HTTP status.\n"
			 "# TYPE kiln_invocations_total counter\n"
			 "# HELP kiln_restores_total Snapshot restores.\n"
			 "# TYPE kiln_restores_total counter\n"
			 "kiln_restores_total 0\n"
			 "# HELP kiln_memory_budget_bytes Guest memory budget.\n"
			 "# TYPE kiln_memory_budget_bytes gauge\n"
			 "kiln_memory_budget_bytes 0\n"
			 "# HELP kiln_vms VMs by state.\n"
			 "# TYPE kiln_vms gauge\n");

	assert_int_equal(metrics_add(m, "kiln_invocations_total", v1, 1), 0);
	assert_int_equal(metrics_add(m, "kiln_invocations_total", v2, 1), 0);
	assert_int_equal(metrics_add(m, "kiln_invocations_total", v1, 2), 0);
	assert_int_equal(metrics_add(m, "kiln_invocations_total", v3, 1), 0);
	assert_int_equal(metrics_add(m, "kiln_restores_total", NULL, 1), 0);
	assert_int_equal(metrics_set(m, "kiln_memory_budget_bytes", NULL, 4294967296.0), 0);
	assert_int_equal(metrics_set(m, "kiln_vms", (const char *const[]){"pool"}, 2), 0);
	assert_int_equal(metrics_set(m, "kiln_vms", (const char *const[]){"busy"}, 1), 0);
	assert_int_equal(metrics_add(m, "kiln_vms", (const char *const[]){"busy"}, -1.5), 0);
	assert_int_equal(metrics_set(m, "kiln_vms", (const char *const[]){"pool"}, 3), 0);

	assert_render(m, "# HELP kiln_invocations_total Invocations by function and HTTP status.\n"
			 "# TYPE kiln_invocations_total counter\n"
			 "kiln_invocations_total{function=\"echo\",code=\"200\"} 3\n"
			 "kiln_invocations_total{function=\"echo\",code=\"500\"} 1\n"
			 "kiln_invocations_total{function=\"alpha\",code=\"200\"} 1\n"
			 "# HELP kiln_restores_total Snapshot restores.\n"
			 "# TYPE kiln_restores_total counter\n"
			 "kiln_restores_total 1\n"
			 "# HELP kiln_memory_budget_bytes Guest memory budget.\n"
			 "# TYPE kiln_memory_budget_bytes gauge\n"
			 "kiln_memory_budget_bytes 4294967296\n"
			 "# HELP kiln_vms VMs by state.\n"
			 "# TYPE kiln_vms gauge\n"
			 "kiln_vms{state=\"pool\"} 3\n"
			 "kiln_vms{state=\"busy\"} -0.5\n");
	metrics_destroy(m);
}

static void test_errors(void **state)
{
	struct metrics *m = metrics_create();
	const double desc[] = {1, 0.5};
	const double dup[] = {1, 1};
	const double nan_b[] = {NAN};
	const double inf_b[] = {INFINITY};
	const char *const too_many[] = {"a", "b", "c", "d", "e", NULL};
	const char *const dup_labels[] = {"a", "a", NULL};
	const char *const le[] = {"le", NULL};
	const char *const reserved[] = {"__x", NULL};
	const char *const colon[] = {"a:b", NULL};
	const char *v[] = {"echo", "200"};

	(void)state;
	assert_int_equal(metrics_declare(m, "", METRICS_COUNTER, "h", NULL, NULL, 0), -EINVAL);
	assert_int_equal(metrics_declare(m, NULL, METRICS_COUNTER, "h", NULL, NULL, 0), -EINVAL);
	assert_int_equal(metrics_declare(m, "1abc", METRICS_COUNTER, "h", NULL, NULL, 0), -EINVAL);
	assert_int_equal(metrics_declare(m, "a-b", METRICS_COUNTER, "h", NULL, NULL, 0), -EINVAL);
	assert_int_equal(metrics_declare(m, "a b", METRICS_COUNTER, "h", NULL, NULL, 0), -EINVAL);
	assert_int_equal(metrics_declare(m, "x", (enum metrics_type)7, "h", NULL, NULL, 0),
			 -EINVAL);
	assert_int_equal(metrics_declare(m, "x", METRICS_COUNTER, "h", too_many, NULL, 0), -EINVAL);
	assert_int_equal(metrics_declare(m, "x", METRICS_COUNTER, "h", dup_labels, NULL, 0),
			 -EINVAL);
	assert_int_equal(metrics_declare(m, "x", METRICS_COUNTER, "h", reserved, NULL, 0), -EINVAL);
	assert_int_equal(metrics_declare(m, "x", METRICS_COUNTER, "h", colon, NULL, 0), -EINVAL);
	assert_int_equal(metrics_declare(m, "x", METRICS_HISTOGRAM, "h", le, NULL, 0), -EINVAL);
	assert_int_equal(metrics_declare(m, "x", METRICS_HISTOGRAM, "h", NULL, desc, 2), -EINVAL);
	assert_int_equal(metrics_declare(m, "x", METRICS_HISTOGRAM, "h", NULL, dup, 2), -EINVAL);
	assert_int_equal(metrics_declare(m, "x", METRICS_HISTOGRAM, "h", NULL, nan_b, 1), -EINVAL);
	assert_int_equal(metrics_declare(m, "x", METRICS_HISTOGRAM, "h", NULL, inf_b, 1), -EINVAL);
	assert_int_equal(metrics_declare(m, "x", METRICS_COUNTER, "h", NULL, desc, 1), -EINVAL);
	assert_int_equal(metrics_declare(m, "x", METRICS_HISTOGRAM, "h", NULL, NULL, 1), -EINVAL);
	assert_render(m, "");

	assert_int_equal(metrics_declare(m, "c_total", METRICS_COUNTER, "h", fn_code, NULL, 0), 0);
	assert_int_equal(metrics_declare(m, "g", METRICS_GAUGE, "h", NULL, NULL, 0), 0);
	assert_int_equal(metrics_declare(m, "h", METRICS_HISTOGRAM, "h", NULL, NULL, 0), 0);
	assert_int_equal(metrics_add(m, "nope", v, 1), -ENOENT);
	assert_int_equal(metrics_set(m, "nope", v, 1), -ENOENT);
	assert_int_equal(metrics_observe(m, "nope", v, 1), -ENOENT);
	assert_int_equal(metrics_add(m, "c_total", v, -1), -EINVAL);
	assert_int_equal(metrics_add(m, "c_total", v, NAN), -EINVAL);
	assert_int_equal(metrics_set(m, "c_total", v, 1), -EINVAL);
	assert_int_equal(metrics_observe(m, "c_total", v, 1), -EINVAL);
	assert_int_equal(metrics_add(m, "c_total", NULL, 1), -EINVAL);
	assert_int_equal(metrics_add(m, "c_total", (const char *[]){"echo", NULL}, 1), -EINVAL);
	assert_int_equal(metrics_observe(m, "g", NULL, 1), -EINVAL);
	assert_int_equal(metrics_add(m, "h", NULL, 1), -EINVAL);
	assert_int_equal(metrics_set(m, "h", NULL, 1), -EINVAL);
	assert_int_equal(metrics_observe(m, "h", NULL, NAN), -EINVAL);
	assert_int_equal(metrics_add(m, NULL, NULL, 1), -EINVAL);
	assert_render(m, "# HELP c_total h\n# TYPE c_total counter\n"
			 "# HELP g h\n# TYPE g gauge\ng 0\n"
			 "# HELP h h\n# TYPE h histogram\n"
			 "h_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n");
	metrics_destroy(m);
}

static void test_escaping(void **state)
{
	struct metrics *m = metrics_create();
	const char *v[] = {"a\\b\"c\nd", "\xff\xc3\xa9"};

	(void)state;
	assert_int_equal(metrics_declare(m, "esc_total", METRICS_COUNTER,
					 "Help with \\ backslash,\nnewline and \"quotes\".",
					 fn_code, NULL, 0),
			 0);
	assert_int_equal(metrics_add(m, "esc_total", v, 1), 0);
	assert_render(m,
		      "# HELP esc_total Help with \\\\ backslash,\\nnewline and \"quotes\".\n"
		      "# TYPE esc_total counter\n"
		      "esc_total{function=\"a\\\\b\\\"c\\nd\",code=\"\xef\xbf\xbd\xc3\xa9\"} 1\n");
	metrics_destroy(m);
}

static void test_numbers(void **state)
{
	struct metrics *m = metrics_create();
	static const struct {
		double v;
		const char *text;
	} cases[] = {
		{0, "0"},
		{-0.0, "0"},
		{1, "1"},
		{-3, "-3"},
		{0.1, "0.1"},
		{0.005, "0.005"},
		{1.5e-7, "1.5e-07"},
		{123456789012.0, "123456789012"},
		{1e17, "100000000000000000"},
		{1e300, "1e+300"},
		{2.0 / 3.0, "0.6666666666666666"},
		{INFINITY, "+Inf"},
		{-INFINITY, "-Inf"},
		{NAN, "NaN"},
	};
	char expected[128], *out;
	size_t i;

	(void)state;
	assert_int_equal(metrics_declare(m, "n", METRICS_GAUGE, "n", NULL, NULL, 0), 0);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(metrics_set(m, "n", NULL, cases[i].v), 0);
		snprintf(expected, sizeof(expected), "# HELP n n\n# TYPE n gauge\nn %s\n",
			 cases[i].text);
		out = render(m);
		assert_string_equal(out, expected);
		free(out);
	}
	metrics_destroy(m);
}

static void test_histogram(void **state)
{
	struct metrics *m = metrics_create();
	const double b[] = {0.005, 0.1, 1, 2.5};
	const char *cold[] = {"echo", "cold"};
	const char *warm[] = {"echo", "warm"};

	(void)state;
	assert_int_equal(metrics_declare(m, "kiln_invocation_duration_seconds", METRICS_HISTOGRAM,
					 "Call duration.",
					 (const char *const[]){"function", "start", NULL}, b, 4),
			 0);
	assert_int_equal(metrics_declare(m, "kiln_restore_duration_seconds", METRICS_HISTOGRAM,
					 "Restore duration.", NULL, b, 2),
			 0);
	assert_int_equal(metrics_observe(m, "kiln_invocation_duration_seconds", warm, 0.001), 0);
	assert_int_equal(metrics_observe(m, "kiln_invocation_duration_seconds", cold, 0.5), 0);
	assert_int_equal(metrics_observe(m, "kiln_invocation_duration_seconds", cold, 1), 0);
	assert_int_equal(metrics_observe(m, "kiln_invocation_duration_seconds", cold, 3), 0);
	assert_int_equal(metrics_observe(m, "kiln_invocation_duration_seconds", cold, 0.005), 0);
	assert_int_equal(metrics_observe(m, "kiln_restore_duration_seconds", NULL, 0.25), 0);
	assert_render(m,
		      "# HELP kiln_invocation_duration_seconds Call duration.\n"
		      "# TYPE kiln_invocation_duration_seconds histogram\n"
		      "kiln_invocation_duration_seconds_bucket{function=\"echo\",start=\"warm\","
		      "le=\"0.005\"} 1\n"
		      "kiln_invocation_duration_seconds_bucket{function=\"echo\",start=\"warm\","
		      "le=\"0.1\"} 1\n"
		      "kiln_invocation_duration_seconds_bucket{function=\"echo\",start=\"warm\","
		      "le=\"1\"} 1\n"
		      "kiln_invocation_duration_seconds_bucket{function=\"echo\",start=\"warm\","
		      "le=\"2.5\"} 1\n"
		      "kiln_invocation_duration_seconds_bucket{function=\"echo\",start=\"warm\","
		      "le=\"+Inf\"} 1\n"
		      "kiln_invocation_duration_seconds_sum{function=\"echo\",start=\"warm\"} "
		      "0.001\n"
		      "kiln_invocation_duration_seconds_count{function=\"echo\",start=\"warm\"} 1\n"
		      "kiln_invocation_duration_seconds_bucket{function=\"echo\",start=\"cold\","
		      "le=\"0.005\"} 1\n"
		      "kiln_invocation_duration_seconds_bucket{function=\"echo\",start=\"cold\","
		      "le=\"0.1\"} 1\n"
		      "kiln_invocation_duration_seconds_bucket{function=\"echo\",start=\"cold\","
		      "le=\"1\"} 3\n"
		      "kiln_invocation_duration_seconds_bucket{function=\"echo\",start=\"cold\","
		      "le=\"2.5\"} 3\n"
		      "kiln_invocation_duration_seconds_bucket{function=\"echo\",start=\"cold\","
		      "le=\"+Inf\"} 4\n"
		      "kiln_invocation_duration_seconds_sum{function=\"echo\",start=\"cold\"} "
		      "4.505\n"
		      "kiln_invocation_duration_seconds_count{function=\"echo\",start=\"cold\"} 4\n"
		      "# HELP kiln_restore_duration_seconds Restore duration.\n"
		      "# TYPE kiln_restore_duration_seconds histogram\n"
		      "kiln_restore_duration_seconds_bucket{le=\"0.005\"} 0\n"
		      "kiln_restore_duration_seconds_bucket{le=\"0.1\"} 0\n"
		      "kiln_restore_duration_seconds_bucket{le=\"+Inf\"} 1\n"
		      "kiln_restore_duration_seconds_sum 0.25\n"
		      "kiln_restore_duration_seconds_count 1\n");
	metrics_destroy(m);
}

static void test_forget(void **state)
{
	struct metrics *m = metrics_create();
	const double b[] = {1};

	(void)state;
	assert_int_equal(metrics_declare(m, "calls_total", METRICS_COUNTER, "c", fn_code, NULL, 0),
			 0);
	assert_int_equal(metrics_declare(m, "cold_total", METRICS_COUNTER, "c", fn_only, NULL, 0),
			 0);
	assert_int_equal(metrics_declare(m, "dur", METRICS_HISTOGRAM, "d", fn_only, b, 1), 0);
	assert_int_equal(metrics_declare(m, "vms", METRICS_GAUGE, "v",
					 (const char *const[]){"state", NULL}, NULL, 0),
			 0);
	assert_int_equal(metrics_add(m, "calls_total", (const char *[]){"a", "200"}, 1), 0);
	assert_int_equal(metrics_add(m, "calls_total", (const char *[]){"b", "200"}, 1), 0);
	assert_int_equal(metrics_add(m, "calls_total", (const char *[]){"a", "500"}, 1), 0);
	assert_int_equal(metrics_add(m, "cold_total", (const char *[]){"a"}, 1), 0);
	assert_int_equal(metrics_observe(m, "dur", (const char *[]){"a"}, 2), 0);
	/* A label value equal to the function name under another label stays. */
	assert_int_equal(metrics_set(m, "vms", (const char *[]){"a"}, 1), 0);

	metrics_forget(m, "function", "a");
	metrics_forget(m, "nolabel", "a");
	metrics_forget(NULL, "function", "a");
	assert_render(m, "# HELP calls_total c\n# TYPE calls_total counter\n"
			 "calls_total{function=\"b\",code=\"200\"} 1\n"
			 "# HELP cold_total c\n# TYPE cold_total counter\n"
			 "# HELP dur d\n# TYPE dur histogram\n"
			 "# HELP vms v\n# TYPE vms gauge\n"
			 "vms{state=\"a\"} 1\n");

	/* Series created after forgetting append at the end (tail is fixed up). */
	assert_int_equal(metrics_add(m, "calls_total", (const char *[]){"c", "200"}, 1), 0);
	assert_int_equal(metrics_add(m, "cold_total", (const char *[]){"a"}, 1), 0);
	metrics_forget(m, "function", "b");
	assert_int_equal(metrics_add(m, "calls_total", (const char *[]){"d", "200"}, 1), 0);
	assert_render(m, "# HELP calls_total c\n# TYPE calls_total counter\n"
			 "calls_total{function=\"c\",code=\"200\"} 1\n"
			 "calls_total{function=\"d\",code=\"200\"} 1\n"
			 "# HELP cold_total c\n# TYPE cold_total counter\n"
			 "cold_total{function=\"a\"} 1\n"
			 "# HELP dur d\n# TYPE dur histogram\n"
			 "# HELP vms v\n# TYPE vms gauge\n"
			 "vms{state=\"a\"} 1\n");
	metrics_destroy(m);
}

#define THREADS 4
#define ROUNDS	20000

static void *hammer(void *arg)
{
	struct metrics *m = arg;
	const char *fns[] = {"a", "b", "c"};
	char *out;
	size_t len;
	int i;

	for (i = 0; i < ROUNDS; i++) {
		const char *v[] = {fns[i % 3], "200"};

		if (metrics_add(m, "calls_total", v, 1) != 0)
			return (void *)1;
		if (metrics_observe(m, "dur", NULL, (i % 2) ? 0.5 : 2) != 0)
			return (void *)1;
		if (metrics_add(m, "g", NULL, 1) != 0)
			return (void *)1;
		if (i % 1000 == 0) {
			if (metrics_render(m, &out, &len) != 0)
				return (void *)1;
			free(out);
		}
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	struct metrics *m = metrics_create();
	const double b[] = {1};
	pthread_t t[THREADS];
	void *ret;
	char expected[2048];
	int i;

	(void)state;
	assert_int_equal(metrics_declare(m, "calls_total", METRICS_COUNTER, "c", fn_code, NULL, 0),
			 0);
	assert_int_equal(metrics_declare(m, "dur", METRICS_HISTOGRAM, "d", NULL, b, 1), 0);
	assert_int_equal(metrics_declare(m, "g", METRICS_GAUGE, "g", NULL, NULL, 0), 0);
	for (i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, hammer, m), 0);
	for (i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(t[i], &ret), 0);
		assert_null(ret);
	}
	/* ROUNDS is not a multiple of 3: a gets one more per thread. */
	snprintf(expected, sizeof(expected),
		 "# HELP calls_total c\n# TYPE calls_total counter\n"
		 "calls_total{function=\"a\",code=\"200\"} %d\n"
		 "calls_total{function=\"b\",code=\"200\"} %d\n"
		 "calls_total{function=\"c\",code=\"200\"} %d\n"
		 "# HELP dur d\n# TYPE dur histogram\n"
		 "dur_bucket{le=\"1\"} %d\n"
		 "dur_bucket{le=\"+Inf\"} %d\n"
		 "dur_sum %d\n"
		 "dur_count %d\n"
		 "# HELP g g\n# TYPE g gauge\n"
		 "g %d\n",
		 THREADS * 6667, THREADS * 6667, THREADS * 6666, THREADS * ROUNDS / 2,
		 THREADS * ROUNDS, THREADS * (ROUNDS / 2) * 5 / 2, /* 0.5 + 2 per pair */
		 THREADS * ROUNDS, THREADS * ROUNDS);
	assert_render(m, expected);
	metrics_destroy(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_and_null), cmocka_unit_test(test_counter_gauge),
		cmocka_unit_test(test_errors),	       cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_numbers),	       cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_forget),	       cmocka_unit_test(test_concurrent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
