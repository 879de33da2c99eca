/* kcmdline.c - assembling the guest kernel command line. */
#include "vmm/kcmdline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *kcmdline_build(const char *user, bool compat)
{
	const char *extra = compat ? " " KCMDLINE_COMPAT : "";
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
