/* routes_system.c - observing kilnd: /system/logs (NDJSON, with follow),
 * /healthz, /metrics (Prometheus text), /system/info. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/logstore.h"
#include "daemon/metrics.h"
#include "daemon/registry.h"
#include "daemon/sched.h"
#include "daemon/spec.h"
#include "daemon/util.h"

#define FOLLOW_POLL_MS 200
#define KILN_VERSION   "0.1.0"

/* Parses since: RFC 3339 ("2026-12-04T17:00:00Z", fractional seconds
 * allowed), Unix seconds, or a duration back from now ("10m", "90s", "2h",
 * "1d"). Returns 0 and *ns, or -EINVAL. */
static int parse_since(const char *s, int64_t *ns)
{
	char *end;
	double v;

	if (!s || !s[0])
		return -EINVAL;
	if (strlen(s) >= 20 && s[4] == '-' && s[10] == 'T') {
		struct tm tm = {0};
		const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
		double frac = 0;
		if (!rest)
			return -EINVAL;
		if (*rest == '.') {
			frac = strtod(rest, &end);
			rest = end;
		}
		if (strcmp(rest, "Z") && strcmp(rest, "+00:00"))
			return -EINVAL;
		*ns = ((int64_t)timegm(&tm)) * 1000000000 + (int64_t)(frac * 1e9);
		return 0;
	}
	v = strtod(s, &end);
	if (end == s || v < 0)
		return -EINVAL;
	if (*end == 0) {
		*ns = (int64_t)(v * 1e9);
		return 0;
	}
	if (end[1])
		return -EINVAL;
	switch (*end) {
	case 's':
		break;
	case 'm':
		v *= 60;
		break;
	case 'h':
		v *= 3600;
		break;
	case 'd':
		v *= 86400;
		break;
	default:
		return -EINVAL;
	}
	*ns = util_wall_ns() - (int64_t)(v * 1e9);
	return 0;
}

/* A log response: what was read at once, then (follow) what comes. */
struct log_stream {
	struct kilnd *k;
	struct http_req *r;
	char name[SPEC_NAME_MAX + 1];
	char *buf;
	size_t len, off;
	uint64_t cursor;
	bool follow;
	struct log_stream *next;
};

static pthread_mutex_t followers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct log_stream *followers;
static pthread_t follower_thread;
static bool follower_started;

static void *follower_main(void *arg)
{
	struct kilnd *k = arg;

	for (;;) {
		pthread_mutex_lock(&followers_lock);
		for (struct log_stream *ls = followers; ls; ls = ls->next)
			http_resume(ls->r);
		pthread_mutex_unlock(&followers_lock);
		if (k->stopping)
			break;
		usleep(FOLLOW_POLL_MS * 1000);
	}
	return NULL;
}

static ssize_t log_read(void *opaque, char *out, size_t max)
{
	struct log_stream *ls = opaque;
	size_t n;

	if (ls->off == ls->len) {
		free(ls->buf);
		ls->buf = NULL;
		ls->len = ls->off = 0;
		if (!ls->follow || ls->k->stopping)
			return -1;
		if (logstore_follow(ls->k->logs, ls->name, &ls->cursor, &ls->buf, &ls->len,
				    256 * 1024) ||
		    !ls->len)
			return 0; /* suspended until the follower thread resumes it */
	}
	n = ls->len - ls->off < max ? ls->len - ls->off : max;
	memcpy(out, ls->buf + ls->off, n);
	ls->off += n;
	return (ssize_t)n;
}

static void log_stream_free(void *p)
{
	struct log_stream *ls = p;

	if (!ls)
		return;
	pthread_mutex_lock(&followers_lock);
	for (struct log_stream **pp = &followers; *pp; pp = &(*pp)->next)
		if (*pp == ls) {
			*pp = ls->next;
			break;
		}
	pthread_mutex_unlock(&followers_lock);
	free(ls->buf);
	free(ls);
}

