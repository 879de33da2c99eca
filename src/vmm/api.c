/* api.c - the control socket: JSON lines, read, executed and answered on the
 * control thread (the VMM's main thread). See api.h and docs/control-api.md.
 *
 * The listener and every client socket are registered on an epoll instance
 * of their own, whose descriptor the control thread polls
 * (api_wakeup_fd()); api_dispatch() then accepts, reads, runs complete
 * lines through the handler and writes each reply at once, all without
 * blocking. No other thread touches any of it, so nothing here is locked.
 *
 * Why not the I/O event loop: requests were read there and executed on the
 * control thread, and the reply was handed back to the loop thread to be
 * written: three thread wake-ups per round trip besides the client's. On a
 * busy host (vCPU threads on every core) a woken thread can wait a
 * scheduler tick or more for a CPU, which made round trips of a few
 * milliseconds out of sub-millisecond requests. Now the one thread that
 * must execute the request is the only one woken.
 *
 * Fairness: one dispatch runs at most API_LINES_PER_ROUND lines per client;
 * when complete lines are left, `kick_fd` (an eventfd in the same epoll set)
 * keeps the descriptor readable so the control thread comes back after
 * serving its other inputs.
 */
#include "vmm/api.h"

#include "common/log.h"
#include "common/unixsock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define API_READ_CHUNK	    4096
#define API_MAX_OUT	    (1 << 20) /* unread replies beyond this: drop the client */
#define API_LINES_PER_ROUND 16
#define API_EVENTS	    32

struct api_client {
	struct api *a;
	int fd;
	uint32_t events; /* what epoll watches */
	bool closing;	 /* peer sent EOF or line too long: free once flushed */
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_len, out_off;
	struct api_client *next, *prev;
};

