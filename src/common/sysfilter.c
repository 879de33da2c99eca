/* sysfilter.c - seccomp filters from tables, and the SIGSYS report.
 *
 * The report is written by an async-signal-safe handler: no stdio, no
 * allocation; the system call names it prints were resolved before any
 * filter was loaded. The handler is installed with SA_RESETHAND, so SIGSYS
 * is back to its default action (terminate, core) while it runs; it then
 * sends SIGSYS to its own thread, which is blocked until the handler
 * returns and kills the process at once after it.
 */
#include "common/sysfilter.h"

#include <errno.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SYSFILTER_MAX_NR 512
#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1 /* si_code of a seccomp trap (asm-generic/siginfo.h) */
#endif

static const char *sysfilter_program = "kiln";
static char *sysfilter_names[SYSFILTER_MAX_NR];
static _Thread_local const char *sysfilter_role;

/* Appends s to buf (of cap bytes, at *len), truncating. */
static void sysfilter_put(char *buf, size_t cap, size_t *len, const char *s)
{
	while (*s && *len < cap)
		buf[(*len)++] = *s++;
}

static void sysfilter_put_num(char *buf, size_t cap, size_t *len, long v)
{
	char digits[24];
	size_t n = 0;
	unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;

	do {
		digits[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u && n < sizeof(digits));
	if (v < 0 && *len < cap)
		buf[(*len)++] = '-';
	while (n && *len < cap)
		buf[(*len)++] = digits[--n];
}

static void sysfilter_on_sigsys(int sig, siginfo_t *si, void *uctx)
{
	char line[256];
	size_t len = 0;
	int nr = si->si_syscall, saved = errno;
	const char *name = nr >= 0 && nr < SYSFILTER_MAX_NR ? sysfilter_names[nr] : NULL;

	(void)uctx;
	if (si->si_code != SYS_SECCOMP)
		goto out_die; /* a SIGSYS someone sent: no call to report */
	sysfilter_put(line, sizeof(line) - 1, &len, sysfilter_program);
	sysfilter_put(line, sizeof(line) - 1, &len, ": " SYSFILTER_REPORT_MARK);
	sysfilter_put_num(line, sizeof(line) - 1, &len, nr);
	sysfilter_put(line, sizeof(line) - 1, &len, " (");
	sysfilter_put(line, sizeof(line) - 1, &len, name ? name : "unknown");
	sysfilter_put(line, sizeof(line) - 1, &len, ")");
	if (sysfilter_role) {
		sysfilter_put(line, sizeof(line) - 1, &len, " in thread ");
		sysfilter_put(line, sizeof(line) - 1, &len, sysfilter_role);
	}
	line[len++] = '\n';
	if (write(STDERR_FILENO, line, len) < 0)
		errno = saved;
out_die:
	/* PID 1 of a PID namespace (a jailed kiln-vmm) ignores its own
	 * signals whose action is the default: SIGSYS would be dropped and the
	 * process would go on. It exits with 128 + SIGSYS instead, as a shell
	 * reports a death by that signal (sysfilter_died). */
	if (syscall(SYS_getpid) == 1)
		syscall(SYS_exit_group, 128 + SIGSYS);
	/* SA_RESETHAND made SIGSYS fatal again; it is blocked until we return. */
	syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), sig);
}

bool sysfilter_died(int wstatus)
{
	return (WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGSYS) ||
	       (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 128 + SIGSYS);
}

int sysfilter_report_init(const char *program)
{
	struct sigaction sa;

	if (program)
		sysfilter_program = program;
	for (int nr = 0; nr < SYSFILTER_MAX_NR; nr++)
		if (!sysfilter_names[nr])
			sysfilter_names[nr] =
				seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sysfilter_on_sigsys;
	sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		return -errno;
	return 0;
}

void sysfilter_set_role(const char *role)
{
	sigset_t sys;

	sysfilter_role = role;
	/* A trapped call with SIGSYS blocked kills at once, unreported. */
	sigemptyset(&sys);
	sigaddset(&sys, SIGSYS);
	pthread_sigmask(SIG_UNBLOCK, &sys, NULL);
}

const char *sysfilter_name(int nr, char *buf, size_t len)
{
	char *n;

	if (nr >= 0 && nr < SYSFILTER_MAX_NR && sysfilter_names[nr])
		return sysfilter_names[nr];
	n = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
	if (!n)
		return NULL;
	snprintf(buf, len, "%s", n);
	free(n);
	return buf;
}

static int sysfilter_add(scmp_filter_ctx ctx, uint32_t action, const struct sysfilter_rule *r)
{
	struct scmp_arg_cmp cmp[2];

	if (r->nargs > 2)
		return -EINVAL;
	for (unsigned int i = 0; i < r->nargs; i++) {
		if (r->args[i].arg > 5)
			return -EINVAL;
		cmp[i] = (struct scmp_arg_cmp){
			.arg = r->args[i].arg,
			.op = SCMP_CMP_MASKED_EQ,
			.datum_a = r->args[i].mask,
			.datum_b = r->args[i].value,
		};
	}
	return seccomp_rule_add_array(ctx, action, r->nr, r->nargs, cmp);
}

int sysfilter_install(const struct sysfilter *f, char *why, size_t why_len)
{
	uint32_t def = f->allowlist ? SCMP_ACT_TRAP : SCMP_ACT_ALLOW;
	uint32_t act = f->allowlist ? SCMP_ACT_ALLOW : SCMP_ACT_TRAP;
	scmp_filter_ctx ctx;
	int ret;

	ctx = seccomp_init(def);
	if (!ctx) {
		snprintf(why, why_len, "seccomp_init failed");
		return -ENOMEM;
	}
	/* A binary tree of system calls: fewer comparisons per call. */
	ret = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
	if (!ret && f->all_threads)
		ret = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (ret < 0) {
		snprintf(why, why_len, "seccomp_attr_set: %s", strerror(-ret));
		goto out_release;
	}
	for (size_t i = 0; i < f->nrules; i++) {
		ret = sysfilter_add(ctx, act, &f->rules[i]);
		if (ret < 0) {
			snprintf(why, why_len, "seccomp rule for %s: %s", f->rules[i].name,
				 strerror(-ret));
			goto out_release;
		}
	}
	ret = seccomp_load(ctx);
	if (ret < 0)
		snprintf(why, why_len, "seccomp_load: %s", strerror(-ret));
out_release:
	seccomp_release(ctx);
	return ret;
}

bool sysfilter_find_report(const char *text, char *out, size_t out_len)
{
	const char *p = text, *hit = NULL, *end;
	size_t n;

	if (!text || !out_len)
		return false;
	while ((p = strstr(p, SYSFILTER_REPORT_MARK))) {
		p += strlen(SYSFILTER_REPORT_MARK);
		hit = p;
	}
	if (!hit)
		return false;
	end = strchr(hit, '\n');
	n = end ? (size_t)(end - hit) : strlen(hit);
	if (n >= out_len)
		n = out_len - 1;
	memcpy(out, hit, n);
	out[n] = '\0';
	return true;
}
