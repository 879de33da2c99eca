/* utf8.h - strict UTF-8 decoding (RFC 3629), shared by every place that
 * checks or repairs text: the TOML parser, the CLI's terminal output, and
 * kilnd's logs and metrics. */
#ifndef KILN_COMMON_UTF8_H
#define KILN_COMMON_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decodes the sequence at s (n > 0 bytes available). Returns its length
 * (1 to 4) and, when cp is not NULL, its code point; or 0 when the bytes
 * are not valid UTF-8: a stray continuation byte, a truncated sequence, an
 * overlong form, a surrogate, or a code point above U+10FFFF. Never reads
 * past s[n - 1]. */
size_t utf8_decode(const void *s, size_t n, uint32_t *cp);

#endif
