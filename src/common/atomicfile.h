/* atomicfile.h - replacing a small file whole: readers see the old
 * contents or the new, never a part (written to PATH.tmp, renamed over
 * PATH). No fsync: for files that are rebuilt when lost (a guest's
 * resolv.conf, a snapshot's working set, a copy of one). */
#ifndef KILN_COMMON_ATOMICFILE_H
#define KILN_COMMON_ATOMICFILE_H

#include <stddef.h>
#include <sys/types.h>

/* Writes buf[0..len) to path through path.tmp (created with `mode`,
 * renamed over path; removed on failure). Returns 0 or -errno
 * (-ENAMETOOLONG when path.tmp does not fit PATH_MAX). */
int atomicfile_write(const char *path, const void *buf, size_t len, mode_t mode);

#endif
