/* seccomp.h - kilnd's own seccomp filter: a deny-list.
 *
 * kilnd links SQLite, libmicrohttpd (with GnuTLS), libcurl and OpenSSL and
 * starts kiln-vmm and kiln-jailer processes: an allowlist of everything
 * those libraries may call on some path would be long and fragile. What it
 * gets instead, once it has started (every thread at once, TSYNC), is a
 * list of system calls that kilnd, its libraries and its children never
 * need and that an attacker who took over kilnd would want: ptrace and
 * other processes' memory, kernel modules, kexec, eBPF, perf events,
 * userfaultfd, the kernel keyring, raw port I/O, the clock, swap, reboot.
 * Such a call is trapped: "kilnd: seccomp: forbidden system call NR (NAME)
 * in thread main" on standard error, then death by SIGSYS. The filter is
 * inherited by the processes kilnd starts. docs/security.md#seccomp.
 */
#ifndef KILN_DAEMON_SECCOMP_H
#define KILN_DAEMON_SECCOMP_H

/* Installs kilnd's filter on every thread of the process. Returns 0 or
 * -errno (logged). Built with SECCOMP=0 it logs once that the filter is
 * off and returns 0. */
int kilnd_seccomp_install(void);

#endif
