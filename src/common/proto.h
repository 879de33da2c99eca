/* proto.h - kiln's host <-> guest wire protocol (docs/protocol.md).
 *
 * One byte stream (vsock in the guest, a unix socket in tests) carries
 * frames: a 16-byte little-endian header followed by `length` payload bytes.
 *
 *   off 0  u32 magic    PROTO_MAGIC ("KLNP" in memory order)
 *   off 4  u8  version  PROTO_VERSION
 *   off 5  u8  type     enum proto_type
 *   off 6  u16 flags    0 when sent; ignored when received
 *   off 8  u32 length   payload bytes that follow (<= proto_max_payload(type))
 *   off 12 u32 id       request id: a reply carries the id of its request
 *
 * Payload fields are u8/u16/u32/u64 (little-endian), "bytes" (u32 length +
 * that many bytes), "str" (bytes without NUL, meant as text) and "kv" lists
 * (u32 count + count pairs of str). Each type's layout is in docs/protocol.md
 * and in the struct that decodes it below.
 *
 * Parsing never allocates and never reads past the length it is given:
 * decoded strings and byte fields point into the caller's buffer (not
 * NUL-terminated). Encoding writes into a caller's buffer through a
 * struct proto_writer.
 *
 * The same framing runs between kiln-init and a server-mode runtime on the
 * runtime's fd 3 (docs/protocol.md, "Runtime channel").
 */
#ifndef KILN_COMMON_PROTO_H
#define KILN_COMMON_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PROTO_MAGIC	  0x504e4c4bU /* "KLNP" */
#define PROTO_VERSION	  1
#define PROTO_HEADER_SIZE 16

/* The vsock port kiln-init's agent listens on (kiln.agent=1024). */
#define KILN_AGENT_PORT 1024

#define PROTO_KIB (1024U)
#define PROTO_MIB (1024U * 1024U)

/* Largest payload of a frame whose type has no larger limit (and of
 * unknown types, whose payload is skipped). PING/PONG data fits in it. */
#define PROTO_MAX_DEFAULT (1U * PROTO_MIB)
/* Largest LOAD payload (archive and fields). */
#define PROTO_MAX_LOAD (64U * PROTO_MIB)
/* Largest invocation payload and result body (as Lambda's 6 MiB). */
#define PROTO_MAX_BODY (6U * PROTO_MIB)
/* Room for the other fields of INVOKE and RESULT next to the body. */
#define PROTO_MAX_FIELDS (64U * PROTO_KIB)
/* Largest INVOKE and RESULT payloads. */
#define PROTO_MAX_INVOKE (PROTO_MAX_BODY + PROTO_MAX_FIELDS)

enum proto_type {
	PROTO_HELLO = 0x01,    /* host -> guest: u32 version */
	PROTO_HELLO_OK = 0x02, /* guest -> host: see struct proto_hello_ok */
	PROTO_LOAD = 0x03,     /* host -> guest: see struct proto_load */
	PROTO_LOAD_OK = 0x04,  /* guest -> host: u32 generation, u32 init_us */
	PROTO_INVOKE = 0x05,   /* host -> guest: see struct proto_invoke */
	PROTO_RESULT = 0x06,   /* guest -> host: see struct proto_result */
	PROTO_LOG = 0x07,      /* guest -> host: u8 stream, bytes data */
	PROTO_ENTROPY = 0x08,  /* host -> guest: bytes to mix into the pool */
	PROTO_TIME = 0x09,     /* host -> guest: u64 CLOCK_REALTIME ns */
	PROTO_ACK = 0x0a,      /* guest -> host: empty; ENTROPY or TIME done */
	PROTO_PING = 0x0b,     /* either way: raw data, echoed */
	PROTO_PONG = 0x0c,     /* the echo: the same raw data */
	PROTO_ERROR = 0x0d,    /* either way: u32 code, str message */
	PROTO_TRACE = 0x0e,    /* host -> guest: empty; guest -> host: text timeline */
	PROTO_NET = 0x0f,      /* host -> guest: text "ADDR/PREFIX GATEWAY" or empty
				* (no network); ACK when applied (docs/networking.md) */
	PROTO_PRESTART = 0x10, /* host -> guest: see struct proto_prestart; LOAD_OK
				* (generation 0) once the runtime waits */
};

/* RESULT status. */
enum proto_status {
	PROTO_STATUS_OK = 0,	    /* body is the handler's response */
	PROTO_STATUS_HANDLED = 1,   /* the handler raised / returned an error */
	PROTO_STATUS_UNHANDLED = 2, /* crash, non-zero exit, bad response */
	PROTO_STATUS_TIMEOUT = 3,   /* the deadline passed; the handler was killed */
	PROTO_STATUS_MAX = 3,
};

/* LOG streams. */
enum proto_stream {
	PROTO_STREAM_STDOUT = 1,
	PROTO_STREAM_STDERR = 2,
};

