/* callback.c - async results POSTed to X-Callback-Url by one worker thread.
 *
 * callback_post copies everything into a job and queues it (at most
 * QUEUE_MAX jobs and QUEUE_BYTES bytes of bodies); the worker POSTs each job
 * with one reused curl easy handle (so connections to a receiver are kept
 * alive), retrying connection errors and 5xx answers, then reports through
 * the done function. callback_destroy sets a deadline: retry waits and
 * transfers are cut short when it passes, and what is still queued is
 * reported as dropped.
 */
#include "daemon/callback.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/log.h"

#define QUEUE_MAX   10000
#define QUEUE_BYTES (256u << 20)
#define URL_MAX	    2048
#define HEADER_MAX  8192
#define TIMEOUT_MS  10000L
#define ATTEMPTS    3

struct job {
	char *url;
	char *call_id;
	struct curl_slist *headers;
	void *body;
	size_t len;
	struct job *next;
};

struct callback {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *head, **tail;
	size_t count, bytes;
	int stopping;
	int64_t deadline_ms; /* CLOCK_MONOTONIC, valid when stopping */
	pthread_t thread;
	callback_done_fn done;
	void *opaque;
	CURL *curl;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	free(j->url);
	free(j->call_id);
	curl_slist_free_all(j->headers);
	free(j->body);
	free(j);
}

int callback_url_ok(const char *url)
{
	const char *host;
	size_t i, n;

	if (!url)
		return 0;
	n = strlen(url);
	if (n > URL_MAX)
		return 0;
	if (strncasecmp(url, "http://", 7) == 0)
		host = url + 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		host = url + 8;
	else
		return 0;
	/* A host is required; no spaces, controls or raw non-ASCII bytes. */
	if (*host == '\0' || *host == '/' || *host == '?' || *host == '#')
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)url[i];

		if (c <= 0x20 || c >= 0x7f)
			return 0;
	}
	return 1;
}

/* True for an acceptable "Name: value" header line. */
static int header_ok(const char *h)
{
	const char *colon = strchr(h, ':');
	size_t i;

	if (!colon || colon == h || strlen(h) > HEADER_MAX)
		return 0;
	for (i = 0; h + i < colon; i++) {
		unsigned char c = (unsigned char)h[i];

		if (c <= 0x20 || c >= 0x7f)
			return 0; /* token characters only in the name */
	}
	for (i = 0; h[i]; i++) {
		if (h[i] == '\r' || h[i] == '\n')
			return 0;
	}
	return 1;
}

/* ---- the worker ---------------------------------------------------------------- */

static size_t discard(char *p, size_t size, size_t n, void *opaque)
{
	(void)p;
	(void)opaque;
	return size * n;
}

/* Aborts a transfer once callback_destroy's deadline has passed. */
static int progress(void *opaque, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		    curl_off_t ulnow)
{
	struct callback *cb = opaque;
	int stop;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	pthread_mutex_lock(&cb->lock);
	stop = cb->stopping && now_ms() >= cb->deadline_ms;
	pthread_mutex_unlock(&cb->lock);
	return stop;
}

/* Milliseconds left before the shutdown deadline (INT64_MAX when running). */
static int64_t time_left(struct callback *cb)
{
	int64_t left;

	pthread_mutex_lock(&cb->lock);
	left = cb->stopping ? cb->deadline_ms - now_ms() : INT64_MAX;
	pthread_mutex_unlock(&cb->lock);
	return left;
}

/* Waits ms, or less when shutting down past the deadline. Returns 0 when
 * the full wait happened, -1 when the deadline cut it. */
static int pause_ms(struct callback *cb, int64_t ms)
{
	int64_t until = now_ms() + ms;
	struct timespec ts;
	int cut = 0;

	pthread_mutex_lock(&cb->lock);
	for (;;) {
		int64_t end = until;

		if (cb->stopping && cb->deadline_ms < end)
			end = cb->deadline_ms;
		if (now_ms() >= end) {
			cut = now_ms() < until;
			break;
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)((end - now_ms()) / 1000);
		ts.tv_nsec += (long)((end - now_ms()) % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&cb->cond, &cb->lock, &ts);
	}
	pthread_mutex_unlock(&cb->lock);
	return cut ? -1 : 0;
}

