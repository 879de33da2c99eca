"""kiln's Python runtime (server mode), started by kiln-init at LOAD time:

    python3 -u bootstrap.py FUNCTION_DIR MODULE.FUNCTION      (fd 3: the channel)

or, as a spare (kiln-init's PRESTART, in a base snapshot), with no function:

    python3 -u bootstrap.py                                   (fd 3: the channel)

A spare imports what the bootstrap and most handlers use, says LOAD_OK, and
waits for a LOAD frame on fd 3 (str FUNCTION_DIR, str MODULE.FUNCTION, kv
environment); it then takes that environment in-process and goes on as if
started with those arguments.

It imports the handler once, tells kiln-init on fd 3 (LOAD_OK, or ERROR with
the exception's last line), then serves INVOKE frames one at a time, each
answered by a RESULT frame with the same request id. The frames are kiln's
wire protocol (docs/protocol.md, "Runtime channel"). The handler's stdout
and stderr are pipes that kiln-init turns into LOG frames; the channel is
moved off fd 3 so the handler's own processes do not inherit it.

Two handler styles, told apart by the number of positional parameters:
  - Lambda:   def handle(event, context): event is the JSON-decoded payload
              (the raw string when it is not JSON); the return value is
              JSON-encoded as the body. An exception is a "handled" error.
  - OpenFaaS: def handle(req): req is the payload as str; a str or bytes
              return value is the body as it is (None: empty, others: JSON).

Python standard library only.
"""
import importlib
import inspect
import json
import os
import struct
import sys
import time
import traceback

MAGIC = 0x504E4C4B  # "KLNP"
VERSION = 1
HEADER = struct.Struct("<IBBHII")  # magic, version, type, flags, length, id
T_LOAD, T_LOAD_OK, T_INVOKE, T_RESULT, T_ERROR = 0x03, 0x04, 0x05, 0x06, 0x0D
ERR_LOAD_FAILED = 7
ST_OK, ST_HANDLED, ST_UNHANDLED = 0, 1, 2
MAX_PAYLOAD = 6 * 1024 * 1024 + 64 * 1024
CHANNEL_FD = 3


class Channel:
    """Frames on the private socket shared with kiln-init. Reads are
    buffered: a whole small INVOKE usually takes one read(2)."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = bytearray()

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = os.read(self.fd, max(n - len(self.buf), 65536))
            if not chunk:
                raise EOFError("kiln-init closed the channel")
            self.buf += chunk

    def recv(self):
        self._fill(HEADER.size)
        magic, version, ftype, _flags, length, rid = HEADER.unpack_from(self.buf)
        if magic != MAGIC or version != VERSION or length > MAX_PAYLOAD:
            raise ValueError("bad frame from kiln-init")
        self._fill(HEADER.size + length)
        payload = bytes(self.buf[HEADER.size:HEADER.size + length])
        del self.buf[:HEADER.size + length]
        return ftype, rid, payload

    def send(self, ftype, rid, payload=b""):
        data = memoryview(HEADER.pack(MAGIC, VERSION, ftype, 0, len(payload), rid) + payload)
        while data:
            data = data[os.write(self.fd, data):]


def _bytes(b):
    return struct.pack("<I", len(b)) + b


def _str(s):
    return _bytes(s.encode("utf-8", "replace").replace(b"\0", b"?"))


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def u32(self):
        (v,) = struct.unpack_from("<I", self.data, self.pos)
        self.pos += 4
        return v

    def bytes(self):
        n = self.u32()
        if self.pos + n > len(self.data):
            raise ValueError("field past the end")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def str(self):
        return self.bytes().decode("utf-8", "surrogateescape")

    def done(self):
        if self.pos != len(self.data):
            raise ValueError("trailing bytes")


def decode_bind(payload):
    """A spare's LOAD: str dir, str handler, kv environment."""
    r = _Reader(payload)
    fndir, spec = r.str(), r.str()
    env = {}
    for _ in range(r.u32()):
        k = r.str()
        env[k] = r.str()
    r.done()
    return fndir, spec, env


def spare_wait(chan):
    """A spare: warm the common imports, say LOAD_OK, then wait for the
    function. Returns (dir, handler), or None when kiln-init closed fd 3."""
    import base64, collections, datetime, hashlib, logging, re, urllib.parse  # noqa: F401,E401
    chan.send(T_LOAD_OK, 0, struct.pack("<II", 0, 0))
    try:
        ftype, _rid, payload = chan.recv()
    except EOFError:
        return None
    if ftype != T_LOAD:
        raise ValueError(f"a spare runtime got frame type {ftype}, not LOAD")
    fndir, spec, env = decode_bind(payload)
    os.environ.update(env)
    # A generator seeded while this process was a spare would be shared by
    # every function handed a copy of it (a base snapshot's).
    if "random" in sys.modules:
        sys.modules["random"].seed()
    return fndir, spec


def decode_invoke(payload):
    """INVOKE: u32 deadline_ms, kv context, bytes payload."""
    r = _Reader(payload)
    deadline_ms = r.u32()
    context = {}
    for _ in range(r.u32()):
        k = r.bytes().decode("utf-8", "replace")
        context[k] = r.bytes().decode("utf-8", "replace")
    return deadline_ms, context, r.bytes()


