/* http.h - kiln's HTTP client for the gateway (libcurl): a gateway is
 * "http://HOST:PORT[/prefix]" (or https) or "unix:/path/to.sock"
 * (CURLOPT_UNIX_SOCKET_PATH). One client keeps its connection between
 * requests. Responses are read whole into memory, or streamed to a
 * callback (kiln logs --follow). */
#ifndef KILN_CLI_HTTP_H
#define KILN_CLI_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct http_client;

struct http_header {
	char *name;
	char *value;
};

struct http_response {
	long status;
	char *body; /* NUL-terminated (the NUL is not counted in len) */
	size_t len;
	struct http_header *headers;
	size_t n_headers;
};

/* Receives streamed body bytes of a 2xx response; returns 0 to go on, or
 * nonzero to stop the transfer (http_do then returns -ECANCELED). */
typedef int (*http_data_fn)(void *ud, const char *data, size_t len);

struct http_request {
	const char *method;	    /* "GET", "POST", ... */
	const char *path;	    /* "/system/functions?x=1", starts with '/' */
	const char *const *headers; /* "Name: value" strings, NULL-terminated, or NULL */
	const void *body;	    /* NULL: none */
	size_t body_len;
	http_data_fn on_data; /* NULL: collect the body in the response */
	void *ud;
};

/* Creates a client for gateway. Returns 0 and *out, -EINVAL for a gateway
 * that is neither http(s)://... nor unix:/absolute/path (message in err),
 * -ENOMEM. */
int http_client_create(const char *gateway, struct http_client **out, char *err, size_t err_size);

/* Frees the client. Accepts NULL. */
void http_client_destroy(struct http_client *c);

/* Sends "Authorization: Bearer token" with every request (NULL: none);
 * token is copied and must be printable ASCII without spaces. Returns 0 or
 * -ENOMEM. */
int http_client_set_token(struct http_client *c, const char *token);

/* For https gateways: the CA certificates to check kilnd's certificate
 * against (a PEM file, curl's --cacert; NULL: the system's), or no check at
 * all (insecure, curl's --insecure). cacert is copied. Returns 0 or
 * -ENOMEM. */
int http_client_set_tls(struct http_client *c, const char *cacert, bool insecure);

/* True when c sends a token. */
bool http_client_has_token(const struct http_client *c);

/* The gateway as given. */
const char *http_client_gateway(const struct http_client *c);

/* The URL users call for path ("http://127.0.0.1:8080/function/echo"; for a
 * unix socket "unix:/path.sock:/function/echo"). malloc'd, NULL when out of
 * memory. */
char *http_client_url(const struct http_client *c, const char *path);

/* Performs a request. Returns 0 with *resp filled for any HTTP status,
 * -EHOSTUNREACH when the gateway could not be reached or the connection
 * failed (http_client_error says why), -ECANCELED when on_data stopped the
 * transfer, -EFBIG for a collected body over 256 MiB, -ENOMEM. resp is
 * always initialized; free it with
 * http_response_clear. */
int http_do(struct http_client *c, const struct http_request *req, struct http_response *resp);

/* The last transport error of c, one line. */
const char *http_client_error(const struct http_client *c);

/* Frees what resp holds and zeroes it. Accepts NULL. */
void http_response_clear(struct http_response *resp);

/* The value of header name (case-insensitive) in resp, or NULL. */
const char *http_response_header(const struct http_response *resp, const char *name);

/* s percent-encoded for a URL path segment or query value (everything but
 * A-Z a-z 0-9 - . _ ~). malloc'd, NULL when out of memory. */
char *http_escape(const char *s);

#endif
