/* function_internal.h - what the files of kiln-init's function module
 * share (as a Linux driver keeps an internal.h): struct fn and its parts,
 * and the functions one file offers the others. Private to
 * src/agent/function*.c and their unit tests; the agent uses function.h.
 *
 *   function.c         the job queue, INVOKE, the agent loop's side, life
 *   function_output.c  frames to the host; captured stdout/stderr, LOG frames
 *   function_spawn.c   the child process: environment, descriptors, exec
 *   function_exec.c    exec mode: one process per event, stdin to stdout
 *   function_server.c  server mode: the runtime and its private channel
 *   function_load.c    LOAD: names, environment, the code directory
 */
#ifndef KILN_AGENT_FUNCTION_INTERNAL_H
#define KILN_AGENT_FUNCTION_INTERNAL_H

#include "agent/function.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/bytebuf.h"
#include "common/proto.h"

#define FN_LINE_MAX	  (16U * 1024)	      /* a LOG frame without a newline */
#define FN_TAIL_MAX	  2048		      /* stderr bytes kept for error messages */
#define FN_MSG_MAX	  1024		      /* error message in a RESULT */
#define FN_READ_CHUNK	  (64U * 1024)	      /* one read from a pipe or socket */
#define FN_QUEUE_BYTES	  (64U * 1024 * 1024) /* queued INVOKE payloads, all */
#define FN_HANDLER_MAX	  4096
#define FN_NAME_MAX	  32
#define FN_RESULT_SLACK	  256 /* header and fixed fields of a RESULT */
#define FN_LOG_TRUNCATED  "[kiln-init: log output truncated]\n"
#define FN_PYTHON_RUNTIME "python"
#define FN_NATIVE_RUNTIME "native" /* server mode: the handler is the runtime */

/* An INVOKE: queued or running. */
struct fn_job {
	struct fn_job *next;
	uint64_t conn;
	uint32_t id;
	uint8_t *payload; /* a copy of the frame's payload (owned) */
	struct proto_invoke inv;
};

/* A pipe from the handler or the runtime (its stdout or stderr). */
struct fn_stream {
	int fd; /* -1: closed */
	uint8_t stream;
	size_t line_len;
	char line[FN_LINE_MAX];
};

/* The process running now: the exec-mode handler or the server runtime. */
struct fn_proc {
	pid_t pid; /* also its process group; 0: none */
	int chan;  /* server: our end of the runtime's fd 3; -1 */
	int in;	   /* exec: the handler's stdin; -1 */
	size_t in_off;
	struct fn_stream out, err;
	struct bytebuf chan_in, chan_out;
};

/* The end of a process's stderr, for error messages. */
struct fn_tail {
	size_t len;
	char buf[FN_TAIL_MAX];
};

/* A spare runtime (PRESTART): started in f->proc with no function, while
 * the function state is NONE; the next LOAD for its runtime hands it the
 * function instead of starting another (fn_bind_runtime). */
enum fn_spare {
	FN_SPARE_NONE,
	FN_SPARE_STARTING, /* started; its LOAD_OK answers the PRESTART */
	FN_SPARE_IDLE,	   /* waiting for a function */
};

struct fn {
	char *base_dir, *runtime_dir, *python;
	struct fn_sink sink;

	enum fn_spare spare;
	char spare_runtime[FN_NAME_MAX + 1];

	uint32_t generation; /* of the function below; 0: none yet */
	enum proto_fn_state state;
	bool server;
	char dir[PATH_MAX];
	char runtime[FN_NAME_MAX + 1];
	char mode[8];
	char *handler;
	char **env; /* "NAME=value", NULL-terminated */
	uint32_t memory_mb;
	uint32_t init_timeout_ms;
	char failure[FN_MSG_MAX]; /* why it is FAILED */

	/* The LOAD waiting for the runtime's answer. */
	bool load_pending;
	uint64_t load_conn;
	uint32_t load_id;
	int64_t start_ms;	 /* when the runtime was started */
	const char *kill_reason; /* why we killed a LOADING runtime */

	struct fn_proc proc;
	/* Inside fn_handle, once the output pipes' events of this poll round
	 * are handled: they hold nothing written before what the runtime's
	 * channel has (fn_drain_polled). */
	bool streams_polled;

	struct fn_job *cur; /* running */
	int64_t cur_start_ms;
	int64_t cur_deadline_ms; /* -1: none */
	struct fn_job *head, *qtail;
	unsigned int queued;
	size_t queued_bytes;

	struct bytebuf body; /* exec mode: the handler's stdout */
	bool body_too_big;
	size_t log_sent;
	bool log_truncated;
	struct fn_tail tail; /* the end of stderr */
};

/* True while a runtime is starting: the function's (state LOADING) or a
 * spare's; its LOAD_OK, ERROR or init deadline is awaited. */
static inline bool fn_starting(const struct fn *f)
{
	return f->state == PROTO_FN_LOADING || f->spare == FN_SPARE_STARTING;
}

/* ---- function.c: the job queue, INVOKE, the agent loop's side, create and destroy ---- */

/* Answers every queued job (and the running one with cur) with an ERROR. */
void fn_fail_jobs(struct fn *f, bool cur, uint32_t code, const char *msg);

/* The running job is answered: forget it. */
void fn_job_done(struct fn *f);

/* Starts capturing the output of a new invocation or LOAD. */
void fn_begin_output(struct fn *f);

/* Starts the next queued job when nothing runs and the function is ready. */
void fn_run_next(struct fn *f);

