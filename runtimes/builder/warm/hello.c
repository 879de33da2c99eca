/* The builder's warm-up (runtimes/builder/build warm): compiled once before
 * the builder's base snapshot is taken, so that snapshot's page cache holds
 * what a C build reads. */
#include <stdio.h>

int main(void)
{
	puts("hello from the builder");
	return 0;
}
