/* function.c - the function kiln-init runs: load, invoke, capture, restart. */
#include "agent/function.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/bytebuf.h"
#include "common/archive.h"
#include "common/clock.h"
#include "common/log.h"

#define FN_LINE_MAX	  (16U * 1024)	      /* a LOG frame without a newline */
#define FN_TAIL_MAX	  2048		      /* stderr bytes kept for error messages */
#define FN_MSG_MAX	  1024		      /* error message in a RESULT */
#define FN_READ_CHUNK	  (64U * 1024)	      /* one read from a pipe or socket */
#define FN_QUEUE_BYTES	  (64U * 1024 * 1024) /* queued INVOKE payloads, all */
#define FN_HANDLER_MAX	  4096
#define FN_NAME_MAX	  32
#define FN_RESULT_SLACK	  256 /* header and fixed fields of a RESULT */
#define FN_LOG_TRUNCATED  "[kiln-init: log output truncated]\n"
#define FN_PYTHON_RUNTIME "python"

/* An INVOKE: queued or running. */
struct fn_job {
	struct fn_job *next;
	uint64_t conn;
	uint32_t id;
	uint8_t *payload; /* a copy of the frame's payload (owned) */
	struct proto_invoke inv;
};

/* A pipe from the handler or the runtime (its stdout or stderr). */
struct fn_stream {
	int fd; /* -1: closed */
	uint8_t stream;
	size_t line_len;
	char line[FN_LINE_MAX];
};

/* The process running now: the exec-mode handler or the server runtime. */
struct fn_proc {
	pid_t pid; /* also its process group; 0: none */
	int chan;  /* server: our end of the runtime's fd 3; -1 */
	int in;	   /* exec: the handler's stdin; -1 */
	size_t in_off;
	struct fn_stream out, err;
	struct bytebuf chan_in, chan_out;
};

struct fn {
	char *base_dir, *runtime_dir, *python;
	struct fn_sink sink;

	uint32_t generation; /* of the function below; 0: none yet */
	enum proto_fn_state state;
	bool server;
	char dir[PATH_MAX];
	char runtime[FN_NAME_MAX + 1];
	char mode[8];
	char *handler;
	char **env; /* "NAME=value", NULL-terminated */
	uint32_t memory_mb;
	uint32_t init_timeout_ms;
	char failure[FN_MSG_MAX]; /* why it is FAILED */

	/* The LOAD waiting for the runtime's answer. */
	bool load_pending;
	uint64_t load_conn;
	uint32_t load_id;
	int64_t start_ms;	 /* when the runtime was started */
	const char *kill_reason; /* why we killed a LOADING runtime */

	struct fn_proc proc;

	struct fn_job *cur; /* running */
	int64_t cur_start_ms;
	int64_t cur_deadline_ms; /* -1: none */
	struct fn_job *head, *qtail;
	unsigned int queued;
	size_t queued_bytes;

	struct bytebuf body; /* exec mode: the handler's stdout */
	bool body_too_big;
	size_t log_sent;
	bool log_truncated;
	size_t tail_len;
	char tail[FN_TAIL_MAX]; /* the end of stderr */
};

/* ---- frames to the host ------------------------------------------------------ */

static void fn_send_error(struct fn *f, uint64_t conn, uint32_t id, uint32_t code, const char *fmt,
			  ...) __attribute__((format(printf, 5, 6)));

static void fn_send_error(struct fn *f, uint64_t conn, uint32_t id, uint32_t code, const char *fmt,
			  ...)
{
	char msg[FN_MSG_MAX];
	size_t max = sizeof(msg) + 64;
	uint8_t *p;
	va_list ap;
	ssize_t n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p = f->sink.reserve(f->sink.opaque, conn, max);
	if (!p)
		return;
	n = proto_encode_error(p, max, id, code, msg);
	if (n > 0)
		f->sink.commit(f->sink.opaque, conn, (size_t)n);
}

static struct proto_bytes fn_view(const char *s)
{
	struct proto_bytes b = {(const uint8_t *)s, s ? (uint32_t)strlen(s) : 0};

	return b;
}

static void fn_send_result(struct fn *f, uint64_t conn, uint32_t id, const struct proto_result *r)
{
	size_t max = FN_RESULT_SLACK + r->body.len + r->error_type.len + r->error_msg.len;
	uint8_t *p = f->sink.reserve(f->sink.opaque, conn, max);
	ssize_t n;

	if (!p)
		return;
	n = proto_encode_result(p, max, id, r);
	if (n > 0)
		f->sink.commit(f->sink.opaque, conn, (size_t)n);
	else
		log_warn("cannot encode a result: %s", strerror((int)-n));
}

/* A RESULT without a body from the handler: an error of ours or a timeout. */
static void fn_send_failure(struct fn *f, struct fn_job *job, uint8_t status, const char *type,
			    const char *msg)
{
	struct proto_result r = {
		.status = status,
		.duration_us = (uint32_t)(clock_mono_us() - f->cur_start_ms * 1000),
		.error_type = fn_view(type),
		.error_msg = fn_view(msg),
	};

	if (job != f->cur)
		r.duration_us = 0;
	fn_send_result(f, job->conn, job->id, &r);
}

