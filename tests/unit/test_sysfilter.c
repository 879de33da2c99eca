/* test_sysfilter.c - seccomp filters from tables and their SIGSYS report
 * (src/common/sysfilter.c), kiln-vmm's role tables (src/vmm/seccomp.c) and
 * kilnd's deny-list (src/daemon/seccomp.c), each loaded for real in a forked
 * child that then makes an allowed or a forbidden call. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/sysfilter.h"
#include "daemon/seccomp.h"
#include "vmm/seccomp.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* What a child did: its wait status and what it wrote to stderr. */
struct outcome {
	int status;
	char err[4096];
};

/* Runs fn(arg) in a forked child with stderr on a pipe; the child exits 0
 * when fn returns. */
static void run_child(void (*fn)(long), long arg, struct outcome *o)
{
	int fds[2];
	size_t len = 0;
	ssize_t n;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], STDERR_FILENO);
		fn(arg);
		_exit(0);
	}
	close(fds[1]);
	while (len < sizeof(o->err) - 1 &&
	       (n = read(fds[0], o->err + len, sizeof(o->err) - 1 - len)) > 0)
		len += (size_t)n;
	o->err[len] = '\0';
	close(fds[0]);
	assert_int_equal(waitpid(pid, &o->status, 0), pid);
}

static bool killed_by_sigsys(const struct outcome *o)
{
	return WIFSIGNALED(o->status) && WTERMSIG(o->status) == SIGSYS;
}

static bool exited_0(const struct outcome *o)
{
	return WIFEXITED(o->status) && WEXITSTATUS(o->status) == 0;
}

/* ---- the report line ---- */

static void test_find_report(void **state)
{
	char out[64];

	(void)state;
	assert_false(sysfilter_find_report("kiln-vmm: info: hello\n", out, sizeof(out)));
	assert_false(sysfilter_find_report(NULL, out, sizeof(out)));
	assert_true(sysfilter_find_report(
		"x\nkiln-vmm: seccomp: forbidden system call 41 (socket) in thread kiln-io\n", out,
		sizeof(out)));
	assert_string_equal(out, "41 (socket) in thread kiln-io");
	/* The last one wins; no newline at the end is fine. */
	assert_true(sysfilter_find_report("a: seccomp: forbidden system call 1 (write)\n"
					  "b: seccomp: forbidden system call 2 (open)",
					  out, sizeof(out)));
	assert_string_equal(out, "2 (open)");
	/* Truncated to the buffer. */
	assert_true(sysfilter_find_report("seccomp: forbidden system call 123456789", out, 5));
	assert_string_equal(out, "1234");
}

static void test_names(void **state)
{
	char buf[32];

	(void)state;
	assert_int_equal(sysfilter_report_init("test"), 0);
	assert_string_equal(sysfilter_name(SYS_getpid, buf, sizeof(buf)), "getpid");
	assert_string_equal(sysfilter_name(SYS_ptrace, buf, sizeof(buf)), "ptrace");
	assert_null(sysfilter_name(100000, buf, sizeof(buf)));
}

/* ---- a table of our own ---- */

static const struct sysfilter_rule small_rules[] = {
	SYSFILTER_CALL(write),
	SYSFILTER_CALL(exit_group),
	SYSFILTER_CALL(rt_sigreturn),
	SYSFILTER_CALL(getpid),
	SYSFILTER_CALL(gettid),
	SYSFILTER_CALL(tgkill),
	/* what freeing libseccomp's work may do once the filter is loaded */
	SYSFILTER_CALL(munmap),
	SYSFILTER_CALL(madvise),
	SYSFILTER_CALL(brk),
	SYSFILTER_CALL(futex),
	SYSFILTER_ARG(socket, 0, 0xffffffffULL, AF_UNIX),
};

static void small_child(long call)
{
	struct sysfilter f = {.rules = small_rules,
			      .nrules = sizeof(small_rules) / sizeof(small_rules[0]),
			      .allowlist = true};
	char why[128];

	if (sysfilter_report_init("small"))
		_exit(2);
	sysfilter_set_role("tester");
	if (sysfilter_install(&f, why, sizeof(why)))
		_exit(2);
	if (call == SYS_socket)
		syscall(SYS_socket, AF_INET, SOCK_STREAM, 0); /* AF_UNIX only */
	else if (call == -SYS_socket)
		syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
	else
		syscall(call);
}

static void test_allowlist_kills_with_a_report(void **state)
{
	struct outcome o;

	(void)state;
#ifdef __SANITIZE_ADDRESS__
	/* Under ASan the sanitizer runtime itself calls what these minimal
	 * tables do not allow (its exit-time leak check clones and ptraces):
	 * the forked children cannot be judged here. The real roles, with the
	 * sanitizer allowances, run in make asan's vmm-test. */
	skip();
#endif
	run_child(small_child, SYS_getppid, &o);
	assert_true(killed_by_sigsys(&o));
	assert_string_equal(o.err, "small: seccomp: forbidden system call 110 (getppid) in thread "
				   "tester\n");
	run_child(small_child, SYS_getpid, &o);
	assert_true(exited_0(&o));
	assert_string_equal(o.err, "");
}

