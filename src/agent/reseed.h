/* reseed.h - what kiln-init does after a snapshot restore: fresh entropy for
 * the kernel's pool and the wall clock (ENTROPY and TIME frames). */
#ifndef KILN_AGENT_RESEED_H
#define KILN_AGENT_RESEED_H

#include <stddef.h>
#include <stdint.h>

/* Mixes len bytes (at most RESEED_MAX_ENTROPY) into the kernel's pool with
 * ioctl(RNDADDENTROPY) on /dev/urandom, crediting 8 bits per byte (they come
 * from the host's own random source). Returns 0 or -errno (-EPERM without
 * CAP_SYS_ADMIN, -EINVAL for an empty or oversized buffer). */
int reseed_entropy(const void *data, size_t len);

#define RESEED_MAX_ENTROPY 4096

/* Sets CLOCK_REALTIME to ns nanoseconds since the epoch. Returns 0 or -errno. */
int reseed_clock(uint64_t ns);

#endif
