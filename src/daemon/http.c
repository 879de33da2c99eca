/* http.c - kilnd's HTTP server on libmicrohttpd (see http.h). */
#include "daemon/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/unixsock.h"

#define MAX_PARAMS HTTP_MAX_PARAMS
#define URL_MAX	   HTTP_URL_MAX
/* GnuTLS's defaults without TLS 1.0 and 1.1. */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

struct http {
	struct MHD_Daemon *tcp, *unix_d;
	const struct http_route *routes;
	void *app;
	struct http_config cfg;
	int unix_fd;
	char sock_path[108];
	ino_t sock_ino;
};

struct http_req {
	struct http *h;
	struct MHD_Connection *conn;
	const struct http_route *route;
	char method[16];
	char path[URL_MAX];
	char params[MAX_PARAMS][URL_MAX];
	unsigned nparams;
	uint8_t *body;
	size_t body_len, body_cap;
	bool too_big, bad_route;
	unsigned bad_status;
	enum auth_result denied; /* AUTH_OK: allowed */
	bool handled;
	pthread_mutex_t lock;
	bool suspended;
	struct MHD_Response *pending;
	unsigned pending_status;
	void *state;
	void (*free_state)(void *);
	http_stream_fn stream_fn;
	void *stream_opaque;
	char *query_string;
};

const char *http_method(struct http_req *r)
{
	return r->method;
}

const char *http_path(struct http_req *r)
{
	return r->path;
}

const char *http_param(struct http_req *r, unsigned n)
{
	return n < r->nparams ? r->params[n] : NULL;
}

const char *http_header(struct http_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *http_query(struct http_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

const uint8_t *http_body(struct http_req *r, size_t *len)
{
	*len = r->body_len;
	return r->body ? r->body : (const uint8_t *)"";
}

const char *http_query_string(struct http_req *r)
{
	return r->query_string ? r->query_string : "";
}

struct hdr_iter {
	void (*fn)(void *, const char *, const char *);
	void *opaque;
};

static enum MHD_Result hdr_cb(void *cls, enum MHD_ValueKind kind, const char *k, const char *v)
{
	struct hdr_iter *it = cls;

	(void)kind;
	if (k && v)
		it->fn(it->opaque, k, v);
	return MHD_YES;
}

void http_headers(struct http_req *r, void (*fn)(void *opaque, const char *k, const char *v),
		  void *opaque)
{
	struct hdr_iter it = {fn, opaque};

	MHD_get_connection_values(r->conn, MHD_HEADER_KIND, hdr_cb, &it);
}

void http_set_state(struct http_req *r, void *state, void (*free_fn)(void *))
{
	r->state = state;
	r->free_state = free_fn;
}

void *http_state(struct http_req *r)
{
	return r->state;
}

static void set_pending(struct http_req *r, unsigned status, struct MHD_Response *resp)
{
	pthread_mutex_lock(&r->lock);
	if (r->pending)
		MHD_destroy_response(r->pending);
	r->pending = resp;
	r->pending_status = status;
	pthread_mutex_unlock(&r->lock);
}

void http_reply(struct http_req *r, unsigned status, const char *content_type, const void *body,
		size_t len, const char *const *headers)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);

	if (!resp)
		return;
	if (content_type)
		MHD_add_response_header(resp, "Content-Type", content_type);
	for (unsigned i = 0; headers && headers[i] && headers[i + 1]; i += 2)
		MHD_add_response_header(resp, headers[i], headers[i + 1]);
	set_pending(r, status, resp);
}

void http_reply_json(struct http_req *r, unsigned status, json_t *body, const char *const *headers)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

	if (!text) {
		http_reply(r, 500, "application/json", "{\"error\":\"out of memory\"}", 25, NULL);
	} else {
		size_t n = strlen(text);
		text[n] = 0;
		{
			char *t2 = realloc(text, n + 2);
			if (t2) {
				text = t2;
				text[n++] = '\n';
				text[n] = 0;
			}
		}
		http_reply(r, status, "application/json", text, n, headers);
	}
	free(text);
	json_decref(body);
}

void http_reply_error(struct http_req *r, unsigned status, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	http_reply_json(r, status, json_pack("{s:s}", "error", msg), NULL);
}

static ssize_t stream_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct http_req *r = cls;
	ssize_t n;

	(void)pos;
	n = r->stream_fn(r->stream_opaque, buf, max);
	if (n < 0)
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (n == 0) {
		pthread_mutex_lock(&r->lock);
		if (!r->suspended) {
			r->suspended = true;
			MHD_suspend_connection(r->conn);
		}
		pthread_mutex_unlock(&r->lock);
	}
	return n;
}