/* ERROR codes. "fatal" ones are followed by the end of the connection. */
enum proto_error {
	PROTO_ERR_BAD_HEADER = 1,   /* fatal: bad magic, version or header */
	PROTO_ERR_TOO_BIG = 2,	    /* fatal: length above the type's maximum */
	PROTO_ERR_UNKNOWN_TYPE = 3, /* payload skipped; connection usable */
	PROTO_ERR_BAD_PAYLOAD = 4,  /* malformed payload; connection usable */
	PROTO_ERR_NOT_LOADED = 5,   /* INVOKE before a successful LOAD */
	PROTO_ERR_BUSY = 6,	    /* too many queued invocations */
	PROTO_ERR_LOAD_FAILED = 7,  /* the runtime could not start the handler */
	PROTO_ERR_BAD_ARCHIVE = 8,  /* the code archive is invalid */
	PROTO_ERR_UNSUPPORTED = 9,  /* unknown runtime or mode, wrong direction */
	PROTO_ERR_INTERNAL = 10,    /* a system call failed in the agent */
	PROTO_ERR_REPLACED = 11,    /* a newer LOAD replaced this one */
};

/* A view of a length-prefixed field inside a buffer (not NUL-terminated). */
struct proto_bytes {
	const uint8_t *ptr;
	uint32_t len;
};

/* A validated kv list: `count` pairs of str starting at ptr (len bytes).
 * Walk it with proto_kv_next. */
struct proto_kv {
	const uint8_t *ptr;
	uint32_t len;
	uint32_t count;
};

struct proto_header {
	uint32_t magic;
	uint8_t version;
	uint8_t type;
	uint16_t flags;
	uint32_t length;
	uint32_t id;
};

/* HELLO_OK: the agent describes itself and the loaded function. */
struct proto_hello_ok {
	uint32_t version;	  /* protocol version the agent speaks */
	struct proto_bytes agent; /* str: "kiln-init" */
	struct proto_bytes agent_version;
	uint32_t generation;	    /* number of the loaded function, 0: none */
	uint8_t state;		    /* enum proto_fn_state */
	struct proto_bytes runtime; /* str, empty when none */
	struct proto_bytes mode;    /* str */
	struct proto_bytes handler; /* str */
};

/* Function state in HELLO_OK. */
enum proto_fn_state {
	PROTO_FN_NONE = 0,
	PROTO_FN_LOADING = 1,
	PROTO_FN_READY = 2,
	PROTO_FN_FAILED = 3,
};

/* LOAD: code and how to run it. */
struct proto_load {
	struct proto_bytes runtime; /* str: "sh", "python", ... */
	struct proto_bytes mode;    /* str: "exec" or "server" */
	struct proto_bytes handler; /* str: "handler.handle", or a command for exec */
	uint32_t init_timeout_ms;   /* server mode: limit for the import, 0: none */
	uint32_t memory_mb;	    /* reported to handlers; 0: unknown */
	struct proto_kv env;	    /* environment of the function */
	struct proto_bytes archive; /* bytes: archive (common/archive.h) */
};

/* PRESTART: start a server runtime with no function yet (a base
 * snapshot's); the next LOAD for that runtime hands it the function. */
struct proto_prestart {
	struct proto_bytes runtime; /* str: "python", "node" */
	uint32_t init_timeout_ms;   /* limit for the start, 0: none */
};

/* INVOKE: one event. */
struct proto_invoke {
	uint32_t deadline_ms;	    /* run time allowed, 0: none */
	struct proto_kv context;    /* function_name, request_id, ... */
	struct proto_bytes payload; /* bytes, <= PROTO_MAX_BODY */
};

/* RESULT: the outcome of one INVOKE (same id). */
struct proto_result {
	uint8_t status;		       /* enum proto_status */
	uint32_t duration_us;	       /* run time of the handler */
	struct proto_bytes body;       /* bytes */
	struct proto_bytes error_type; /* str, empty when OK */
	struct proto_bytes error_msg;  /* str */
};

struct proto_log {
	uint8_t stream; /* enum proto_stream */
	struct proto_bytes data;
};

struct proto_errmsg {
	uint32_t code; /* enum proto_error */
	struct proto_bytes message;
};

/* ---- parsing ---------------------------------------------------------- */

/* Largest payload a frame of `type` may announce; unknown types get
 * PROTO_MAX_DEFAULT. */
uint32_t proto_max_payload(uint8_t type);

/* True for the types of enum proto_type. */
bool proto_type_known(uint8_t type);

/* Name of a type ("INVOKE"), "UNKNOWN" for others. Static string. */
const char *proto_type_name(uint8_t type);

/* Parses the frame header at buf (len bytes available) into *h. Returns
 * PROTO_HEADER_SIZE when the header is complete and acceptable; -EAGAIN when
 * fewer than PROTO_HEADER_SIZE bytes are available; -EPROTO for a bad magic
 * or version; -EMSGSIZE when length exceeds proto_max_payload(type). On
 * -EPROTO and -EMSGSIZE *h is still filled (for the reply's id) and the
 * stream cannot be resynchronised. Reads at most PROTO_HEADER_SIZE bytes. */
