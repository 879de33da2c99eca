/* supervise.c - running the main command as PID 1. */
#include "agent/supervise.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

/* Signals kiln-init receives with sigtimedwait. */
static const int supervise_waited[] = {SIGCHLD, SIGTERM, SIGINT, SIGPWR};
/* Signals kiln-init ignores (and its children get back as SIG_DFL). */
static const int supervise_ignored[] = {SIGHUP, SIGPIPE, SIGTTIN, SIGTTOU, SIGTSTP};

static sigset_t supervise_set;

#define SUPERVISE_COUNT(a) (sizeof(a) / sizeof((a)[0]))

int supervise_signals_init(void)
{
	sigemptyset(&supervise_set);
	for (size_t i = 0; i < SUPERVISE_COUNT(supervise_waited); i++)
		sigaddset(&supervise_set, supervise_waited[i]);
	/* Blocked signals stay pending even for PID 1, whose signals with the
	 * default disposition would otherwise be dropped. */
	if (sigprocmask(SIG_BLOCK, &supervise_set, NULL) < 0)
		return -errno;
	for (size_t i = 0; i < SUPERVISE_COUNT(supervise_ignored); i++) {
		if (signal(supervise_ignored[i], SIG_IGN) == SIG_ERR)
			return -errno;
	}
	return 0;
}

/* Waits for one of our signals until deadline_ms (-1: forever). Returns the
 * signal, 0 when the deadline passed, or -errno. */
static int supervise_next_signal(int64_t deadline_ms)
{
	struct timespec ts, *tsp = NULL;
	int sig;

	if (deadline_ms >= 0) {
		int64_t left = deadline_ms - clock_mono_ms();

		if (left < 0)
			left = 0;
		ts.tv_sec = (time_t)(left / 1000);
		ts.tv_nsec = (long)(left % 1000) * 1000000L;
		tsp = &ts;
	}
	sig = sigtimedwait(&supervise_set, NULL, tsp);
	if (sig >= 0)
		return sig;
	if (errno == EAGAIN)
		return 0;
	return -errno;
}

int supervise_exit_code(int wstatus)
{
	if (WIFEXITED(wstatus))
		return WEXITSTATUS(wstatus);
	if (WIFSIGNALED(wstatus))
		return (128 + WTERMSIG(wstatus)) & 0xff;
	return 255;
}

/* Reaps every child that has ended. When watch (> 0) is among them, stores its
 * status in *watch_status and sets *watch_done. Returns true when no child is
 * left at all. */
static bool supervise_reap(pid_t watch, int *watch_status, bool *watch_done)
{
	for (;;) {
		int st;
		pid_t p = waitpid(-1, &st, WNOHANG);

		if (p > 0) {
			if (p == watch) {
				*watch_status = st;
				*watch_done = true;
			}
			continue;
		}
		if (p == 0)
			return false;
		if (errno == EINTR)
			continue;
		return errno == ECHILD;
	}
}

/* In the child: never returns. */
static void supervise_exec_child(const char *file, char *const argv[], bool foreground)
{
	sigset_t none;
	char msg[512];
	int err, n;

	setpgid(0, 0);
	/* SIGTTOU is still ignored here, so a background group may do this. */
	if (foreground)
		tcsetpgrp(STDIN_FILENO, getpid());
	for (size_t i = 0; i < SUPERVISE_COUNT(supervise_ignored); i++)
		signal(supervise_ignored[i], SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	execvp(file, argv);

	err = errno;
	n = snprintf(msg, sizeof(msg), "kiln-init: cannot run %s: %s\n", file, strerror(err));
	if (n > 0)
		(void)!write(STDERR_FILENO, msg,
			     (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
	_exit(err == EACCES || err == EPERM || err == ENOEXEC ? 126 : 127);
}

pid_t supervise_spawn(const char *file, char *const argv[], bool foreground)
{
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0)
		supervise_exec_child(file, argv, foreground);
	/* Also here, so that the group exists before we may signal it. */
	setpgid(pid, pid);
	return pid;
}

int supervise_wait(pid_t pid, int grace_ms)
{
	bool done = false, terminating = false, killed = false;
	int64_t deadline = -1;
	int wstatus = 0;

	while (!done) {
		int sig = supervise_next_signal(killed ? -1 : deadline);

		if (sig == SIGCHLD) {
			supervise_reap(pid, &wstatus, &done);
		} else if (sig == 0 && terminating && !killed) {
			log_warn("command did not stop after SIGTERM; killing it");
			kill(-pid, SIGKILL);
			killed = true;
		} else if (sig > 0 && !terminating) {
			/* SIGTERM, SIGINT or SIGPWR: ask the command to stop. */
			kill(-pid, SIGTERM);
			kill(-pid, SIGCONT);
			terminating = true;
			deadline = clock_mono_ms() + grace_ms;
		} else if (sig < 0 && sig != -EINTR) {
			/* Cannot happen with a valid set; do not spin on it. */
			log_error("sigtimedwait: %s", strerror(-sig));
			if (waitpid(pid, &wstatus, 0) == pid)
				done = true;
		}
	}
	if (killed)
		return SUPERVISE_STATUS_TERMINATED;
	return supervise_exit_code(wstatus);
}

/* True when nothing is left to wait for: no child at all, or nothing left
 * in the target (a process group outside PID 1). */
static bool supervise_gone(pid_t target)
{
	bool unused = false;
	int st;

	if (supervise_reap(-1, &st, &unused))
		return true;
	return target != -1 && kill(target, 0) < 0 && errno == ESRCH;
}

/* Sends sig to target and reaps until nothing is left or grace_ms passed.
 * Returns true when nothing is left. */
static bool supervise_end_all(pid_t target, int sig, int grace_ms)
{
	int64_t deadline;

	if (kill(target, sig) < 0 && errno == ESRCH) {
		supervise_gone(target);
		return true;
	}
	if (sig != SIGKILL)
		kill(target, SIGCONT);
	deadline = clock_mono_ms() + grace_ms;
	while (!supervise_gone(target)) {
		/* SIGCHLD: reap; termination requests: we are stopping already. */
		if (supervise_next_signal(deadline) == 0)
			return supervise_gone(target);
	}
	return true;
}

void supervise_sweep(bool all, pid_t pgid, int grace_ms)
{
	pid_t target = all ? -1 : -pgid;

	/* Fast path: nothing left at all. */
	if (supervise_gone(target))
		return;
	if (supervise_end_all(target, SIGTERM, grace_ms))
		return;
	if (supervise_end_all(target, SIGKILL, grace_ms))
		return;
	log_warn("some processes did not end after SIGKILL");
}