/* Where output goes now: the running invocation, else the pending LOAD. */
static bool fn_log_target(const struct fn *f, uint64_t *conn, uint32_t *id)
{
	if (f->cur) {
		*conn = f->cur->conn;
		*id = f->cur->id;
		return true;
	}
	if (f->load_pending) {
		*conn = f->load_conn;
		*id = f->load_id;
		return true;
	}
	return false;
}

static void fn_send_log(struct fn *f, uint8_t stream, const void *data, size_t len)
{
	size_t max = len + PROTO_HEADER_SIZE + 8;
	uint64_t conn;
	uint32_t id;
	uint8_t *p;
	ssize_t n;

	if (len == 0 || !fn_log_target(f, &conn, &id) || f->log_truncated)
		return;
	if (f->log_sent + len > FN_MAX_LOG) {
		f->log_truncated = true;
		data = FN_LOG_TRUNCATED;
		len = strlen(FN_LOG_TRUNCATED);
		max = len + PROTO_HEADER_SIZE + 8;
	}
	f->log_sent += len;
	p = f->sink.reserve(f->sink.opaque, conn, max);
	if (!p)
		return;
	n = proto_encode_log(p, max, id, stream, data, len);
	if (n > 0)
		f->sink.commit(f->sink.opaque, conn, (size_t)n);
}

/* ---- captured output ------------------------------------------------------------ */

static void fn_tail_add(struct fn *f, const uint8_t *p, size_t n)
{
	if (n >= FN_TAIL_MAX) {
		memcpy(f->tail, p + n - FN_TAIL_MAX, FN_TAIL_MAX);
		f->tail_len = FN_TAIL_MAX;
		return;
	}
	if (f->tail_len + n > FN_TAIL_MAX) {
		size_t drop = f->tail_len + n - FN_TAIL_MAX;

		memmove(f->tail, f->tail + drop, f->tail_len - drop);
		f->tail_len -= drop;
	}
	memcpy(f->tail + f->tail_len, p, n);
	f->tail_len += n;
}

/* The end of stderr for an error message: the last non-empty line, or with
 * whole, the last FN_MSG_MAX - 1 bytes; trailing blanks removed. */
static void fn_tail_message(const struct fn *f, bool whole, char *out, size_t size)
{
	size_t end = f->tail_len, start;

	while (end > 0 && (f->tail[end - 1] == '\n' || f->tail[end - 1] == '\r' ||
			   f->tail[end - 1] == ' ' || f->tail[end - 1] == '\t'))
		end--;
	start = end;
	if (whole) {
		start = end > size - 1 ? end - (size - 1) : 0;
	} else {
		while (start > 0 && f->tail[start - 1] != '\n')
			start--;
		if (end - start > size - 1)
			start = end - (size - 1);
	}
	memcpy(out, f->tail + start, end - start);
	out[end - start] = '\0';
	/* A NUL inside would end the str early; a str may not hold one. */
	for (size_t i = 0; i < end - start; i++) {
		if (out[i] == '\0')
			out[i] = '?';
	}
}

/* Sends the complete lines held (or all of it with all), keeping the rest. */
static void fn_line_flush(struct fn *f, struct fn_stream *s, bool all)
{
	const char *nl;
	size_t n;

	if (s->line_len == 0)
		return;
	nl = memrchr(s->line, '\n', s->line_len);
	n = all || s->line_len == FN_LINE_MAX ? s->line_len : nl ? (size_t)(nl - s->line) + 1 : 0;
	if (n == 0)
		return;
	fn_send_log(f, s->stream, s->line, n);
	memmove(s->line, s->line + n, s->line_len - n);
	s->line_len -= n;
}

static void fn_log_data(struct fn *f, struct fn_stream *s, const uint8_t *p, size_t n)
{
	if (s->stream == PROTO_STREAM_STDERR)
		fn_tail_add(f, p, n);
	while (n > 0) {
		size_t take = FN_LINE_MAX - s->line_len;

		if (take > n)
			take = n;
		memcpy(s->line + s->line_len, p, take);
		s->line_len += take;
		p += take;
		n -= take;
		fn_line_flush(f, s, false);
	}
}

/* Exec mode: stdout is the body, up to PROTO_MAX_BODY. */
static bool fn_is_body(const struct fn *f, const struct fn_stream *s)
{
	return !f->server && s->stream == PROTO_STREAM_STDOUT;
}

static void fn_stream_close(struct fn_stream *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

/* Reads what the pipe holds (until it would block, or EOF: then closes it). */
static void fn_stream_read(struct fn *f, struct fn_stream *s)
{
	static uint8_t chunk[FN_READ_CHUNK];

	while (s->fd >= 0) {
		ssize_t n = read(s->fd, chunk, sizeof(chunk));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			fn_stream_close(s);
			return;
		}
		if (fn_is_body(f, s)) {
			if (f->body_too_big || bytebuf_used(&f->body) + (size_t)n > PROTO_MAX_BODY)
				f->body_too_big = true;
			else if (bytebuf_append(&f->body, chunk, (size_t)n) < 0)
				f->body_too_big = true;
		} else {
			fn_log_data(f, s, chunk, (size_t)n);
		}
		if ((size_t)n < sizeof(chunk))
			return; /* most likely empty now: save a read */
	}
}

/* Reads whatever stdout and stderr hold now, and sends the partial lines
 * too: everything written before a RESULT goes out before it. One poll()
 * instead of a read per pipe that would only say EAGAIN. */
