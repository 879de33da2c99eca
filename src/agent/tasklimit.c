/* tasklimit.c - kernel.threads-max for the guest (see tasklimit.h). */
#include "agent/tasklimit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tasklimit_apply(const char *sysctl_path, uint32_t max)
{
	char buf[32];
	unsigned long cur;
	ssize_t n;
	char *end;
	int fd, len, r = 0;

	if (max == 0)
		return -EINVAL;
	fd = open(sysctl_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	r = n < 0 ? -errno : 0;
	close(fd);
	if (n <= 0)
		return n < 0 ? r : -EIO;
	buf[n] = '\0';
	errno = 0;
	cur = strtoul(buf, &end, 10);
	if (errno || end == buf || (*end != '\n' && *end != '\0'))
		return -EINVAL;
	if (cur <= max)
		return 0;
	/* As `echo N > file` does; procfs ignores O_TRUNC, a test file needs it. */
	fd = open(sysctl_path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	len = snprintf(buf, sizeof(buf), "%u\n", max);
	errno = 0;
	if (write(fd, buf, (size_t)len) != len)
		r = errno ? -errno : -EIO;
	close(fd);
	return r;
}
