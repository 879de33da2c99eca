/* callback.h - delivers async calls' results to their X-Callback-Url:
 * a worker thread with a queue, POSTing with libcurl (timeout 10 s, three
 * attempts 1 s / 2 s apart on connection errors and 5xx), so the
 * scheduler's loop never waits on a network. Only http:// and https:// URLs
 * are accepted; redirects are not followed (a 3xx is a failure).
 *
 * curl_global_init(CURL_GLOBAL_DEFAULT) must have been called (kilnd's main
 * does it, before any thread starts). All functions are thread-safe.
 */
#ifndef KILN_DAEMON_CALLBACK_H
#define KILN_DAEMON_CALLBACK_H

#include <stddef.h>

struct callback;

/* Called on the worker thread when a delivery ends, exactly once per queued
 * POST: ok is 1 when the receiver answered 2xx; status is a short text
 * ("sent 200", "failed: HTTP 503", "failed: Couldn't connect to server",
 * "failed: kilnd is stopping", "failed: dropped, kilnd is stopping"). */
typedef void (*callback_done_fn)(void *opaque, const char *call_id, int ok, const char *status);

/* Starts the worker. Returns NULL when out of memory or the thread cannot
 * start. */
struct callback *callback_create(callback_done_fn done, void *opaque);

/* Stops the worker: waits at most `grace_ms` for queued deliveries (retry
 * waits and a transfer in flight are cut at the deadline, within about a
 * second), drops the rest; done is still called for each of them, on the
 * worker thread, before this returns. Accepts NULL. */
void callback_destroy(struct callback *cb, int grace_ms);

/* True when url is an acceptable callback URL (http/https, at most 2048
 * bytes, no control characters). */
int callback_url_ok(const char *url);

/* Queues one POST of body[0..len) to url with headers (NULL-terminated array
 * of "Name: value" strings; copied). "Content-Type: application/octet-stream"
 * is added when headers have no Content-Type. Returns 0, -EINVAL (bad URL,
 * a header with CR/LF or a bad name, NULL call_id), -ENOSPC (10,000 queued,
 * or 256 MiB of queued bodies), -ENOMEM. */
int callback_post(struct callback *cb, const char *url, const char *call_id,
		  const char *const *headers, const void *body, size_t len);

#endif
