/* clock.h - the monotonic clock (CLOCK_MONOTONIC), for deadlines and
 * timings. Header only: kiln-init uses it without linking anything. */
#ifndef KILN_COMMON_CLOCK_H
#define KILN_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Returns CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t clock_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Returns CLOCK_MONOTONIC in microseconds. */
static inline int64_t clock_mono_us(void)
{
	return (int64_t)(clock_mono_ns() / 1000);
}

/* Returns CLOCK_MONOTONIC in milliseconds. */
static inline int64_t clock_mono_ms(void)
{
	return (int64_t)(clock_mono_ns() / 1000000);
}

#endif
