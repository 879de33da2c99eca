/* routes_invoke.c - invoking functions: /function/{name} (synchronous),
 * /async-function/{name} (stored, then run; result kept and POSTed to a
 * callback), and AWS Lambda's Invoke route. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "daemon/callback.h"
#include "daemon/daemon.h"
#include "daemon/logstore.h"
#include "daemon/registry.h"
#include "daemon/sched.h"
#include "daemon/spec.h"
#include "daemon/util.h"

#define LAMBDA_TAIL_MAX 4096

enum reply_style { STYLE_OPENFAAS, STYLE_LAMBDA };

struct invoke_state {
	struct kilnd *k;
	struct http_req *r;
	struct call *call;
	enum reply_style style;
	bool tail;
};

static void state_free(void *p)
{
	struct invoke_state *st = p;

	if (!st)
		return;
	call_unref(st->call);
	free(st);
}

static bool is_json(const uint8_t *b, size_t n)
{
	json_t *j;

	if (!n)
		return false;
	j = json_loadb((const char *)b, n, JSON_DECODE_ANY, NULL);
	json_decref(j);
	return j != NULL;
}

struct ctx_fill {
	struct call *c;
	int err;
};

static void add_header_ctx(void *opaque, const char *k, const char *v)
{
	struct ctx_fill *f = opaque;
	char key[160];

	if (!f->err)
		f->err = call_add_ctx(f->c, util_header_key(key, sizeof(key), k), v);
}

/* A call for the request: body, and the HTTP details in its context. */
/* A call of function with the event body[0..len) (copied) and the context
 * every invocation carries; id: the call's id, or NULL for a fresh one.
 * NULL when out of memory. */
static struct call *call_create(const char *function, const char *id, const void *body, size_t len)
{
	struct call *c = call_new(function);
	char arn[160];

	if (!c)
		return NULL;
	if (id)
		snprintf(c->id, sizeof(c->id), "%s", id);
	c->body = malloc(len ? len : 1);
	if (!c->body)
		goto out_unref;
	memcpy(c->body, body, len);
	c->body_len = len;
	snprintf(arn, sizeof(arn), "arn:aws:lambda:local:000000000000:function:%s", function);
	if (call_add_ctx(c, "function_name", function) || call_add_ctx(c, "request_id", c->id) ||
	    call_add_ctx(c, "invoked_function_arn", arn))
		goto out_unref;
	return c;
out_unref:
	call_unref(c);
	return NULL;
}

/* A call for the request: body, and the HTTP details in its context. */
static struct call *make_call(struct http_req *r, const char *name, const char *suffix)
{
	size_t len;
	const uint8_t *body = http_body(r, &len);
	struct call *c = call_create(name, NULL, body, len);
	struct ctx_fill f = {c, 0};

	if (!c)
		return NULL;
	if (call_add_ctx(c, "http_method", http_method(r)) ||
	    call_add_ctx(c, "http_path", suffix && suffix[0] ? suffix : "/") ||
	    call_add_ctx(c, "http_query", http_query_string(r)))
		goto out_unref;
	http_headers(r, add_header_ctx, &f);
	if (f.err)
		goto out_unref;
	return c;
out_unref:
	call_unref(c);
	return NULL;
}

/* The error body Lambda and OpenFaaS users expect for a handler error:
 * the guest's JSON when it sent one, else one made of type and message. */
static json_t *error_body(const struct call *c)
{
	json_t *j = NULL;

	if (c->result_len)
		j = json_loadb((const char *)c->result, c->result_len, 0, NULL);
	if (j && json_is_object(j))
		return j;
	json_decref(j);
	return json_pack("{s:s, s:s, s:[]}", "errorMessage", c->error_msg, "errorType",
			 c->error_type[0] ? c->error_type : "Runtime.Error", "stackTrace");
}

