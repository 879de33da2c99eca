/* http.c - the gateway's HTTP client on libcurl (see http.h). */
#include "cli/http.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#define MAX_RESPONSE (256U * 1024U * 1024U)
#define MAX_HEADERS  256

struct http_client {
	CURL *curl;
	char *gateway;
	char *base;	 /* URL prefix without a trailing '/' */
	char *unix_path; /* NULL for TCP */
	char *auth;	 /* "Authorization: Bearer ..." or NULL */
	char *cacert;	 /* CA bundle for https, NULL: the system's */
	bool insecure;	 /* https without checking the certificate */
	char errbuf[CURL_ERROR_SIZE];
	char error[CURL_ERROR_SIZE + 64];
};

/* Transfer state of one http_do. */
struct xfer {
	struct http_client *c;
	struct http_response *resp;
	const struct http_request *req;
	size_t cap;
	bool oom, stopped, too_big;
};

int http_client_create(const char *gateway, struct http_client **out, char *err, size_t err_size)
{
	struct http_client *c;
	size_t n;

	if (!gateway || !*gateway) {
		snprintf(err, err_size, "empty gateway");
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->gateway = strdup(gateway);
	if (!c->gateway)
		goto oom;
	if (strncmp(gateway, "unix:", 5) == 0) {
		if (gateway[5] != '/') {
			snprintf(err, err_size,
				 "gateway %s: a unix socket gateway is unix:/absolute/path",
				 gateway);
			http_client_destroy(c);
			return -EINVAL;
		}
		c->unix_path = strdup(gateway + 5);
		c->base = strdup("http://localhost");
	} else if (strncmp(gateway, "http://", 7) == 0 || strncmp(gateway, "https://", 8) == 0) {
		const char *host = gateway + (gateway[4] == 's' ? 8 : 7);

		if (!*host || *host == '/' || strpbrk(gateway, " \t\r\n?#")) {
			snprintf(err, err_size, "gateway %s: not a valid URL", gateway);
			http_client_destroy(c);
			return -EINVAL;
		}
		c->base = strdup(gateway);
	} else {
		snprintf(err, err_size,
			 "gateway %s: expected http://HOST:PORT, https://... or unix:/path",
			 gateway);
		http_client_destroy(c);
		return -EINVAL;
	}
	if (!c->base || (strncmp(gateway, "unix:", 5) == 0 && !c->unix_path))
		goto oom;
	n = strlen(c->base);
	while (n > 0 && c->base[n - 1] == '/')
		c->base[--n] = '\0';
	c->curl = curl_easy_init();
	if (!c->curl)
		goto oom;
	*out = c;
	return 0;
oom:
	http_client_destroy(c);
	return -ENOMEM;
}

void http_client_destroy(struct http_client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	free(c->gateway);
	free(c->base);
	free(c->unix_path);
	if (c->auth) {
		memset(c->auth, 0, strlen(c->auth));
		free(c->auth);
	}
	free(c->cacert);
	free(c);
}

int http_client_set_token(struct http_client *c, const char *token)
{
	char *h = NULL;

	if (token && asprintf(&h, "Authorization: Bearer %s", token) < 0)
		return -ENOMEM;
	if (c->auth) {
		memset(c->auth, 0, strlen(c->auth));
		free(c->auth);
	}
	c->auth = h;
	return 0;
}

int http_client_set_tls(struct http_client *c, const char *cacert, bool insecure)
{
	char *ca = cacert ? strdup(cacert) : NULL;

	if (cacert && !ca)
		return -ENOMEM;
	free(c->cacert);
	c->cacert = ca;
	c->insecure = insecure;
	return 0;
}

bool http_client_has_token(const struct http_client *c)
{
	return c->auth != NULL;
}

const char *http_client_gateway(const struct http_client *c)
{
	return c->gateway;
}

const char *http_client_error(const struct http_client *c)
{
	return c->error;
}

char *http_client_url(const struct http_client *c, const char *path)
{
	char *s = NULL;

	if (c->unix_path) {
		if (asprintf(&s, "unix:%s:%s", c->unix_path, path) < 0)
			return NULL;
	} else if (asprintf(&s, "%s%s", c->base, path) < 0) {
		return NULL;
	}
	return s;
}

void http_response_clear(struct http_response *resp)
{
	if (!resp)
		return;
	free(resp->body);
	for (size_t i = 0; i < resp->n_headers; i++) {
		free(resp->headers[i].name);
		free(resp->headers[i].value);
	}
	free(resp->headers);
	memset(resp, 0, sizeof(*resp));
}

const char *http_response_header(const struct http_response *resp, const char *name)
{
	for (size_t i = 0; i < resp->n_headers; i++)
		if (strcasecmp(resp->headers[i].name, name) == 0)
			return resp->headers[i].value;
	return NULL;
}

char *http_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = malloc(n * 3 + 1), *o = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			*o++ = (char)ch;
		} else {
			*o++ = '%';
			*o++ = hex[ch >> 4];
			*o++ = hex[ch & 15];
		}
	}
	*o = '\0';
	return out;
}

