/* console.c - kiln-init's console: standard fds, session, draining. */
#include "agent/console.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "common/log.h"

#define CONSOLE_PATH "/dev/console"

static bool console_fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

int console_setup(bool new_session, bool *is_ctty)
{
	*is_ctty = false;
	if (!console_fd_is_open(STDIN_FILENO)) {
		/* Lowest free descriptor: this is fd 0. */
		int fd = open(CONSOLE_PATH, O_RDWR | O_NOCTTY);

		if (fd < 0)
			return -errno;
		if (fd != STDIN_FILENO) {
			if (dup2(fd, STDIN_FILENO) < 0) {
				int err = errno;

				close(fd);
				return -err;
			}
			close(fd);
		}
	}
	for (int fd = STDOUT_FILENO; fd <= STDERR_FILENO; fd++) {
		if (!console_fd_is_open(fd))
			dup2(STDIN_FILENO, fd);
	}
	if (!new_session)
		return 0;
	/* Fails only when already a group leader; then stay in that session. */
	if (setsid() < 0)
		return 0;
	/* Not a terminal, or one that belongs to another session: no job control. */
	if (ioctl(STDIN_FILENO, TIOCSCTTY, 0) < 0)
		return 0;
	*is_ctty = true;
	return 0;
}

void console_drain(void)
{
	if (tcdrain(STDOUT_FILENO) < 0 && errno != ENOTTY && errno != EINVAL)
		log_debug("tcdrain: %s", strerror(errno));
}