static void fn_drain(struct fn *f)
{
	struct fn_stream *s[2] = {&f->proc.out, &f->proc.err};
	struct pollfd pfds[2];
	nfds_t n = 0;

	for (int i = 0; i < 2; i++) {
		if (s[i]->fd >= 0)
			pfds[n++] = (struct pollfd){.fd = s[i]->fd, .events = POLLIN};
	}
	if (n > 0 && poll(pfds, n, 0) > 0) {
		for (nfds_t i = 0; i < n; i++) {
			if (!pfds[i].revents)
				continue;
			if (pfds[i].fd == f->proc.out.fd)
				fn_stream_read(f, &f->proc.out);
			else if (pfds[i].fd == f->proc.err.fd)
				fn_stream_read(f, &f->proc.err);
		}
	}
	fn_line_flush(f, &f->proc.out, true);
	fn_line_flush(f, &f->proc.err, true);
}

/* ---- processes ------------------------------------------------------------------ */

static void fn_proc_init(struct fn_proc *p)
{
	memset(p, 0, sizeof(*p));
	p->chan = p->in = -1;
	p->out.fd = p->err.fd = -1;
	p->out.stream = PROTO_STREAM_STDOUT;
	p->err.stream = PROTO_STREAM_STDERR;
}

/* Kills what is left of the process group and closes our ends. The zombie
 * is reaped by the agent's loop and then ignored. */
static void fn_proc_close(struct fn *f)
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
	for (char **e = f->env; e && *e; e++)
		putenv(*e);
	setenv("KILN_FUNCTION_DIR", f->dir, 1);
	setenv("KILN_HANDLER", f->handler, 1);
	if (f->memory_mb) {
		char mb[16];

		snprintf(mb, sizeof(mb), "%" PRIu32, f->memory_mb);
		setenv("KILN_MEMORY_MB", mb, 1);
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
	if (chdir(f->dir) < 0) {
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

/* Starts file/argv with stdout and stderr piped to us; in exec mode stdin
 * is a pipe from us (the payload), in server mode /dev/null and fd 3 is
 * the channel. Fills f->proc. Returns 0 or -errno. */
static int fn_spawn(struct fn *f, const char *file, char *const argv[], const struct fn_job *job)
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

/* ---- jobs ------------------------------------------------------------------------ */

static void fn_job_free(struct fn_job *j)
{
	if (!j)
		return;
	free(j->payload);
	free(j);
}

static struct fn_job *fn_pop(struct fn *f)
{
	struct fn_job *j = f->head;

	if (!j)
		return NULL;
	f->head = j->next;
	if (!f->head)
		f->qtail = NULL;
	f->queued--;
	f->queued_bytes -= j->inv.payload.len;
	j->next = NULL;
	return j;
}

/* Answers every queued job (and the running one with cur) with an ERROR. */
static void fn_fail_jobs(struct fn *f, bool cur, uint32_t code, const char *msg)
{
	struct fn_job *j;

	if (cur && f->cur) {
		fn_send_error(f, f->cur->conn, f->cur->id, code, "%s", msg);
		fn_job_free(f->cur);
		f->cur = NULL;
	}
	while ((j = fn_pop(f)) != NULL) {
		fn_send_error(f, j->conn, j->id, code, "%s", msg);
		fn_job_free(j);
	}
}

/* The running job is answered: forget it. */
static void fn_job_done(struct fn *f)
{
	fn_job_free(f->cur);
	f->cur = NULL;
	f->cur_deadline_ms = -1;
	bytebuf_reset(&f->body, 64 * 1024);
	f->body_too_big = false;
}

static void fn_begin_output(struct fn *f)
{
	f->log_sent = 0;
	f->log_truncated = false;
	f->tail_len = 0;
	f->proc.out.line_len = 0;
	f->proc.err.line_len = 0;
}

static void fn_chan_flush(struct fn *f);
static void fn_stdin_write(struct fn *f);
static void fn_start_runtime(struct fn *f, bool restart);

/* Starts the next queued job when nothing runs and the function is ready. */
static void fn_run_next(struct fn *f)
{
	static char sh_arg0[] = "sh", sh_c[] = "-c";
	struct fn_job *j;

	while (!f->cur && f->state == PROTO_FN_READY && (j = fn_pop(f)) != NULL) {
		f->cur = j;
		f->cur_start_ms = clock_mono_ms();
		f->cur_deadline_ms =
			j->inv.deadline_ms ? f->cur_start_ms + (int64_t)j->inv.deadline_ms : -1;
		bytebuf_reset(&f->body, 64 * 1024);
		f->body_too_big = false;
		if (f->server) {
			size_t max =
				PROTO_HEADER_SIZE + 16 + j->inv.context.len + j->inv.payload.len;
			uint8_t *p = bytebuf_reserve(&f->proc.chan_out, max);
			ssize_t n = p ? proto_encode_invoke(p, max, j->id, &j->inv) : -ENOMEM;

			fn_begin_output(f);
			if (n < 0) {
				fn_send_failure(f, j, PROTO_STATUS_UNHANDLED,
						"Runtime.InternalError", strerror((int)-n));
				fn_job_done(f);
				continue;
			}
			bytebuf_commit(&f->proc.chan_out, (size_t)n);
			fn_chan_flush(f);
		} else {
			char *argv[] = {sh_arg0, sh_c, f->handler, NULL};
			int err = fn_spawn(f, "/bin/sh", argv, j);

			fn_begin_output(f);
			if (err) {
				fn_send_failure(f, j, PROTO_STATUS_UNHANDLED, "Runtime.StartError",
						strerror(-err));
				fn_job_done(f);
				continue;
			}
			f->proc.in_off = 0;
			fn_stdin_write(f);
		}
	}
}

/* ---- exec mode ------------------------------------------------------------------- */

static void fn_stdin_write(struct fn *f)
{
	struct fn_proc *p = &f->proc;
	const struct proto_bytes *pl;

	if (p->in < 0)
		return;
	if (!f->cur) {
		close(p->in);
		p->in = -1;
		return;
	}
	pl = &f->cur->inv.payload;
	while (p->in_off < pl->len) {
		ssize_t n = write(p->in, pl->ptr + p->in_off, pl->len - p->in_off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0)
			break; /* EPIPE: the handler does not read its input */
		p->in_off += (size_t)n;
	}
	close(p->in);
	p->in = -1;
}

/* The exec-mode handler ended: drain its output and answer. */
static void fn_exec_finish(struct fn *f, int wstatus)
{
	struct proto_result r = {0};
	char msg[FN_MSG_MAX], type[64] = "";

	fn_drain(f);
	r.duration_us = (uint32_t)(clock_mono_us() - f->cur_start_ms * 1000);
	msg[0] = '\0';
	if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0 && !f->body_too_big) {
		r.status = PROTO_STATUS_OK;
		r.body.ptr = f->body.data ? f->body.data + f->body.off : NULL;
		r.body.len = (uint32_t)bytebuf_used(&f->body);
	} else if (f->body_too_big) {
		r.status = PROTO_STATUS_UNHANDLED;
		snprintf(type, sizeof(type), "Runtime.ResponseTooLarge");
		snprintf(msg, sizeof(msg), "response body larger than %u bytes", PROTO_MAX_BODY);
	} else {
		char tail[FN_MSG_MAX - 64];

		r.status = PROTO_STATUS_UNHANDLED;
		snprintf(type, sizeof(type), "Runtime.ExitError");
		fn_tail_message(f, true, tail, sizeof(tail));
		if (WIFSIGNALED(wstatus))
			snprintf(msg, sizeof(msg), "killed by signal %d%s%s", WTERMSIG(wstatus),
				 tail[0] ? ": " : "", tail);
		else
			snprintf(msg, sizeof(msg), "%s%sexit status %d", tail, tail[0] ? "\n" : "",
				 WEXITSTATUS(wstatus));
	}
	r.error_type = fn_view(type);
	r.error_msg = fn_view(msg);
	fn_send_result(f, f->cur->conn, f->cur->id, &r);
	fn_job_done(f);
	fn_proc_close(f);
}

/* ---- server mode ----------------------------------------------------------------- */

static void fn_chan_flush(struct fn *f)
{
	struct fn_proc *p = &f->proc;

	while (p->chan >= 0 && bytebuf_used(&p->chan_out) > 0) {
		ssize_t n = write(p->chan, p->chan_out.data + p->chan_out.off,
				  bytebuf_used(&p->chan_out));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			/* The runtime is going away: its reaping handles it. */
			bytebuf_reset(&p->chan_out, 0);
			return;
		}
		bytebuf_consume(&p->chan_out, (size_t)n);
	}
	if (bytebuf_used(&p->chan_out) == 0)
		bytebuf_reset(&p->chan_out, 64 * 1024);
}