static void reply_call(struct invoke_state *st)
{
	struct call *c = st->call;
	struct http_req *r = st->r;
	char dur[32], ver[24], timing[96], *tail_b64 = NULL;
	const char *hdrs[26];
	unsigned h = 0;
	bool fn_error = c->proto_status == PROTO_STATUS_HANDLED ||
			c->proto_status == PROTO_STATUS_UNHANDLED;

	snprintf(dur, sizeof(dur), "%.6f", (double)c->duration_us / 1e6);
	snprintf(ver, sizeof(ver), "%lld", (long long)c->version);
	if (st->style == STYLE_LAMBDA) {
		hdrs[h++] = "X-Amzn-RequestId";
		hdrs[h++] = c->id;
		if (c->version) {
			hdrs[h++] = "X-Amz-Executed-Version";
			hdrs[h++] = ver;
		}
	} else {
		hdrs[h++] = "X-Call-Id";
		hdrs[h++] = c->id;
		if (c->vm_id[0]) {
			hdrs[h++] = "X-Kiln-Vm";
			hdrs[h++] = c->vm_id;
			hdrs[h++] = "X-Kiln-Start";
			hdrs[h++] = c->cold ? "cold" : "warm";
			hdrs[h++] = "X-Kiln-Version";
			hdrs[h++] = ver;
		}
	}
	if (c->proto_status >= 0) {
		hdrs[h++] = "X-Duration-Seconds";
		hdrs[h++] = dur;
	}
	if (c->sent_ns && c->answered_ns >= c->sent_ns) {
		/* W3C Server-Timing, in ms: "vm" from INVOKE written to RESULT
		 * read, "kilnd" the rest of request in to response out. */
		int64_t all = util_mono_ns() - c->start_ns, vm = c->answered_ns - c->sent_ns;

		snprintf(timing, sizeof(timing), "kilnd;dur=%.3f, vm;dur=%.3f",
			 (double)(all - vm) / 1e6, (double)vm / 1e6);
		hdrs[h++] = "Server-Timing";
		hdrs[h++] = timing;
	}
	if (st->style == STYLE_LAMBDA && st->tail && c->proto_status >= 0) {
		char *text = NULL;
		size_t n = 0;
		if (logstore_call_tail(st->k->logs, c->function, c->id, LAMBDA_TAIL_MAX, &text,
				       &n) == 0) {
			tail_b64 = util_b64_encode(text, n);
			if (tail_b64) {
				hdrs[h++] = "X-Amz-Log-Result";
				hdrs[h++] = tail_b64;
			}
		}
		free(text);
	}
	if (fn_error) {
		hdrs[h++] = st->style == STYLE_LAMBDA ? "X-Amz-Function-Error"
						      : "X-Kiln-Function-Error";
		hdrs[h++] = st->style == STYLE_LAMBDA
				    ? "Unhandled"
				    : (c->proto_status == PROTO_STATUS_HANDLED ? "Handled"
									       : "Unhandled");
	}
	hdrs[h] = NULL;
	if (c->http_status == 200) {
		bool j = is_json(c->result, c->result_len);
		http_reply(r, 200, j ? "application/json" : "text/plain; charset=utf-8", c->result,
			   c->result_len, hdrs);
	} else if (fn_error) {
		http_reply_json(r, st->style == STYLE_LAMBDA ? 200 : 500, error_body(c), hdrs);
	} else if (st->style == STYLE_LAMBDA) {
		const char *type = c->http_status == 404   ? "ResourceNotFoundException"
				   : c->http_status == 429 ? "TooManyRequestsException"
				   : c->http_status == 504 ? "Runtime.Timeout"
							   : "ServiceException";
		const char *lh[] = {"X-Amzn-ErrorType", type, "X-Amzn-RequestId", c->id, NULL};
		http_reply_json(r, c->http_status,
				json_pack("{s:s, s:s}", "Type",
					  c->http_status < 500 ? "User" : "Service", "message",
					  c->error_msg),
				lh);
	} else {
		if (c->http_status == 429 || c->http_status == 503) {
			hdrs[h++] = "Retry-After";
			hdrs[h++] = "1";
			hdrs[h] = NULL;
		}
		http_reply_json(r, c->http_status, json_pack("{s:s}", "error", c->error_msg), hdrs);
	}
	free(tail_b64);
}

/* On the scheduler's thread: the call ended; answer and wake the request. */
static void sync_done(struct call *c)
{
	struct invoke_state *st = c->opaque;

	reply_call(st);
	http_resume(st->r);
}

static void run_sync(struct kilnd *k, struct http_req *r, const char *name, const char *suffix,
		     enum reply_style style, bool tail)
{
	struct invoke_state *st;
	struct call *c;

