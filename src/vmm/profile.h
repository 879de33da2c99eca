/* profile.h - a sampling profile of the guest: where its vCPUs are.
 *
 * While a profile runs, a timer (a timerfd the main thread polls) fires `hz`
 * times a second; at each tick the main thread kicks every vCPU thread out
 * of KVM_RUN, and each vCPU thread, back with EINTR, reads its RIP
 * (KVM_GET_REGS) and records it here before it runs the guest again. The
 * samples say where guest time goes, kernel code included, which on a host
 * that emulates the guest kernel is most of a cold start (docs/snapshots.md).
 * Sampling costs one exit per vCPU per tick; nothing runs while no profile
 * is on.
 *
 * Threads: profile_record() from vCPU threads (lock-free), everything else
 * from the main thread.
 */
#ifndef KILN_VMM_PROFILE_H
#define KILN_VMM_PROFILE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROFILE_MAX_HZ	    10000
#define PROFILE_MAX_SAMPLES 65536 /* a minute at 1 kHz; later samples are dropped */

struct profile {
	atomic_bool on;
	atomic_uint_fast32_t next; /* slots claimed (may exceed PROFILE_MAX_SAMPLES) */
	uint64_t *rips;		   /* PROFILE_MAX_SAMPLES entries */
	int timer_fd;		   /* the tick; -1 when unavailable */
	unsigned int hz;
};

/* One address and how often it was sampled (profile_collect). */
struct profile_hit {
	uint64_t rip;
	uint32_t count;
};

/* Prepares `p` (off). Returns 0 or -errno (no memory, no timerfd). */
int profile_init(struct profile *p);

/* Releases what profile_init took. Accepts a profile it never set up
 * (zeroed, timer_fd -1) and one that failed half way. */
void profile_fini(struct profile *p);

/* Drops earlier samples and starts sampling `hz` times a second (1 to
 * PROFILE_MAX_HZ). Returns 0, -EINVAL for a bad rate, or -errno from the
 * timer. */
int profile_start(struct profile *p, unsigned int hz);

/* Stops sampling (the samples stay until the next start). */
void profile_stop(struct profile *p);

/* Returns the fd the main thread polls for ticks, or -1 while off. */
int profile_fd(const struct profile *p);

/* Reads the timer after it polled readable. Returns true when the vCPUs
 * should be kicked for a sample. */
bool profile_tick(struct profile *p);

/* Records one vCPU's instruction pointer. Any thread, lock-free. */
void profile_record(struct profile *p, uint64_t rip);

/* Aggregates the samples taken so far by address, most frequent first, into
 * a new array the caller frees (*out, *nout distinct addresses; NULL, 0 when
 * none). Call while sampling is stopped. *total is every sample kept,
 * *dropped those beyond PROFILE_MAX_SAMPLES. Returns 0 or -ENOMEM. */
int profile_collect(struct profile *p, struct profile_hit **out, size_t *nout, uint64_t *total,
		    uint64_t *dropped);

#endif
