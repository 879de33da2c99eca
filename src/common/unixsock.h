/* unixsock.h - listening unix stream sockets at a path, as kiln-vmm's vsock
 * and control sockets use them. */
#ifndef KILN_COMMON_UNIXSOCK_H
#define KILN_COMMON_UNIXSOCK_H

#include <sys/types.h>

/* Listens on a new non-blocking, close-on-exec unix stream socket at `path`.
 * A stale socket file there (nobody accepting) is replaced; a live socket or
 * any other kind of file is refused. `who` names the caller in the one error
 * message logged on failure ("--api-sock", "virtio-vsock"). The socket is
 * bound and listening under a temporary name in the same directory before
 * it is renamed to `path`, so whoever sees the file can connect at once
 * (when the temporary name would be too long, it is bound at `path`
 * directly). Returns the
 * listening fd (the caller owns it) and, when `ino` is not NULL, the socket
 * file's inode (so the owner can later remove only its own file), or -errno:
 * -ENAMETOOLONG, -EEXIST (not a socket), -EADDRINUSE (in use), or what
 * socket/bind/listen/rename said. */
int unixsock_listen(const char *path, const char *who, int backlog, ino_t *ino);

/* Removes the socket file at `path` if it is still the one with inode `ino`
 * (another process may have replaced it). Never fails loudly. */
void unixsock_unlink_own(const char *path, ino_t ino);

/* Closes the listening socket `fd` (nothing when it is negative) and removes
 * its file as unixsock_unlink_own does. */
void unixsock_close_own(int fd, const char *path, ino_t ino);

#endif
