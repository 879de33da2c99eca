/* routes_functions.c - /system/functions and /system/function/{name}:
 * list, deploy (create and update), describe, remove. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "daemon/codepack.h"
#include "daemon/daemon.h"
#include "daemon/deploy.h"
#include "daemon/logstore.h"
#include "daemon/metrics.h"
#include "daemon/registry.h"
#include "daemon/sched.h"
#include "daemon/spec.h"
#include "daemon/store.h"
#include "daemon/util.h"

/* The versions of one function, from a registry listing. */
struct fn_versions {
	struct registry_version *all;
	size_t n;
	struct registry_version *first, *ready, *latest; /* of this function */
};

static void versions_of(struct registry_version *all, size_t n, const char *name,
			struct fn_versions *out)
{
	memset(out, 0, sizeof(*out));
	out->all = all;
	out->n = n;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(all[i].name, name))
			continue;
		if (!out->first)
			out->first = &all[i];
		out->latest = &all[i];
		if (strcmp(all[i].status, "ready") == 0)
			out->ready = &all[i];
	}
}

static void iso(int64_t ns, char out[32])
{
	util_rfc3339(ns, out);
}

/* The description of a function (docs/http-api.md), NULL when unknown. */
static json_t *describe(struct kilnd *k, struct fn_versions *v, bool full)
{
	struct registry_version *shown = v->ready ? v->ready : v->latest;
	struct sched_fn_stats st;
	json_t *o, *dep;
	char created[32], updated[32];

	if (!shown)
		return NULL;
	o = json_loads(shown->spec_json, 0, NULL);
	if (!o)
		o = json_object();
	sched_function_stats(k->sched, shown->name, &st);
	iso(v->first->created_ns, created);
	iso(v->latest->updated_ns, updated);
	json_object_set_new(o, "version", json_integer(shown->version));
	json_object_set_new(o, "status",
			    json_string(v->ready				   ? "ready"
					: strcmp(v->latest->status, "failed") == 0 ? "failed"
										   : "deploying"));
	json_object_set_new(o, "invocationCount", json_integer((json_int_t)st.invocations));
	json_object_set_new(o, "replicas", json_integer(st.running));
	json_object_set_new(o, "availableReplicas", json_integer(st.idle + st.paused + st.busy));
	json_object_set_new(o, "created_at", json_string(created));
	json_object_set_new(o, "updated_at", json_string(updated));
	if (!full)
		return o;
	json_object_set_new(o, "instances",
			    json_pack("{s:i, s:i, s:i, s:i, s:i, s:i}", "running", st.running,
				      "busy", st.busy, "idle", st.idle, "paused", st.paused,
				      "starting", st.starting, "queued", st.queued));
	if (v->ready && v->ready->snapshot[0]) {
		uint64_t mem = 0, state = 0;
		store_snapshot_sizes(k->store, v->ready->snapshot, &mem, &state);
		json_object_set_new(o, "snapshot",
				    json_pack("{s:s, s:I, s:I}", "id", v->ready->snapshot,
					      "memory_bytes", (json_int_t)mem, "state_bytes",
					      (json_int_t)state));
	} else {
		json_object_set_new(o, "snapshot", json_null());
	}
	dep = deployer_status(k->deployer, shown->name);
	if (!dep) {
		/* No deploy since kilnd started: from the registry. */
		dep = json_pack("{s:I, s:s, s:s?, s:s}", "version", (json_int_t)v->latest->version,
				"stage", v->latest->status, "error",
				v->latest->error[0] ? v->latest->error : NULL, "log", "");
	}
	json_object_set_new(o, "deploy", dep);
	{
		json_t *vs = json_array();
		for (size_t i = 0; i < v->n; i++) {
			struct registry_version *x = &v->all[i];
			if (strcmp(x->name, shown->name))
				continue;
			json_array_append_new(vs,
					      json_pack("{s:I, s:s, s:s?}", "version",
							(json_int_t)x->version, "status", x->status,
							"error", x->error[0] ? x->error : NULL));
		}
		json_object_set_new(o, "versions", vs);
	}
	return o;
}

