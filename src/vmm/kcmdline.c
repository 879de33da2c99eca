/* kcmdline.c - assembling the guest kernel command line. */
#include "vmm/kcmdline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *kcmdline_build(const char *user, bool compat, unsigned int vcpus)
{
	const char *extra = !compat	? ""
			    : vcpus > 1 ? " " KCMDLINE_COMPAT " " KCMDLINE_COMPAT_SMP
					: " " KCMDLINE_COMPAT;
	char *out = NULL;
	int n;

	if (!user)
		user = "";
	while (*user == ' ')
		user++;
	n = asprintf(&out, "%s%s%s%s", KCMDLINE_BASE, extra, *user ? " " : "", user);
	if (n < 0)
		return NULL;
	return out;
}
