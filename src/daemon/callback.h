/* callback.h - delivers async calls' results to their X-Callback-Url:
 * a worker thread with a queue, POSTing with libcurl (timeout 10 s, three
 * attempts 1 s / 2 s apart on connection errors and 5xx), so the
 * scheduler's loop never waits on a network. Only http:// and https:// URLs
 * are accepted.
 */
#ifndef KILN_DAEMON_CALLBACK_H
#define KILN_DAEMON_CALLBACK_H

#include <stddef.h>

struct callback;

/* Called on the worker thread when a delivery ends: ok is 1 when the
 * receiver answered 2xx; status is a short text ("sent 200",
 * "failed: Couldn't connect to server"). */
typedef void (*callback_done_fn)(void *opaque, const char *call_id, int ok, const char *status);

/* Starts the worker. Returns NULL when out of memory or the thread cannot
 * start. */
struct callback *callback_create(callback_done_fn done, void *opaque);

/* Stops the worker: waits at most `grace_ms` for queued deliveries, drops
 * the rest. Accepts NULL. */
void callback_destroy(struct callback *cb, int grace_ms);

/* True when url is an acceptable callback URL (http/https, at most 2048
 * bytes, no control characters). */
int callback_url_ok(const char *url);

/* Queues one POST of body[0..len) to url with headers (NULL-terminated array
 * of "Name: value" strings; copied). Returns 0, -EINVAL (bad URL), -ENOMEM. */
int callback_post(struct callback *cb, const char *url, const char *call_id,
		  const char *const *headers, const void *body, size_t len);

#endif