void http_reply_stream(struct http_req *r, unsigned status, const char *content_type,
		       http_stream_fn fn, void *opaque)
{
	struct MHD_Response *resp;

	r->stream_fn = fn;
	r->stream_opaque = opaque;
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, stream_cb, r, NULL);
	if (!resp)
		return;
	if (content_type)
		MHD_add_response_header(resp, "Content-Type", content_type);
	set_pending(r, status, resp);
}

void http_suspend(struct http_req *r)
{
	pthread_mutex_lock(&r->lock);
	if (!r->suspended) {
		r->suspended = true;
		MHD_suspend_connection(r->conn);
	}
	pthread_mutex_unlock(&r->lock);
}

void http_resume(struct http_req *r)
{
	pthread_mutex_lock(&r->lock);
	if (r->suspended) {
		r->suspended = false;
		MHD_resume_connection(r->conn);
	}
	pthread_mutex_unlock(&r->lock);
}

/* Matches path against pattern, filling params (NULL: not kept). */
static bool match(const char *pattern, const char *path, char (*params)[URL_MAX], unsigned *nparams)
{
	const char *p = pattern, *u = path;
	unsigned np = 0;

	while (*p) {
		if (p[0] == '{' && p[1] == '*' && p[2] == '}') {
			if (np >= MAX_PARAMS || p[3] != 0)
				return false;
			if (params)
				snprintf(params[np], URL_MAX, "%s", u);
			np++;
			break;
		}
		if (p[0] == '{' && p[1] == '}') {
			const char *end = strchr(u, '/');
			size_t n = end ? (size_t)(end - u) : strlen(u);
			if (n == 0 || n >= URL_MAX || np >= MAX_PARAMS)
				return false;
			if (params) {
				memcpy(params[np], u, n);
				params[np][n] = 0;
			}
			np++;
			u += n;
			p += 2;
			continue;
		}
		if (*p != *u)
			return false;
		p++;
		u++;
	}
	if (!*p && *u)
		return false;
	if (nparams)
		*nparams = np;
	return true;
}

const struct http_route *http_route_find(const struct http_route *routes, const char *method,
					 const char *path, char params[MAX_PARAMS][URL_MAX],
					 unsigned *nparams, unsigned *status)
{
	bool path_known = false;

	*nparams = 0;
	for (const struct http_route *rt = routes; rt->pattern; rt++) {
		if (!match(rt->pattern, path, NULL, NULL))
			continue;
		path_known = true;
		if (!rt->method || strcmp(rt->method, method) == 0) {
			match(rt->pattern, path, params, nparams);
			*status = 200;
			return rt;
		}
	}
	*status = path_known ? 405 : 404;
	return NULL;
}

static void route(struct http *h, struct http_req *r)
{
	r->route = http_route_find(h->routes, r->method, r->path, r->params, &r->nparams,
				   &r->bad_status);
	r->bad_route = !r->route;
}

static enum MHD_Result queue_pending(struct http_req *r)
{
	struct MHD_Response *resp;
	unsigned status;
	enum MHD_Result ret;

