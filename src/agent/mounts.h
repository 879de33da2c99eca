/* mounts.h - the file systems kiln-init mounts before anything runs. */
#ifndef KILN_AGENT_MOUNTS_H
#define KILN_AGENT_MOUNTS_H

/* Mounts devtmpfs on /dev, proc on /proc, sysfs on /sys and tmpfs on /tmp and
 * /run, skipping each place where something is already mounted (the kernel
 * may have mounted /dev). A missing mount point is created; when that fails
 * (a read-only root) or the mount fails, that one is skipped with a warning.
 * Returns 0 when all are in place, or the -errno of the last failure. */
int mounts_setup(void);

#endif