/* Kills the runtime because of its own misbehaviour; the reaping answers. */
static void fn_runtime_kill(struct fn *f, const char *reason)
{
	f->kill_reason = reason;
	if (f->proc.pid > 0)
		kill(-f->proc.pid, SIGKILL);
	if (f->proc.chan >= 0) {
		close(f->proc.chan);
		f->proc.chan = -1;
	}
}

/* The function could not be started: answer the LOAD and the queue. */
static void fn_set_failed(struct fn *f, const char *msg)
{
	snprintf(f->failure, sizeof(f->failure), "%s", msg);
	f->state = PROTO_FN_FAILED;
	fn_line_flush(f, &f->proc.out, true);
	fn_line_flush(f, &f->proc.err, true);
	if (f->load_pending)
		fn_send_error(f, f->load_conn, f->load_id, PROTO_ERR_LOAD_FAILED, "%s", msg);
	f->load_pending = false;
	fn_fail_jobs(f, true, PROTO_ERR_LOAD_FAILED, msg);
	fn_proc_close(f);
}

static void fn_runtime_ready(struct fn *f)
{
	uint32_t init_us = (uint32_t)((clock_mono_ms() - f->start_ms) * 1000);

	fn_drain(f);
	f->state = PROTO_FN_READY;
	if (f->load_pending) {
		size_t max = PROTO_HEADER_SIZE + 8;
		uint8_t *p = f->sink.reserve(f->sink.opaque, f->load_conn, max);
		ssize_t n = p ? proto_encode_load_ok(p, max, f->load_id, f->generation, init_us)
			      : -ENOMEM;

		if (n > 0)
			f->sink.commit(f->sink.opaque, f->load_conn, (size_t)n);
		f->load_pending = false;
	}
	fn_run_next(f);
}