struct api {
	char *path;
	int listen_fd;
	ino_t listen_ino;
	int epfd;
	int kick_fd;
	struct api_client clients; /* list head (sentinel) */
	api_handler_fn fn;	   /* during api_dispatch */
	void *opaque;
	api_after_fn after; /* set by the handler now running (api_after_reply) */
	void *after_opaque;
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

/* ---- clients ------------------------------------------------------------------ */

static void api_client_free(struct api_client *c)
{
	epoll_ctl(c->a->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->prev->next = c->next;
	c->next->prev = c->prev;
	free(c->in);
	free(c->out);
	free(c);
}

/* Watches for what the client needs now: output space while replies are
 * pending, input unless it is closing. Returns false when it freed the
 * client (a closing client with nothing left to write). */
static bool api_client_rearm(struct api_client *c)
{
	struct epoll_event ev = {.data.ptr = c};

	if (c->out_len > c->out_off)
		ev.events |= EPOLLOUT;
	if (!c->closing)
		ev.events |= EPOLLIN;
	if (!ev.events) {
		api_client_free(c);
		return false;
	}
	if (ev.events != c->events) {
		if (epoll_ctl(c->a->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
			log_warn("api: epoll_ctl: %s", strerror(errno));
			api_client_free(c);
			return false;
		}
		c->events = ev.events;
	}
	return true;
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
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	return api_client_rearm(c);
}

/* Queues `reply` (consumed) as one line and writes what the socket takes.
 * Returns false when the client is gone. */
static bool api_client_send(struct api_client *c, json_t *reply)
{
	char *text = reply ? json_dumps(reply, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
	size_t len;
	char *p;

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
	p = realloc(c->out, c->out_len + len + 1);
	if (!p) {
		free(text);
		api_client_free(c);
		return false;
	}
	c->out = p;
	memcpy(c->out + c->out_len, text, len);
	c->out[c->out_len + len] = '\n';
	c->out_len += len + 1;
	free(text);
	return api_client_flush(c);
}

/* Handles one complete line (NUL-terminated, without its newline): checks
 * it and runs it through the handler. Returns false when the client is
 * gone. */
static bool api_client_line(struct api_client *c, const char *line, size_t len)
{
	struct api *a = c->a;
	json_error_t err;
	json_t *req, *op, *reply;
	bool alive;

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
	a->after = NULL;
	reply = a->fn(a->opaque, req);
	json_decref(req);
	alive = api_client_send(c, reply ? reply : api_error("out of memory"));
	if (a->after) {
		api_after_fn after = a->after;

		a->after = NULL;
		after(a->after_opaque);
	}
	return alive;
}

void api_after_reply(struct api *a, api_after_fn fn, void *opaque)
{
	a->after = fn;
	a->after_opaque = opaque;
}

static bool api_client_too_long(struct api_client *c)
{
	c->closing = true;
	c->in_len = 0;
	return api_client_send(c, api_error("request line longer than %d bytes; closing the "
					    "connection",
					    API_MAX_LINE));
}

/* Runs up to API_LINES_PER_ROUND complete lines from `in`. Returns false
 * when the client is gone; sets *more when complete lines are left. */
static bool api_client_process(struct api_client *c, bool *more)
{
	for (int i = 0; !c->closing; i++) {
		char *nl = c->in_len ? memchr(c->in, '\n', c->in_len) : NULL;
		size_t len, rest;

		if (!nl)
			return c->in_len > API_MAX_LINE ? api_client_too_long(c) : true;
		if (i == API_LINES_PER_ROUND) {
			*more = true;
			return true;
		}
		len = (size_t)(nl - c->in);
		if (len > API_MAX_LINE)
			return api_client_too_long(c);
		*nl = '\0';
		if (!api_client_line(c, c->in, len))
			return false;
		rest = c->in_len - len - 1;
		memmove(c->in, nl + 1, rest);
		c->in_len = rest;
	}
	return true;
}

/* Reads what is there (at most a longest line and a bit buffered), then
 * runs the complete lines. Returns false when the client is gone. */
static bool api_client_read(struct api_client *c, bool *more)
{
	for (;;) {
		ssize_t n;

		if (c->in_cap - c->in_len < API_READ_CHUNK) {
			size_t cap = c->in_cap ? c->in_cap * 2 : 2 * API_READ_CHUNK;
			char *p;

			if (cap > API_MAX_LINE + 2 * API_READ_CHUNK)
				cap = API_MAX_LINE + 2 * API_READ_CHUNK;
			if (cap <= c->in_cap)
				return api_client_process(c, more); /* full: lines, or too long */
			p = realloc(c->in, cap);
			if (!p) {
				api_client_free(c);
				return false;
			}
			c->in = p;
			c->in_cap = cap;
		}
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return api_client_process(c, more);
		if (n <= 0) {
			/* EOF or error: answer what is complete, then go once
			 * the replies are out. */
			while (!c->closing && c->in_len && memchr(c->in, '\n', c->in_len)) {
				bool again = false;

				if (!api_client_process(c, &again))
					return false;
			}
			c->closing = true;
			return api_client_rearm(c);
		}
		c->in_len += (size_t)n;
	}
}

static void api_client_event(struct api_client *c, uint32_t events, bool *more)
{
	if (events & EPOLLOUT) {
		if (!api_client_flush(c))
			return;
	}
	if (events & EPOLLERR) {
		api_client_free(c);
		return;
	}
	if ((events & (EPOLLIN | EPOLLHUP)) && !c->closing) {
		if (!api_client_read(c, more))
			return;
	} else if (events & EPOLLHUP) {
		api_client_free(c); /* closing, and the peer is gone entirely */
		return;
	}
}

static void api_accept(struct api *a)
{
	for (int i = 0; i < 16; i++) {
		struct epoll_event ev = {.events = EPOLLIN};
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
		c->events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			log_warn("api: epoll_ctl: %s", strerror(errno));
			close(fd);
			free(c);
			continue;
		}
		c->next = a->clients.next;
		c->prev = &a->clients;
		a->clients.next->prev = c;
		a->clients.next = c;
	}
}

/* ---- the control thread's entry points ------------------------------------------ */

void api_dispatch(struct api *a, api_handler_fn fn, void *opaque)
{
	struct epoll_event evs[API_EVENTS];
	bool more = false;
	uint64_t v;
	int n;

	if (read(a->kick_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_debug("api: kick read: %s", strerror(errno));
	a->fn = fn;
	a->opaque = opaque;
	n = epoll_wait(a->epfd, evs, API_EVENTS, 0);
	for (int i = 0; i < n; i++) {
		if (evs[i].data.ptr == a)
			api_accept(a);
		else if (evs[i].data.ptr != &a->kick_fd)
			api_client_event(evs[i].data.ptr, evs[i].events, &more);
	}
	/* Lines left by the per-client limit, including those of clients
	 * whose socket has nothing new to say. */
	for (struct api_client *c = a->clients.next; c != &a->clients && !more; c = c->next)
		more = !c->closing && c->in_len && memchr(c->in, '\n', c->in_len);
	if (more && write(a->kick_fd, &(uint64_t){1}, sizeof(uint64_t)) < 0)
		log_warn("api: kick: %s", strerror(errno));
}

int api_wakeup_fd(const struct api *a)
{
	return a->epfd;
}

/* ---- creation ------------------------------------------------------------------------- */

struct api *api_create(const char *path, struct evloop *loop)
{
	struct epoll_event lev = {.events = EPOLLIN}, kev = {.events = EPOLLIN};
	struct api *a;

	(void)loop; /* served on the control thread (see the top) */
	/* jansson draws its hash seed from /dev/urandom at the first JSON
	 * object; draw it now, not in the middle of the first request. */
	json_object_seed(0);
	a = calloc(1, sizeof(*a));
	if (!a) {
		log_error("out of memory");
		return NULL;
	}
	a->listen_fd = -1;
	a->kick_fd = -1;
	a->clients.next = a->clients.prev = &a->clients;
	a->path = strdup(path);
	a->epfd = epoll_create1(EPOLL_CLOEXEC);
	a->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!a->path || a->epfd < 0 || a->kick_fd < 0) {
		log_error("api: %s", a->path ? strerror(errno) : "out of memory");
		goto out_destroy;
	}
	a->listen_fd = unixsock_listen(path, "--api-sock", 64, &a->listen_ino);
	if (a->listen_fd < 0)
		goto out_destroy;
	lev.data.ptr = a;
	kev.data.ptr = &a->kick_fd;
	if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->listen_fd, &lev) < 0 ||
	    epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->kick_fd, &kev) < 0) {
		log_error("--api-sock: cannot watch %s: %s", path, strerror(errno));
		goto out_destroy;
	}
	return a;

out_destroy:
	api_destroy(a);
	return NULL;
}

void api_destroy(struct api *a)
{
	if (!a)
		return;
	while (a->clients.next != &a->clients)
		api_client_free(a->clients.next);
	unixsock_close_own(a->listen_fd, a->path, a->listen_ino);
	if (a->kick_fd >= 0)
		close(a->kick_fd);
	if (a->epfd >= 0)
		close(a->epfd);
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
