/* units.c - durations, memory sizes and integers (see units.h). */
#include "cli/units.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define MAX_DURATION_MS (1000LL * 24 * 3600 * 1000)

/* Reads DIGITS[.DIGITS] at *p: the value scaled by 10^9 into *nano
 * (integer part at most 9 digits). Returns 0 or -EINVAL / -ERANGE. */
static int read_decimal(const char **p, int64_t *nano)
{
	const char *s = *p;
	int64_t ip = 0, frac = 0, scale = 100000000;
	int nd = 0;

	while (*s >= '0' && *s <= '9') {
		if (++nd > 9)
			return -ERANGE;
		ip = ip * 10 + (*s++ - '0');
	}
	if (*s == '.') {
		int fd = 0;

		s++;
		while (*s >= '0' && *s <= '9') {
			if (fd >= 9) {
				if (*s != '0')
					return -EINVAL; /* finer than a nanosecond */
			} else {
				frac += (*s - '0') * scale;
				scale /= 10;
			}
			fd++;
			s++;
		}
		if (fd == 0)
			return -EINVAL;
	}
	if (nd == 0)
		return -EINVAL;
	*nano = ip * 1000000000LL + frac;
	*p = s;
	return 0;
}

int units_parse_duration_ms(const char *s, int64_t *ms)
{
	int64_t total_nano_ms = 0; /* in units of 1e-9 ms */
	bool any = false;

	if (!s || !*s)
		return -EINVAL;
	while (*s) {
		int64_t v, unit_ms;
		int rc = read_decimal(&s, &v);

		if (rc)
			return rc;
		if (strncmp(s, "ms", 2) == 0) {
			unit_ms = 1;
			s += 2;
		} else if (*s == 's') {
			unit_ms = 1000;
			s++;
		} else if (*s == 'm') {
			unit_ms = 60 * 1000;
			s++;
		} else if (*s == 'h') {
			unit_ms = 3600 * 1000;
			s++;
		} else if (*s == '\0' && !any) {
			unit_ms = 1000; /* a bare number: seconds */
		} else {
			return -EINVAL;
		}
		/* v < 1e18, unit_ms <= 3.6e6: check before multiplying. */
		if (v > (INT64_MAX - total_nano_ms) / unit_ms)
			return -ERANGE;
		total_nano_ms += v * unit_ms;
		any = true;
	}
	if (total_nano_ms % 1000000000LL)
		return -EINVAL;
	if (total_nano_ms / 1000000000LL > MAX_DURATION_MS)
		return -ERANGE;
	*ms = total_nano_ms / 1000000000LL;
	return 0;
}

int units_parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
	bool neg = false;
	int64_t v = 0;

	if (!s || !*s)
		return -EINVAL;
	if (*s == '-' && min < 0) {
		neg = true;
		s++;
	}
	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (v > (INT64_MAX - 9) / 10)
			return -ERANGE;
		v = v * 10 + (*s - '0');
	}
	if (neg)
		v = -v;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int units_parse_memory_mib(const char *s, int64_t *mib)
{
	static const struct {
		const char *suffix;
		int64_t mult;
	} sfx[] = {
		{"", 1},     {"M", 1},	   {"Mi", 1},	 {"MB", 1},	{"MiB", 1},
		{"G", 1024}, {"Gi", 1024}, {"GB", 1024}, {"GiB", 1024},
	};
	char digits[24];
	size_t n = 0;
	int64_t v;
	int rc;

	if (!s)
		return -EINVAL;
	while (s[n] >= '0' && s[n] <= '9')
		n++;
	if (n == 0 || n >= sizeof(digits))
		return n == 0 ? -EINVAL : -ERANGE;
	memcpy(digits, s, n);
	digits[n] = '\0';
	rc = units_parse_int(digits, 0, 1024 * 1024, &v);
	if (rc)
		return rc;
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		if (strcmp(s + n, sfx[i].suffix) == 0) {
			if (v * sfx[i].mult > 1024 * 1024)
				return -ERANGE;
			*mib = v * sfx[i].mult;
			return 0;
		}
	}
	return -EINVAL;
}

void units_format_elapsed(int64_t ms, char *buf, size_t size)
{
	if (ms < 0)
		ms = 0;
	if (ms < 60 * 1000)
		snprintf(buf, size, "%lld.%llds", (long long)(ms / 1000),
			 (long long)(ms % 1000 / 100));
	else if (ms < 3600 * 1000)
		snprintf(buf, size, "%lldm%02llds", (long long)(ms / 60000),
			 (long long)(ms / 1000 % 60));
	else
		snprintf(buf, size, "%lldh%02lldm", (long long)(ms / 3600000),
			 (long long)(ms / 60000 % 60));
}

void units_format_duration(int64_t ms, char *buf, size_t size)
{
	if (ms % 3600000 == 0 && ms >= 3600000)
		snprintf(buf, size, "%lldh", (long long)(ms / 3600000));
	else if (ms % 60000 == 0 && ms >= 60000)
		snprintf(buf, size, "%lldm", (long long)(ms / 60000));
	else if (ms % 1000 == 0)
		snprintf(buf, size, "%llds", (long long)(ms / 1000));
	else if (ms < 1000)
		snprintf(buf, size, "%lldms", (long long)ms);
	else {
		int len = snprintf(buf, size, "%lld.%03lld", (long long)(ms / 1000),
				   (long long)(ms % 1000));

		while (len > 0 && (size_t)len < size && buf[len - 1] == '0')
			buf[--len] = '\0';
		if ((size_t)len + 1 < size) {
			buf[len] = 's';
			buf[len + 1] = '\0';
		}
	}
}