void route_functions_list(void *app, struct http_req *r)
{
	struct kilnd *k = app;
	struct registry_version *all;
	size_t n;
	json_t *arr = json_array();
	int rc = registry_version_list(k->registry, &all, &n);

	if (rc) {
		json_decref(arr);
		http_reply_error(r, 500, "registry: %s", strerror(-rc));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct fn_versions v;
		if (i > 0 && strcmp(all[i].name, all[i - 1].name) == 0)
			continue;
		versions_of(all, n, all[i].name, &v);
		json_array_append_new(arr, describe(k, &v, false));
	}
	registry_versions_free(all, n);
	http_reply_json(r, 200, arr, NULL);
}

static void reply_describe(struct kilnd *k, struct http_req *r, const char *name, unsigned status)
{
	struct registry_version *all;
	struct fn_versions v;
	size_t n;
	json_t *o;
	int rc = registry_version_list(k->registry, &all, &n);

	if (rc) {
		http_reply_error(r, 500, "registry: %s", strerror(-rc));
		return;
	}
	versions_of(all, n, name, &v);
	o = describe(k, &v, true);
	registry_versions_free(all, n);
	if (!o)
		http_reply_error(r, 404, "no function named '%s'", name);
	else
		http_reply_json(r, status, o, NULL);
}

void route_function_describe(void *app, struct http_req *r)
{
	const char *name = http_param(r, 0);

	if (!spec_name_ok(name)) {
		http_reply_error(r, 400, "'%.64s' is not a valid function name", name);
		return;
	}
	reply_describe(app, r, name, 200);
}

/* ---- deploy ---------------------------------------------------------------- */

struct deploy_wait {
	struct kilnd *k;
	struct http_req *r;
	char name[SPEC_NAME_MAX + 1];
};

static void deploy_done(void *opaque, int ok, const char *stage, const char *error, const char *log)
{
	struct deploy_wait *w = opaque;

	if (ok)
		reply_describe(w->k, w->r, w->name, 201);
	else
		http_reply_json(
			w->r,
			strncmp(error, "kilnd is stopping", 17) == 0 ? 503
			: strstr(error, strerror(ENOSPC))	     ? 507
								     : 422,
			json_pack("{s:s, s:s, s:s}", "error", error, "stage", stage, "log", log),
			NULL);
	http_resume(w->r);
	free(w);
}

/* 507 Insufficient Storage when the state directory is full, else 500. */
static unsigned space_status(int rc)
{
	return rc == -ENOSPC || rc == -EDQUOT ? 507 : 500;
}

static bool query_true(struct http_req *r, const char *name)
{
	const char *v = http_query(r, name);

	return v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || v[0] == 0);
}

