/* function_server.c - server mode: a long-lived runtime (python
 * bootstrap.py, node bootstrap.js) fed INVOKEs over a private channel (fd 3)
 * with kiln's framing; its READY answers the LOAD, its RESULTs the invocations; a
 * crash fails the running invocation and restarts it. */
#include "agent/function_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

void fn_chan_flush(struct fn *f)
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

void fn_runtime_kill(struct fn *f, const char *reason)
{
	f->kill_reason = reason;
	if (f->proc.pid > 0)
		kill(-f->proc.pid, SIGKILL);
	if (f->proc.chan >= 0) {
		close(f->proc.chan);
		f->proc.chan = -1;
	}
}

/* The function, or a spare, could not be started or died before its LOAD_OK:
 * answer the LOAD (or the PRESTART) and the queue. A function becomes
 * FAILED; a spare is simply gone (no function, nothing restarts). */
static void fn_set_failed(struct fn *f, const char *msg)
{
	if (f->spare == FN_SPARE_NONE) {
		snprintf(f->failure, sizeof(f->failure), "%s", msg);
		f->state = PROTO_FN_FAILED;
	} else if (!f->load_pending) {
		log_info("spare %s runtime ended: %s", f->spare_runtime, msg);
	}
	fn_line_flush(f, &f->proc.out, true);
	fn_line_flush(f, &f->proc.err, true);
	if (f->load_pending)
		fn_send_error(f, f->load_conn, f->load_id, PROTO_ERR_LOAD_FAILED, "%s", msg);
	f->load_pending = false;
	fn_fail_jobs(f, true, PROTO_ERR_LOAD_FAILED, msg); /* none without a function */
	fn_proc_close(f);
	f->spare = FN_SPARE_NONE;
}

