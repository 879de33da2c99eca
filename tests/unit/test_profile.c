/* test_profile.c - the guest profiler's sample store (vmm/profile.c): rates
 * refused, samples kept only while on, aggregation by address, the cap, and
 * the timer really ticking. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdlib.h>

#include "vmm/profile.h"

static void test_rates_refused(void **state)
{
	struct profile p;

	(void)state;
	assert_int_equal(profile_init(&p), 0);
	assert_int_equal(profile_start(&p, 0), -EINVAL);
	assert_int_equal(profile_start(&p, PROFILE_MAX_HZ + 1), -EINVAL);
	assert_int_equal(profile_fd(&p), -1);
	profile_fini(&p);
	profile_fini(&p); /* twice is harmless */
}

static void test_off_records_nothing(void **state)
{
	struct profile p;
	struct profile_hit *hits;
	size_t n;
	uint64_t total, dropped;

	(void)state;
	assert_int_equal(profile_init(&p), 0);
	profile_record(&p, 0x1000);
	assert_int_equal(profile_collect(&p, &hits, &n, &total, &dropped), 0);
	assert_null(hits);
	assert_int_equal(n, 0);
	assert_int_equal(total, 0);
	profile_fini(&p);
}

static void test_aggregates_most_frequent_first(void **state)
{
	struct profile p;
	struct profile_hit *hits;
	size_t n;
	uint64_t total, dropped;

	(void)state;
	assert_int_equal(profile_init(&p), 0);
	assert_int_equal(profile_start(&p, 1), 0);
	profile_record(&p, 0xffffffff81000010ULL);
	profile_record(&p, 0x400000);
	profile_record(&p, 0xffffffff81000010ULL);
	profile_record(&p, 0xffffffff81000020ULL);
	profile_record(&p, 0xffffffff81000010ULL);
	profile_record(&p, 0x400000);
	profile_stop(&p);
	profile_record(&p, 0x400000); /* after the stop: not kept */
	assert_int_equal(profile_collect(&p, &hits, &n, &total, &dropped), 0);
	assert_int_equal(total, 6);
	assert_int_equal(dropped, 0);
	assert_int_equal(n, 3);
	assert_true(hits[0].rip == 0xffffffff81000010ULL && hits[0].count == 3);
	assert_true(hits[1].rip == 0x400000 && hits[1].count == 2);
	assert_true(hits[2].rip == 0xffffffff81000020ULL && hits[2].count == 1);
	free(hits);
	/* A new start drops the old samples. */
	assert_int_equal(profile_start(&p, 1), 0);
	profile_stop(&p);
	assert_int_equal(profile_collect(&p, &hits, &n, &total, &dropped), 0);
	assert_int_equal(total, 0);
	profile_fini(&p);
}

static void test_cap_counts_dropped(void **state)
{
	struct profile p;
	struct profile_hit *hits;
	size_t n;
	uint64_t total, dropped;

	(void)state;
	assert_int_equal(profile_init(&p), 0);
	assert_int_equal(profile_start(&p, 1), 0);
	for (unsigned int i = 0; i < PROFILE_MAX_SAMPLES + 5; i++)
		profile_record(&p, i % 7);
	profile_stop(&p);
	assert_int_equal(profile_collect(&p, &hits, &n, &total, &dropped), 0);
	assert_int_equal(total, PROFILE_MAX_SAMPLES);
	assert_int_equal(dropped, 5);
	assert_int_equal(n, 7);
	free(hits);
	profile_fini(&p);
}

static void test_timer_ticks(void **state)
{
	struct profile p;
	struct pollfd pfd;

	(void)state;
	assert_int_equal(profile_init(&p), 0);
	assert_int_equal(profile_start(&p, 1000), 0);
	pfd = (struct pollfd){.fd = profile_fd(&p), .events = POLLIN};
	assert_true(pfd.fd >= 0);
	assert_int_equal(poll(&pfd, 1, 2000), 1);
	assert_true(profile_tick(&p));
	profile_stop(&p);
	assert_int_equal(profile_fd(&p), -1);
	profile_fini(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rates_refused),
		cmocka_unit_test(test_off_records_nothing),
		cmocka_unit_test(test_aggregates_most_frequent_first),
		cmocka_unit_test(test_cap_counts_dropped),
		cmocka_unit_test(test_timer_ticks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
