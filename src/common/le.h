/* le.h - little-endian loads and stores on byte buffers: device registers,
 * virtio config space, snapshot files, archives. Byte by byte, so they work
 * at any alignment and on any host byte order. Header only: kiln-init and
 * every host program use it without linking anything. */
#ifndef KILN_COMMON_LE_H
#define KILN_COMMON_LE_H

#include <stdint.h>

/* Returns the `bytes`-byte (1..8) little-endian value at p. */
static inline uint64_t le_get(const void *p, unsigned int bytes)
{
	const uint8_t *b = p;
	uint64_t v = 0;

	for (unsigned int i = 0; i < bytes; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

/* Stores the low `bytes` (1..8) bytes of v at p, little-endian. */
static inline void le_put(void *p, uint64_t v, unsigned int bytes)
{
	uint8_t *b = p;

	for (unsigned int i = 0; i < bytes; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

/* Fixed-width forms of le_get / le_put. */
static inline uint16_t le16_get(const void *p)
{
	return (uint16_t)le_get(p, 2);
}

static inline uint32_t le32_get(const void *p)
{
	return (uint32_t)le_get(p, 4);
}

static inline uint64_t le64_get(const void *p)
{
	return le_get(p, 8);
}

static inline void le16_put(void *p, uint16_t v)
{
	le_put(p, v, 2);
}

static inline void le32_put(void *p, uint32_t v)
{
	le_put(p, v, 4);
}

static inline void le64_put(void *p, uint64_t v)
{
	le_put(p, v, 8);
}

#endif
