/* bytebuf.h - a growable byte queue: appended at the end, consumed from the
 * front. Used by kiln-init for connection and pipe buffers. */
#ifndef KILN_AGENT_BYTEBUF_H
#define KILN_AGENT_BYTEBUF_H

#include <stddef.h>
#include <stdint.h>

struct bytebuf {
	uint8_t *data; /* owned; NULL until the first reserve */
	size_t off;    /* first unconsumed byte */
	size_t len;    /* end of the bytes held (data[off..len)) */
	size_t cap;
};

/* Bytes held. */
static inline size_t bytebuf_used(const struct bytebuf *b)
{
	return b->len - b->off;
}

/* Makes room for n more bytes at the end (moving the unconsumed bytes to the
 * front or growing). Returns a pointer to that room (owned by b, valid until
 * the next call), or NULL when memory runs out. */
uint8_t *bytebuf_reserve(struct bytebuf *b, size_t n);

/* Marks n bytes of the reserved room as written. */
void bytebuf_commit(struct bytebuf *b, size_t n);

/* Appends n bytes. Returns 0 or -ENOMEM. */
int bytebuf_append(struct bytebuf *b, const void *p, size_t n);

/* Drops n bytes from the front; frees nothing. */
void bytebuf_consume(struct bytebuf *b, size_t n);

/* Empties it; frees its memory when it holds more than keep bytes of
 * capacity (so a 64 MiB frame does not stay allocated). */
void bytebuf_reset(struct bytebuf *b, size_t keep);

/* Frees the memory; b is empty afterwards. */
void bytebuf_free(struct bytebuf *b);

#endif