void route_logs(void *app, struct http_req *r)
{
	struct kilnd *k = app;
	const char *name = http_query(r, "name");
	const char *since = http_query(r, "since");
	const char *tail = http_query(r, "tail");
	const char *follow = http_query(r, "follow");
	struct logstore_query q = {.since_ns = 0, .tail = -1};
	struct log_stream *ls;
	int rc;

	if (!name || !spec_name_ok(name)) {
		http_reply_error(r, 400, "name: a function name is required");
		return;
	}
	if (registry_function_exists(k->registry, name) <= 0) {
		http_reply_error(r, 404, "no function named '%s'", name);
		return;
	}
	if (since && parse_since(since, &q.since_ns)) {
		http_reply_error(r, 400,
				 "since: '%.64s' is not an RFC 3339 time, Unix seconds or "
				 "a duration like 10m",
				 since);
		return;
	}
	if (tail) {
		char *end;
		long t = strtol(tail, &end, 10);
		if (*end || t < 0 || t > 1000000) {
			http_reply_error(r, 400,
					 "tail: must be a number of lines from 0 to 1000000");
			return;
		}
		q.tail = t;
	}
	ls = calloc(1, sizeof(*ls));
	if (!ls) {
		http_reply_error(r, 500, "out of memory");
		return;
	}
	ls->k = k;
	ls->r = r;
	snprintf(ls->name, sizeof(ls->name), "%s", name);
	ls->follow = follow && (strcmp(follow, "1") == 0 || strcmp(follow, "true") == 0);
	rc = logstore_read(k->logs, name, &q, &ls->buf, &ls->len, &ls->cursor);
	if (rc) {
		free(ls);
		http_reply_error(r, 500, "logs: %s", strerror(-rc));
		return;
	}
	http_set_state(r, ls, log_stream_free);
	if (ls->follow) {
		pthread_mutex_lock(&followers_lock);
		ls->next = followers;
		followers = ls;
		if (!follower_started &&
		    pthread_create(&follower_thread, NULL, follower_main, k) == 0)
			follower_started = true;
		pthread_mutex_unlock(&followers_lock);
	}
	http_reply_stream(r, 200, "application/x-ndjson", log_read, ls);
}

void kilnd_logs_shutdown(struct kilnd *k)
{
	(void)k;
	if (follower_started) {
		pthread_join(follower_thread, NULL);
		follower_started = false;
	}
	/* One last resume so every stream sees `stopping` and ends. */
	pthread_mutex_lock(&followers_lock);
	for (struct log_stream *ls = followers; ls; ls = ls->next)
		http_resume(ls->r);
	pthread_mutex_unlock(&followers_lock);
}

void route_healthz(void *app, struct http_req *r)
{
	(void)app;
	http_reply(r, 200, "text/plain; charset=utf-8", "OK\n", 3, NULL);
}

void route_metrics(void *app, struct http_req *r)
{
	struct kilnd *k = app;
	char *text = NULL;
	size_t len = 0;

	if (metrics_render(k->metrics, &text, &len)) {
		http_reply_error(r, 500, "out of memory");
		return;
	}
	http_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
	free(text);
}

/* The runtimes this kilnd has a root image for, in kiln's order. */
static json_t *runtimes_json(void)
{
	json_t *a = json_array();
	const char *name;

	for (size_t i = 0; a && (name = spec_runtime_name(i)); i++)
		if (spec_runtime_known(name))
			json_array_append_new(a, json_string(name));
	return a;
}

void route_info(void *app, struct http_req *r)
{
	struct kilnd *k = app;
	struct registry_version *all;
	struct sched_stats st;
	struct utsname u;
	size_t n = 0, functions = 0;
	char started[32];
	json_t *o;

	if (registry_version_list(k->registry, &all, &n) == 0) {
		for (size_t i = 0; i < n; i++)
			functions += i == 0 || strcmp(all[i].name, all[i - 1].name);
		registry_versions_free(all, n);
	}
	sched_stats(k->sched, &st);
	uname(&u);
	util_rfc3339(k->started_wall_ns, started);
	o = json_pack("{s:{s:s, s:s, s:{s:s}}, s:s, s:s, s:s, s:I, s:I, s:{s:i, s:i, s:i, s:i, "
		      "s:i}, s:i, s:o}",
		      "provider", "provider", "kiln", "orchestration", "kvm", "version", "release",
		      KILN_VERSION, "arch", u.machine, "state_dir", k->state_dir, "started_at",
		      started, "memory_budget_mib", (json_int_t)st.budget_mb,
		      "memory_committed_mib", (json_int_t)st.committed_mb, "vms", "pool", st.pool,
		      "starting", st.starting, "busy", st.busy, "idle", st.idle, "paused",
		      st.paused, "functions", (int)functions, "runtimes", runtimes_json());
	if (o)
		json_object_set_new(o, "run_dir", json_string(k->run_dir));
	http_reply_json(r, 200, o, NULL);
}
