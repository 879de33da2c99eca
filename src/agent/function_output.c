/* function_output.c - what goes to the host: ERROR and RESULT frames, and
 * the output of the handler or runtime: stdout and stderr read from their
 * pipes, cut into LOG frames by line (at most FN_MAX_LOG bytes an
 * invocation), exec mode's stdout kept as the body (the handler's process
 * group is killed as soon as it passes PROTO_MAX_BODY), and the end of
 * stderr kept for error messages. */
#include "agent/function_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

void fn_send_error(struct fn *f, uint64_t conn, uint32_t id, uint32_t code, const char *fmt, ...)
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

struct proto_bytes fn_view(const char *s)
{
	struct proto_bytes b = {(const uint8_t *)s, s ? (uint32_t)strlen(s) : 0};

	return b;
}

void fn_send_result(struct fn *f, uint64_t conn, uint32_t id, const struct proto_result *r)
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

void fn_send_failure(struct fn *f, struct fn_job *job, uint8_t status, const char *type,
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

void fn_tail_add(struct fn_tail *t, const uint8_t *p, size_t n)
{
	if (n >= FN_TAIL_MAX) {
		memcpy(t->buf, p + n - FN_TAIL_MAX, FN_TAIL_MAX);
		t->len = FN_TAIL_MAX;
		return;
	}
	if (t->len + n > FN_TAIL_MAX) {
		size_t drop = t->len + n - FN_TAIL_MAX;

		memmove(t->buf, t->buf + drop, t->len - drop);
		t->len -= drop;
	}
	memcpy(t->buf + t->len, p, n);
	t->len += n;
}

void fn_tail_message(const struct fn_tail *t, bool whole, char *out, size_t size)
{
	size_t end = t->len, start;

	while (end > 0 && (t->buf[end - 1] == '\n' || t->buf[end - 1] == '\r' ||
			   t->buf[end - 1] == ' ' || t->buf[end - 1] == '\t'))
		end--;
	start = end;
	if (whole) {
		start = end > size - 1 ? end - (size - 1) : 0;
	} else {
		while (start > 0 && t->buf[start - 1] != '\n')
			start--;
		if (end - start > size - 1)
			start = end - (size - 1);
	}
	memcpy(out, t->buf + start, end - start);
	out[end - start] = '\0';
	/* A NUL inside would end the str early; a str may not hold one. */
	for (size_t i = 0; i < end - start; i++) {
		if (out[i] == '\0')
			out[i] = '?';
	}
}

void fn_line_flush(struct fn *f, struct fn_stream *s, bool all)
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
		fn_tail_add(&f->tail, p, n);
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

void fn_stream_close(struct fn_stream *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

void fn_stream_read(struct fn *f, struct fn_stream *s)
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
			bool was = f->body_too_big;

			if (f->body_too_big || bytebuf_used(&f->body) + (size_t)n > PROTO_MAX_BODY)
				f->body_too_big = true;
			else if (bytebuf_append(&f->body, chunk, (size_t)n) < 0)
				f->body_too_big = true;
			/* The answer is decided: stop the writer now rather than
			 * drain it until its deadline (a handler writing GiBs). */
			if (f->body_too_big && !was && f->proc.pid > 0)
				kill(-f->proc.pid, SIGKILL);
		} else {
			fn_log_data(f, s, chunk, (size_t)n);
		}
		if ((size_t)n < sizeof(chunk))
			return; /* most likely empty now: save a read */
	}
}

void fn_drain_polled(struct fn *f)
{
	if (!f->streams_polled) {
		fn_drain(f);
		return;
	}
	fn_line_flush(f, &f->proc.out, true);
	fn_line_flush(f, &f->proc.err, true);
}

void fn_drain(struct fn *f)
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
