/* function_spawn.c - starting the handler or runtime: its own process
 * group, pipes for stdout and stderr, stdin (exec mode) or the private
 * channel on fd 3 (server mode), the function's environment and memory
 * limit, the working directory. */
#include "agent/function_internal.h"
#include "agent/avxguard.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"

void fn_proc_init(struct fn_proc *p)
{
	memset(p, 0, sizeof(*p));
	p->chan = p->in = -1;
	p->out.fd = p->err.fd = -1;
	p->out.stream = PROTO_STREAM_STDOUT;
	p->err.stream = PROTO_STREAM_STDERR;
}

void fn_proc_close(struct fn *f)
{
	struct fn_proc *p = &f->proc;

	if (p->pid > 0)
		kill(-p->pid, SIGKILL);
	if (p->chan >= 0)
		close(p->chan);
	if (p->in >= 0)
		close(p->in);
	fn_stream_close(&p->out);
	fn_stream_close(&p->err);
	bytebuf_free(&p->chan_in);
	bytebuf_free(&p->chan_out);
	fn_proc_init(p);
}

static void fn_child_setenv_kv(const struct proto_kv *kv, const char *prefix)
{
	struct proto_bytes k, v;
	uint32_t pos = 0;

	while (proto_kv_next(kv, &pos, &k, &v)) {
		char name[128], *val;
		size_t plen = strlen(prefix);
		bool ok = k.len > 0 && plen + k.len < sizeof(name);

		for (uint32_t i = 0; ok && i < k.len; i++) {
			char c = (char)k.ptr[i];

			if (c >= 'a' && c <= 'z')
				c = (char)(c - 'a' + 'A');
			ok = (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
			name[plen + i] = c;
		}
		if (!ok)
			continue;
		memcpy(name, prefix, plen);
		name[plen + k.len] = '\0';
		val = strndup((const char *)v.ptr, v.len);
		if (val)
			setenv(name, val, 1);
		free(val);
	}
}

/* In the child (never returns): fds 0-3, a new process group, default
 * signals, the function's directory and environment, then exec. */
static void fn_child(struct fn *f, const char *file, char *const argv[], const int fds[4],
		     const struct fn_job *job)
{
	static const int dfl[] = {SIGHUP, SIGPIPE, SIGTTIN, SIGTTOU, SIGTSTP, SIGINT, SIGTERM};
	const char *path = getenv("PATH"), *home = getenv("HOME");
	int moved[4];
	sigset_t none;
	char msg[512];
	int n;

	setpgid(0, 0);
	/* Out of the way first, so that dup2 below cannot clobber a source. */
	for (int i = 0; i < 4; i++)
		moved[i] = fds[i] >= 0 ? fcntl(fds[i], F_DUPFD_CLOEXEC, 10) : -1;
	for (int i = 0; i < 4; i++) {
		if (moved[i] >= 0)
			dup2(moved[i], i);
		else if (i < 3)
			close(i);
	}
	for (size_t i = 0; i < sizeof(dfl) / sizeof(dfl[0]); i++)
		signal(dfl[i], SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	path = path ? strdup(path) : NULL;
	home = home ? strdup(home) : NULL;
	clearenv();
	setenv("PATH", path ? path : "/usr/local/bin:/usr/bin:/bin", 1);
	setenv("HOME", home ? home : "/root", 1);
	setenv("LANG", "C.UTF-8", 1);
	avxguard_setenv(); /* before the function's own env, which may override it */
	for (char **e = f->env; e && *e; e++)
		putenv(*e);
	/* A spare runtime has no function yet: it is told these with it. */
	if (f->spare == FN_SPARE_NONE) {
		setenv("KILN_FUNCTION_DIR", f->dir, 1);
		setenv("KILN_HANDLER", f->handler, 1);
		if (f->memory_mb) {
			char mb[16];

			snprintf(mb, sizeof(mb), "%" PRIu32, f->memory_mb);
			setenv("KILN_MEMORY_MB", mb, 1);
		}
	}
	if (f->server) {
		setenv("PYTHONUNBUFFERED", "1", 1);
		setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
	}
	if (job) {
		char num[16];

		snprintf(num, sizeof(num), "%" PRIu32, job->id);
		setenv("KILN_REQUEST_ID", num, 1);
		snprintf(num, sizeof(num), "%" PRIu32, job->inv.deadline_ms);
		setenv("KILN_DEADLINE_MS", num, 1);
		fn_child_setenv_kv(&job->inv.context, "KILN_");
	}
	if (chdir(f->spare == FN_SPARE_NONE ? f->dir : "/") < 0) {
		n = snprintf(msg, sizeof(msg), "kiln-init: cannot enter %s: %s\n", f->dir,
			     strerror(errno));
		(void)!write(STDERR_FILENO, msg, (size_t)n < sizeof(msg) ? (size_t)n : 0);
		_exit(127);
	}
	execvp(file, argv);
	n = snprintf(msg, sizeof(msg), "kiln-init: cannot run %s: %s\n", file, strerror(errno));
	(void)!write(STDERR_FILENO, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
	_exit(127);
}

/* Our ends only (the child's stay blocking). The only status flag these
 * fresh descriptors have is the one set here: F_SETFL alone, one system call. */
static int fn_nonblock(int fd)
{
	return fcntl(fd, F_SETFL, O_NONBLOCK) < 0 ? -errno : 0;
}

int fn_spawn(struct fn *f, const char *file, char *const argv[], const struct fn_job *job)
{
	int out[2] = {-1, -1}, err[2] = {-1, -1}, in[2] = {-1, -1}, chan[2] = {-1, -1};
	int fds[4], ret = 0;
	pid_t pid;

	fn_proc_close(f);
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
		goto out_errno;
	if (f->server) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, chan) < 0)
			goto out_errno;
		in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (in[0] < 0)
			goto out_errno;
	} else if (pipe2(in, O_CLOEXEC) < 0) {
		goto out_errno;
	}
	fds[0] = in[0];
	fds[1] = out[1];
	fds[2] = err[1];
	fds[3] = chan[1];
	pid = fork();
	if (pid < 0)
		goto out_errno;
	if (pid == 0)
		fn_child(f, file, argv, fds, job);
	setpgid(pid, pid);
	close(out[1]);
	close(err[1]);
	close(in[0]);
	if (chan[1] >= 0)
		close(chan[1]);
	f->proc.pid = pid;
	f->proc.out.fd = out[0];
	f->proc.err.fd = err[0];
	f->proc.in = in[1];
	f->proc.chan = chan[0];
	fn_nonblock(out[0]);
	fn_nonblock(err[0]);
	if (in[1] >= 0)
		fn_nonblock(in[1]);
	if (chan[0] >= 0)
		fn_nonblock(chan[0]);
	return 0;

out_errno:
	ret = -errno;
	for (int i = 0; i < 2; i++) {
		if (out[i] >= 0)
			close(out[i]);
		if (err[i] >= 0)
			close(err[i]);
		if (in[i] >= 0)
			close(in[i]);
		if (chan[i] >= 0)
			close(chan[i]);
	}
	return ret;
}
