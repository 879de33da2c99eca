/* profile.c - a sampling profile of the guest (profile.h). */
#include "vmm/profile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

int profile_init(struct profile *p)
{
	memset(p, 0, sizeof(*p));
	p->timer_fd = -1;
	atomic_init(&p->on, false);
	atomic_init(&p->next, 0);
	p->rips = calloc(PROFILE_MAX_SAMPLES, sizeof(*p->rips));
	if (!p->rips)
		return -ENOMEM;
	p->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (p->timer_fd < 0) {
		int err = -errno;

		free(p->rips);
		p->rips = NULL;
		return err;
	}
	return 0;
}

void profile_fini(struct profile *p)
{
	if (p->timer_fd >= 0)
		close(p->timer_fd);
	p->timer_fd = -1;
	free(p->rips);
	p->rips = NULL;
	atomic_store(&p->on, false);
}

int profile_start(struct profile *p, unsigned int hz)
{
	struct itimerspec its = {0};
	long ns;

	if (hz < 1 || hz > PROFILE_MAX_HZ)
		return -EINVAL;
	if (p->timer_fd < 0 || !p->rips)
		return -ENODEV;
	ns = 1000000000L / (long)hz;
	its.it_interval.tv_sec = ns / 1000000000L;
	its.it_interval.tv_nsec = ns % 1000000000L;
	its.it_value = its.it_interval;
	atomic_store(&p->next, 0);
	if (timerfd_settime(p->timer_fd, 0, &its, NULL) < 0)
		return -errno;
	p->hz = hz;
	atomic_store(&p->on, true);
	return 0;
}

void profile_stop(struct profile *p)
{
	struct itimerspec off = {0};

	if (!atomic_load(&p->on))
		return;
	atomic_store(&p->on, false);
	if (p->timer_fd >= 0)
		timerfd_settime(p->timer_fd, 0, &off, NULL);
}

int profile_fd(const struct profile *p)
{
	return atomic_load(&p->on) ? p->timer_fd : -1;
}

bool profile_tick(struct profile *p)
{
	uint64_t n;

	if (read(p->timer_fd, &n, sizeof(n)) != (ssize_t)sizeof(n))
		return false;
	return atomic_load(&p->on);
}

void profile_record(struct profile *p, uint64_t rip)
{
	uint_fast32_t i;

	if (!atomic_load_explicit(&p->on, memory_order_relaxed) || !p->rips)
		return;
	i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
	if (i < PROFILE_MAX_SAMPLES)
		p->rips[i] = rip;
}

/* Heapsort with qsort's interface. Not qsort: glibc's asks the kernel for
 * the machine's memory size (sysinfo) on large arrays, which the control
 * thread's seccomp filter does not allow. */
static void profile_swap(unsigned char *a, unsigned char *b, size_t size)
{
	for (size_t i = 0; i < size; i++) {
		unsigned char t = a[i];

		a[i] = b[i];
		b[i] = t;
	}
}

static void profile_sift(unsigned char *base, size_t root, size_t n, size_t size,
			 int (*cmp)(const void *, const void *))
{
	for (;;) {
		size_t child = 2 * root + 1;

		if (child >= n)
			return;
		if (child + 1 < n && cmp(base + child * size, base + (child + 1) * size) < 0)
			child++;
		if (cmp(base + root * size, base + child * size) >= 0)
			return;
		profile_swap(base + root * size, base + child * size, size);
		root = child;
	}
}

static void profile_sort(void *v, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
	unsigned char *base = v;

	for (size_t i = n / 2; i-- > 0;)
		profile_sift(base, i, n, size, cmp);
	for (size_t end = n; end-- > 1;) {
		profile_swap(base, base + end * size, size);
		profile_sift(base, 0, end, size, cmp);
	}
}

static int profile_cmp_rip(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int profile_cmp_hit(const void *a, const void *b)
{
	const struct profile_hit *x = a, *y = b;

	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return x->rip < y->rip ? -1 : x->rip > y->rip;
}

int profile_collect(struct profile *p, struct profile_hit **out, size_t *nout, uint64_t *total,
		    uint64_t *dropped)
{
	uint_fast32_t claimed = atomic_load(&p->next);
	size_t n = claimed < PROFILE_MAX_SAMPLES ? claimed : PROFILE_MAX_SAMPLES, k = 0;
	uint64_t *sorted;
	struct profile_hit *hits;

	*out = NULL;
	*nout = 0;
	*total = n;
	*dropped = claimed - n;
	if (n == 0 || !p->rips)
		return 0;
	sorted = malloc(n * sizeof(*sorted));
	hits = malloc(n * sizeof(*hits));
	if (!sorted || !hits) {
		free(sorted);
		free(hits);
		return -ENOMEM;
	}
	memcpy(sorted, p->rips, n * sizeof(*sorted));
	profile_sort(sorted, n, sizeof(*sorted), profile_cmp_rip);
	for (size_t i = 0; i < n; i++) {
		if (k > 0 && hits[k - 1].rip == sorted[i])
			hits[k - 1].count++;
		else
			hits[k++] = (struct profile_hit){.rip = sorted[i], .count = 1};
	}
	free(sorted);
	profile_sort(hits, k, sizeof(*hits), profile_cmp_hit);
	*out = hits;
	*nout = k;
	return 0;
}