def encode_result(status, body=b"", error_type="", error_message=""):
    return struct.pack("<BI", status, 0) + _bytes(body) + _str(error_type) + _str(error_message)


class Context:
    """What Lambda handlers expect as their second argument."""

    def __init__(self, rid, deadline_ms, ctx):
        self.aws_request_id = ctx.get("request_id") or str(rid)
        self.request_id = self.aws_request_id
        self.function_name = ctx.get("function_name") or os.environ.get("KILN_FUNCTION_NAME", "")
        self.function_version = ctx.get("function_version", "$LATEST")
        self.invoked_function_arn = ctx.get("invoked_function_arn", "")
        mem = ctx.get("memory_limit_mb") or os.environ.get("KILN_MEMORY_MB") or "0"
        self.memory_limit_in_mb = int(mem) if mem.isdigit() else 0
        self.log_group_name = ""
        self.log_stream_name = ""
        self.identity = None
        self.client_context = None
        # The HTTP request that carried the event, when it came over HTTP
        # (kilnd's /function/NAME route): method, path after the name, raw
        # query string, and headers with lower-case names.
        self.http = {
            "method": ctx.get("http_method", ""),
            "path": ctx.get("http_path", ""),
            "query": ctx.get("http_query", ""),
            "headers": {k[12:].replace("_", "-"): v for k, v in ctx.items()
                        if k.startswith("http_header_")},
        }
        self._deadline = time.monotonic() + deadline_ms / 1000.0 if deadline_ms else None

    def get_remaining_time_in_millis(self):
        if self._deadline is None:
            return 2**31 - 1
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(spec):
    """Imports MODULE (dotted) and returns its FUNCTION."""
    module_name, _, func_name = spec.rpartition(".")
    if not module_name or not func_name:
        raise ValueError(f"handler {spec!r} is not MODULE.FUNCTION")
    module = importlib.import_module(module_name)
    fn = getattr(module, func_name, None)
    if fn is None:
        raise AttributeError(f"module {module_name!r} has no attribute {func_name!r}")
    if not callable(fn):
        raise TypeError(f"handler {spec!r} is not callable")
    return fn


def handler_style(fn):
    """'openfaas' for one positional parameter, else 'lambda'."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return "lambda"
    kinds = [p.kind for p in params]
    positional = [k for k in kinds if k in (inspect.Parameter.POSITIONAL_ONLY,
                                            inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    if len(positional) == 1 and inspect.Parameter.VAR_POSITIONAL not in kinds:
        return "openfaas"
    return "lambda"


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def run_one(fn, style, rid, payload):
    deadline_ms, ctx, data = decode_invoke(payload)
    text = data.decode("utf-8", "surrogateescape")
    try:
        if style == "openfaas":
            ret = fn(text)
        else:
            try:
                event = json.loads(text)
            except ValueError:
                event = text
            ret = fn(event, Context(rid, deadline_ms, ctx))
    except Exception as e:  # the handler's own error: "handled"
        traceback.print_exc()
        body = json.dumps({"errorMessage": str(e), "errorType": type(e).__name__,
                           "stackTrace": traceback.format_tb(e.__traceback__)})
        return encode_result(ST_HANDLED, body.encode(), type(e).__name__, str(e))
    try:
        if style == "openfaas" and isinstance(ret, (bytes, bytearray)):
            body = bytes(ret)
        elif style == "openfaas" and isinstance(ret, str):
            body = ret.encode("utf-8", "surrogateescape")
        elif style == "openfaas" and ret is None:
            body = b""
        else:
            body = json.dumps(ret).encode()
    except Exception as e:
        return encode_result(ST_UNHANDLED, b"", "Runtime.MarshalError",
                             f"cannot encode the response: {type(e).__name__}: {e}")
    return encode_result(ST_OK, body)


def main(argv):
    if len(argv) not in (1, 3):
        print("usage: bootstrap.py [FUNCTION_DIR MODULE.FUNCTION] (fd 3: channel)",
              file=sys.stderr)
        return 2
    # Off fd 3, and not inherited by anything the handler starts.
    chan = Channel(os.dup(CHANNEL_FD))
    os.close(CHANNEL_FD)
    if len(argv) == 3:
        fndir, spec = argv[1], argv[2]
    else:
        bound = spare_wait(chan)
        if bound is None:
            return 0
        fndir, spec = bound
    os.chdir(fndir)
    sys.path.insert(0, fndir)
    try:
        fn = load_handler(spec)
        style = handler_style(fn)
    except BaseException as e:  # SyntaxError, ImportError, SystemExit in the module...
        traceback.print_exc()
        _flush()
        msg = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        chan.send(T_ERROR, 0, struct.pack("<I", ERR_LOAD_FAILED) + _str(msg))
        return 1
    _flush()
    chan.send(T_LOAD_OK, 0, struct.pack("<II", 0, 0))
    while True:
        try:
            ftype, rid, payload = chan.recv()
        except EOFError:
            return 0
        if ftype != T_INVOKE:
            print(f"kiln bootstrap: unexpected frame type {ftype}", file=sys.stderr)
            return 1
        result = run_one(fn, style, rid, payload)
        _flush()
        chan.send(T_RESULT, rid, result)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
