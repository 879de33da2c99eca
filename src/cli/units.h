/* units.h - the quantities users type: durations ("30s", "10m", "2h",
 * "1m30s", "500ms", "1.5s"), memory sizes ("128", "128M", "1Gi") and
 * bounded integers; and elapsed times printed back. */
#ifndef KILN_CLI_UNITS_H
#define KILN_CLI_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* Parses a duration into milliseconds: one or more NUMBER UNIT pairs with
 * units ms, s, m, h ("1h30m", "2.5s"), or a bare non-negative number meaning
 * seconds ("30", "0.5"). Numbers are decimal with an optional fraction;
 * whitespace, signs and exponents are not accepted. Returns 0, -EINVAL for
 * bad syntax or a value finer than a millisecond, -ERANGE past 1000 days. */
int units_parse_duration_ms(const char *s, int64_t *ms);

/* Parses a memory size into MiB: a plain integer is MiB; suffixes M, Mi,
 * MB, MiB mean MiB and G, Gi, GB, GiB mean GiB (kiln counts in binary
 * units). Returns 0, -EINVAL, -ERANGE past 1 TiB. */
int units_parse_memory_mib(const char *s, int64_t *mib);

/* Parses a decimal integer in [min, max] (no sign unless min < 0, no
 * blanks). Returns 0, -EINVAL for bad syntax, -ERANGE out of the range. */
int units_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);

/* Formats an elapsed time: "0.4s", "12.3s", "2m05s", "1h02m". */
void units_format_elapsed(int64_t ms, char *buf, size_t size);

/* Formats milliseconds as a duration that units_parse_duration_ms reads
 * back: "30s", "1.5s", "250ms", "10m", "2h". */
void units_format_duration(int64_t ms, char *buf, size_t size);

#endif
