/* bytebuf.c - a growable byte queue. */
#include "agent/bytebuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint8_t *bytebuf_reserve(struct bytebuf *b, size_t n)
{
	size_t used = bytebuf_used(b), cap;
	uint8_t *p;

	if (b->cap - b->len >= n)
		return b->data + b->len;
	if (b->off > 0) {
		memmove(b->data, b->data + b->off, used);
		b->off = 0;
		b->len = used;
		if (b->cap - b->len >= n)
			return b->data + b->len;
	}
	if (n > SIZE_MAX / 2 - used)
		return NULL;
	cap = b->cap ? b->cap : 4096;
	while (cap - used < n)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p)
		return NULL;
	b->data = p;
	b->cap = cap;
	return b->data + b->len;
}

void bytebuf_commit(struct bytebuf *b, size_t n)
{
	b->len += n;
}

int bytebuf_append(struct bytebuf *b, const void *p, size_t n)
{
	uint8_t *d;

	if (n == 0)
		return 0;
	d = bytebuf_reserve(b, n);
	if (!d)
		return -ENOMEM;
	memcpy(d, p, n);
	b->len += n;
	return 0;
}

void bytebuf_consume(struct bytebuf *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len)
		b->off = b->len = 0;
}

void bytebuf_reset(struct bytebuf *b, size_t keep)
{
	b->off = b->len = 0;
	if (b->cap > keep)
		bytebuf_free(b);
}

void bytebuf_free(struct bytebuf *b)
{
	free(b->data);
	b->data = NULL;
	b->off = b->len = b->cap = 0;
}