static void test_argument_filter(void **state)
{
	struct outcome o;

	(void)state;
#ifdef __SANITIZE_ADDRESS__
	/* Under ASan the sanitizer runtime itself calls what these minimal
	 * tables do not allow (its exit-time leak check clones and ptraces):
	 * the forked children cannot be judged here. The real roles, with the
	 * sanitizer allowances, run in make asan's vmm-test. */
	skip();
#endif
	run_child(small_child, -SYS_socket, &o); /* AF_UNIX: allowed */
	assert_true(exited_0(&o));
	run_child(small_child, SYS_socket, &o); /* AF_INET: trapped */
	assert_true(killed_by_sigsys(&o));
	assert_non_null(strstr(o.err, "forbidden system call 41 (socket)"));
}

static void sent_sigsys_child(long unused)
{
	(void)unused;
	if (sysfilter_report_init("sent"))
		_exit(2);
	kill(getpid(), SIGSYS);
}

static void test_a_sent_sigsys_is_not_reported_as_a_call(void **state)
{
	struct outcome o;

	(void)state;
	run_child(sent_sigsys_child, 0, &o);
	assert_true(killed_by_sigsys(&o));
	assert_string_equal(o.err, "");
}

/* ---- kiln-vmm's roles ---- */

enum vmm_probe {
	PROBE_VCPU_UNIX_SOCKET, /* a vCPU opens no sockets */
	PROBE_IO_UNIX_SOCKET,	/* the I/O thread does (vsock) */
	PROBE_IO_INET_SOCKET,	/* but never an inet one */
	PROBE_MAIN_CLONE,	/* nobody starts threads after setup */
	PROBE_MAIN_GETPID,
};

static void vmm_child(long probe)
{
	enum vmm_seccomp_role role =
		probe == PROBE_VCPU_UNIX_SOCKET					 ? VMM_SECCOMP_VCPU
		: probe == PROBE_IO_UNIX_SOCKET || probe == PROBE_IO_INET_SOCKET ? VMM_SECCOMP_IO
										 : VMM_SECCOMP_MAIN;

	if (vmm_seccomp_init() || vmm_seccomp_install(role, "probe"))
		_exit(2);
	switch (probe) {
	case PROBE_VCPU_UNIX_SOCKET:
	case PROBE_IO_UNIX_SOCKET:
		syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
		break;
	case PROBE_IO_INET_SOCKET:
		syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
		break;
	case PROBE_MAIN_CLONE:
		syscall(SYS_clone, 0, 0, 0, 0, 0); /* would be a fork: both exit 0 */
		break;
	default:
		syscall(SYS_getpid);
	}
}

static void test_vmm_roles(void **state)
{
	struct outcome o;

	(void)state;
#ifdef __SANITIZE_ADDRESS__
	/* Under ASan the sanitizer runtime itself calls what these minimal
	 * tables do not allow (its exit-time leak check clones and ptraces):
	 * the forked children cannot be judged here. The real roles, with the
	 * sanitizer allowances, run in make asan's vmm-test. */
	skip();
#endif
	if (!vmm_seccomp_enabled())
		skip(); /* built with SECCOMP=0 */
	run_child(vmm_child, PROBE_VCPU_UNIX_SOCKET, &o);
	assert_true(killed_by_sigsys(&o));
	assert_string_equal(
		o.err, "kiln-vmm: seccomp: forbidden system call 41 (socket) in thread probe\n");
	run_child(vmm_child, PROBE_IO_UNIX_SOCKET, &o);
	assert_true(exited_0(&o));
	run_child(vmm_child, PROBE_IO_INET_SOCKET, &o);
	assert_true(killed_by_sigsys(&o));
	run_child(vmm_child, PROBE_MAIN_CLONE, &o);
	assert_true(killed_by_sigsys(&o));
	assert_non_null(strstr(o.err, "forbidden system call 56 (clone) in thread probe"));
	run_child(vmm_child, PROBE_MAIN_GETPID, &o);
	assert_true(exited_0(&o));
}

/* ---- kilnd's deny-list ---- */

static void kilnd_child(long call)
{
	if (kilnd_seccomp_install())
		_exit(2);
	syscall(call, -1L, 0L, 0L, 0L); /* ptrace(-1): EIO were it let through */
}

static void test_kilnd_denylist(void **state)
{
	struct outcome o;

	(void)state;
#ifdef KILN_NO_SECCOMP
	skip();
#endif
	run_child(kilnd_child, SYS_getppid, &o); /* not on the list */
	assert_true(exited_0(&o));
#ifndef __SANITIZE_ADDRESS__ /* allowed there: LeakSanitizer needs it */
	run_child(kilnd_child, SYS_ptrace, &o);
	assert_true(killed_by_sigsys(&o));
	assert_string_equal(o.err, "kilnd: seccomp: forbidden system call 101 (ptrace)\n");
#endif
	run_child(kilnd_child, SYS_kexec_load, &o);
	assert_true(killed_by_sigsys(&o));
	assert_non_null(strstr(o.err, "forbidden system call 246 (kexec_load)"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_find_report),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_allowlist_kills_with_a_report),
		cmocka_unit_test(test_argument_filter),
		cmocka_unit_test(test_a_sent_sigsys_is_not_reported_as_a_call),
		cmocka_unit_test(test_vmm_roles),
		cmocka_unit_test(test_kilnd_denylist),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
