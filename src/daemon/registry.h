/* registry.h - kilnd's registry: functions, their versions and async calls,
 * in SQLite (WAL mode, every change in one transaction).
 *
 * One `struct registry` is one open database. It is used from several
 * threads (the HTTP threads and the scheduler's loop): every function takes
 * the registry's own mutex, so calls are serialised. All strings returned
 * are malloc'd copies owned by the caller (free with the matching *_free).
 */
#ifndef KILN_DAEMON_REGISTRY_H
#define KILN_DAEMON_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

struct registry;

/* One version of a function. spec_json is the function's spec as kilnd
 * stores it (a JSON object, text); snapshot is the snapshot store key of the
 * version's snapshot ("" while not ready). */
struct registry_version {
	char *name;
	int64_t version;    /* 1, 2, ... per function */
	char *spec_json;    /* JSON object text */
	char *snapshot;	    /* snapshot id, "" when none */
	char *status;	    /* "deploying", "ready", "failed" */
	char *error;	    /* failure message, "" when none */
	int64_t created_ns; /* CLOCK_REALTIME ns */
	int64_t updated_ns;
};

/* Opens (creating when missing) the database at path, sets WAL mode,
 * synchronous=FULL (every commit, functions and calls alike, is on disk when
 * the function returns), foreign keys, a busy timeout, and creates the
 * schema (versioned with PRAGMA user_version; a newer schema: -EPROTO).
 * Returns 0 and *out, or -errno (-EIO for an SQLite error, the message
 * logged). */
int registry_open(const char *path, struct registry **out);

/* Closes the database. Accepts NULL. */
void registry_close(struct registry *r);

/* Frees the strings of v (not v itself). Accepts NULL. */
void registry_version_free(struct registry_version *v);
/* Frees an array returned by a *_list function and its n elements. */
void registry_versions_free(struct registry_version *v, size_t n);

/* Adds version (highest existing version of `name`, deleted ones included,
 * plus one) of function `name` with status "deploying". Creates the
 * function when new. Returns 0 and *version, or -errno. */
int registry_version_add(struct registry *r, const char *name, const char *spec_json,
			 int64_t *version);

/* Sets a version's status ("ready", "failed"), snapshot id and error text
 * (NULL: unchanged). Returns 0, -ENOENT for no such version, or -errno. */
int registry_version_set(struct registry *r, const char *name, int64_t version, const char *status,
			 const char *snapshot, const char *error);

/* Every version of every existing function, ordered by name then version.
 * Returns 0 with *out (caller frees with registry_versions_free) and *n. */
int registry_version_list(struct registry *r, struct registry_version **out, size_t *n);

/* True (1) when the function exists (not deleted), 0 when not, -errno. */
int registry_function_exists(struct registry *r, const char *name);

/* Removes the function and all its versions (rows deleted; the version
 * counter of a re-created function continues from a separate table, so a
 * name that comes back never reuses a version number). Returns 0, -ENOENT,
 * or -errno. */
int registry_function_delete(struct registry *r, const char *name);

/* ---- async calls ------------------------------------------------------ */

/* An async call. body/headers are the request; result_* the outcome. */
struct registry_call {
	char *id; /* 36-character UUID */
	char *function;
	char *state;	    /* "queued", "running", "done" */
	char *request_json; /* {"method","path","query","headers":{...}} */
	uint8_t *body;	    /* the event */
	size_t body_len;
	char *callback_url; /* "" when none */
	int status_code;    /* result: HTTP status, 0 while not done */
	uint8_t *result;    /* result body */
	size_t result_len;
	char *result_headers;  /* JSON object text, "" when none */
	char *callback_status; /* "" / "sent 200" / "failed: ..." */
	int attempts;
	int64_t created_ns, started_ns, finished_ns; /* 0 when not yet */
};

/* Frees the contents of c. Accepts NULL. */
void registry_call_free(struct registry_call *c);

/* Stores a new call in state "queued" with attempts 0 (synchronous=FULL:
 * on disk when this returns). c->id, function, request_json, body,
 * callback_url are read; the rest is ignored. Returns 0, -EEXIST, -errno. */
int registry_call_insert(struct registry *r, const struct registry_call *c);

/* Marks a call "running", attempts + 1, started_ns now. Returns 0,
 * -ENOENT, -errno. */
int registry_call_start(struct registry *r, const char *id);

/* Marks a call "done" with its outcome and finished_ns now. Returns 0,
 * -ENOENT, -errno. */
int registry_call_finish(struct registry *r, const char *id, int status_code, const void *result,
			 size_t result_len, const char *result_headers);

/* Records what became of the callback. Returns 0, -ENOENT, -errno. */
int registry_call_set_callback_status(struct registry *r, const char *id, const char *status);

/* Reads one call. Returns 0 and *out (caller frees with
 * registry_call_free), -ENOENT, or -errno. body and result are never NULL
 * on success (a 1-byte allocation when empty); every string is non-NULL. */
int registry_call_get(struct registry *r, const char *id, struct registry_call *out);

/* Calls not "done" (queued or running: a crashed kilnd's), oldest first;
 * each is reset to "queued". Returns 0 with *out / *n (free each with
 * registry_call_free, then free(*out)), or -errno. */
int registry_call_recover(struct registry *r, struct registry_call **out, size_t *n);

/* Deletes the calls of a function. Returns 0 or -errno. */
int registry_call_delete_function(struct registry *r, const char *function);

#endif
