/* utf8.c - strict UTF-8 decoding (see utf8.h). */
#include "common/utf8.h"

size_t utf8_decode(const void *p, size_t n, uint32_t *cp)
{
	const unsigned char *s = p;
	size_t need;
	uint32_t c, min;

	if (s[0] < 0x80) {
		c = s[0];
		need = 0;
		goto out;
	}
	if ((s[0] & 0xe0) == 0xc0) {
		need = 1;
		c = s[0] & 0x1f;
		min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		need = 2;
		c = s[0] & 0x0f;
		min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		need = 3;
		c = s[0] & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n <= need)
		return 0;
	for (size_t i = 1; i <= need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
out:
	if (cp)
		*cp = c;
	return need + 1;
}
