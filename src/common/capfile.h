/* capfile.h - an output file that never grows past a cap. When a write
 * would take it past, the file is emptied and starts again with a marker
 * line: for a guest's console or a VMM's log the newest output is the
 * useful part, and a guest printing forever must not fill the host's disk.
 * Only regular files written sequentially (not O_APPEND by others) are
 * capped; pipes, terminals and /dev/null pass through untouched. Not
 * thread-safe: the caller serialises the writes it accounts for. */
#ifndef KILN_COMMON_CAPFILE_H
#define KILN_COMMON_CAPFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct capfile {
	int fd;
	uint64_t max;  /* bytes, marker included */
	uint64_t size; /* bytes written since the file was (re)started */
	bool active;   /* a regular file and max > 0 */
	uint64_t restarts;
};

/* The marker written at the start of a restarted file. */
#define CAPFILE_MARKER "[kiln: output passed its size cap; earlier output dropped]\n"

/* Starts accounting for fd (not owned) with cap max (0: none); the file's
 * current offset counts as written. A max under 4 KiB is raised to 4 KiB. */
void capfile_init(struct capfile *c, int fd, uint64_t max);

/* Makes room for len bytes about to be written: when size + len would pass
 * max, truncates the file, seeks to 0 and writes the marker. Returns how
 * many of the len bytes may be written now (len, or max minus the marker
 * when one write is larger than the whole cap: the rest is dropped; 0 when
 * the file cannot be truncated: the output is dropped, never let grow). */
size_t capfile_reserve(struct capfile *c, size_t len);

/* Accounts n bytes written. */
void capfile_wrote(struct capfile *c, size_t n);

#endif
