/* test_callback.c - callback deliveries against a tiny HTTP server on
 * 127.0.0.1 in a thread: body and headers, retries, refused ports, no
 * redirects, the bounded queue and shutdown (daemon/callback.c). */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/callback.h"

/* ---- a tiny HTTP server ---------------------------------------------------------- */

#define MAX_REQS 16

struct request {
	char *head; /* request line and headers, NUL-terminated */
	char *body;
	size_t body_len;
};

struct server {
	int fd;
	int port;
	pthread_t thread;
	int statuses[8]; /* answer i gets statuses[min(i, nstatus - 1)]; 0: hang */
	int nstatus;
	pthread_mutex_t lock;
	struct request reqs[MAX_REQS];
	int nreq;
};

static void serve_one(struct server *s, int c)
{
	char buf[65536], reply[256];
	size_t len = 0, need, clen = 0;
	char *end = NULL, *cl;
	struct pollfd pfd = {.fd = c, .events = POLLIN};
	struct request *r;
	ssize_t n;
	int status, idx;

	while (!end) {
		n = read(c, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			return;
		len += (size_t)n;
		buf[len] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	*end = '\0';
	cl = strcasestr(buf, "\r\nContent-Length:");
	if (cl)
		clen = strtoul(cl + 17, NULL, 10);
	need = (size_t)(end + 4 - buf) + clen;
	while (len < need && len < sizeof(buf) - 1) {
		n = read(c, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			return;
		len += (size_t)n;
	}
	pthread_mutex_lock(&s->lock);
	idx = s->nreq;
	if (s->nreq < MAX_REQS) {
		r = &s->reqs[s->nreq++];
		r->head = strdup(buf);
		r->body = malloc(clen + 1);
		memcpy(r->body, end + 4, clen);
		r->body[clen] = '\0';
		r->body_len = clen;
	}
	status = s->statuses[idx < s->nstatus ? idx : s->nstatus - 1];
	pthread_mutex_unlock(&s->lock);

	if (status == 0) {
		/* Hang until the client gives up (or 10 s). */
		poll(&pfd, 1, 10000);
		return;
	}
	snprintf(reply, sizeof(reply),
		 "HTTP/1.1 %d X\r\nContent-Length: 2\r\nLocation: http://127.0.0.1:1/\r\n"
		 "Connection: close\r\n\r\nok",
		 status);
	if (write(c, reply, strlen(reply)) < 0)
		return;
}

static void *serve(void *arg)
{
	struct server *s = arg;
	int c;

	for (;;) {
		c = accept(s->fd, NULL, NULL);
		if (c < 0)
			break; /* shut down */
		serve_one(s, c);
		close(c);
	}
	return NULL;
}

static int listen_local(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 64), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static struct server *server_start(const int *statuses, int n)
{
	struct server *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	memcpy(s->statuses, statuses, (size_t)n * sizeof(int));
	s->nstatus = n;
	pthread_mutex_init(&s->lock, NULL);
	s->fd = listen_local(&s->port);
	assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
	return s;
}

static void server_stop(struct server *s)
{
	int i;

	shutdown(s->fd, SHUT_RDWR);
	pthread_join(s->thread, NULL);
	close(s->fd);
	for (i = 0; i < s->nreq; i++) {
		free(s->reqs[i].head);
		free(s->reqs[i].body);
	}
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static int server_nreq(struct server *s)
{
	int n;

	pthread_mutex_lock(&s->lock);
	n = s->nreq;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* ---- recording outcomes ---------------------------------------------------------------- */

struct outcomes {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int n, nok;
	char call_id[64];
	char status[160];
	int ok;
};

static void on_done(void *opaque, const char *call_id, int ok, const char *status)
{
	struct outcomes *o = opaque;

	pthread_mutex_lock(&o->lock);
	o->n++;
	o->nok += ok;
	o->ok = ok;
	snprintf(o->call_id, sizeof(o->call_id), "%s", call_id);
	snprintf(o->status, sizeof(o->status), "%s", status);
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->lock);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits (at most 20 s) until n outcomes were reported. */
static void wait_done(struct outcomes *o, int n)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 20;
	pthread_mutex_lock(&o->lock);
	while (o->n < n) {
		if (pthread_cond_timedwait(&o->cond, &o->lock, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&o->lock);
	assert_int_equal(o->n, n);
}

struct fixture {
	struct outcomes o;
	struct callback *cb;
	char url[128];
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	pthread_mutex_init(&fx->o.lock, NULL);
	pthread_cond_init(&fx->o.cond, NULL);
	fx->cb = callback_create(on_done, &fx->o);
	if (!fx->cb)
		return -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	callback_destroy(fx->cb, 0);
	pthread_cond_destroy(&fx->o.cond);
	pthread_mutex_destroy(&fx->o.lock);
	free(fx);
	return 0;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_url_ok(void **state)
{
	static const char *const good[] = {
		"http://127.0.0.1:8080/cb",
		"https://example.com/cb?x=1&y=%20",
		"HTTP://example.com",
		"http://[::1]:80/",
	};
	static const char *const bad[] = {
		"",
		"ftp://example.com/",
		"file:///etc/passwd",
		"gopher://x/",
		"http://",
		"http:///path",
		"http//x",
		"example.com/cb",
		"http://exa mple.com/",
		"http://example.com/\r\nX: y",
		"http://example.com/\x7f",
		"http://ex\xc3\xa9.com/",
		"http://example.com/\t",
	};
	char *longurl;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(callback_url_ok(good[i]));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(callback_url_ok(bad[i]));
	assert_false(callback_url_ok(NULL));
	longurl = malloc(2100);
	strcpy(longurl, "http://example.com/");
	memset(longurl + 19, 'a', 2048 - 19);
	longurl[2048] = '\0';
	assert_true(callback_url_ok(longurl));
	longurl[2048] = 'a';
	longurl[2049] = '\0';
	assert_false(callback_url_ok(longurl));
	free(longurl);
}

static void test_create_destroy(void **state)
{
	struct outcomes o = {0};
	struct callback *cb;

	(void)state;
	assert_null(callback_create(NULL, NULL));
	callback_destroy(NULL, 0);
	cb = callback_create(on_done, &o);
	assert_non_null(cb);
	callback_destroy(cb, 1000);
	assert_int_equal(o.n, 0);
}

static void test_post_errors(void **state)
{
	struct fixture *fx = *state;
	const char *crlf[] = {"X-A: b\r\nX-Evil: 1", NULL};
	const char *noname[] = {": v", NULL};
	const char *nocolon[] = {"X-A", NULL};
	const char *spacename[] = {"X A: b", NULL};

	assert_int_equal(callback_post(fx->cb, "ftp://127.0.0.1/", "c", NULL, "x", 1), -EINVAL);
	assert_int_equal(callback_post(fx->cb, NULL, "c", NULL, "x", 1), -EINVAL);
	assert_int_equal(callback_post(fx->cb, "http://127.0.0.1/", NULL, NULL, "x", 1), -EINVAL);
	assert_int_equal(callback_post(fx->cb, "http://127.0.0.1/", "c", NULL, NULL, 1), -EINVAL);
	assert_int_equal(callback_post(NULL, "http://127.0.0.1/", "c", NULL, "x", 1), -EINVAL);
	assert_int_equal(callback_post(fx->cb, "http://127.0.0.1/", "c", crlf, "x", 1), -EINVAL);
	assert_int_equal(callback_post(fx->cb, "http://127.0.0.1/", "c", noname, "x", 1), -EINVAL);
	assert_int_equal(callback_post(fx->cb, "http://127.0.0.1/", "c", nocolon, "x", 1), -EINVAL);
	assert_int_equal(callback_post(fx->cb, "http://127.0.0.1/", "c", spacename, "x", 1),
			 -EINVAL);
}

static void test_post_200(void **state)
{
	struct fixture *fx = *state;
	static const int st[] = {200};
	struct server *s = server_start(st, 1);
	const char *headers[] = {"X-Kiln-Call-Id: call-1", "Content-Type: application/json",
				 "X-Kiln-Status: 200", NULL};
	static const char body[] = "{\"result\":\"hi\"}\0binary";

	snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%d/cb?x=1", s->port);
	assert_int_equal(callback_post(fx->cb, fx->url, "call-1", headers, body, sizeof(body)), 0);
	wait_done(&fx->o, 1);
	assert_int_equal(fx->o.ok, 1);
	assert_string_equal(fx->o.status, "sent 200");
	assert_string_equal(fx->o.call_id, "call-1");

	assert_int_equal(server_nreq(s), 1);
	assert_memory_equal(s->reqs[0].head, "POST /cb?x=1 HTTP/1.1\r\n", 23);
	assert_non_null(strstr(s->reqs[0].head, "\r\nX-Kiln-Call-Id: call-1"));
	assert_non_null(strstr(s->reqs[0].head, "\r\nContent-Type: application/json"));
	assert_non_null(strstr(s->reqs[0].head, "\r\nX-Kiln-Status: 200"));
	assert_null(strcasestr(s->reqs[0].head, "application/octet-stream"));
	assert_null(strcasestr(s->reqs[0].head, "Expect:"));
	assert_int_equal(s->reqs[0].body_len, sizeof(body));
	assert_memory_equal(s->reqs[0].body, body, sizeof(body));

	/* Headers were copied: no Content-Type given gets octet-stream; an
	 * empty body is fine. */
	assert_int_equal(callback_post(fx->cb, fx->url, "call-2", NULL, NULL, 0), 0);
	wait_done(&fx->o, 2);
	assert_int_equal(fx->o.ok, 1);
	assert_string_equal(fx->o.call_id, "call-2");
	assert_int_equal(server_nreq(s), 2);
	assert_non_null(strstr(s->reqs[1].head, "\r\nContent-Type: application/octet-stream"));
	assert_non_null(strstr(s->reqs[1].head, "\r\nContent-Length: 0"));
	assert_int_equal(s->reqs[1].body_len, 0);
	server_stop(s);
}

static void test_retry_500(void **state)
{
	struct fixture *fx = *state;
	static const int st[] = {500, 200};
	struct server *s = server_start(st, 2);
	double t0 = now_s();

	snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%d/", s->port);
	assert_int_equal(callback_post(fx->cb, fx->url, "r1", NULL, "abc", 3), 0);
	wait_done(&fx->o, 1);
	assert_int_equal(fx->o.ok, 1);
	assert_string_equal(fx->o.status, "sent 200");
	assert_int_equal(server_nreq(s), 2);
	assert_string_equal(s->reqs[1].body, "abc");
	assert_true(now_s() - t0 >= 0.95);
	server_stop(s);
}

static void test_all_500(void **state)
{
	struct fixture *fx = *state;
	static const int st[] = {503};
	struct server *s = server_start(st, 1);
	double t0 = now_s();

	snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%d/", s->port);
	assert_int_equal(callback_post(fx->cb, fx->url, "r2", NULL, "abc", 3), 0);
	wait_done(&fx->o, 1);
	assert_int_equal(fx->o.ok, 0);
	assert_string_equal(fx->o.status, "failed: HTTP 503");
	assert_int_equal(server_nreq(s), 3);
	assert_true(now_s() - t0 >= 2.95);
	server_stop(s);
}

static void test_no_retry_4xx_no_redirect(void **state)
{
	struct fixture *fx = *state;
	static const int st[] = {404, 302};
	struct server *s = server_start(st, 2);

	snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%d/", s->port);
	assert_int_equal(callback_post(fx->cb, fx->url, "n1", NULL, "x", 1), 0);
	wait_done(&fx->o, 1);
	assert_int_equal(fx->o.ok, 0);
	assert_string_equal(fx->o.status, "failed: HTTP 404");
	assert_int_equal(server_nreq(s), 1);
	/* 302 to elsewhere: reported, not followed. */
	assert_int_equal(callback_post(fx->cb, fx->url, "n2", NULL, "x", 1), 0);
	wait_done(&fx->o, 2);
	assert_int_equal(fx->o.ok, 0);
	assert_string_equal(fx->o.status, "failed: HTTP 302");
	assert_int_equal(server_nreq(s), 2);
	server_stop(s);
}

static void test_refused(void **state)
{
	struct fixture *fx = *state;
	double t0 = now_s();
	int port, fd;

	/* A port that was just free: nothing listens there now. */
	fd = listen_local(&port);
	close(fd);
	snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%d/", port);
	assert_int_equal(callback_post(fx->cb, fx->url, "x1", NULL, "x", 1), 0);
	wait_done(&fx->o, 1);
	assert_int_equal(fx->o.ok, 0);
	assert_string_equal(fx->o.call_id, "x1");
	assert_string_equal(fx->o.status, "failed: Couldn't connect to server");
	assert_true(now_s() - t0 >= 2.95); /* three attempts, 1 s and 2 s apart */
}

static void test_drain_on_destroy(void **state)
{
	struct fixture *fx = *state;
	static const int st[] = {200};
	struct server *s = server_start(st, 1);
	char id[16];
	int i;

	snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%d/", s->port);
	for (i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "d%d", i);
		assert_int_equal(callback_post(fx->cb, fx->url, id, NULL, "x", 1), 0);
	}
	callback_destroy(fx->cb, 10000);
	fx->cb = NULL;
	assert_int_equal(fx->o.n, 5);
	assert_int_equal(fx->o.nok, 5);
	assert_string_equal(fx->o.call_id, "d4");
	assert_int_equal(server_nreq(s), 5);
	server_stop(s);
}

static void test_grace_cuts(void **state)
{
	struct fixture *fx = *state;
	static const int st[] = {0}; /* never answers */
	struct server *s = server_start(st, 1);
	double t0;

	snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%d/", s->port);
	assert_int_equal(callback_post(fx->cb, fx->url, "g1", NULL, "x", 1), 0);
	assert_int_equal(callback_post(fx->cb, fx->url, "g2", NULL, "x", 1), 0);
	assert_int_equal(callback_post(fx->cb, fx->url, "g3", NULL, "x", 1), 0);
	while (server_nreq(s) < 1)
		usleep(10000);
	t0 = now_s();
	callback_destroy(fx->cb, 300);
	fx->cb = NULL;
	assert_true(now_s() - t0 < 2.5);
	assert_int_equal(fx->o.n, 3);
	assert_int_equal(fx->o.nok, 0);
	assert_string_equal(fx->o.call_id, "g3");
	assert_string_equal(fx->o.status, "failed: dropped, kilnd is stopping");
	server_stop(s);
}

static void test_queue_full(void **state)
{
	struct fixture *fx = *state;
	static const int st[] = {0};
	struct server *s = server_start(st, 1);
	int i, accepted = 0, ret;

	snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%d/", s->port);
	assert_int_equal(callback_post(fx->cb, fx->url, "first", NULL, "x", 1), 0);
	while (server_nreq(s) < 1)
		usleep(10000);
	/* The worker is stuck on "first": the queue fills at 10,000. */
	for (i = 0; i < 10010; i++) {
		ret = callback_post(fx->cb, fx->url, "q", NULL, "x", 1);
		if (ret == -ENOSPC)
			break;
		assert_int_equal(ret, 0);
		accepted++;
	}
	assert_int_equal(accepted, 10000);
	assert_int_equal(callback_post(fx->cb, fx->url, "q", NULL, "x", 1), -ENOSPC);
	callback_destroy(fx->cb, 0);
	fx->cb = NULL;
	assert_int_equal(fx->o.n, 10001);
	assert_int_equal(fx->o.nok, 0);
	server_stop(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_ok),
		cmocka_unit_test(test_create_destroy),
		cmocka_unit_test_setup_teardown(test_post_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_post_200, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry_500, setup, teardown),
		cmocka_unit_test_setup_teardown(test_all_500, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_retry_4xx_no_redirect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_on_destroy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_grace_cuts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_full, setup, teardown),
	};
	int ret;

	/* kilnd's main does this; the callback module expects it done. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return 1;
	ret = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return ret;
}
