/* function_exec.c - exec mode: one process per INVOKE, the payload on its
 * stdin, its stdout the body, its exit status the outcome. */
#include "agent/function_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

void fn_stdin_write(struct fn *f)
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

void fn_exec_finish(struct fn *f, int wstatus)
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
		fn_tail_message(&f->tail, true, tail, sizeof(tail));
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