	pthread_mutex_lock(&r->lock);
	resp = r->pending;
	status = r->pending_status;
	r->pending = NULL;
	pthread_mutex_unlock(&r->lock);
	if (!resp)
		return MHD_NO;
	ret = MHD_queue_response(r->conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static void allowed_methods(struct http *h, struct http_req *r, char *out, size_t size)
{
	out[0] = 0;
	for (const struct http_route *rt = h->routes; rt->pattern; rt++) {
		if (!rt->method || !match(rt->pattern, r->path, NULL, NULL) ||
		    strstr(out, rt->method))
			continue;
		if (out[0])
			strncat(out, ", ", size - strlen(out) - 1);
		strncat(out, rt->method, size - strlen(out) - 1);
	}
}

/* 401 (no token, or a token that matches none) or 403 (an invoke token on
 * a management route), with WWW-Authenticate as RFC 6750 says. */
static void reply_denied(struct http_req *r)
{
	const char *hdrs[] = {"WWW-Authenticate", "Bearer realm=\"kiln\"", NULL};
	unsigned status = 401;
	const char *msg;

	switch (r->denied) {
	case AUTH_BAD_TOKEN:
		hdrs[1] = "Bearer realm=\"kiln\", error=\"invalid_token\"";
		msg = "the bearer token was not accepted";
		break;
	case AUTH_WRONG_SCOPE:
		hdrs[1] = "Bearer realm=\"kiln\", error=\"insufficient_scope\"";
		msg = "this token may only invoke functions; managing kilnd needs the "
		      "management token";
		status = 403;
		break;
	default:
		msg = "this route needs a token: send 'Authorization: Bearer TOKEN'";
		break;
	}
	log_debug("http: %s %.200s: %u %s", r->method, r->path, status, msg);
	http_reply_json(r, status, json_pack("{s:s}", "error", msg), hdrs);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct http *h = cls;
	struct http_req *r = *con_cls;

	(void)version;
	if (!r)
		return MHD_NO; /* on_uri failed: out of memory */
	if (!r->conn) {
		const char *cl;
		r->h = h;
		r->conn = conn;
		snprintf(r->method, sizeof(r->method), "%s", method);
		if (strlen(url) >= URL_MAX) {
			r->bad_route = true;
			r->bad_status = 414;
			return MHD_YES;
		}
		snprintf(r->path, sizeof(r->path), "%s", url);
		route(h, r);
		r->denied = auth_check(
			h->cfg.auth, r->route ? r->route->scope : AUTH_SCOPE_INVOKE,
			MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization"));
		if (r->denied) {
			/* Answered before any body is read; MHD then closes the
			 * connection instead of reading the rest. */
			r->handled = true;
			reply_denied(r);
			return queue_pending(r);
		}
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
		if (r->route && cl && strtoull(cl, NULL, 10) > r->route->body_limit)
			r->too_big = true;
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (r->bad_route || r->too_big || !r->route || r->denied)
			return MHD_YES;
		if (r->body_len + n > r->route->body_limit) {
			r->too_big = true;
			free(r->body);
			r->body = NULL;
			r->body_len = r->body_cap = 0;
			return MHD_YES;
		}
		if (r->body_len + n > r->body_cap) {
			size_t cap = r->body_cap ? r->body_cap : 4096;
			uint8_t *nb;
			while (cap < r->body_len + n)
				cap *= 2;
			nb = realloc(r->body, cap + 1);
			if (!nb)
				return MHD_NO;
			r->body = nb;
			r->body_cap = cap;
		}
		memcpy(r->body + r->body_len, upload_data, n);
		r->body_len += n;
		r->body[r->body_len] = 0;
		return MHD_YES;
	}
	if (r->handled)
		return queue_pending(r);
	r->handled = true;
	if (r->bad_route) {
		char allow[128];
		if (r->bad_status == 405) {
			const char *hdrs[] = {"Allow", allow, NULL};
			allowed_methods(h, r, allow, sizeof(allow));
			http_reply_json(
				r, 405,
				json_pack("{s:s}", "error", "method not allowed on this route"),
				hdrs);
		} else if (r->bad_status == 414) {
			http_reply_error(r, 414, "the URL is too long");
		} else {
			http_reply_error(r, 404, "no route for %s %.200s", r->method, r->path);
		}
		return queue_pending(r);
	}
	if (r->too_big) {
		http_reply_error(r, 413, "the request body is larger than %zu bytes",
				 r->route->body_limit);
		return queue_pending(r);
	}
	r->route->handler(h->app, r);
	pthread_mutex_lock(&r->lock);
	if (r->suspended) {
		pthread_mutex_unlock(&r->lock);
		return MHD_YES;
	}
	pthread_mutex_unlock(&r->lock);
	return queue_pending(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct http_req *r = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (!r)
		return;
	if (r->free_state)
		r->free_state(r->state);
	if (r->pending)
		MHD_destroy_response(r->pending);
	free(r->body);
	free(r->query_string);
	pthread_mutex_destroy(&r->lock);
	free(r);
	*con_cls = NULL;
}

/* Creates each request's state with its raw query string (MHD gives only
 * parsed arguments); its return value is the access handler's *con_cls. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct http_req *r = calloc(1, sizeof(*r));
	const char *q = strchr(uri, '?');

	(void)cls;
	(void)conn;
	if (!r)
		return NULL;
	pthread_mutex_init(&r->lock, NULL);
	r->query_string = strdup(q ? q + 1 : "");
	return r;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = 0;
	log_debug("http: %s", msg);
}

static struct MHD_Daemon *start_daemon(struct http *h, int listen_fd, const struct sockaddr *sa,
				       bool tls)
{
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
			 MHD_USE_ERROR_LOG;
	struct MHD_OptionItem opts[16];
	unsigned n = 0;

#define OPT(o, v, p)                                                                               \
	opts[n++] = (struct MHD_OptionItem)                                                        \
	{                                                                                          \
		(o), (intptr_t)(v), (p)                                                            \
	}
	/* The logger first: libmicrohttpd logs the options that follow with it. */
	OPT(MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h);
	if (listen_fd >= 0)
		OPT(MHD_OPTION_LISTEN_SOCKET, listen_fd, NULL);
	else
		OPT(MHD_OPTION_SOCK_ADDR, 0, (void *)sa);
	OPT(MHD_OPTION_NOTIFY_COMPLETED, on_completed, h);
	OPT(MHD_OPTION_URI_LOG_CALLBACK, on_uri, h);
	OPT(MHD_OPTION_CONNECTION_LIMIT, h->cfg.max_connections, NULL);
	OPT(MHD_OPTION_CONNECTION_TIMEOUT, h->cfg.conn_timeout_s, NULL);
	OPT(MHD_OPTION_CONNECTION_MEMORY_LIMIT, h->cfg.conn_memory, NULL);
	if (h->cfg.per_ip_connections)
		OPT(MHD_OPTION_PER_IP_CONNECTION_LIMIT, h->cfg.per_ip_connections, NULL);
	if (tls) {
		flags |= MHD_USE_TLS;
		OPT(MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)h->cfg.tls_cert_pem);
		OPT(MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)h->cfg.tls_key_pem);
		OPT(MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)TLS_PRIORITIES);
	}
	OPT(MHD_OPTION_END, 0, NULL);
#undef OPT
	return MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_ARRAY, opts,
				MHD_OPTION_END);
}