	if (!spec_name_ok(name)) {
		http_reply_error(r, 404, "no function named '%.64s'", name);
		return;
	}
	st = calloc(1, sizeof(*st));
	c = st ? make_call(r, name, suffix) : NULL;
	if (!c) {
		free(st);
		http_reply_error(r, 500, "out of memory");
		return;
	}
	st->k = k;
	st->r = r;
	st->call = c;
	st->style = style;
	st->tail = tail;
	c->opaque = st;
	c->done = sync_done;
	http_set_state(r, st, state_free);
	http_suspend(r);
	sched_submit(k->sched, c);
}

void route_invoke(void *app, struct http_req *r)
{
	run_sync(app, r, http_param(r, 0), http_param(r, 1), STYLE_OPENFAAS, false);
}

/* ---- async calls ------------------------------------------------------------- */

void kilnd_callback_done(void *opaque, const char *call_id, int ok, const char *status)
{
	struct kilnd *k = opaque;

	(void)ok;
	registry_call_set_callback_status(k->registry, call_id, status);
}

/* On the scheduler's thread: store the outcome, send the callback. */
static void async_done(struct call *c)
{
	struct kilnd *k = c->opaque;
	const uint8_t *body = c->result;
	size_t len = c->result_len;
	char *err_text = NULL, status[8], dur[32];
	json_t *hj;
	char *headers;

	if (c->http_status != 200) {
		json_t *e;
		if (c->proto_status == PROTO_STATUS_HANDLED ||
		    c->proto_status == PROTO_STATUS_UNHANDLED)
			e = error_body(c);
		else
			e = json_pack("{s:s}", "error", c->error_msg);
		err_text = e ? json_dumps(e, JSON_COMPACT) : NULL;
		json_decref(e);
		body = (const uint8_t *)(err_text ? err_text : "");
		len = strlen((const char *)body);
	}
	hj = json_pack("{s:s, s:s, s:I}", "start", c->cold ? "cold" : "warm", "vm", c->vm_id,
		       "duration_us", (json_int_t)c->duration_us);
	headers = hj ? json_dumps(hj, JSON_COMPACT) : NULL;
	json_decref(hj);
	if (c->http_status == 503 && k->stopping) {
		/* Shutdown: left for the next kilnd to run (at least once). */
		free(err_text);
		free(headers);
		return;
	}
	registry_call_finish(k->registry, c->id, c->http_status, body, len, headers ? headers : "");
	free(headers);
	if (c->callback_url) {
		const char *hdrs[6];
		char h1[64], h2[96], h3[32], h4[64];
		snprintf(status, sizeof(status), "%d", c->http_status);
		snprintf(dur, sizeof(dur), "%.6f", (double)c->duration_us / 1e6);
		snprintf(h1, sizeof(h1), "X-Call-Id: %s", c->id);
		snprintf(h2, sizeof(h2), "X-Function-Name: %s", c->function);
		snprintf(h3, sizeof(h3), "X-Function-Status: %s", status);
		snprintf(h4, sizeof(h4), "X-Duration-Seconds: %s", dur);
		hdrs[0] = h1;
		hdrs[1] = h2;
		hdrs[2] = h3;
		hdrs[3] = h4;
		hdrs[4] = c->http_status == 200 && is_json(c->result, c->result_len)
				  ? "Content-Type: application/json"
				  : "Content-Type: text/plain; charset=utf-8";
		hdrs[5] = NULL;
		if (callback_post(k->callbacks, c->callback_url, c->id, hdrs, body, len))
			registry_call_set_callback_status(k->registry, c->id,
							  "failed: cannot queue the callback");
	}
	free(err_text);
}

/* An async call from its stored form: the HTTP details come from the
 * request JSON the registry kept ({"method","path","query","headers"}). */
static struct call *async_call(struct kilnd *k, const char *id, const char *function,
			       const uint8_t *body, size_t len, const char *request_json,
			       const char *callback_url)
{
	static const char *const fields[] = {"method", "path", "query"};
	struct call *c = call_create(function, id, body, len);
	struct ctx_fill f = {c, 0};
	const char *key;
	json_t *req, *v;

	if (!c)
		return NULL;
	c->async = true;
	c->wait_forever = true;
	c->opaque = k;
	c->done = async_done;
	if (callback_url && callback_url[0] && !(c->callback_url = strdup(callback_url)))
		f.err = -ENOMEM;
	req = json_loads(request_json ? request_json : "{}", 0, NULL);
	for (int i = 0; req && i < 3 && !f.err; i++) {
		json_t *x = json_object_get(req, fields[i]);
		char name[32];
		snprintf(name, sizeof(name), "http_%s", fields[i]);
		if (json_is_string(x))
			f.err = call_add_ctx(c, name, json_string_value(x));
	}
	json_object_foreach(json_object_get(req, "headers"), key, v)
	{
		if (json_is_string(v))
			add_header_ctx(&f, key, json_string_value(v));
	}
	json_decref(req);
	if (f.err) {
		call_unref(c);
		return NULL;
	}
	return c;
}

