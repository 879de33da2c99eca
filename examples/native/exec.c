/* exec.c - a native kiln function in exec mode (OpenFaaS's classic
 * watchdog): run once per call in the function's directory, the body on
 * stdin, the answer on stdout, the exit status tells success, stderr is the
 * function's log (and its tail the error message on failure).
 *
 *     cc -static -O2 -o bootstrap exec.c
 * Deploy with runtime native (exec mode and handler ./bootstrap are the
 * defaults). Answers "NAME: BODY IN CAPITALS" where NAME is the function's
 * name (KILN_FUNCTION_NAME); the body "fail" exits 3.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
	const char *name = getenv("KILN_FUNCTION_NAME");
	char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf) - 1, stdin);

	buf[n] = '\0';
	fprintf(stderr, "native exec: %zu bytes\n", n);
	if (strcmp(buf, "fail") == 0) {
		fprintf(stderr, "native exec: told to fail\n");
		return 3;
	}
	for (size_t i = 0; i < n; i++)
		if (buf[i] >= 'a' && buf[i] <= 'z')
			buf[i] = (char)(buf[i] - 'a' + 'A');
	printf("%s: %s", name ? name : "?", buf);
	return 0;
}
