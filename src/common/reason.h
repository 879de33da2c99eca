/* reason.h - why something failed, for the caller to show: every function
 * that can refuse a snapshot, a restore or a device's saved state takes a
 * `char *why, size_t why_len` buffer and fills it with reason_fail(). */
#ifndef KILN_COMMON_REASON_H
#define KILN_COMMON_REASON_H

#include <stddef.h>

/* Formats the reason into why[why_len] (nothing when why is NULL or
 * why_len 0; truncated to fit) and returns err, so that a failing path is
 * one statement: `return reason_fail(why, why_len, -EINVAL, "...", ...);`. */
int reason_fail(char *why, size_t why_len, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