static void add_header_json(void *opaque, const char *k, const char *v)
{
	json_object_set_new(opaque, k, json_string(v));
}

/* Stores an async call and hands it to the scheduler. Returns 0 with the
 * id, or an HTTP status with the reply already made. */
static int submit_async(struct kilnd *k, struct http_req *r, const char *name, const char *suffix,
			char id[37])
{
	struct registry_call rc = {0};
	const char *cb = http_header(r, "X-Callback-Url");
	json_t *req, *hdrs;
	struct call *c;
	size_t len;
	const uint8_t *body = http_body(r, &len);
	int exists, e;

	if (!spec_name_ok(name) || (exists = registry_function_exists(k->registry, name)) == 0) {
		http_reply_error(r, 404, "no function named '%.64s'", name);
		return 404;
	}
	if (exists < 0) {
		http_reply_error(r, 500, "registry: %s", strerror(-exists));
		return 500;
	}
	if (cb && !callback_url_ok(cb)) {
		http_reply_error(r, 400, "X-Callback-Url: must be an http:// or https:// URL");
		return 400;
	}
	hdrs = json_object();
	http_headers(r, add_header_json, hdrs);
	req = json_pack("{s:s, s:s, s:s, s:o}", "method", http_method(r), "path",
			suffix && suffix[0] ? suffix : "/", "query", http_query_string(r),
			"headers", hdrs);
	util_uuid(id);
	rc.id = id;
	rc.function = (char *)name;
	rc.request_json = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	rc.body = (uint8_t *)body;
	rc.body_len = len;
	rc.callback_url = (char *)(cb ? cb : "");
	if (!rc.request_json || (e = registry_call_insert(k->registry, &rc))) {
		free(rc.request_json);
		http_reply_error(r, 500, "cannot store the call");
		return 500;
	}
	c = async_call(k, id, name, body, len, rc.request_json, cb);
	free(rc.request_json);
	if (!c) {
		http_reply_error(r, 500, "out of memory");
		return 500;
	}
	registry_call_start(k->registry, id);
	sched_submit(k->sched, c);
	call_unref(c);
	return 0;
}

void route_invoke_async(void *app, struct http_req *r)
{
	struct kilnd *k = app;
	char id[37];

	if (submit_async(k, r, http_param(r, 0), http_param(r, 1), id) == 0) {
		const char *hdrs[] = {"X-Call-Id", id, NULL};
		http_reply_json(r, 202, json_pack("{s:s, s:s}", "id", id, "status", "queued"),
				hdrs);
	}
}

int kilnd_recover_calls(struct kilnd *k)
{
	struct registry_call *calls;
	size_t n;
	int rc = registry_call_recover(k->registry, &calls, &n);

	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		struct call *c =
			async_call(k, calls[i].id, calls[i].function, calls[i].body,
				   calls[i].body_len, calls[i].request_json, calls[i].callback_url);
		if (c) {
			log_info("async call %s of %s resumed after a restart", calls[i].id,
				 calls[i].function);
			registry_call_start(k->registry, calls[i].id);
			sched_submit(k->sched, c);
			call_unref(c);
		}
		registry_call_free(&calls[i]);
	}
	free(calls);
	return 0;
}

/* ---- AWS Lambda --------------------------------------------------------------- */

static void lambda_error(struct http_req *r, unsigned status, const char *type, const char *fmt,
			 const char *arg)
{
	char msg[512];
	const char *hdrs[] = {"X-Amzn-ErrorType", type, NULL};

	snprintf(msg, sizeof(msg), fmt, arg);
	http_reply_json(
		r, status,
		json_pack("{s:s, s:s}", "Type", status < 500 ? "User" : "Service", "message", msg),
		hdrs);
}

