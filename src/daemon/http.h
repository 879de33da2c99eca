/* http.h - kilnd's HTTP server: libmicrohttpd's details live here.
 *
 * One MHD daemon per listening socket (TCP and, with --socket, a unix
 * socket), each with its own epoll thread; a request's body is collected
 * up to its route's limit (past it: 413), then the route's handler runs.
 * A handler answers at once (http_reply*) or suspends the request
 * (http_suspend) and answers later from any thread (http_reply* then
 * http_resume): waiting requests cost memory, not threads.
 */
#ifndef KILN_DAEMON_HTTP_H
#define KILN_DAEMON_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon/auth.h"

struct http;
struct http_req;

/* A route: method ("GET"...; NULL: any), a pattern of '/'-separated
 * segments where "{}" matches one non-empty segment and a final "{*}" the
 * rest of the path (possibly empty), the largest body accepted, the
 * handler, and the token it needs when kilnd has tokens (left out:
 * AUTH_SCOPE_MANAGE). Params are the matched parts, in order. */
struct http_route {
	const char *method;
	const char *pattern;
	size_t body_limit;
	void (*handler)(void *app, struct http_req *req);
	enum auth_scope scope;
};

/* The longest request target (path and query) kilnd takes; longer: 414. */
#define HTTP_URL_MAX 8192
/* At most this many path parameters per route. */
#define HTTP_MAX_PARAMS 4

/* Where and how to serve. Zero max_connections and conn_memory take the
 * defaults below. */
struct http_config {
	const char *listen_addr; /* IPv4 or IPv6 address */
	unsigned port;		 /* 0: no TCP listener */
	const char *sock;	 /* unix socket path, NULL: none */
	/* PEM certificate chain and private key (NUL-terminated) for HTTPS on
	 * the TCP listener; both NULL: plain HTTP. */
	const char *tls_cert_pem;
	const char *tls_key_pem;
	unsigned max_connections;    /* per listener (default 4000) */
	unsigned conn_timeout_s;     /* idle seconds before a connection is closed, 0:
				    * never (suspended requests never time out) */
	size_t conn_memory;	     /* bytes per connection for the request line and
				    * headers (default 32 KiB): more is 431 or 414 */
	unsigned per_ip_connections; /* per client address, 0: no limit */
	const struct auth *auth;     /* tokens; NULL or empty: none required. Not owned;
				    * must outlive the server */
};

#define HTTP_DEFAULT_MAX_CONNECTIONS 4000
#define HTTP_DEFAULT_CONN_TIMEOUT_S  60
#define HTTP_DEFAULT_CONN_MEMORY     (32 * 1024)

/* Starts serving routes (an array ending with a NULL pattern) as cfg says.
 * app is passed to handlers. Returns 0 and *out (http_stop frees it), or
 * -errno (message logged). */
int http_start(const struct http_config *cfg, const struct http_route *routes, void *app,
	       struct http **out);

/* The route of routes matching method and path ("/function/x/y", no query):
 * returns it with its params copied into params (each HTTP_URL_MAX bytes)
 * and their count in *nparams; NULL when none matches, with *status 404 (no
 * route has the path) or 405 (another method has it). Allocates nothing;
 * path must be shorter than HTTP_URL_MAX. */
const struct http_route *http_route_find(const struct http_route *routes, const char *method,
					 const char *path,
					 char params[HTTP_MAX_PARAMS][HTTP_URL_MAX],
					 unsigned *nparams, unsigned *status);

/* Stops accepting connections (for a drain). */
void http_quiesce(struct http *h);

/* Stops the servers; suspended requests must have been resumed. Accepts
 * NULL. */
void http_stop(struct http *h);

/* The request's method, path (no query), its n-th path parameter (NULL when
 * absent), a header (case-insensitive; NULL when absent), a query argument
 * (NULL when absent), and the body. Valid during the request. */
const char *http_method(struct http_req *r);
const char *http_path(struct http_req *r);
const char *http_param(struct http_req *r, unsigned n);
const char *http_header(struct http_req *r, const char *name);
const char *http_query(struct http_req *r, const char *name);
const uint8_t *http_body(struct http_req *r, size_t *len);
/* The raw query string ("a=1&b=2", "" when none). */
const char *http_query_string(struct http_req *r);

/* Calls fn for each request header. */
void http_headers(struct http_req *r, void (*fn)(void *opaque, const char *k, const char *v),
		  void *opaque);

/* Per-request state of the handler, freed with free_fn when the request
 * ends. */
void http_set_state(struct http_req *r, void *state, void (*free_fn)(void *));
void *http_state(struct http_req *r);

/* Replies. Headers: a NULL-terminated array of "Name", "value" pairs (may
 * be NULL). Body bytes are copied. May be called from another thread for a
 * suspended request, followed by http_resume. */
void http_reply(struct http_req *r, unsigned status, const char *content_type, const void *body,
		size_t len, const char *const *headers);
/* Replies with a JSON value (consumed) and headers. */
void http_reply_json(struct http_req *r, unsigned status, json_t *body, const char *const *headers);
/* Replies {"error": message}. */
void http_reply_error(struct http_req *r, unsigned status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A streamed reply: fn fills buf (max bytes) and returns the count, 0 for
 * "nothing yet" (the request is then suspended until http_resume), or -1 at
 * the end. */
typedef ssize_t (*http_stream_fn)(void *opaque, char *buf, size_t max);
void http_reply_stream(struct http_req *r, unsigned status, const char *content_type,
		       http_stream_fn fn, void *opaque);

/* Suspends the request before handing its work to another thread. */
void http_suspend(struct http_req *r);
/* Resumes a suspended request (from any thread). */
void http_resume(struct http_req *r);

#endif