static void fn_runtime_result(struct fn *f, const struct proto_header *h, const uint8_t *payload)
{
	struct proto_result r;

	if (!f->cur || h->id != f->cur->id || proto_decode_result(payload, h->length, &r) < 0) {
		fn_runtime_kill(f, "Runtime.ProtocolError: unexpected or malformed RESULT");
		return;
	}
	/* Output written before the result is already in the pipes. */
	fn_drain(f);
	r.duration_us = (uint32_t)(clock_mono_us() - f->cur_start_ms * 1000);
	fn_send_result(f, f->cur->conn, f->cur->id, &r);
	fn_job_done(f);
	fn_run_next(f);
}

/* Frames from the runtime: LOAD_OK or ERROR while loading, then RESULTs. */
static void fn_chan_frames(struct fn *f)
{
	struct bytebuf *b = &f->proc.chan_in;

	while (f->proc.chan >= 0 && bytebuf_used(b) > 0) {
		struct proto_header h;
		const uint8_t *payload;
		ssize_t n = proto_parse_frame(b->data + b->off, bytebuf_used(b), &h, &payload);

		if (n == -EAGAIN)
			return;
		if (n < 0) {
			fn_runtime_kill(f,
					"Runtime.ProtocolError: bad frame on the runtime channel");
			return;
		}
		if (h.type == PROTO_LOAD_OK && f->state == PROTO_FN_LOADING) {
			fn_runtime_ready(f);
		} else if (h.type == PROTO_ERROR && f->state == PROTO_FN_LOADING) {
			struct proto_errmsg e;
			char msg[FN_MSG_MAX];

			if (proto_decode_error(payload, h.length, &e) < 0)
				snprintf(msg, sizeof(msg), "runtime sent a malformed error");
			else
				snprintf(msg, sizeof(msg), "%.*s", (int)e.message.len,
					 (const char *)e.message.ptr);
			fn_set_failed(f, msg);
			return; /* the channel is closed now */
		} else if (h.type == PROTO_RESULT && f->state == PROTO_FN_READY) {
			fn_runtime_result(f, &h, payload);
		} else {
			fn_runtime_kill(f,
					"Runtime.ProtocolError: unexpected frame from the runtime");
			return;
		}
		if (f->proc.chan >= 0)
			bytebuf_consume(b, (size_t)n);
	}
}

static void fn_chan_read(struct fn *f)
{
	struct fn_proc *p = &f->proc;
	bool eof = false;

	while (p->chan >= 0) {
		uint8_t *room = bytebuf_reserve(&p->chan_in, FN_READ_CHUNK);
		ssize_t n;

		if (!room) {
			fn_runtime_kill(f, "Runtime.InternalError: out of memory");
			return;
		}
		n = read(p->chan, room, FN_READ_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			eof = true;
			break;
		}
		bytebuf_commit(&p->chan_in, (size_t)n);
		if ((size_t)n < FN_READ_CHUNK)
			break;
	}
	fn_chan_frames(f);
	/* Closed its end: dying, or misbehaving. Reaping answers. */
	if (eof && p->chan >= 0)
		fn_runtime_kill(f, f->kill_reason);
}

/* The runtime process ended (reaped). */
static void fn_runtime_exited(struct fn *f, int wstatus)
{
	char how[64], last[FN_MSG_MAX / 2], msg[FN_MSG_MAX];

	if (f->proc.chan >= 0)
		fn_chan_read(f); /* a RESULT or LOAD_OK written just before the end */
	if (f->proc.pid <= 0)
		return; /* the frames ended it (failed load) */
	fn_drain(f);
	if (WIFSIGNALED(wstatus))
		snprintf(how, sizeof(how), "killed by signal %d", WTERMSIG(wstatus));
	else
		snprintf(how, sizeof(how), "exit status %d", WEXITSTATUS(wstatus));
	fn_tail_message(f, false, last, sizeof(last));
	if (f->state == PROTO_FN_LOADING) {
		if (f->kill_reason)
			snprintf(msg, sizeof(msg), "%s", f->kill_reason);
		else
			snprintf(msg, sizeof(msg), "runtime exited during init (%s)%s%s", how,
				 last[0] ? ": " : "", last);
		fn_set_failed(f, msg);
		return;
	}
	if (f->cur) {
		if (f->kill_reason && strncmp(f->kill_reason, "Runtime.", 8) == 0)
			snprintf(msg, sizeof(msg), "%s (%s)", f->kill_reason, how);
		else
			snprintf(msg, sizeof(msg), "runtime %s%s%s", how, last[0] ? ": " : "",
				 last);
		fn_send_failure(f, f->cur, PROTO_STATUS_UNHANDLED, "Runtime.ExitError", msg);
		fn_job_done(f);
	}
	fn_proc_close(f);
	log_info("function %" PRIu32 ": runtime %s; restarting it", f->generation, how);
	fn_start_runtime(f, true);
}