static int retryable(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PARTIAL_FILE:
		return 1;
	default:
		return 0;
	}
}

/* One POST; *code gets the HTTP status (0 when none). */
static CURLcode attempt(struct callback *cb, const struct job *j, long timeout_ms, long *code)
{
	CURL *c = cb->curl;
	CURLcode rc;

	*code = 0;
	curl_easy_reset(c);
	if ((rc = curl_easy_setopt(c, CURLOPT_URL, j->url)) ||
	    (rc = curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https")) ||
	    (rc = curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https")) ||
	    (rc = curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L)) ||
	    (rc = curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L)) ||
	    (rc = curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms)) ||
	    (rc = curl_easy_setopt(c, CURLOPT_POST, 1L)) ||
	    (rc = curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->len)) ||
	    (rc = curl_easy_setopt(c, CURLOPT_POSTFIELDS, j->body ? j->body : "")) ||
	    (rc = curl_easy_setopt(c, CURLOPT_HTTPHEADER, j->headers)) ||
	    (rc = curl_easy_setopt(c, CURLOPT_USERAGENT, "kilnd")) ||
	    (rc = curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard)) ||
	    (rc = curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress)) ||
	    (rc = curl_easy_setopt(c, CURLOPT_XFERINFODATA, cb)) ||
	    (rc = curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L)))
		return rc;
	rc = curl_easy_perform(c);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, code);
	return rc;
}

static void deliver(struct callback *cb, struct job *j)
{
	static const int64_t delays_ms[ATTEMPTS - 1] = {1000, 2000};
	char status[160];
	CURLcode rc = CURLE_OK;
	int64_t left;
	long code = 0, timeout;
	int i, ok = 0;

	for (i = 0; i < ATTEMPTS; i++) {
		if (i > 0 && pause_ms(cb, delays_ms[i - 1]) != 0)
			break;
		left = time_left(cb);
		if (left <= 0)
			break;
		timeout = left < TIMEOUT_MS ? (long)left : TIMEOUT_MS;
		rc = attempt(cb, j, timeout, &code);
		if (rc == CURLE_OK && code >= 200 && code < 300) {
			ok = 1;
			break;
		}
		if (rc == CURLE_OK ? code < 500 : !retryable(rc))
			break;
	}
	if (ok || (rc == CURLE_OK && code))
		snprintf(status, sizeof(status), ok ? "sent %ld" : "failed: HTTP %ld", code);
	else if (rc == CURLE_ABORTED_BY_CALLBACK || (rc == CURLE_OK && !code))
		snprintf(status, sizeof(status), "failed: kilnd is stopping");
	else
		snprintf(status, sizeof(status), "failed: %s", curl_easy_strerror(rc));
	if (!ok)
		log_debug("callback %s: %s", j->call_id, status);
	cb->done(cb->opaque, j->call_id, ok, status);
}

static void *worker(void *arg)
{
	struct callback *cb = arg;
	struct job *j;
	int drop;

	for (;;) {
		pthread_mutex_lock(&cb->lock);
		while (!cb->head && !cb->stopping)
			pthread_cond_wait(&cb->cond, &cb->lock);
		j = cb->head;
		if (!j) {
			pthread_mutex_unlock(&cb->lock);
			break;
		}
		cb->head = j->next;
		if (!cb->head)
			cb->tail = &cb->head;
		cb->count--;
		cb->bytes -= j->len;
		drop = cb->stopping && now_ms() >= cb->deadline_ms;
		pthread_mutex_unlock(&cb->lock);

		if (drop)
			cb->done(cb->opaque, j->call_id, 0, "failed: dropped, kilnd is stopping");
		else
			deliver(cb, j);
		job_free(j);
	}
	return NULL;
}

