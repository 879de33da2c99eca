/* api.c - the control socket: JSON lines, parsed on the event loop,
 * executed on the control thread. See api.h and docs/control-api.md.
 *
 * A client is either reading (EPOLLIN watched) or busy (one request handed
 * to the control thread; its fd is watched for nothing until the reply is
 * written, so further lines wait in the kernel or in `in`). A client whose
 * peer hangs up while busy is marked closing and freed when its reply
 * comes back. Everything about clients happens on the loop thread; the job
 * queue between the threads is under `lock`.
 */
#include "vmm/api.h"

#include "common/log.h"
#include "common/unixsock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define API_READ_CHUNK 4096
#define API_MAX_OUT    (1 << 20) /* unread replies beyond this: drop the client */

struct api_client {
	struct api *a;
	int fd;
	bool watched;
	bool busy;    /* a request is with the control thread */
	bool closing; /* peer gone or line too long: free when idle and flushed */
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_len, out_off;
	struct api_client *next, *prev;
};

struct api_job {
	struct api_client *c;
	json_t *request;
	json_t *reply;
	struct api_job *next;
};

struct api {
	struct evloop *loop;
	char *path;
	int listen_fd;
	bool listen_watched;
	ino_t listen_ino;
	int wake_fd;
	struct api_client clients; /* list head (sentinel) */

	pthread_mutex_t lock;
	struct api_job *jobs, **jobs_tail;
};

/* ---- replies --------------------------------------------------------------------- */

json_t *api_error(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

json_t *api_ok(void)
{
	return json_pack("{s:b}", "ok", 1);
}

/* ---- clients (loop thread) -------------------------------------------------------- */

static void api_client_event(void *opaque, uint32_t events);

static void api_client_free(struct api_client *c)
{
	if (c->watched)
		evloop_del(c->a->loop, c->fd);
	close(c->fd);
	c->prev->next = c->next;
	c->next->prev = c->prev;
	free(c->in);
	free(c->out);
	free(c);
}

/* Watches for what the client needs now: output space while replies are
 * pending, input while idle. */
static void api_client_rearm(struct api_client *c)
{
	uint32_t ev = 0;

	if (!c->watched)
		return;
	if (c->out_len > c->out_off)
		ev |= EPOLLOUT;
	if (!c->busy && !c->closing)
		ev |= EPOLLIN;
	if (evloop_mod(c->a->loop, c->fd, ev) < 0)
		log_debug("api: evloop_mod: failed");
}

/* Writes what it can. Returns false when the client is gone (freed). */
static bool api_client_flush(struct api_client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		api_client_free(c); /* EPIPE, ECONNRESET... */
		return false;
	}
	if (c->out_off == c->out_len) {
		c->out_off = c->out_len = 0;
		if (c->closing && !c->busy) {
			api_client_free(c);
			return false;
		}
	}
	api_client_rearm(c);
	return true;
}

/* Queues `reply` (consumed) as one line. Returns false when the client is gone. */
static bool api_client_send(struct api_client *c, json_t *reply)
{
	char *text = reply ? json_dumps(reply, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
	size_t len;

	json_decref(reply);
	if (!text)
		text = strdup("{\"ok\":false,\"error\":\"out of memory\"}");
	if (!text) {
		api_client_free(c);
		return false;
	}
	len = strlen(text);
	if (c->out_len + len + 1 > API_MAX_OUT) {
		free(text);
		log_warn("api: a client does not read its replies; dropping it");
		api_client_free(c);
		return false;
	}
	{
		char *p = realloc(c->out, c->out_len + len + 1);

		if (!p) {
			free(text);
			api_client_free(c);
			return false;
		}
		c->out = p;
	}
	memcpy(c->out + c->out_len, text, len);
	c->out[c->out_len + len] = '\n';
	c->out_len += len + 1;
	free(text);
	return api_client_flush(c);
}

static void api_enqueue(struct api *a, struct api_job *job)
{
	uint64_t one = 1;

	pthread_mutex_lock(&a->lock);
	job->next = NULL;
	*a->jobs_tail = job;
	a->jobs_tail = &job->next;
	pthread_mutex_unlock(&a->lock);
	if (write(a->wake_fd, &one, sizeof(one)) < 0)
		log_warn("api: wake: %s", strerror(errno));
}

/* Handles one complete line (NUL-terminated, without its newline). Returns
 * false when the client is gone. */
static bool api_client_line(struct api_client *c, const char *line, size_t len)
{
	json_error_t err;
	json_t *req, *op;
	struct api_job *job;

	if (len == 0 || strspn(line, " \t\r") == len)
		return true; /* blank lines are ignored */
	req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &err);
	if (!req)
		return api_client_send(
			c, api_error("malformed JSON: %s (column %d)", err.text, err.column));
	if (!json_is_object(req)) {
		json_decref(req);
		return api_client_send(c, api_error("a request must be a JSON object"));
	}
	op = json_object_get(req, "op");
	if (!json_is_string(op)) {
		json_decref(req);
		return api_client_send(c, api_error("the request has no \"op\" string"));
	}
	job = calloc(1, sizeof(*job));
	if (!job) {
		json_decref(req);
		return api_client_send(c, api_error("out of memory"));
	}
	job->c = c;
	job->request = req;
	c->busy = true;
	api_client_rearm(c);
	api_enqueue(c->a, job);
	return true;
}