/* Starts the runtime (server mode); a restart answers no LOAD. */
static void fn_start_runtime(struct fn *f, bool restart)
{
	static char py_u[] = "-u";
	char boot[PATH_MAX];
	char *argv[6];
	const char *file;
	int err;

	f->state = PROTO_FN_LOADING;
	f->kill_reason = NULL;
	f->start_ms = clock_mono_ms();
	if (strcmp(f->runtime, FN_PYTHON_RUNTIME) == 0) {
		snprintf(boot, sizeof(boot), "%s/python/bootstrap.py", f->runtime_dir);
		file = f->python;
		argv[0] = f->python;
		argv[1] = py_u;
		argv[2] = boot;
		argv[3] = f->dir;
		argv[4] = f->handler;
		argv[5] = NULL;
	} else {
		snprintf(boot, sizeof(boot), "%s/%s/bootstrap", f->runtime_dir, f->runtime);
		file = boot;
		argv[0] = boot;
		argv[1] = f->dir;
		argv[2] = f->handler;
		argv[3] = NULL;
	}
	if (!restart)
		fn_begin_output(f);
	else
		f->tail_len = 0;
	err = fn_spawn(f, file, argv, NULL);
	if (err) {
		char msg[128];

		snprintf(msg, sizeof(msg), "cannot start the runtime: %s", strerror(-err));
		fn_set_failed(f, msg);
	}
}

/* ---- LOAD ------------------------------------------------------------------------- */

static int fn_rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if ((type == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT)
		log_debug("cannot remove %s: %s", path, strerror(errno));
	return 0;
}