static bool append(struct xfer *x, const char *data, size_t len)
{
	struct http_response *r = x->resp;

	if (r->len + len + 1 > MAX_RESPONSE) {
		x->too_big = true;
		return false;
	}
	if (r->len + len + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 4096;
		char *b;

		while (cap < r->len + len + 1)
			cap *= 2;
		b = realloc(r->body, cap);
		if (!b) {
			x->oom = true;
			return false;
		}
		r->body = b;
		x->cap = cap;
	}
	memcpy(r->body + r->len, data, len);
	r->len += len;
	r->body[r->len] = '\0';
	return true;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t len = size * nmemb;
	long status = 0;

	curl_easy_getinfo(x->c->curl, CURLINFO_RESPONSE_CODE, &status);
	if (x->req->on_data && status >= 200 && status < 300) {
		if (x->req->on_data(x->req->ud, data, len)) {
			x->stopped = true;
			return 0;
		}
		return len;
	}
	return append(x, data, len) ? len : 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	struct http_response *r = x->resp;
	size_t len = size * nmemb, nlen;
	const char *colon, *v, *end = data + len;
	struct http_header *h;

	if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		/* A new response (after 100 Continue or a redirect): start over. */
		for (size_t i = 0; i < r->n_headers; i++) {
			free(r->headers[i].name);
			free(r->headers[i].value);
		}
		r->n_headers = 0;
		return len;
	}
	colon = memchr(data, ':', len);
	if (!colon || r->n_headers >= MAX_HEADERS)
		return len;
	nlen = (size_t)(colon - data);
	v = colon + 1;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	h = realloc(r->headers, (r->n_headers + 1) * sizeof(*h));
	if (!h) {
		x->oom = true;
		return 0;
	}
	r->headers = h;
	h[r->n_headers].name = strndup(data, nlen);
	h[r->n_headers].value = strndup(v, (size_t)(end - v));
	if (!h[r->n_headers].name || !h[r->n_headers].value) {
		free(h[r->n_headers].name);
		free(h[r->n_headers].value);
		x->oom = true;
		return 0;
	}
	r->n_headers++;
	return len;
}

int http_do(struct http_client *c, const struct http_request *req, struct http_response *resp)
{
	struct xfer x = {.c = c, .resp = resp, .req = req};
	struct curl_slist *hdrs = NULL, *tmp;
	char *url = NULL;
	CURLcode rc;
	int ret = 0;

	memset(resp, 0, sizeof(*resp));
	c->error[0] = '\0';
	c->errbuf[0] = '\0';
	if (asprintf(&url, "%s%s", c->base, req->path) < 0)
		return -ENOMEM;
	curl_easy_reset(c->curl);
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "kiln/0.1");
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, &x);
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	if (c->unix_path)
		curl_easy_setopt(c->curl, CURLOPT_UNIX_SOCKET_PATH, c->unix_path);
	if (c->cacert)
		curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->cacert);
	if (c->insecure) {
		curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (strcmp(req->method, "GET") == 0)
		curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
	else if (strcmp(req->method, "POST") != 0)
		curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, req->method);
	if (req->body || strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0) {
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, req->body ? req->body : "");
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)(req->body ? req->body_len : 0));
	}
	/* No "Expect: 100-continue" round trip for large bodies. */
	tmp = curl_slist_append(hdrs, "Expect:");
	if (!tmp)
		goto oom;
	hdrs = tmp;
	if (c->auth) {
		tmp = curl_slist_append(hdrs, c->auth);
		if (!tmp)
			goto oom;
		hdrs = tmp;
	}
	for (const char *const *h = req->headers; h && *h; h++) {
		tmp = curl_slist_append(hdrs, *h);
		if (!tmp)
			goto oom;
		hdrs = tmp;
	}
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);
	rc = curl_easy_perform(c->curl);
	if (x.oom)
		goto oom;
	if (x.stopped) {
		ret = -ECANCELED;
	} else if (x.too_big) {
		snprintf(c->error, sizeof(c->error), "the response is larger than %u MiB",
			 MAX_RESPONSE >> 20);
		ret = -EFBIG;
	} else if (rc != CURLE_OK) {
		snprintf(c->error, sizeof(c->error), "%s",
			 c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
		ret = -EHOSTUNREACH;
	} else {
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &resp->status);
		if (!resp->body) {
			resp->body = calloc(1, 1);
			if (!resp->body)
				goto oom;
		}
	}
	curl_slist_free_all(hdrs);
	free(url);
	return ret;
oom:
	curl_slist_free_all(hdrs);
	free(url);
	snprintf(c->error, sizeof(c->error), "out of memory");
	return -ENOMEM;
}