/* Consumes complete lines from `in` while the client is idle. Returns false
 * when the client is gone. */
static bool api_client_process(struct api_client *c)
{
	while (!c->busy && !c->closing) {
		char *nl = memchr(c->in, '\n', c->in_len);
		size_t len, rest;

		if (!nl) {
			if (c->in_len > API_MAX_LINE) {
				c->closing = true;
				c->in_len = 0;
				return api_client_send(
					c, api_error("request line longer than %d bytes; closing "
						     "the connection",
						     API_MAX_LINE));
			}
			return true;
		}
		len = (size_t)(nl - c->in);
		if (len > API_MAX_LINE) {
			c->closing = true;
			c->in_len = 0;
			return api_client_send(c, api_error("request line longer than %d bytes; "
							    "closing the connection",
							    API_MAX_LINE));
		}
		*nl = '\0';
		if (!api_client_line(c, c->in, len))
			return false;
		rest = c->in_len - len - 1;
		memmove(c->in, nl + 1, rest);
		c->in_len = rest;
	}
	return true;
}

static void api_client_read(struct api_client *c)
{
	for (;;) {
		ssize_t n;

		if (c->in_cap - c->in_len < API_READ_CHUNK) {
			size_t cap = c->in_cap ? c->in_cap * 2 : 2 * API_READ_CHUNK;
			char *p;

			if (cap > API_MAX_LINE + 2 * API_READ_CHUNK)
				cap = API_MAX_LINE + 2 * API_READ_CHUNK;
			if (cap <= c->in_cap) {
				/* Full and still no newline: api_client_process
				 * answers and closes. */
				api_client_process(c);
				return;
			}
			p = realloc(c->in, cap);
			if (!p) {
				api_client_free(c);
				return;
			}
			c->in = p;
			c->in_cap = cap;
		}
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			/* EOF or error: answer what is complete, then go. */
			if (!api_client_process(c))
				return;
			c->closing = true;
			if (c->watched) {
				evloop_del(c->a->loop, c->fd);
				c->watched = false;
			}
			if (!c->busy)
				api_client_free(c);
			return;
		}
		c->in_len += (size_t)n;
		if (!api_client_process(c) || c->busy || c->closing)
			return;
	}
}

static void api_client_event(void *opaque, uint32_t events)
{
	struct api_client *c = opaque;

	if (events & EPOLLOUT) {
		if (!api_client_flush(c))
			return;
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		if (c->busy || c->closing) {
			/* Only a hangup can wake us here: stop watching; the
			 * reply's arrival frees the client. */
			if (c->watched) {
				evloop_del(c->a->loop, c->fd);
				c->watched = false;
			}
			c->closing = true;
			if (!c->busy)
				api_client_free(c);
			return;
		}
		api_client_read(c);
	}
}

static void api_accept(void *opaque, uint32_t events)
{
	struct api *a = opaque;

	(void)events;
	for (int i = 0; i < 16; i++) {
		struct api_client *c;
		int fd = accept4(a->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_warn("api: accept: %s", strerror(errno));
			return;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			return;
		}
		c->a = a;
		c->fd = fd;
		c->next = a->clients.next;
		c->prev = &a->clients;
		a->clients.next->prev = c;
		a->clients.next = c;
		if (evloop_add(a->loop, fd, EPOLLIN, api_client_event, c) < 0) {
			api_client_free(c);
			continue;
		}
		c->watched = true;
	}
}

/* ---- the control thread -------------------------------------------------------------- */

/* Loop thread: writes a finished job's reply and lets the client go on. */
static void api_reply_cb(void *opaque, uint32_t events)
{
	struct api_job *job = opaque;
	struct api_client *c = job->c;

	(void)events;
	c->busy = false;
	if (c->closing && !c->watched) {
		json_decref(job->reply);
		job->reply = NULL;
		api_client_free(c);
		return;
	}
	if (!api_client_send(c, job->reply)) {
		job->reply = NULL;
		return;
	}
	job->reply = NULL;
	api_client_process(c); /* pipelined requests */
}

