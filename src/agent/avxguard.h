/* avxguard.h - keeping user space off AVX where the guest kernel does not
 * keep AVX state.
 *
 * On the nested KVM of kiln's build machines the guest kernel runs without
 * XSAVE (clearcpuid=xsave: its instruction emulator lacks xsave/xrstor), so
 * when it switches tasks it saves and restores only their x87 and SSE state
 * (FXSAVE). User space there runs natively, and the CPU's CPUID and XGETBV
 * still say AVX is usable: glibc picks its AVX2 memcpy, strlen and the
 * rest. The upper halves of the YMM registers then belong to whichever task
 * used them last, and a task preempted in the middle of an AVX loop goes on
 * with another's (usually zeros, after a vzeroupper): 16 bytes of a copy
 * come out wrong. glibc is told not to use AVX (GLIBC_TUNABLES) in every
 * process kiln-init starts, and in kiln-init itself.
 */
#ifndef KILN_AGENT_AVXGUARD_H
#define KILN_AGENT_AVXGUARD_H

#include <stdbool.h>

/* What glibc is told: the AVX families off (glibc 2.36's names). */
#define AVXGUARD_TUNABLES                                                                          \
	"glibc.cpu.hwcaps=-AVX,-AVX2,-AVX_Fast_Unaligned_Load,-FMA,-FMA4,-F16C,-AVX512F,"          \
	"-AVX512BW,-AVX512CD,-AVX512DQ,-AVX512VL,-AVX512ER,-AVX512PF,-Prefer_No_VZEROUPPER"

/* True when the CPU lets user space use AVX (CPUID: AVX and OSXSAVE;
 * XGETBV: YMM state enabled) but the kernel does not save YMM state across
 * task switches (ARCH_GET_XCOMP_SUPP lacks it, or the kernel does not
 * answer it). */
bool avxguard_needed(void);

/* When avxguard_needed(): puts AVXGUARD_TUNABLES into GLIBC_TUNABLES of the
 * current environment (kept with any other tunables already there; the
 * environment's own hwcaps setting wins). Returns true when it changed the
 * environment. */
bool avxguard_setenv(void);

#endif