/* ---- function_output.c: frames to the host and captured output ---- */

/* Sends an ERROR frame (code, formatted message) for request id to conn. */
void fn_send_error(struct fn *f, uint64_t conn, uint32_t id, uint32_t code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Returns a view of the C string s (NULL: empty), valid as long as s. */
struct proto_bytes fn_view(const char *s);

/* Sends a RESULT frame for request id to conn (dropped when conn is gone). */
void fn_send_result(struct fn *f, uint64_t conn, uint32_t id, const struct proto_result *r);

/* A RESULT without a body from the handler: an error of ours or a timeout. */
void fn_send_failure(struct fn *f, struct fn_job *job, uint8_t status, const char *type,
		     const char *msg);

/* Appends n bytes of stderr to the tail, keeping its last FN_TAIL_MAX bytes. */
void fn_tail_add(struct fn_tail *t, const uint8_t *p, size_t n);

/* The end of stderr for an error message: the last non-empty line, or with
 * whole, the last FN_MSG_MAX - 1 bytes; trailing blanks removed. */
void fn_tail_message(const struct fn_tail *t, bool whole, char *out, size_t size);

/* Sends the complete lines held (or all of it with all), keeping the rest. */
void fn_line_flush(struct fn *f, struct fn_stream *s, bool all);

/* Closes a pipe (if open). */
void fn_stream_close(struct fn_stream *s);

/* Reads what the pipe holds (until it would block, or EOF: then closes it). */
void fn_stream_read(struct fn *f, struct fn_stream *s);

/* Reads whatever stdout and stderr hold now, and sends the partial lines
 * too: everything written before a RESULT goes out before it. One poll()
 * instead of a read per pipe that would only say EAGAIN. */
void fn_drain(struct fn *f);

/* fn_drain for a RESULT read in fn_handle: the pipes' events of the same
 * poll round are handled already, and only a RESULT comes on the channel
 * while a call runs, so nothing written before it can be left unread; no
 * poll() (one system call less per call). Elsewhere it is fn_drain. */
void fn_drain_polled(struct fn *f);

/* ---- function_spawn.c: processes: the child's set-up and spawning ---- */

/* Sets up an empty process slot: no pid, every descriptor -1. */
void fn_proc_init(struct fn_proc *p);

/* Kills what is left of the process group and closes our ends. The zombie
 * is reaped by the agent's loop and then ignored. */
void fn_proc_close(struct fn *f);

/* Starts file/argv with stdout and stderr piped to us; in exec mode stdin
 * is a pipe from us (the payload), in server mode /dev/null and fd 3 is
 * the channel. Fills f->proc. Returns 0 or -errno. */
int fn_spawn(struct fn *f, const char *file, char *const argv[], const struct fn_job *job);

/* ---- function_exec.c: exec mode ---- */

/* Exec mode: writes what the handler's stdin can take of the payload,
 * closing it once all is written (or the handler stops reading). */
void fn_stdin_write(struct fn *f);

/* The exec-mode handler ended: drain its output and answer. */
void fn_exec_finish(struct fn *f, int wstatus);

/* ---- function_server.c: server mode ---- */

/* Server mode: writes what the runtime's channel can take. */
void fn_chan_flush(struct fn *f);

/* Kills the runtime because of its own misbehaviour; the reaping answers. */
void fn_runtime_kill(struct fn *f, const char *reason);

/* Server mode: reads the runtime's channel and handles its frames; a
 * closed channel kills the runtime. */
void fn_chan_read(struct fn *f);

/* The runtime process ended (reaped). */
void fn_runtime_exited(struct fn *f, int wstatus);

/* Starts the runtime (server mode); a restart answers no LOAD. */
void fn_start_runtime(struct fn *f, bool restart);

/* Starts a spare runtime f->spare_runtime (FN_SPARE_STARTING; its LOAD_OK
 * or failure answers the pending PRESTART). */
void fn_start_spare(struct fn *f);

/* Hands the idle spare the function just extracted (f->dir, f->handler,
 * f->env): a LOAD frame on its channel, answered like a fresh runtime's
 * start. Falls back to starting a fresh runtime if the frame cannot be
 * made. */
void fn_bind_runtime(struct fn *f);

/* True when the LOAD's environment may go to a spare runtime in-process:
 * no variable an interpreter or libc reads only at start-up (PYTHON*,
 * NODE_*, LD_*, LC_*, LANG, TZ, ...). */
bool fn_env_bindable(const struct proto_kv *env);

/* A runtime run by an interpreter: `interp [opt] runtime_dir/boot DIR
 * HANDLER`; interp NULL: the configured python3. */
struct fn_interp {
	const char *name, *interp, *opt, *boot;
};

/* The interpreted runtime named by the len bytes at name, or NULL (then the
 * runtime is runtime_dir/NAME/bootstrap, an executable). */
const struct fn_interp *fn_interp_find(const char *name, size_t len);

/* ---- function_load.c: LOAD ---- */

/* Stops the current function and any spare runtime, and forgets them
 * (state NONE). */
void fn_unload(struct fn *f, const char *why);

/* Returns true for a runtime or mode name: 1 to FN_NAME_MAX of [a-z0-9._-]. */
bool fn_name_ok(struct proto_bytes b);

/* True when runtime (NUL-terminated or len bytes) is the native runtime. */
bool fn_is_native(const char *runtime, size_t len);

/* Environment names: [A-Za-z_][A-Za-z0-9_]*. */
bool fn_env_name_ok(struct proto_bytes b);

#endif