void route_functions_deploy(void *app, struct http_req *r)
{
	struct kilnd *k = app;
	bool create = strcmp(http_method(r), "POST") == 0;
	struct fn_spec spec, prev;
	char err[1024] = "", hex[65];
	uint8_t *archive = NULL, *raw = NULL;
	size_t alen = 0, rawlen = 0, blen;
	const uint8_t *body = http_body(r, &blen);
	struct registry_version *all = NULL;
	size_t n = 0;
	json_error_t jerr;
	json_t *obj, *code, *code_path, *sj;
	const char *reuse = NULL;
	char *spec_text = NULL;
	int64_t version;
	int rc, exists;

	memset(&prev, 0, sizeof(prev));
	obj = json_loadb((const char *)body, blen, JSON_REJECT_DUPLICATES, &jerr);
	if (!obj) {
		http_reply_error(r, 400, "malformed JSON: %s (line %d, column %d)", jerr.text,
				 jerr.line, jerr.column);
		return;
	}
	rc = spec_from_json(obj, &spec, err, sizeof(err));
	if (rc) {
		http_reply_error(r, 400, "%s", rc == -EINVAL ? err : strerror(-rc));
		goto out_json;
	}
	code = json_object_get(obj, "code");
	code_path = json_object_get(obj, "code_path");
	if ((!code || json_is_null(code)) == (!code_path || json_is_null(code_path))) {
		http_reply_error(r, 400,
				 "exactly one of code (base64 archive) and code_path is "
				 "required");
		goto out_spec;
	}
	if (code && !json_is_null(code)) {
		if (!json_is_string(code) ||
		    util_b64_decode(json_string_value(code), json_string_length(code), &raw,
				    &rawlen)) {
			http_reply_error(r, 400, "code: not valid base64");
			goto out_spec;
		}
		rc = codepack_from_archive(raw, rawlen, &archive, &alen, err, sizeof(err));
	} else {
		const char *p = json_is_string(code_path) ? json_string_value(code_path) : NULL;
		if (!p || p[0] != '/') {
			http_reply_error(r, 400,
					 "code_path: must be an absolute path on kilnd's host");
			goto out_spec;
		}
		rc = codepack_from_path(p, &archive, &alen, err, sizeof(err));
	}
	free(raw);
	if (rc) {
		http_reply_error(r, 400, "code: %s", err[0] ? err : strerror(-rc));
		goto out_spec;
	}
	exists = registry_function_exists(k->registry, spec.name);
	if (exists < 0) {
		http_reply_error(r, 500, "registry: %s", strerror(-exists));
		goto out_archive;
	}
	if (create && exists) {
		http_reply_error(r, 409, "function '%s' exists: update it with PUT", spec.name);
		goto out_archive;
	}
	if (!create && !exists) {
		http_reply_error(r, 404, "no function named '%s' (create it with POST)", spec.name);
		goto out_archive;
	}
	rc = store_code_put(k->store, archive, alen, hex);
	if (rc) {
		http_reply_error(r, space_status(rc), "code store: %s", strerror(-rc));
		goto out_archive;
	}
	memcpy(spec.code_sha256, hex, sizeof(hex));
	/* A ready version (of any function) with the same image lends its
	 * snapshot: same code, runtime, handler, env, memory and vCPUs. */
	if (registry_version_list(k->registry, &all, &n) == 0) {
		for (size_t i = n; i-- > 0 && !reuse;) {
			char perr[64];
			if (strcmp(all[i].status, "ready") || !all[i].snapshot[0] ||
			    spec_from_text(all[i].spec_json, &prev, perr, sizeof(perr)))
				continue;
			if (spec_same_image(&prev, &spec))
				reuse = all[i].snapshot;
			spec_clear(&prev);
		}
	}
	sj = spec_to_json(&spec);
	spec_text = sj ? json_dumps(sj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(sj);
	if (!spec_text) {
		http_reply_error(r, 500, "out of memory");
		goto out_list;
	}
	rc = registry_version_add(k->registry, spec.name, spec_text, &version);
	if (rc) {
		http_reply_error(r, space_status(rc), "registry: %s", strerror(-rc));
		goto out_list;
	}
	log_info("%s %s version %lld (%s, %s)%s", create ? "deploy" : "update", spec.name,
		 (long long)version, spec.runtime, spec.handler,
		 reuse ? ": same image, snapshot reused" : "");
	if (query_true(r, "wait")) {
		struct deploy_wait *w = calloc(1, sizeof(*w));
		if (!w) {
			http_reply_error(r, 500, "out of memory");
			goto out_list;
		}
		w->k = k;
		w->r = r;
		snprintf(w->name, sizeof(w->name), "%s", spec.name);
		http_suspend(r);
		rc = deployer_start(k->deployer, &spec, version, archive, alen, reuse, deploy_done,
				    w);
		if (rc) {
			free(w);
			registry_version_set(k->registry, spec.name, version, "failed", NULL,
					     "cannot start the deploy");
			http_reply_error(r, 500, "cannot start the deploy: %s", strerror(-rc));
			http_resume(r);
		}
	} else {
		rc = deployer_start(k->deployer, &spec, version, archive, alen, reuse, NULL, NULL);
		if (rc) {
			registry_version_set(k->registry, spec.name, version, "failed", NULL,
					     "cannot start the deploy");
			http_reply_error(r, 500, "cannot start the deploy: %s", strerror(-rc));
		} else {
			http_reply_json(r, 202,
					json_pack("{s:s, s:I, s:s}", "name", spec.name, "version",
						  (json_int_t)version, "status", "deploying"),
					NULL);
		}
	}
out_list:
	free(spec_text);
	spec_clear(&prev);
	registry_versions_free(all, n);
out_archive:
	free(archive);
out_spec:
	spec_clear(&spec);
out_json:
	json_decref(obj);
}

/* ---- remove ---------------------------------------------------------------- */

static void remove_function(struct kilnd *k, struct http_req *r, const char *name)
{
	struct registry_version *all;
	size_t n;
	int rc;

	if (!spec_name_ok(name)) {
		http_reply_error(r, 400, "'%.64s' is not a valid function name", name);
		return;
	}
	rc = registry_version_list(k->registry, &all, &n);
	if (rc) {
		http_reply_error(r, 500, "registry: %s", strerror(-rc));
		return;
	}
	rc = registry_function_delete(k->registry, name);
	if (rc == -ENOENT) {
		registry_versions_free(all, n);
		http_reply_error(r, 404, "no function named '%s'", name);
		return;
	}
	if (rc) {
		registry_versions_free(all, n);
		http_reply_error(r, 500, "registry: %s", strerror(-rc));
		return;
	}
	sched_function_remove(k->sched, name);
	logstore_remove(k->logs, name);
	deployer_forget(k->deployer, name);
	metrics_forget(k->metrics, "function", name);
	/* Snapshots no other function uses. The scheduler stops the VMs
	 * mapping them; an unlinked file stays valid for them meanwhile. */
	for (size_t i = 0; i < n; i++) {
		bool shared = false;
		if (strcmp(all[i].name, name) || !all[i].snapshot[0])
			continue;
		for (size_t j = 0; j < n; j++)
			shared = shared || (strcmp(all[j].name, name) &&
					    strcmp(all[j].snapshot, all[i].snapshot) == 0);
		if (!shared)
			store_snapshot_remove(k->store, all[i].snapshot);
	}
	registry_versions_free(all, n);
	log_info("removed %s", name);
	http_reply_json(r, 202, json_pack("{s:s, s:s}", "name", name, "status", "removed"), NULL);
}

void route_function_delete(void *app, struct http_req *r)
{
	remove_function(app, r, http_param(r, 0));
}

void route_functions_delete(void *app, struct http_req *r)
{
	size_t len;
	const uint8_t *body = http_body(r, &len);
	json_error_t jerr;
	json_t *obj = json_loadb((const char *)body, len, 0, &jerr);
	json_t *name = obj ? json_object_get(obj, "functionName") : NULL;

	if (!obj) {
		http_reply_error(r, 400, "malformed JSON: %s", jerr.text);
		return;
	}
	if (!json_is_string(name)) {
		http_reply_error(r, 400, "functionName: required (a string)");
	} else {
		remove_function(app, r, json_string_value(name));
	}
	json_decref(obj);
}

/* What the start found of one snapshot id (snapshots can be shared). */
struct snap_verdict {
	const char *id;
	int rc; /* store_snapshot_verify's */
	char why[256];
};

static const struct snap_verdict *verify_once(struct kilnd *k, struct snap_verdict *seen,
					      size_t *nseen, const char *id)
{
	struct snap_verdict *v;

	for (size_t i = 0; i < *nseen; i++)
		if (!strcmp(seen[i].id, id))
			return &seen[i];
	v = &seen[(*nseen)++];
	v->id = id;
	v->rc = store_snapshot_verify(k->store, id, v->why, sizeof(v->why));
	if (v->rc == -ENODATA)
		log_warn("snapshot %s has no manifest (made by an older kilnd): not verified", id);
	else if (v->rc)
		log_error("snapshot %s is corrupted or unreadable, refused: %s", id, v->why);
	return v;
}

/* The newest ready version of `name` in all[0..n) that is not marked in
 * skip, or -1. */
static long newest_ready(struct registry_version *all, size_t n, const bool *skip, const char *name)
{
	long found = -1;

	for (size_t i = 0; i < n; i++)
		if (!skip[i] && !strcmp(all[i].name, name) && !strcmp(all[i].status, "ready"))
			found = (long)i;
	return found;
}

/* One function at start: its newest ready version whose snapshot checks out
 * goes to the scheduler. A snapshot that does not is a cache of the code:
 * the version is rebuilt from its code blob (a deploy of the same version
 * number); when the code blob is corrupted too, the version is marked
 * failed with the reason and the next older ready version is tried. */
static void recover_function(struct kilnd *k, struct registry_version *all, size_t n, bool *skip,
			     struct snap_verdict *seen, size_t *nseen, const char *name)
{
	long i;

	while ((i = newest_ready(all, n, skip, name)) >= 0) {
		struct registry_version *v = &all[i];
		const struct snap_verdict *sv;
		struct fn_spec spec;
		char err[512], dir[4096];
		uint8_t *code = NULL;
		size_t clen = 0;
		int crc;

		skip[i] = true;
		if (spec_from_text(v->spec_json, &spec, err, sizeof(err))) {
			log_error("%s version %lld: unreadable spec: %s", v->name,
				  (long long)v->version, err);
			continue;
		}
		if (store_snapshot_path(k->store, v->snapshot, dir, sizeof(dir))) {
			log_error("%s version %lld: bad snapshot id '%s'", v->name,
				  (long long)v->version, v->snapshot);
			spec_clear(&spec);
			continue;
		}
		/* The code blob is checked too (it is named by its sha256):
		 * it is what a rebuild would load. */
		crc = store_code_get(k->store, spec.code_sha256, &code, &clen);
		if (crc)
			log_error("%s version %lld: code blob code/%s.klna %s", v->name,
				  (long long)v->version, spec.code_sha256,
				  crc == -EBADMSG  ? "is corrupted (its sha256 does not match)"
				  : crc == -ENOENT ? "is missing"
						   : strerror(-crc));
		sv = verify_once(k, seen, nseen, v->snapshot);
		if (!sv->rc || sv->rc == -ENODATA) {
			sched_function_ready(k->sched, spec.name, v->version, &spec, dir);
			if (crc)
				log_warn("%s version %lld keeps serving from its verified "
					 "snapshot; deploy its code again to repair the store",
					 v->name, (long long)v->version);
		} else if (!crc) {
			log_warn("%s version %lld: rebuilding its snapshot from the code", v->name,
				 (long long)v->version);
			crc = deployer_start(k->deployer, &spec, v->version, code, clen, NULL, NULL,
					     NULL);
			if (crc)
				registry_version_set(k->registry, v->name, v->version, "failed",
						     NULL,
						     "snapshot corrupted; cannot start a rebuild");
		} else {
			util_fmt(err, sizeof(err),
				 "snapshot corrupted (%s) and code blob %s: cannot rebuild; "
				 "deploy the function again",
				 sv->why, crc == -EBADMSG ? "corrupted" : strerror(-crc));
			log_error("%s version %lld failed: %s", v->name, (long long)v->version,
				  err);
			registry_version_set(k->registry, v->name, v->version, "failed", NULL, err);
			free(code);
			spec_clear(&spec);
			continue;
		}
		free(code);
		spec_clear(&spec);
		return;
	}
}

int kilnd_recover_functions(struct kilnd *k)
{
	struct registry_version *all;
	struct snap_verdict *seen;
	size_t n, nseen = 0;
	bool *skip;
	int rc = registry_version_list(k->registry, &all, &n);

	if (rc)
		return rc;
	skip = calloc(n + 1, sizeof(*skip));
	seen = calloc(n + 1, sizeof(*seen));
	if (!skip || !seen) {
		rc = -ENOMEM;
		goto out_free;
	}
	for (size_t i = 0; i < n; i++)
		if (strcmp(all[i].status, "deploying") == 0)
			registry_version_set(k->registry, all[i].name, all[i].version, "failed",
					     NULL, "kilnd stopped during the deploy");
	for (size_t i = 0; i < n; i++)
		if (i == 0 || strcmp(all[i].name, all[i - 1].name))
			recover_function(k, all, n, skip, seen, &nseen, all[i].name);
	/* Refused snapshots: their versions are rebuilding or failed. */
	for (size_t i = 0; i < nseen; i++)
		if (seen[i].rc && seen[i].rc != -ENODATA && seen[i].rc != -ENOENT)
			store_snapshot_remove(k->store, seen[i].id);
out_free:
	free(seen);
	free(skip);
	registry_versions_free(all, n);
	return rc;
}
