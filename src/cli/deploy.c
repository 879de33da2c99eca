/* deploy.c - deploy a function and follow its stages (see deploy.h). */
#include "cli/deploy.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/api.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "cli/pack.h"
#include "cli/progress.h"
#include "cli/units.h"

#define POLL_MS	  200
#define REDRAW_MS 100

int deploy_failure_exit(const char *last_stage)
{
	if (last_stage && !strcmp(last_stage, "loading"))
		return KILN_EXIT_FUNCTION;
	if (last_stage && !strcmp(last_stage, "code"))
		return KILN_EXIT_REJECTED;
	return KILN_EXIT_SERVER;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Builds the request body: packs s->code when set. */
static int build_body(const struct fn_spec *s, json_t **body)
{
	uint8_t *tar = NULL;
	size_t len = 0;
	char err[512], *b64 = NULL;
	int rc;

	if (s->code) {
		rc = pack_path(s->code, &tar, &len, err, sizeof(err));
		if (rc) {
			out_error("cannot pack the code of %s: %s", s->name, err);
			return KILN_EXIT_USAGE;
		}
		b64 = pack_base64(tar, len);
		free(tar);
		if (!b64)
			goto oom;
	}
	rc = fn_spec_to_json(s, b64, body);
	free(b64);
	if (rc)
		goto oom;
	return KILN_EXIT_OK;
oom:
	out_error("out of memory");
	return KILN_EXIT_SERVER;
}

/* Prints a deploy's failure: one error line, then its log, if any. */
static int report_failure(const char *name, json_int_t version, const char *stage,
			  const char *error, const char *log)
{
	out_error("deploy of %s version %lld failed at stage %s: %s", name, (long long)version,
		  stage ? stage : "?", error && *error ? error : "no reason given");
	if (log && *log)
		out_text(stderr, log, OUT_KEEP_NEWLINES | OUT_KEEP_TABS);
	return deploy_failure_exit(stage);
}

/* Follows the deploy of `version` until it is ready or failed. */
static int follow(struct http_client *c, const struct fn_spec *s, const struct deploy_opts *o,
		  struct progress *p, json_int_t version, json_t **desc)
{
	char path[128], last_stage[64] = "queued";
	int64_t next_poll = 0;

	snprintf(path, sizeof(path), "/system/function/%s", s->name);
	for (;;) {
		struct http_response r;
		json_t *j, *dep;
		json_int_t dv;
		const char *stage, *status;
		int rc;

		if (progress_elapsed_ms(p) < next_poll) {
			if (!o->quiet)
				progress_update(p, last_stage);
			sleep_ms(REDRAW_MS);
			continue;
		}
		next_poll = progress_elapsed_ms(p) + POLL_MS;
		rc = http_do(c, &(struct http_request){.method = "GET", .path = path}, &r);
		if (rc || r.status != 200) {
			if (!o->quiet)
				progress_finish(p, "failed");
			if (rc)
				out_error("cannot reach the gateway at %s: %s",
					  http_client_gateway(c), http_client_error(c));
			rc = rc ? KILN_EXIT_UNREACHABLE : api_fail(&r, s->name);
			http_response_clear(&r);
			return rc;
		}
		j = json_loadb(r.body, r.len, 0, NULL);
		http_response_clear(&r);
		if (!json_is_object(j)) {
			if (!o->quiet)
				progress_finish(p, "failed");
			out_error("%s: the gateway's reply is not a JSON object", s->name);
			json_decref(j);
			return KILN_EXIT_SERVER;
		}
		dep = json_object_get(j, "deploy");
		status = json_string_value(json_object_get(j, "status"));
		if (json_is_object(dep)) {
			dv = json_integer_value(json_object_get(dep, "version"));
			stage = json_string_value(json_object_get(dep, "stage"));
		} else {
			/* No deploy object: the top-level version and status. */
			dv = json_integer_value(json_object_get(j, "version"));
			stage = status;
		}
		if (dv > version) {
			if (!o->quiet)
				progress_finish(p, "superseded");
			out_error("deploy of %s version %lld was superseded by version %lld",
				  s->name, (long long)version, (long long)dv);
			json_decref(j);
			return KILN_EXIT_REJECTED;
		}
		if (dv == version && stage && !strcmp(stage, "ready")) {
			if (!o->quiet)
				progress_finish(p, "ready");
			if (desc)
				*desc = j;
			else
				json_decref(j);
			return KILN_EXIT_OK;
		}
		if (dv == version && stage && !strcmp(stage, "failed")) {
			const char *at = json_string_value(json_object_get(dep, "failed_stage"));

			if (!o->quiet)
				progress_finish(p, "failed");
			rc = report_failure(s->name, version, at ? at : last_stage,
					    json_string_value(json_object_get(dep, "error")),
					    json_string_value(json_object_get(dep, "log")));
			json_decref(j);
			return rc;
		}
		if (dv == version && stage && *stage)
			snprintf(last_stage, sizeof(last_stage), "%s", stage);
		json_decref(j);
		if (!o->quiet)
			progress_update(p, last_stage);
		sleep_ms(REDRAW_MS);
	}
}

int deploy_function(struct http_client *c, const struct fn_spec *s, const struct deploy_opts *o,
		    json_t **desc)
{
	struct http_response r = {0};
	struct progress *p = NULL;
	json_t *body = NULL, *reply = NULL, *d = NULL;
	json_int_t version;
	char label[128], el[32];
	const char *method = "POST";
	int rc;

	snprintf(label, sizeof(label), "%s", o->label ? o->label : "");
	if (!o->label)
		snprintf(label, sizeof(label), "deploying %s", s->name);
	rc = build_body(s, &body);
	if (rc)
		return rc;
	p = progress_create(o->out, o->tty, label);
	if (!p) {
		out_error("out of memory");
		rc = KILN_EXIT_SERVER;
		goto free_body;
	}
	if (!o->quiet)
		progress_update(p, "uploading");
	for (;;) {
		rc = api_request(c, method, "/system/functions", body, &r);
		if (rc) {
			if (!o->quiet)
				progress_finish(p, "failed");
			goto free_body;
		}
		if (r.status == 409 && !strcmp(method, "POST")) {
			http_response_clear(&r);
			method = "PUT";
			continue;
		}
		break;
	}
	if (r.status == 422) {
		/* A gateway that waited and could not load the handler. */
		reply = json_loadb(r.body, r.len, 0, NULL);
		if (!o->quiet)
			progress_finish(p, "failed");
		rc = report_failure(s->name, json_integer_value(json_object_get(reply, "version")),
				    json_string_value(json_object_get(reply, "stage")),
				    api_error_text(&r),
				    json_string_value(json_object_get(reply, "log")));
		goto free_reply;
	}
	if (r.status != 200 && r.status != 201 && r.status != 202) {
		if (!o->quiet)
			progress_finish(p, "rejected");
		rc = api_fail(&r, s->name);
		goto free_reply;
	}
	reply = api_json(&r, s->name);
	if (!reply) {
		rc = KILN_EXIT_SERVER;
		goto free_reply;
	}
	version = json_integer_value(json_object_get(reply, "version"));
	if (r.status == 202 || !json_is_string(json_object_get(reply, "status")) ||
	    strcmp(json_string_value(json_object_get(reply, "status")), "ready")) {
		rc = follow(c, s, o, p, version, &d);
		if (rc)
			goto free_reply;
	} else {
		if (!o->quiet)
			progress_finish(p, "ready");
		d = json_incref(reply);
	}
	if (o->print_url) {
		char fpath[128];
		char *url;

		snprintf(fpath, sizeof(fpath), "/function/%s", s->name);
		url = http_client_url(c, fpath);
		units_format_elapsed(progress_elapsed_ms(p), el, sizeof(el));
		fprintf(o->out, "%s: version %lld ready in %s\n%s\n", s->name, (long long)version,
			el, url ? url : "");
		fflush(o->out);
		free(url);
	}
	if (desc)
		*desc = json_incref(d);
	json_decref(d);
	rc = KILN_EXIT_OK;
free_reply:
	json_decref(reply);
	http_response_clear(&r);
free_body:
	progress_destroy(p);
	json_decref(body);
	return rc;
}
