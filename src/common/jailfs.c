/* jailfs.c - mirrors of host paths inside a jail's root (see jailfs.h). */
#include "common/jailfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int jailfs_check_path(const char *path)
{
	static const char *const reserved[] = {JAILFS_VM_DIR + 1, "proc", JAILFS_EXE + 1};
	size_t len = strlen(path);

	if (path[0] != '/' || len < 2 || len >= PATH_MAX)
		return -EINVAL;
	for (const char *p = path + 1;;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);

		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return -EINVAL;
		if (p == path + 1)
			for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
				if (strlen(reserved[i]) == n && strncmp(p, reserved[i], n) == 0)
					return -EINVAL;
		if (!e)
			break;
		p = e + 1;
	}
	return 0;
}

int jailfs_mkpath(int rootfd, const char *path, bool dir)
{
	char buf[PATH_MAX];
	int fd, r = 0;
	char *p, *e;

	if (jailfs_check_path(path))
		return -EINVAL;
	memcpy(buf, path, strlen(path) + 1);
	fd = dup(rootfd);
	if (fd < 0)
		return -errno;
	for (p = buf + 1;; p = e + 1) {
		int next;
		bool last;

		e = strchr(p, '/');
		last = !e;
		if (e)
			*e = 0;
		if (last && !dir) {
			next = openat(fd, p, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0444);
			if (next < 0) {
				r = -errno;
				break;
			}
			close(next);
			break;
		}
		if (mkdirat(fd, p, 0755) && errno != EEXIST) {
			r = -errno;
			break;
		}
		next = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0) {
			r = -errno;
			break;
		}
		close(fd);
		fd = next;
		if (last)
			break;
	}
	close(fd);
	return r;
}
