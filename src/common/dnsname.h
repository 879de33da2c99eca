/* dnsname.h - the shape of a DNS search domain, as kiln accepts it from a
 * deploy (the CLI, kilnd) and as kiln-init accepts it in a NET frame: one
 * rule in one place, since a search domain ends up in a guest's
 * resolv.conf, where a space or a newline would make another line. */
#ifndef KILN_COMMON_DNSNAME_H
#define KILN_COMMON_DNSNAME_H

#include <stdbool.h>
#include <stddef.h>

#define DNSNAME_SEARCH_MAX 6   /* search domains a function may have */
#define DNSNAME_SEARCH_LEN 255 /* the list joined by single spaces */
#define DNSNAME_NS_MAX	   3   /* nameservers (glibc's MAXNS) */

/* True when s[0..len) is a domain name kiln takes: 1..253 characters of
 * letters, digits, '-' and '.', labels of 1..63 characters that neither
 * start nor end with '-'. s need not be NUL-terminated. */
bool dnsname_ok(const char *s, size_t len);

#endif