/* ---- the API -------------------------------------------------------------------- */

struct callback *callback_create(callback_done_fn done, void *opaque)
{
	struct callback *cb;
	pthread_condattr_t attr;

	if (!done)
		return NULL;
	cb = calloc(1, sizeof(*cb));
	if (!cb)
		return NULL;
	cb->done = done;
	cb->opaque = opaque;
	cb->tail = &cb->head;
	cb->curl = curl_easy_init();
	if (!cb->curl)
		goto free_cb;
	if (pthread_mutex_init(&cb->lock, NULL) != 0)
		goto cleanup_curl;
	if (pthread_condattr_init(&attr) != 0)
		goto destroy_lock;
	if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&cb->cond, &attr) != 0) {
		pthread_condattr_destroy(&attr);
		goto destroy_lock;
	}
	pthread_condattr_destroy(&attr);
	if (pthread_create(&cb->thread, NULL, worker, cb) != 0)
		goto destroy_cond;
	return cb;

destroy_cond:
	pthread_cond_destroy(&cb->cond);
destroy_lock:
	pthread_mutex_destroy(&cb->lock);
cleanup_curl:
	curl_easy_cleanup(cb->curl);
free_cb:
	free(cb);
	return NULL;
}

void callback_destroy(struct callback *cb, int grace_ms)
{
	if (!cb)
		return;
	pthread_mutex_lock(&cb->lock);
	cb->stopping = 1;
	cb->deadline_ms = now_ms() + (grace_ms > 0 ? grace_ms : 0);
	pthread_cond_broadcast(&cb->cond);
	pthread_mutex_unlock(&cb->lock);
	pthread_join(cb->thread, NULL);
	pthread_cond_destroy(&cb->cond);
	pthread_mutex_destroy(&cb->lock);
	curl_easy_cleanup(cb->curl);
	free(cb);
}

int callback_post(struct callback *cb, const char *url, const char *call_id,
		  const char *const *headers, const void *body, size_t len)
{
	struct curl_slist *l;
	struct job *j;
	int has_type = 0, ret = -ENOMEM;
	size_t i;

	if (!cb || !call_id || !callback_url_ok(url) || (!body && len))
		return -EINVAL;
	for (i = 0; headers && headers[i]; i++) {
		if (!header_ok(headers[i]))
			return -EINVAL;
		if (strncasecmp(headers[i], "Content-Type:", 13) == 0)
			has_type = 1;
	}
	if (len > QUEUE_BYTES)
		return -ENOSPC;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->url = strdup(url);
	j->call_id = strdup(call_id);
	j->body = malloc(len ? len : 1);
	if (!j->url || !j->call_id || !j->body)
		goto free_job;
	if (len)
		memcpy(j->body, body, len);
	j->len = len;
	for (i = 0; headers && headers[i]; i++) {
		l = curl_slist_append(j->headers, headers[i]);
		if (!l)
			goto free_job;
		j->headers = l;
	}
	/* No "Expect: 100-continue" round trip; no form-encoded default type. */
	l = curl_slist_append(j->headers, "Expect:");
	if (!l)
		goto free_job;
	j->headers = l;
	if (!has_type) {
		l = curl_slist_append(j->headers, "Content-Type: application/octet-stream");
		if (!l)
			goto free_job;
		j->headers = l;
	}

	pthread_mutex_lock(&cb->lock);
	if (cb->count >= QUEUE_MAX || cb->bytes + len > QUEUE_BYTES) {
		pthread_mutex_unlock(&cb->lock);
		ret = -ENOSPC;
		goto free_job;
	}
	*cb->tail = j;
	cb->tail = &j->next;
	cb->count++;
	cb->bytes += len;
	pthread_cond_signal(&cb->cond);
	pthread_mutex_unlock(&cb->lock);
	return 0;

free_job:
	job_free(j);
	return ret;
}