int proto_parse_header(const void *buf, size_t len, struct proto_header *h);

/* Parses a whole frame: as proto_parse_header, then returns the frame size
 * (header + payload) when all of it is within len, with *payload pointing
 * into buf; -EAGAIN when more bytes are needed. */
ssize_t proto_parse_frame(const void *buf, size_t len, struct proto_header *h,
			  const uint8_t **payload);

/* Payload decoders: each validates every length against len (no over-read,
 * no trailing bytes allowed), fills *out with views into p and returns 0, or
 * -EBADMSG for a malformed payload (a length past the end, a NUL in a str,
 * a bad enum value, trailing bytes). */
int proto_decode_hello(const uint8_t *p, size_t len, uint32_t *version);
int proto_decode_hello_ok(const uint8_t *p, size_t len, struct proto_hello_ok *out);
int proto_decode_load(const uint8_t *p, size_t len, struct proto_load *out);
int proto_decode_load_ok(const uint8_t *p, size_t len, uint32_t *generation, uint32_t *init_us);
int proto_decode_prestart(const uint8_t *p, size_t len, struct proto_prestart *out);
int proto_decode_invoke(const uint8_t *p, size_t len, struct proto_invoke *out);
int proto_decode_result(const uint8_t *p, size_t len, struct proto_result *out);
int proto_decode_log(const uint8_t *p, size_t len, struct proto_log *out);
int proto_decode_time(const uint8_t *p, size_t len, uint64_t *ns);
int proto_decode_error(const uint8_t *p, size_t len, struct proto_errmsg *out);

/* Walks a kv list validated by a decoder: *pos starts at 0; returns true
 * and the next pair in *key and *val, or false at the end. */
bool proto_kv_next(const struct proto_kv *kv, uint32_t *pos, struct proto_bytes *key,
		   struct proto_bytes *val);

/* True when the str view equals the NUL-terminated s. */
bool proto_bytes_eq(struct proto_bytes b, const char *s);

/* ---- encoding --------------------------------------------------------- */

/* Writes frames into buf (size bytes, the caller's). After any put that did
 * not fit, `overflow` is set and later puts do nothing: check the result of
 * proto_end (or w->overflow) once. */
struct proto_writer {
	uint8_t *buf;
	size_t size;
	size_t len;    /* bytes written */
	size_t frame;  /* offset of the frame being written */
	bool overflow; /* something did not fit */
};

/* Starts a writer on buf[0..size). */
void proto_writer_init(struct proto_writer *w, void *buf, size_t size);

/* Starts a frame of `type` with request `id` at w->len (header with length
 * 0, patched by proto_end). */
void proto_begin(struct proto_writer *w, uint8_t type, uint32_t id);

void proto_put_u8(struct proto_writer *w, uint8_t v);
void proto_put_u16(struct proto_writer *w, uint16_t v);
void proto_put_u32(struct proto_writer *w, uint32_t v);
void proto_put_u64(struct proto_writer *w, uint64_t v);
/* u32 length, then the bytes (len may be 0, p may then be NULL). */
void proto_put_bytes(struct proto_writer *w, const void *p, size_t len);
/* A str from a NUL-terminated string (NULL: empty). */
void proto_put_str(struct proto_writer *w, const char *s);
/* Raw bytes without a length (PING data). */
void proto_put_raw(struct proto_writer *w, const void *p, size_t len);

/* Ends the frame: patches its length. Returns the frame's size, or -ENOSPC
 * when something did not fit, -EMSGSIZE when the payload is above the
 * type's maximum. */
ssize_t proto_end(struct proto_writer *w);

/* Encoders of whole frames into buf (size bytes): each returns the frame
 * size or -ENOSPC / -EMSGSIZE as proto_end. */
ssize_t proto_encode_hello(void *buf, size_t size, uint32_t id, uint32_t version);
ssize_t proto_encode_hello_ok(void *buf, size_t size, uint32_t id, const struct proto_hello_ok *m);
ssize_t proto_encode_load(void *buf, size_t size, uint32_t id, const struct proto_load *m);
ssize_t proto_encode_load_ok(void *buf, size_t size, uint32_t id, uint32_t generation,
			     uint32_t init_us);
ssize_t proto_encode_prestart(void *buf, size_t size, uint32_t id, const struct proto_prestart *m);
ssize_t proto_encode_invoke(void *buf, size_t size, uint32_t id, const struct proto_invoke *m);
ssize_t proto_encode_result(void *buf, size_t size, uint32_t id, const struct proto_result *m);
ssize_t proto_encode_log(void *buf, size_t size, uint32_t id, uint8_t stream, const void *data,
			 size_t len);
ssize_t proto_encode_time(void *buf, size_t size, uint32_t id, uint64_t ns);
/* ENTROPY, ACK, PING and PONG: the payload is `data` itself. */
ssize_t proto_encode_raw(void *buf, size_t size, uint8_t type, uint32_t id, const void *data,
			 size_t len);
ssize_t proto_encode_error(void *buf, size_t size, uint32_t id, uint32_t code, const char *message);

#endif
