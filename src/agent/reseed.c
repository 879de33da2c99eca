/* reseed.c - fresh entropy and wall-clock time after a restore. */
#include "agent/reseed.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

int reseed_entropy(const void *data, size_t len)
{
	struct rand_pool_info *info;
	int fd, ret = 0;

	if (len == 0 || len > RESEED_MAX_ENTROPY)
		return -EINVAL;
	/* struct rand_pool_info ends with a flexible array of u32. */
	info = calloc(1, sizeof(*info) + len + sizeof(uint32_t));
	if (!info)
		return -ENOMEM;
	info->entropy_count = (int)(len * 8);
	info->buf_size = (int)len;
	memcpy(info->buf, data, len);
	fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto out_free;
	}
	if (ioctl(fd, RNDADDENTROPY, info) < 0) {
		ret = -errno;
	} else if (ioctl(fd, RNDRESEEDCRNG) < 0 && errno != EPERM && errno != ENODATA) {
		/* Mixing into the input pool alone leaves the output generator as
		 * the snapshot had it, so two VMs restored from one snapshot
		 * would read the same bytes until the next scheduled reseed:
		 * reseed now. (EPERM: not root, as in host-side tests; ENODATA:
		 * the generator is not ready yet and will seed from the pool.) */
		ret = -errno;
	}
	close(fd);
out_free:
	explicit_bzero(info, sizeof(*info) + len);
	free(info);
	return ret;
}

int reseed_clock(uint64_t ns)
{
	struct timespec ts;

	if (ns / 1000000000ULL > (uint64_t)INT64_MAX)
		return -EINVAL;
	ts.tv_sec = (time_t)(ns / 1000000000ULL);
	ts.tv_nsec = (long)(ns % 1000000000ULL);
	return clock_settime(CLOCK_REALTIME, &ts) < 0 ? -errno : 0;
}
