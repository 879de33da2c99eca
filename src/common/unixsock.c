/* unixsock.c - listening unix stream sockets at a path. */
#include "common/unixsock.h"

#include "common/log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Removes a socket file nobody accepts on; refuses anything else. */
static int unixsock_remove_stale(const struct sockaddr_un *sa, const char *who)
{
	struct stat st;
	int fd, ret;

	if (lstat(sa->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		log_error("%s: %s exists and is not a socket", who, sa->sun_path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ret = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	close(fd);
	if (ret == 0) {
		log_error("%s: %s is in use by another process", who, sa->sun_path);
		return -EADDRINUSE;
	}
	if (unlink(sa->sun_path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/* A temporary name for the socket in path's directory, so the socket can
 * appear at path only once it listens. False when it would not fit. */
static bool unixsock_tmp_name(const char *path, char *tmp, size_t size)
{
	static unsigned seq;
	const char *slash = strrchr(path, '/');
	int dirlen = slash ? (int)(slash - path + 1) : 0;
	int n = snprintf(tmp, size, "%.*s.kiln-%x-%x.sock", dirlen, path, (unsigned)getpid(),
			 __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));

	return n > 0 && (size_t)n < size;
}

int unixsock_listen(const char *path, const char *who, int backlog, ino_t *ino)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char bound[sizeof(sa.sun_path)];
	struct stat st;
	int fd, ret;

	if (!path || !*path || strlen(path) >= sizeof(sa.sun_path)) {
		log_error("%s: the socket path must be 1 to %zu bytes", who,
			  sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	ret = unixsock_remove_stale(&sa, who);
	if (ret < 0)
		return ret;
	/* Bind and listen under a temporary name, then rename: a client that
	 * sees the file at path can connect at once (never ECONNREFUSED). */
	if (!unixsock_tmp_name(path, bound, sizeof(bound)))
		memcpy(bound, path, strlen(path) + 1);
	memcpy(sa.sun_path, bound, strlen(bound) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		goto out_log;
	}
	if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		goto out_close;
	}
	if (listen(fd, backlog) < 0 || (strcmp(bound, path) && rename(bound, path) < 0)) {
		ret = -errno;
		unlink(bound);
		goto out_close;
	}
	if (ino)
		*ino = stat(path, &st) == 0 ? st.st_ino : 0;
	return fd;

out_close:
	close(fd);
out_log:
	log_error("%s: cannot listen on %s: %s", who, path, strerror(-ret));
	return ret;
}

void unixsock_unlink_own(const char *path, ino_t ino)
{
	struct stat st;

	if (path && ino && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == ino)
		unlink(path);
}

void unixsock_close_own(int fd, const char *path, ino_t ino)
{
	if (fd < 0)
		return;
	close(fd);
	unixsock_unlink_own(path, ino);
}
