/* server.c - a native kiln function in server mode: the executable is its
 * own runtime. It is started once per load, in the function's directory,
 * with fd 3 a stream socket to kiln-init (the runtime channel of
 * docs/protocol.md), and answers one INVOKE at a time with a RESULT.
 *
 * Build it static (the guest has no C library of yours):
 *     cc -static -O2 -o bootstrap server.c
 * Deploy the directory with runtime native, mode server, handler bootstrap.
 *
 * What it does with the event (the body of the call):
 *   "fail"  -> a handled error (status 1, Lambda's errorMessage/errorType)
 *   "crash" -> exits 1 (kiln-init restarts it; the call gets an error)
 *   "env"   -> the value of $GREETING
 *   "sleep" -> sleeps 60 s (for timeouts)
 *   else    -> {"upper": EVENT in capitals, "request_id": ..., "calls": N}
 * Every call writes one line to stderr (the function's log).
 *
 * The whole protocol a runtime needs is below, in plain C with no library:
 * other languages can do the same in a page.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHAN	  3
#define MAGIC	  0x504e4c4bU /* "KLNP" little-endian */
#define T_LOAD_OK 0x04
#define T_INVOKE  0x05
#define T_RESULT  0x06
#define MAX_FRAME (7U << 20) /* an INVOKE is at most 6 MiB + 64 KiB */

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint8_t *put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
	return p + 4;
}

/* Reads exactly n bytes; 0 at a clean end of stream, -1 on error. */
static int read_full(uint8_t *buf, size_t n)
{
	for (size_t got = 0; got < n;) {
		ssize_t r = read(CHAN, buf + got, n - got);
		if (r <= 0)
			return r == 0 && got == 0 ? 0 : -1;
		got += (size_t)r;
	}
	return 1;
}

static int write_full(const uint8_t *buf, size_t n)
{
	for (size_t done = 0; done < n;) {
		ssize_t w = write(CHAN, buf + done, n - done);
		if (w <= 0)
			return -1;
		done += (size_t)w;
	}
	return 0;
}

/* Sends one frame: the 16-byte header, then len payload bytes. */
static int send_frame(uint8_t type, uint32_t id, const uint8_t *payload, uint32_t len)
{
	uint8_t h[16], *p = h;

	p = put32(p, MAGIC);
	*p++ = 1;    /* version */
	*p++ = type; /* type */
	*p++ = 0;    /* flags */
	*p++ = 0;
	p = put32(p, len);
	put32(p, id);
	return write_full(h, sizeof(h)) || write_full(payload, len) ? -1 : 0;
}

/* A RESULT: u8 status, u32 duration_us (kiln-init fills it in), bytes body,
 * str error_type, str error_message. */
static int send_result(uint32_t id, uint8_t status, const char *body, size_t body_len,
		       const char *etype, const char *emsg)
{
	size_t tl = strlen(etype), ml = strlen(emsg), n = 1 + 4 + 4 + body_len + 4 + tl + 4 + ml;
	uint8_t *buf = malloc(n), *p = buf;
	int r;

	if (!buf)
		return -1;
	*p++ = status;
	p = put32(p, 0);
	p = put32(p, (uint32_t)body_len);
	memcpy(p, body, body_len);
	p += body_len;
	p = put32(p, (uint32_t)tl);
	memcpy(p, etype, tl);
	p += tl;
	p = put32(p, (uint32_t)ml);
	memcpy(p, emsg, ml);
	r = send_frame(T_RESULT, id, buf, (uint32_t)n);
	free(buf);
	return r;
}

/* Takes a u32-length-prefixed field at *p (end e): its start and length.
 * Returns -1 when it runs past the end. */
static int take(const uint8_t **p, const uint8_t *e, const uint8_t **s, uint32_t *len)
{
	if (e - *p < 4)
		return -1;
	*len = get32(*p);
	*p += 4;
	if ((uint32_t)(e - *p) < *len)
		return -1;
	*s = *p;
	*p += *len;
	return 0;
}

/* Handles one INVOKE payload: u32 deadline_ms, kv context, bytes payload. */
static int invoke(uint32_t id, const uint8_t *p, const uint8_t *e, unsigned calls)
{
	const uint8_t *k, *v, *ev, *rid = (const uint8_t *)"";
	uint32_t count, kl, vl, evl, ridl = 0;
	char *out;
	size_t n;
	int r;

	if (e - p < 8)
		return -1;
	p += 4; /* the deadline: kiln-init enforces it */
	count = get32(p);
	p += 4;
	for (uint32_t i = 0; i < count; i++) {
		if (take(&p, e, &k, &kl) || take(&p, e, &v, &vl))
			return -1;
		if (kl == 10 && !memcmp(k, "request_id", 10))
			rid = v, ridl = vl;
	}
	if (take(&p, e, &ev, &evl) || p != e)
		return -1;
	fprintf(stderr, "native: call %u, %u bytes\n", calls, evl);
	if (evl == 4 && !memcmp(ev, "fail", 4)) {
		const char *b = "{\"errorMessage\": \"bad input: fail\", \"errorType\": "
				"\"InputError\", \"stackTrace\": []}";
		return send_result(id, 1, b, strlen(b), "InputError", "bad input: fail");
	}
	if (evl == 5 && !memcmp(ev, "crash", 5))
		exit(1);
	if (evl == 5 && !memcmp(ev, "sleep", 5))
		sleep(60);
	if (evl == 3 && !memcmp(ev, "env", 3)) {
		const char *g = getenv("GREETING");
		return send_result(id, 0, g ? g : "", g ? strlen(g) : 0, "", "");
	}
	/* The event is echoed in capitals; it is not escaped, so keep it to
	 * letters and spaces in this example. */
	n = evl + ridl + 64;
	out = malloc(n);
	if (!out)
		return -1;
	for (uint32_t i = 0; i < evl; i++)
		if (ev[i] >= 'a' && ev[i] <= 'z')
			((uint8_t *)ev)[i] = (uint8_t)(ev[i] - 'a' + 'A');
	n = (size_t)snprintf(out, n, "{\"upper\": \"%.*s\", \"request_id\": \"%.*s\", \"calls\": %u}",
			     (int)evl, (const char *)ev, (int)ridl, (const char *)rid, calls);
	r = send_result(id, 0, out, n, "", "");
	free(out);
	return r;
}

int main(void)
{
	static const uint8_t zero8[8];
	unsigned calls = 0;
	uint8_t h[16];

	/* Ready: LOAD_OK (u32 0, u32 0) once the function has initialised. */
	if (send_frame(T_LOAD_OK, 0, zero8, sizeof(zero8)))
		return 1;
	for (;;) {
		uint8_t *payload;
		uint32_t len, id;
		int r = read_full(h, sizeof(h));

		if (r <= 0)
			return r == 0 ? 0 : 1; /* kiln-init closed the channel */
		len = get32(h + 8);
		id = get32(h + 12);
		if (get32(h) != MAGIC || h[4] != 1 || h[5] != T_INVOKE || len > MAX_FRAME)
			return 2;
		payload = malloc(len ? len : 1);
		if (!payload || read_full(payload, len) != 1 ||
		    invoke(id, payload, payload + len, ++calls))
			return 3;
		free(payload);
	}
}
