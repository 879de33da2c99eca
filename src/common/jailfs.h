/* jailfs.h - the file tree of a kiln-vmm jail (docs/security.md "Jailer").
 *
 * A jail's root directory holds: JAILFS_VM_DIR, the VM's one writable
 * directory (its sockets and console); proc/, where kiln-jailer mounts a
 * procfs of the VM's own PID namespace; the copy of kiln-vmm it runs; and
 * "mirrors": every host file or directory the VM may read (kernel, disk
 * images, snapshots) or write (a snapshot being taken) appears at its own
 * host path inside the jail, as a bind mount made in the jail's mount
 * namespace only. Mirroring host paths keeps the paths kilnd sends
 * (and the parent path a diff snapshot records) valid inside the jail. */
#ifndef KILN_COMMON_JAILFS_H
#define KILN_COMMON_JAILFS_H

#include <stdbool.h>
#include <stddef.h>

#define JAILFS_VM_DIR  "/vm"	   /* writable by the VM's uid */
#define JAILFS_EXE     "/kiln-vmm" /* the jail's own copy of kiln-vmm */
#define JAILFS_API     JAILFS_VM_DIR "/api.sock"
#define JAILFS_VSOCK   JAILFS_VM_DIR "/vsock.sock"
#define JAILFS_CONSOLE JAILFS_VM_DIR "/console.log"

/* Checks that path may be mirrored into a jail: absolute, at most PATH_MAX,
 * no empty, "." or ".." component, and not under a name the jail uses itself
 * (/vm, /proc, /kiln-vmm). Returns 0 or -EINVAL. */
int jailfs_check_path(const char *path);

/* Creates the mirror of the host path `path` below the directory rootfd:
 * each missing parent as a 0755 directory, then `path` itself as an empty
 * directory (dir) or empty 0444 file, never following a symbolic link (an
 * existing entry of the wrong kind is -ENOTDIR/-EISDIR/-ELOOP). Existing
 * entries of the right kind are kept. Returns 0 or -errno. */
int jailfs_mkpath(int rootfd, const char *path, bool dir);

#endif
