/* test_agent_trace.c - kiln-init's per-connection timeline (agent/trace.h):
 * events kept in order, relative microseconds, overflow counted, the text
 * truncated at a line boundary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "agent/trace.c" /* kiln-init is not in the unit-test libraries */
#include "common/proto.h"

static void test_trace_formats_events(void **state)
{
	struct trace t;
	char buf[512];
	size_t n;

	(void)state;
	trace_restart(&t, TRACE_ACCEPT, 1000000);
	trace_add(&t, TRACE_RECV, PROTO_ENTROPY, 64, 1250000);
	trace_add(&t, TRACE_QUEUED, PROTO_ACK, 16, 1300000);
	trace_add(&t, TRACE_WROTE, 0, 16, 1400000);
	trace_add(&t, TRACE_RECV, PROTO_INVOKE, 20, 999); /* before the start: +0 */
	n = trace_format(&t, buf, sizeof(buf));
	assert_int_equal(n, strlen(buf));
	assert_string_equal(buf, "+0 accept 0\n"
				 "+250 recv ENTROPY 64\n"
				 "+300 queued ACK 16\n"
				 "+400 wrote 16\n"
				 "+0 recv INVOKE 20\n");
}

static void test_trace_counts_what_it_drops(void **state)
{
	struct trace t;
	char buf[4096];

	(void)state;
	trace_restart(&t, TRACE_ACCEPT, 0);
	for (int i = 0; i < TRACE_MAX_EVENTS + 5; i++)
		trace_add(&t, TRACE_WROTE, 0, 1, 1000);
	assert_int_equal(t.n, TRACE_MAX_EVENTS);
	assert_int_equal(t.dropped, 6);
	trace_format(&t, buf, sizeof(buf));
	assert_non_null(strstr(buf, "\ndropped 6\n"));
}

static void test_trace_truncates_at_a_line(void **state)
{
	struct trace t;
	char buf[20];

	(void)state;
	trace_restart(&t, TRACE_ACCEPT, 0);
	trace_add(&t, TRACE_RECV, PROTO_INVOKE, 123456, 5000);
	assert_int_equal(trace_format(&t, buf, sizeof(buf)), strlen("+0 accept 0\n"));
	assert_string_equal(buf, "+0 accept 0\n");
	assert_int_equal(trace_format(&t, buf, 0), 0);
}

static void test_trace_counts_from_proc_stat(void **state)
{
	static const char stat[] = "cpu  1 2 3 4 5 6 7 0 0 0\n"
				   "cpu0 1 2 3 4 5 6 7 0 0 0\n"
				   "intr 4711 12 0 0 99\n"
				   "ctxt 815\n"
				   "btime 1700000000\n"
				   "processes 42\n"
				   "procs_running 1\n"
				   "procs_blocked 0\n"
				   "syscalls 123456\n"
				   "softirq 10 1 2 3\n";
	char buf[128];

	(void)state;
	assert_int_equal(trace_format_counts(stat, sizeof(stat) - 1, buf, sizeof(buf)),
			 strlen("counts syscalls 123456 interrupts 4711 switches 815\n"));
	assert_string_equal(buf, "counts syscalls 123456 interrupts 4711 switches 815\n");
	/* A kernel without kiln's line: no syscalls key. */
	assert_true(trace_format_counts(stat, strstr(stat, "syscalls") - stat, buf, sizeof(buf)) >
		    0);
	assert_string_equal(buf, "counts interrupts 4711 switches 815\n");
	/* Nothing to count, a buffer too short, keys only as prefixes. */
	assert_int_equal(trace_format_counts("cpu 1\n", 6, buf, sizeof(buf)), 0);
	assert_int_equal(trace_format_counts(stat, sizeof(stat) - 1, buf, 10), 0);
	assert_string_equal(buf, "");
	assert_int_equal(trace_format_counts("intrx 5\nctxtual 3\nintr\n", 23, buf, sizeof(buf)),
			 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_trace_formats_events),
		cmocka_unit_test(test_trace_counts_what_it_drops),
		cmocka_unit_test(test_trace_truncates_at_a_line),
		cmocka_unit_test(test_trace_counts_from_proc_stat),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