static void fn_runtime_ready(struct fn *f)
{
	uint32_t init_us = (uint32_t)((clock_mono_ms() - f->start_ms) * 1000);

	fn_drain(f);
	if (f->spare == FN_SPARE_STARTING)
		f->spare = FN_SPARE_IDLE; /* generation 0: no function yet */
	else
		f->state = PROTO_FN_READY;
	if (f->load_pending) {
		size_t max = PROTO_HEADER_SIZE + 8;
		uint8_t *p = f->sink.reserve(f->sink.opaque, f->load_conn, max);
		uint32_t gen = f->spare == FN_SPARE_NONE ? f->generation : 0;
		ssize_t n = p ? proto_encode_load_ok(p, max, f->load_id, gen, init_us) : -ENOMEM;

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
	/* Output written before the result is already in the pipes, and read
	 * in this poll round (fn_handle). */
	fn_drain_polled(f);
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
		if (h.type == PROTO_LOAD_OK && fn_starting(f)) {
			fn_runtime_ready(f);
		} else if (h.type == PROTO_ERROR && fn_starting(f)) {
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

void fn_chan_read(struct fn *f)
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

void fn_runtime_exited(struct fn *f, int wstatus)
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
	fn_tail_message(&f->tail, false, last, sizeof(last));
	if (fn_starting(f) || f->spare != FN_SPARE_NONE) {
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

static const struct fn_interp fn_interps[] = {
	{FN_PYTHON_RUNTIME, NULL, "-u", "python/bootstrap.py"},
	{"node", "/usr/bin/node", NULL, "node/bootstrap.js"},
};

const struct fn_interp *fn_interp_find(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(fn_interps) / sizeof(fn_interps[0]); i++)
		if (strlen(fn_interps[i].name) == len && !memcmp(fn_interps[i].name, name, len))
			return &fn_interps[i];
	return NULL;
}

/* argv for an interpreted runtime rt, or runtime_dir/NAME/bootstrap:
 * `interp [opt] boot` and, unless spare, DIR HANDLER. Returns the file to
 * execute (boot holds the bootstrap's path). */
static const char *fn_runtime_argv(const struct fn *f, const char *name, bool spare,
				   char boot[PATH_MAX], char *argv[6])
{
	const struct fn_interp *rt = fn_interp_find(name, strlen(name));
	const char *file;
	int n = 0;

	if (rt) {
		snprintf(boot, PATH_MAX, "%s/%s", f->runtime_dir, rt->boot);
		file = rt->interp ? rt->interp : f->python;
		argv[n++] = (char *)file;
		if (rt->opt)
			argv[n++] = (char *)rt->opt;
	} else {
		snprintf(boot, PATH_MAX, "%s/%s/bootstrap", f->runtime_dir, name);
		file = boot;
	}
	argv[n++] = boot;
	if (!spare) {
		argv[n++] = (char *)f->dir;
		argv[n++] = f->handler;
	}
	argv[n] = NULL;
	return file;
}

void fn_start_runtime(struct fn *f, bool restart)
{
	char boot[PATH_MAX];
	char *argv[6];
	const char *file;
	int err;

	f->state = PROTO_FN_LOADING;
	f->kill_reason = NULL;
	f->start_ms = clock_mono_ms();
	if (fn_is_native(f->runtime, strlen(f->runtime))) {
		/* The handler is the runtime: no interpreter, no arguments. */
		int len = snprintf(boot, sizeof(boot), "%s/%s", f->dir, f->handler);

		if (len < 0 || (size_t)len >= sizeof(boot)) {
			fn_set_failed(f,
				      "cannot start the runtime: the handler's path is too long");
			return;
		}
		file = boot;
		argv[0] = boot;
		argv[1] = NULL;
	} else {
		file = fn_runtime_argv(f, f->runtime, false, boot, argv);
	}
	if (!restart)
		fn_begin_output(f);
	else
		f->tail.len = 0;
	err = fn_spawn(f, file, argv, NULL);
	if (err) {
		char msg[128];

		snprintf(msg, sizeof(msg), "cannot start the runtime: %s", strerror(-err));
		fn_set_failed(f, msg);
	}
}

void fn_start_spare(struct fn *f)
{
	char boot[PATH_MAX], *argv[6];
	const char *file = fn_runtime_argv(f, f->spare_runtime, true, boot, argv);
	int err;

	f->spare = FN_SPARE_STARTING;
	f->server = true;
	f->kill_reason = NULL;
	f->start_ms = clock_mono_ms();
	fn_begin_output(f);
	err = fn_spawn(f, file, argv, NULL);
	if (err) {
		char msg[128];

		snprintf(msg, sizeof(msg), "cannot start the runtime: %s", strerror(-err));
		fn_set_failed(f, msg);
	}
}

/* Appends one kv pair (name, value) to w. */
static void fn_put_pair(struct proto_writer *w, const char *name, size_t nlen, const char *value)
{
	proto_put_bytes(w, name, nlen);
	proto_put_str(w, value);
}

void fn_bind_runtime(struct fn *f)
{
	size_t max = PROTO_HEADER_SIZE + 64 + 2 * strlen(f->dir) + 2 * strlen(f->handler);
	uint32_t count = 2;
	char mb[16];
	struct proto_writer w;
	uint8_t *p;
	ssize_t n;

	for (char **e = f->env; e && *e; e++, count++)
		max += strlen(*e) + 8;
	if (f->memory_mb) {
		snprintf(mb, sizeof(mb), "%" PRIu32, f->memory_mb);
		max += 32;
		count++;
	}
	f->spare = FN_SPARE_NONE;
	f->state = PROTO_FN_LOADING;
	f->kill_reason = NULL;
	f->start_ms = clock_mono_ms();
	fn_begin_output(f);
	/* LOAD on the runtime channel: str dir, str handler, kv environment
	 * (the LOAD's, then what kiln-init sets for every function). */
	p = bytebuf_reserve(&f->proc.chan_out, max);
	if (!p) {
		fn_start_runtime(f, true);
		return;
	}
	proto_writer_init(&w, p, max);
	proto_begin(&w, PROTO_LOAD, 0);
	proto_put_str(&w, f->dir);
	proto_put_str(&w, f->handler);
	proto_put_u32(&w, count);
	for (char **e = f->env; e && *e; e++) {
		const char *eq = strchr(*e, '=');

		fn_put_pair(&w, *e, (size_t)(eq - *e), eq + 1);
	}
	fn_put_pair(&w, "KILN_FUNCTION_DIR", 17, f->dir);
	fn_put_pair(&w, "KILN_HANDLER", 12, f->handler);
	if (f->memory_mb)
		fn_put_pair(&w, "KILN_MEMORY_MB", 14, mb);
	n = proto_end(&w);
	if (n < 0) {
		log_warn("cannot hand the spare runtime its function: %s", strerror((int)-n));
		fn_start_runtime(f, true);
		return;
	}
	bytebuf_commit(&f->proc.chan_out, (size_t)n);
	log_debug("function %" PRIu32 ": handed to the spare %s runtime", f->generation,
		  f->runtime);
	fn_chan_flush(f);
}
