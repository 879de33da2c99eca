/* function.c - the function kiln-init runs (function.h): the queue of
 * INVOKEs and which runs next, the agent loop's side (descriptors to poll,
 * deadlines, exited children), create and destroy. The rest is split along
 * its seams behind function_internal.h. */
#include "agent/function_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

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

void fn_fail_jobs(struct fn *f, bool cur, uint32_t code, const char *msg)
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

void fn_job_done(struct fn *f)
{
	fn_job_free(f->cur);
	f->cur = NULL;
	f->cur_deadline_ms = -1;
	bytebuf_reset(&f->body, 64 * 1024);
	f->body_too_big = false;
}

void fn_begin_output(struct fn *f)
{
	f->log_sent = 0;
	f->log_truncated = false;
	f->tail.len = 0;
	f->proc.out.line_len = 0;
	f->proc.err.line_len = 0;
}

void fn_run_next(struct fn *f)
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
	/* The output pipes first. poll looked at them after the channel
	 * (fn_pollfds' order), so whatever the runtime wrote to stdout or
	 * stderr before a RESULT the channel holds is read now, and the
	 * RESULT needs no poll of its own to collect it. */
	for (int i = 0; i < n; i++) {
		int fd = pfds[i].fd;

		if (!pfds[i].revents)
			continue;
		/* Each handler may close descriptors: match them again. */
		if (fd == f->proc.out.fd)
			fn_stream_read(f, &f->proc.out);
		else if (fd == f->proc.err.fd)
			fn_stream_read(f, &f->proc.err);
	}
	f->streams_polled = true;
	for (int i = 0; i < n; i++) {
		int fd = pfds[i].fd;

		if (!pfds[i].revents)
			continue;
		if (fd == f->proc.in)
			fn_stdin_write(f);
		else if (fd == f->proc.chan && (pfds[i].revents & POLLOUT))
			fn_chan_flush(f);
		if (fd == f->proc.chan && (pfds[i].revents & (POLLIN | POLLHUP | POLLERR)))
			fn_chan_read(f);
	}
	f->streams_polled = false;
}

int64_t fn_next_deadline(const struct fn *f)
{
	int64_t d = f->cur ? f->cur_deadline_ms : -1;

	if (fn_starting(f) && f->init_timeout_ms && f->proc.pid > 0 && !f->kill_reason) {
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
	if (fn_starting(f) && f->init_timeout_ms && f->proc.pid > 0 && !f->kill_reason &&
	    now_ms >= f->start_ms + (int64_t)f->init_timeout_ms)
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
