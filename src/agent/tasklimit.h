/* tasklimit.h - the guest-wide bound on tasks (processes and threads), so
 * that a fork bomb in a function fails its forks instead of filling the
 * guest's memory. */
#ifndef KILN_AGENT_TASKLIMIT_H
#define KILN_AGENT_TASKLIMIT_H

#include <stdint.h>

/* Tasks the guest kernel may hold at once, kernel threads included
 * (kernel.threads-max). A function rarely needs more than a few dozen. */
#define TASKLIMIT_THREADS_MAX 512U

/* Lowers the kernel's threads-max to max (never raises it) through
 * sysctl_path (/proc/sys/kernel/threads-max; a test passes a file). The
 * limit applies to root too: fork() and clone() fail with EAGAIN past it.
 * It is machine-wide, not per namespace: call it only inside a microVM.
 * Returns 0 or -errno. */
int tasklimit_apply(const char *sysctl_path, uint32_t max);

#endif