void route_lambda_invoke(void *app, struct http_req *r)
{
	struct kilnd *k = app;
	const char *name = http_param(r, 0);
	const char *type = http_header(r, "X-Amz-Invocation-Type");
	const char *logtype = http_header(r, "X-Amz-Log-Type");
	int exists;

	if (!type || !type[0])
		type = "RequestResponse";
	if (strcmp(type, "RequestResponse") && strcmp(type, "Event") && strcmp(type, "DryRun")) {
		lambda_error(r, 400, "InvalidParameterValueException",
			     "X-Amz-Invocation-Type: '%.64s' is not RequestResponse, Event or "
			     "DryRun",
			     type);
		return;
	}
	exists = spec_name_ok(name) ? registry_function_exists(k->registry, name) : 0;
	if (exists <= 0) {
		lambda_error(r, 404, "ResourceNotFoundException",
			     "Function not found: arn:aws:lambda:local:000000000000:function:%.64s",
			     name);
		return;
	}
	if (strcmp(type, "DryRun") == 0) {
		http_reply(r, 204, NULL, "", 0, NULL);
		return;
	}
	if (strcmp(type, "Event") == 0) {
		char id[37];
		if (submit_async(k, r, name, "/", id) == 0) {
			const char *hdrs[] = {"X-Amzn-RequestId", id, NULL};
			http_reply(r, 202, NULL, "", 0, hdrs);
		}
		return;
	}
	run_sync(k, r, name, "/", STYLE_LAMBDA, logtype && strcmp(logtype, "Tail") == 0);
}

/* ---- /system/calls/{id} ------------------------------------------------------------ */

static bool utf8_ok(const uint8_t *p, size_t n)
{
	json_t *s = json_stringn((const char *)p, n);
	bool ok = s != NULL && strlen(json_string_value(s)) == n;

	json_decref(s);
	return ok;
}

void route_call_get(void *app, struct http_req *r)
{
	struct kilnd *k = app;
	struct registry_call c;
	const char *id = http_param(r, 0);
	char created[32], started[32], finished[32];
	bool text;
	json_t *o;
	int rc;

	if (strlen(id) != 36 || strspn(id, "0123456789abcdef-") != 36) {
		http_reply_error(r, 404, "no call with id '%.64s'", id);
		return;
	}
	memset(&c, 0, sizeof(c));
	rc = registry_call_get(k->registry, id, &c);
	if (rc == -ENOENT) {
		http_reply_error(r, 404, "no call with id '%s'", id);
		return;
	}
	if (rc) {
		http_reply_error(r, 500, "registry: %s", strerror(-rc));
		return;
	}
	util_rfc3339(c.created_ns, created);
	util_rfc3339(c.started_ns, started);
	util_rfc3339(c.finished_ns, finished);
	text = utf8_ok(c.result, c.result_len);
	o = json_pack("{s:s, s:s, s:s, s:i, s:i}", "id", c.id, "function", c.function, "status",
		      c.state, "status_code", c.status_code, "attempts", c.attempts);
	if (strcmp(c.state, "done") == 0) {
		json_object_set_new(o, "body",
				    text ? json_stringn((const char *)c.result, c.result_len)
					 : json_null());
		if (!text) {
			char *b = util_b64_encode(c.result, c.result_len);
			json_object_set_new(o, "body_base64", b ? json_string(b) : json_null());
			free(b);
		} else {
			json_object_set_new(o, "body_base64", json_null());
		}
	} else {
		json_object_set_new(o, "body", json_null());
		json_object_set_new(o, "body_base64", json_null());
	}
	json_object_set_new(o, "created_at", json_string(created));
	json_object_set_new(o, "started_at", c.started_ns ? json_string(started) : json_null());
	json_object_set_new(o, "finished_at", c.finished_ns ? json_string(finished) : json_null());
	json_object_set_new(o, "callback_url",
			    c.callback_url && c.callback_url[0] ? json_string(c.callback_url)
								: json_null());
	json_object_set_new(o, "callback_status",
			    c.callback_status && c.callback_status[0]
				    ? json_string(c.callback_status)
				    : json_null());
	if (c.result_headers && c.result_headers[0])
		json_object_set_new(o, "result", json_loads(c.result_headers, 0, NULL));
	registry_call_free(&c);
	http_reply_json(r, 200, o, NULL);
}
