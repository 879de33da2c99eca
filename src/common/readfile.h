/* readfile.h - reading a whole small regular file into memory, with a
 * bound: the one loop behind kiln-vmm's snapshot state files and working
 * sets and kilnd's store and file copies. */
#ifndef KILN_COMMON_READFILE_H
#define KILN_COMMON_READFILE_H

#include <stddef.h>
#include <stdint.h>

/* Reads the regular file open on fd (its position at the start) into a
 * new buffer of its size plus a NUL byte (*out, the caller frees; *len
 * the bytes read: fewer than its size when it shrank meanwhile). Does not
 * close fd. Returns 0, -EINVAL (not a regular file), -EFBIG (larger than
 * max bytes), -ENOMEM, or -errno from fstat or read. */
int readfile_fd(int fd, size_t max, uint8_t **out, size_t *len);

#endif