int http_start(const struct http_config *cfg, const struct http_route *routes, void *app,
	       struct http **out)
{
	struct http *h;
	bool tls = cfg->tls_cert_pem || cfg->tls_key_pem;
	const char *listen_addr = cfg->listen_addr ? cfg->listen_addr : "127.0.0.1";
	unsigned port = cfg->port;
	const char *sock = cfg->sock;

	if (tls && (!cfg->tls_cert_pem || !cfg->tls_key_pem)) {
		log_error("HTTPS needs both a certificate and its key");
		return -EINVAL;
	}
	if (tls && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
		log_error("this libmicrohttpd was built without TLS: HTTPS is not available");
		return -ENOTSUP;
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->routes = routes;
	h->app = app;
	h->cfg = *cfg;
	h->cfg.listen_addr = listen_addr;
	if (!h->cfg.max_connections)
		h->cfg.max_connections = HTTP_DEFAULT_MAX_CONNECTIONS;
	if (!h->cfg.conn_memory)
		h->cfg.conn_memory = HTTP_DEFAULT_CONN_MEMORY;
	h->unix_fd = -1;
	if (port) {
		struct sockaddr_in sa4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
		struct sockaddr_in6 sa6 = {.sin6_family = AF_INET6,
					   .sin6_port = htons((uint16_t)port)};
		const struct sockaddr *sa;
		if (inet_pton(AF_INET, listen_addr, &sa4.sin_addr) == 1) {
			sa = (const struct sockaddr *)&sa4;
		} else if (inet_pton(AF_INET6, listen_addr, &sa6.sin6_addr) == 1) {
			sa = (const struct sockaddr *)&sa6;
		} else {
			log_error("--listen %s: not an IPv4 or IPv6 address", listen_addr);
			free(h);
			return -EINVAL;
		}
		if (sa->sa_family == AF_INET6) {
			int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
			if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
			    bind(fd, sa, sizeof(sa6)) || listen(fd, 1024)) {
				log_error("cannot listen on [%s]:%u: %s", listen_addr, port,
					  strerror(errno));
				if (fd >= 0)
					close(fd);
				free(h);
				return -EADDRINUSE;
			}
			h->tcp = start_daemon(h, fd, NULL, tls);
		} else {
			h->tcp = start_daemon(h, -1, sa, tls);
		}
		if (!h->tcp) {
			log_error(tls ? "cannot serve HTTPS on %s:%u (in use, or the certificate "
					"or key is not valid PEM?)"
				      : "cannot listen on %s:%u (in use?)",
				  listen_addr, port);
			free(h);
			return -EADDRINUSE;
		}
	}
	if (sock) {
		int fd = unixsock_listen(sock, "--socket", 1024, &h->sock_ino);
		if (fd < 0) {
			http_stop(h);
			return fd;
		}
		snprintf(h->sock_path, sizeof(h->sock_path), "%s", sock);
		chmod(sock, 0660);
		/* MHD wants a blocking listening socket it can epoll. */
		h->unix_d = start_daemon(h, fd, NULL, false);
		if (!h->unix_d) {
			close(fd);
			log_error("cannot serve on %s", sock);
			http_stop(h);
			return -EIO;
		}
		h->unix_fd = fd;
	}
	*out = h;
	return 0;
}

void http_quiesce(struct http *h)
{
	if (!h)
		return;
	if (h->tcp) {
		int fd = MHD_quiesce_daemon(h->tcp);
		if (fd >= 0)
			close(fd);
	}
	if (h->unix_d) {
		int fd = MHD_quiesce_daemon(h->unix_d);
		if (fd >= 0)
			close(fd);
		h->unix_fd = -1;
	}
}

void http_stop(struct http *h)
{
	if (!h)
		return;
	if (h->tcp)
		MHD_stop_daemon(h->tcp);
	if (h->unix_d)
		MHD_stop_daemon(h->unix_d);
	if (h->sock_path[0])
		unixsock_unlink_own(h->sock_path, h->sock_ino);
	free(h);
}