static void fn_rmtree(const char *path)
{
	nftw(path, fn_rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static void fn_free_env(struct fn *f)
{
	for (char **e = f->env; e && *e; e++)
		free(*e);
	free(f->env);
	f->env = NULL;
}

/* Stops the current function and forgets it (state NONE). */
static void fn_unload(struct fn *f, const char *why)
{
	fn_proc_close(f);
	if (f->load_pending)
		fn_send_error(f, f->load_conn, f->load_id, PROTO_ERR_REPLACED, "%s", why);
	f->load_pending = false;
	fn_fail_jobs(f, true, PROTO_ERR_REPLACED, why);
	fn_job_done(f);
	if (f->dir[0])
		fn_rmtree(f->dir);
	f->dir[0] = '\0';
	fn_free_env(f);
	free(f->handler);
	f->handler = NULL;
	f->runtime[0] = f->mode[0] = '\0';
	f->state = PROTO_FN_NONE;
}

static bool fn_name_ok(struct proto_bytes b)
{
	if (b.len == 0 || b.len > FN_NAME_MAX)
		return false;
	for (uint32_t i = 0; i < b.len; i++) {
		char c = (char)b.ptr[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.'))
			return false;
	}
	return true;
}

/* Environment names: [A-Za-z_][A-Za-z0-9_]*. */
static bool fn_env_name_ok(struct proto_bytes b)
{
	for (uint32_t i = 0; i < b.len; i++) {
		char c = (char)b.ptr[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		      (i > 0 && c >= '0' && c <= '9')))
			return false;
	}
	return b.len > 0;
}

static int fn_copy_env(struct fn *f, const struct proto_kv *kv)
{
	struct proto_bytes k, v;
	uint32_t pos = 0, i = 0;

	f->env = calloc((size_t)kv->count + 1, sizeof(*f->env));
	if (!f->env)
		return -ENOMEM;
	while (proto_kv_next(kv, &pos, &k, &v)) {
		char *s = malloc((size_t)k.len + v.len + 2);

		if (!s)
			return -ENOMEM;
		memcpy(s, k.ptr, k.len);
		s[k.len] = '=';
		memcpy(s + k.len + 1, v.ptr, v.len);
		s[k.len + 1 + v.len] = '\0';
		f->env[i++] = s;
	}
	return 0;
}

/* Makes the fresh directory base_dir/<generation>. Returns 0 or -errno. */
static int fn_make_dir(struct fn *f)
{
	char *s;

	/* mkdir -p base_dir */
	snprintf(f->dir, sizeof(f->dir), "%s", f->base_dir);
	for (s = strchr(f->dir + 1, '/');; s = strchr(s + 1, '/')) {
		if (s)
			*s = '\0';
		if (mkdir(f->dir, 0755) < 0 && errno != EEXIST)
			return -errno;
		if (!s)
			break;
		*s = '/';
	}
	snprintf(f->dir, sizeof(f->dir), "%s/%" PRIu32, f->base_dir, f->generation);
	if (mkdir(f->dir, 0755) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	/* Left by an earlier kiln-init (tests): start afresh. */
	fn_rmtree(f->dir);
	return mkdir(f->dir, 0755) < 0 ? -errno : 0;
}

void fn_load(struct fn *f, uint64_t conn, uint32_t id, const struct proto_load *m)
{
	char bad[ARCHIVE_MAX_PATH + 1], boot[PATH_MAX];
	struct proto_bytes k, v;
	uint32_t pos = 0;
	bool server;
	int err, dfd;

	/* Check everything before the current function is touched. */
	if (!fn_name_ok(m->runtime)) {
		fn_send_error(f, conn, id, PROTO_ERR_UNSUPPORTED, "bad runtime name");
		return;
	}
	if (proto_bytes_eq(m->mode, "server")) {
		server = true;
	} else if (proto_bytes_eq(m->mode, "exec")) {
		server = false;
	} else {
		fn_send_error(f, conn, id, PROTO_ERR_UNSUPPORTED,
			      "unknown mode \"%.*s\" (exec or server)",
			      (int)(m->mode.len < 32 ? m->mode.len : 32),
			      (const char *)m->mode.ptr);
		return;
	}
	if (m->handler.len == 0 || m->handler.len > FN_HANDLER_MAX) {
		fn_send_error(f, conn, id, PROTO_ERR_BAD_PAYLOAD, "empty or oversized handler");
		return;
	}
	while (proto_kv_next(&m->env, &pos, &k, &v)) {
		if (!fn_env_name_ok(k)) {
			fn_send_error(f, conn, id, PROTO_ERR_BAD_PAYLOAD,
				      "bad environment variable name");
			return;
		}
	}
	if (server) {
		if (proto_bytes_eq(m->runtime, FN_PYTHON_RUNTIME)) {
			snprintf(boot, sizeof(boot), "%s/python/bootstrap.py", f->runtime_dir);
			err = access(f->python, X_OK) < 0 || access(boot, R_OK) < 0 ? -errno : 0;
		} else {
			snprintf(boot, sizeof(boot), "%s/%.*s/bootstrap", f->runtime_dir,
				 (int)m->runtime.len, (const char *)m->runtime.ptr);
			err = access(boot, X_OK) < 0 ? -errno : 0;
		}
		if (err) {
			fn_send_error(f, conn, id, PROTO_ERR_UNSUPPORTED,
				      "runtime %.*s is not available here (%s)",
				      (int)m->runtime.len, (const char *)m->runtime.ptr,
				      strerror(-err));
			return;
		}
	}
	err = archive_check(m->archive.ptr, m->archive.len, NULL);
	if (err) {
		archive_extract(-1, m->archive.ptr, m->archive.len, bad, sizeof(bad));
		fn_send_error(f, conn, id, PROTO_ERR_BAD_ARCHIVE, "bad archive: %s%s%s",
			      strerror(-err), bad[0] ? ": " : "", bad);
		return;
	}

	fn_unload(f, "replaced by a new LOAD");
	f->generation++;
	err = fn_make_dir(f);
	if (err) {
		fn_send_error(f, conn, id, PROTO_ERR_INTERNAL, "cannot create %s: %s", f->dir,
			      strerror(-err));
		f->dir[0] = '\0';
		return;
	}
	dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	err = dfd < 0 ? -errno
		      : archive_extract(dfd, m->archive.ptr, m->archive.len, bad, sizeof(bad));
	if (dfd >= 0)
		close(dfd);
	if (err) {
		fn_send_error(f, conn, id, PROTO_ERR_BAD_ARCHIVE, "cannot extract %s: %s", bad,
			      strerror(-err));
		fn_unload(f, "failed load");
		return;
	}
	f->server = server;
	memcpy(f->runtime, m->runtime.ptr, m->runtime.len);
	f->runtime[m->runtime.len] = '\0';
	snprintf(f->mode, sizeof(f->mode), "%s", server ? "server" : "exec");
	f->handler = strndup((const char *)m->handler.ptr, m->handler.len);
	f->memory_mb = m->memory_mb;
	f->init_timeout_ms = m->init_timeout_ms;
	if (!f->handler || fn_copy_env(f, &m->env) < 0) {
		fn_send_error(f, conn, id, PROTO_ERR_INTERNAL, "out of memory");
		fn_unload(f, "failed load");
		return;
	}
	f->failure[0] = '\0';
	log_debug("function %" PRIu32 " in %s: %s %s %s", f->generation, f->dir, f->runtime,
		  f->mode, f->handler);
	if (!server) {
		size_t max = PROTO_HEADER_SIZE + 8;
		uint8_t *p = f->sink.reserve(f->sink.opaque, conn, max);
		ssize_t n = p ? proto_encode_load_ok(p, max, id, f->generation, 0) : -ENOMEM;

		f->state = PROTO_FN_READY;
		if (n > 0)
			f->sink.commit(f->sink.opaque, conn, (size_t)n);
		return;
	}
	f->load_pending = true;
	f->load_conn = conn;
	f->load_id = id;
	fn_start_runtime(f, false);
}

/* ---- INVOKE ---------------------------------------------------------------------- */

void fn_invoke(struct fn *f, uint64_t conn, uint32_t id, const uint8_t *payload, size_t len)
{
	struct proto_invoke inv;
	struct fn_job *j;

	if (proto_decode_invoke(payload, len, &inv) < 0) {
		fn_send_error(f, conn, id, PROTO_ERR_BAD_PAYLOAD, "malformed INVOKE");
		return;
	}
	if (f->state == PROTO_FN_NONE) {
		fn_send_error(f, conn, id, PROTO_ERR_NOT_LOADED, "no function loaded");
		return;
	}
	if (f->state == PROTO_FN_FAILED) {
		fn_send_error(f, conn, id, PROTO_ERR_LOAD_FAILED, "function failed to start: %s",
			      f->failure);
		return;
	}
	if (f->queued >= FN_MAX_QUEUED || f->queued_bytes + len > FN_QUEUE_BYTES) {
		fn_send_error(f, conn, id, PROTO_ERR_BUSY, "too many invocations waiting");
		return;
	}
	j = calloc(1, sizeof(*j));
	if (j)
		j->payload = malloc(len ? len : 1);
	if (!j || !j->payload) {
		fn_job_free(j);
		fn_send_error(f, conn, id, PROTO_ERR_INTERNAL, "out of memory");
		return;
	}
	memcpy(j->payload, payload, len);
	proto_decode_invoke(j->payload, len, &j->inv); /* views into the copy */
	j->conn = conn;
	j->id = id;
	if (f->qtail)
		f->qtail->next = j;
	else
		f->head = j;
	f->qtail = j;
	f->queued++;
	f->queued_bytes += j->inv.payload.len;
	fn_run_next(f);
}

void fn_conn_closed(struct fn *f, uint64_t conn)
{
	struct fn_job **pp = &f->head;

	f->qtail = NULL;
	while (*pp) {
		struct fn_job *j = *pp;

		if (j->conn == conn) {
			*pp = j->next;
			f->queued--;
			f->queued_bytes -= j->inv.payload.len;
			fn_job_free(j);
		} else {
			f->qtail = j;
			pp = &j->next;
		}
	}
}

/* ---- the loop's side ---------------------------------------------------------------- */

void fn_describe(const struct fn *f, struct proto_hello_ok *out)
{
	out->generation = f->state == PROTO_FN_NONE ? 0 : f->generation;
	out->state = (uint8_t)f->state;
	out->runtime = fn_view(f->runtime);
	out->mode = fn_view(f->mode);
	out->handler = fn_view(f->handler);
}

int fn_pollfds(const struct fn *f, struct pollfd *pfds)
{
	const struct fn_proc *p = &f->proc;
	int n = 0;

	if (p->chan >= 0) {
		pfds[n].fd = p->chan;
		pfds[n++].events = (short)(POLLIN | (bytebuf_used(&p->chan_out) > 0 ? POLLOUT : 0));
	}
	if (p->in >= 0) {
		pfds[n].fd = p->in;
		pfds[n++].events = POLLOUT;
	}
	if (p->out.fd >= 0) {
		pfds[n].fd = p->out.fd;
		pfds[n++].events = POLLIN;
	}
	if (p->err.fd >= 0) {
		pfds[n].fd = p->err.fd;
		pfds[n++].events = POLLIN;
	}
	return n;
}

void fn_handle(struct fn *f, const struct pollfd *pfds, int n)
{
	for (int i = 0; i < n; i++) {
		int fd = pfds[i].fd;

		if (!pfds[i].revents)
			continue;
		/* Each handler may close descriptors: match them again. */
		if (fd == f->proc.out.fd)
			fn_stream_read(f, &f->proc.out);
		else if (fd == f->proc.err.fd)
			fn_stream_read(f, &f->proc.err);
		else if (fd == f->proc.in)
			fn_stdin_write(f);
		else if (fd == f->proc.chan && (pfds[i].revents & POLLOUT))
			fn_chan_flush(f);
		if (fd == f->proc.chan && (pfds[i].revents & (POLLIN | POLLHUP | POLLERR)))
			fn_chan_read(f);
	}
}

int64_t fn_next_deadline(const struct fn *f)
{
	int64_t d = f->cur ? f->cur_deadline_ms : -1;

	if (f->state == PROTO_FN_LOADING && f->init_timeout_ms && f->proc.pid > 0 &&
	    !f->kill_reason) {
		int64_t l = f->start_ms + (int64_t)f->init_timeout_ms;

		if (d < 0 || l < d)
			d = l;
	}
	return d;
}

void fn_tick(struct fn *f, int64_t now_ms)
{
	if (f->cur && f->cur_deadline_ms >= 0 && now_ms >= f->cur_deadline_ms) {
		char msg[96];

		snprintf(msg, sizeof(msg), "Task timed out after %" PRIu32 " ms",
			 f->cur->inv.deadline_ms);
		fn_drain(f);
		fn_send_failure(f, f->cur, PROTO_STATUS_TIMEOUT, "Runtime.Timeout", msg);
		fn_job_done(f);
		fn_proc_close(f);
		if (f->server)
			fn_start_runtime(f, true);
		else
			fn_run_next(f);
	}
	if (f->state == PROTO_FN_LOADING && f->init_timeout_ms && f->proc.pid > 0 &&
	    !f->kill_reason && now_ms >= f->start_ms + (int64_t)f->init_timeout_ms)
		fn_runtime_kill(f, "Runtime.InitTimeout: the handler did not load in time");
}

bool fn_child_exited(struct fn *f, pid_t pid, int wstatus)
{
	if (pid <= 0 || pid != f->proc.pid)
		return false;
	if (f->server)
		fn_runtime_exited(f, wstatus);
	else if (f->cur)
		fn_exec_finish(f, wstatus);
	else
		fn_proc_close(f);
	fn_run_next(f);
	return true;
}

/* ---- life ------------------------------------------------------------------------- */

struct fn *fn_create(const struct fn_config *cfg, const struct fn_sink *sink)
{
	struct fn *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->base_dir = strdup(cfg->base_dir);
	f->runtime_dir = strdup(cfg->runtime_dir);
	f->python = strdup(cfg->python);
	if (!f->base_dir || !f->runtime_dir || !f->python) {
		fn_destroy(f);
		return NULL;
	}
	f->sink = *sink;
	f->cur_deadline_ms = -1;
	fn_proc_init(&f->proc);
	return f;
}

void fn_destroy(struct fn *f)
{
	if (!f)
		return;
	if (f->base_dir)
		fn_unload(f, "kiln-init is stopping");
	bytebuf_free(&f->body);
	free(f->base_dir);
	free(f->runtime_dir);
	free(f->python);
	free(f);
}
