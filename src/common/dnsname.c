/* dnsname.c - see dnsname.h. */
#include "common/dnsname.h"

bool dnsname_ok(const char *s, size_t len)
{
	size_t label = 0;

	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (ch == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (ch == '-' && label == 0)
			return false;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-') ||
		    ++label > 63)
			return false;
	}
	return label > 0 && s[len - 1] != '-';
}