void api_dispatch(struct api *a, api_handler_fn fn, void *opaque)
{
	uint64_t v;

	if (read(a->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_debug("api: wake read: %s", strerror(errno));
	for (;;) {
		struct api_job *job;

		pthread_mutex_lock(&a->lock);
		job = a->jobs;
		if (job) {
			a->jobs = job->next;
			if (!a->jobs)
				a->jobs_tail = &a->jobs;
		}
		pthread_mutex_unlock(&a->lock);
		if (!job)
			return;
		job->reply = fn(opaque, job->request);
		if (!job->reply)
			job->reply = api_error("out of memory");
		evloop_call_sync(a->loop, api_reply_cb, job);
		json_decref(job->request);
		json_decref(job->reply);
		free(job);
	}
}

int api_wakeup_fd(const struct api *a)
{
	return a->wake_fd;
}

/* ---- creation ------------------------------------------------------------------------- */

/* Removes a stale socket file at `path`: only a socket nobody listens on. */
struct api *api_create(const char *path, struct evloop *loop)
{
	struct api *a;
	int ret;

	a = calloc(1, sizeof(*a));
	if (!a) {
		log_error("out of memory");
		return NULL;
	}
	a->loop = loop;
	a->listen_fd = -1;
	a->wake_fd = -1;
	a->clients.next = a->clients.prev = &a->clients;
	a->jobs_tail = &a->jobs;
	pthread_mutex_init(&a->lock, NULL);
	a->path = strdup(path);
	a->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!a->path || a->wake_fd < 0) {
		log_error("api: %s", a->path ? strerror(errno) : "out of memory");
		goto out_destroy;
	}
	a->listen_fd = unixsock_listen(path, "--api-sock", 64, &a->listen_ino);
	if (a->listen_fd < 0)
		goto out_destroy;
	ret = evloop_add(loop, a->listen_fd, EPOLLIN, api_accept, a);
	if (ret < 0) {
		log_error("--api-sock: cannot watch %s: %s", path, strerror(-ret));
		goto out_destroy;
	}
	a->listen_watched = true;
	return a;

out_destroy:
	api_destroy(a);
	return NULL;
}

static void api_teardown(void *opaque, uint32_t events)
{
	struct api *a = opaque;

	(void)events;
	while (a->clients.next != &a->clients)
		api_client_free(a->clients.next);
	if (a->listen_watched)
		evloop_del(a->loop, a->listen_fd);
	a->listen_watched = false;
}

void api_destroy(struct api *a)
{

	if (!a)
		return;
	evloop_call_sync(a->loop, api_teardown, a);
	while (a->jobs) {
		struct api_job *job = a->jobs;

		a->jobs = job->next;
		json_decref(job->request);
		free(job);
	}
	if (a->listen_fd >= 0) {
		close(a->listen_fd);
		unixsock_unlink_own(a->path, a->listen_ino);
	}
	if (a->wake_fd >= 0)
		close(a->wake_fd);
	pthread_mutex_destroy(&a->lock);
	free(a->path);
	free(a);
}

/* ---- client ------------------------------------------------------------------------------ */

int api_request(const char *path, json_t *request, json_t **reply, char *why, size_t why_len)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char *text, *buf = NULL;
	size_t len, cap = 0, used = 0;
	json_error_t err;
	int fd, ret = 0;

	*reply = NULL;
	if (!path || strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(why, why_len, "socket path too long");
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		snprintf(why, why_len, "cannot connect to %s: %s", path, strerror(errno));
		goto out_close;
	}
	text = json_dumps(request, JSON_COMPACT);
	if (!text) {
		ret = -ENOMEM;
		snprintf(why, why_len, "out of memory");
		goto out_close;
	}
	len = strlen(text);
	text[len] = '\0';
	for (size_t off = 0; off <= len;) {
		/* the line, then its newline */
		ssize_t n = off < len ? send(fd, text + off, len - off, MSG_NOSIGNAL)
				      : send(fd, "\n", 1, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = -errno;
			snprintf(why, why_len, "cannot send the request: %s", strerror(errno));
			free(text);
			goto out_close;
		}
		off += (size_t)n;
	}
	free(text);
	for (;;) {
		ssize_t n;
		char *nl;

		if (cap - used < 4096) {
			char *p;

			cap = cap ? cap * 2 : 8192;
			if (cap > (16 << 20)) {
				ret = -E2BIG;
				snprintf(why, why_len, "reply too long");
				goto out_close;
			}
			p = realloc(buf, cap);
			if (!p) {
				ret = -ENOMEM;
				snprintf(why, why_len, "out of memory");
				goto out_close;
			}
			buf = p;
		}
		n = recv(fd, buf + used, cap - used, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : -ECONNRESET;
			snprintf(why, why_len, "kiln-vmm closed the connection without a reply");
			goto out_close;
		}
		used += (size_t)n;
		nl = memchr(buf, '\n', used);
		if (nl) {
			*reply = json_loadb(buf, (size_t)(nl - buf), 0, &err);
			if (!*reply) {
				ret = -EPROTO;
				snprintf(why, why_len, "malformed reply: %s", err.text);
			}
			break;
		}
	}
out_close:
	free(buf);
	if (fd >= 0)
		close(fd);
	return ret;
}
