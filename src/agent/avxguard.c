/* avxguard.c - see avxguard.h. */
#include "agent/avxguard.h"

#include <cpuid.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_GET_XCOMP_SUPP_NR 0x1021 /* <asm/prctl.h>, Linux 5.16 */
#define XFEATURE_YMM	       (1ULL << 2)

static uint64_t xgetbv0(void)
{
	uint32_t lo, hi;

	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((uint64_t)hi << 32) | lo;
}

static bool avxguard_probe(void)
{
	unsigned int a, b, c, d;
	uint64_t supp = 0;

	if (!__get_cpuid(1, &a, &b, &c, &d))
		return false;
	if (!(c & bit_OSXSAVE) || !(c & bit_AVX))
		return false; /* AVX is off for user space already */
	if (!(xgetbv0() & XFEATURE_YMM))
		return false;
	/* The kernel says which state it saves for a task; an old kernel
	 * without the call always has XSAVE when the CPU offers AVX. */
	if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_SUPP_NR, &supp) != 0)
		return false;
	return !(supp & XFEATURE_YMM);
}

bool avxguard_needed(void)
{
	static int needed = -1; /* probed once: a system call costs here */

	if (needed < 0)
		needed = avxguard_probe();
	return needed;
}

bool avxguard_setenv(void)
{
	const char *old = getenv("GLIBC_TUNABLES");
	char buf[1024];

	if (!avxguard_needed())
		return false;
	if (old && strstr(old, "glibc.cpu.hwcaps="))
		return false; /* set already (by us, or on purpose) */
	if (old && old[0])
		snprintf(buf, sizeof(buf), "%s:%s", AVXGUARD_TUNABLES, old);
	else
		snprintf(buf, sizeof(buf), "%s", AVXGUARD_TUNABLES);
	return setenv("GLIBC_TUNABLES", buf, 1) == 0;
}
