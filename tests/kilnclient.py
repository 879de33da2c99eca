"""kilnclient: a small client for kiln's host <-> guest wire protocol
(docs/protocol.md), for tests and tools.

    from kilnclient import Client
    c = Client.connect("unix:/tmp/agent.sock")         # kiln-init's test socket
    c = Client.connect_vsock("/run/kiln/vm1.sock", 1024)  # through kiln-vmm
    c.hello()                                           # {'version': 1, ...}
    c.load({"handler.py": b"def handle(e, c):\\n  return e\\n"},
           runtime="python", mode="server", handler="handler.handle")
    r = c.invoke(b'{"x": 1}', deadline_ms=3000)
    r.status, r.body, r.error_type, r.error_message, r.logs

Frames (16-byte little-endian header: magic, version, type, flags, length,
id) are read one at a time; LOG frames are collected for the request they
belong to, and replies for other requests are kept until asked for, so
several requests may be in flight on one connection (invoke_async /
wait). An ERROR frame in answer to a request raises KilnError.
"""
import itertools
import os
import socket
import struct

MAGIC = 0x504E4C4B  # "KLNP"
VERSION = 1
HEADER = struct.Struct("<IBBHII")
HEADER_SIZE = HEADER.size
AGENT_PORT = 1024

HELLO, HELLO_OK, LOAD, LOAD_OK, INVOKE, RESULT, LOG = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
ENTROPY, TIME, ACK, PING, PONG, ERROR = 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D
PRESTART = 0x10

STATUS_OK, STATUS_HANDLED, STATUS_UNHANDLED, STATUS_TIMEOUT = 0, 1, 2, 3
STATUS_NAMES = {0: "ok", 1: "handled", 2: "unhandled", 3: "timeout"}
STDOUT, STDERR = 1, 2

ERR_BAD_HEADER, ERR_TOO_BIG, ERR_UNKNOWN_TYPE, ERR_BAD_PAYLOAD = 1, 2, 3, 4
ERR_NOT_LOADED, ERR_BUSY, ERR_LOAD_FAILED, ERR_BAD_ARCHIVE = 5, 6, 7, 8
ERR_UNSUPPORTED, ERR_INTERNAL, ERR_REPLACED = 9, 10, 11

FN_STATES = {0: "none", 1: "loading", 2: "ready", 3: "failed"}

ARCHIVE_MAGIC = 0x414E4C4B  # "KLNA"
ARCHIVE_DIR, ARCHIVE_FILE = 1, 2


class KilnError(Exception):
    """An ERROR frame: code (ERR_*), message, and the request id it answers."""

    def __init__(self, code, message, rid=0):
        super().__init__(f"kiln error {code}: {message}")
        self.code, self.message, self.id = code, message, rid


class ConnectionClosed(Exception):
    """The other side closed the stream."""


class Frame:
    def __init__(self, ftype, rid, payload, flags=0):
        self.type, self.id, self.payload, self.flags = ftype, rid, payload, flags

    def __repr__(self):
        return f"Frame(type={self.type:#x}, id={self.id}, {len(self.payload)} bytes)"


class Result:
    """The outcome of one INVOKE."""

    def __init__(self, rid, status, duration_us, body, error_type, error_message, logs):
        self.id = rid
        self.status = status
        self.duration_us = duration_us
        self.body = body
        self.error_type = error_type
        self.error_message = error_message
        self.logs = logs  # [(stream, bytes)] in arrival order

    @property
    def ok(self):
        return self.status == STATUS_OK

    @property
    def status_name(self):
        return STATUS_NAMES.get(self.status, str(self.status))

    def log(self, stream):
        """All the bytes of one stream (STDOUT or STDERR)."""
        return b"".join(d for s, d in self.logs if s == stream)

    def __repr__(self):
        return (f"Result(id={self.id}, {self.status_name}, body={self.body[:60]!r}, "
                f"error={self.error_type!r}: {self.error_message[:80]!r})")


# ---- encoding helpers -----------------------------------------------------

def enc_bytes(b):
    return struct.pack("<I", len(b)) + bytes(b)


def enc_str(s):
    return enc_bytes(s.encode() if isinstance(s, str) else s)


def enc_kv(d):
    d = d or {}
    return struct.pack("<I", len(d)) + b"".join(enc_str(k) + enc_str(v) for k, v in d.items())


class Reader:
    """Decodes payload fields; raises ValueError past the end."""

    def __init__(self, data):
        self.data, self.pos = data, 0

    def _take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("field past the end of the payload")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def u8(self):
        return self._take(1)[0]

    def u32(self):
        return struct.unpack("<I", self._take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self._take(8))[0]

    def bytes(self):
        return self._take(self.u32())

    def str(self):
        return self.bytes().decode("utf-8", "replace")


def frame(ftype, rid, payload=b"", magic=MAGIC, version=VERSION, flags=0, length=None):
    """A frame's bytes; magic, version and length may be forged for tests."""
    n = len(payload) if length is None else length
    return HEADER.pack(magic, version, ftype, flags, n, rid) + payload


def make_archive(files):
    """Builds a code archive from {path: content}: content is bytes or str
    (a file, mode 0644), a (content, mode) tuple, or None (a directory,
    0755). Paths are not checked here, so tests can build bad archives."""
    out = [struct.pack("<II", ARCHIVE_MAGIC, len(files))]
    for path, content in files.items():
        p = path.encode() if isinstance(path, str) else path
        if content is None:
            out.append(struct.pack("<BBHHI", ARCHIVE_DIR, 0, 0o755, len(p), 0) + p)
            continue
        mode = 0o644
        if isinstance(content, tuple):
            content, mode = content
        data = content.encode() if isinstance(content, str) else bytes(content)
        out.append(struct.pack("<BBHHI", ARCHIVE_FILE, 0, mode, len(p), len(data)) + p + data)
    return b"".join(out)


def make_tar(files):
    """A tar archive (bytes) of {path: text or bytes, or (text or bytes,
    mode)}, as kilnd takes code (files ending in .sh executable unless a
    mode is given): for tests and benchmarks."""
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in files.items():
            mode = 0o755 if path.endswith(".sh") else 0o644
            if isinstance(data, tuple):
                data, mode = data
            if isinstance(data, str):
                data = data.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# ---- the client -----------------------------------------------------------

class Client:
    def __init__(self, sock):
        self.sock = sock
        self._ids = itertools.count(1)
        self._buf = bytearray()
        self._stash = {}  # id -> [frames not yet asked for]
        self._logs = {}   # id -> [(stream, bytes)]

    @classmethod
    def connect(cls, address, timeout=30.0):
        """address: "unix:PATH" (or a plain path)."""
        path = address[5:] if address.startswith("unix:") else address
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(path)
        return cls(s)

    @classmethod
    def connect_vsock(cls, uds_path, port=AGENT_PORT, timeout=30.0):
        """Through kiln-vmm's hybrid vsock: CONNECT <port>, then OK <hostport>."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(uds_path)
        s.sendall(f"CONNECT {port}\n".encode())
        line = b""
        while not line.endswith(b"\n"):
            ch = s.recv(1)
            if not ch:
                s.close()
                raise ConnectionClosed(f"vsock CONNECT {port}: closed (nobody listening?)")
            line += ch
            if len(line) > 64:
                s.close()
                raise ConnectionClosed(f"vsock CONNECT {port}: bad answer {line!r}")
        if not line.startswith(b"OK "):
            s.close()
            raise ConnectionClosed(f"vsock CONNECT {port}: {line!r}")
        return cls(s)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def settimeout(self, t):
        self.sock.settimeout(t)

    # -- raw frames --

    def next_id(self):
        return next(self._ids)

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, ftype, payload=b"", rid=None):
        """Sends one frame; returns its request id."""
        rid = self.next_id() if rid is None else rid
        self.sock.sendall(frame(ftype, rid, payload))
        return rid

    def _fill(self, n):
        while len(self._buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise ConnectionClosed("connection closed")
            self._buf += chunk

    def recv_frame(self):
        """The next frame from the stream (raises ConnectionClosed at EOF)."""
        self._fill(HEADER_SIZE)
        magic, version, ftype, flags, length, rid = HEADER.unpack_from(self._buf)
        if magic != MAGIC or version != VERSION:
            raise ValueError(f"bad frame header from the agent: {bytes(self._buf[:16])!r}")
        self._fill(HEADER_SIZE + length)
        payload = bytes(self._buf[HEADER_SIZE:HEADER_SIZE + length])
        del self._buf[:HEADER_SIZE + length]
        return Frame(ftype, rid, payload, flags)

    def wait(self, rid):
        """The answer to request rid (LOG frames before it are collected in
        self.logs_for(rid)). An ERROR answer raises KilnError."""
        while True:
            if self._stash.get(rid):
                f = self._stash[rid].pop(0)
            else:
                f = self.recv_frame()
                if f.type == LOG:
                    r = Reader(f.payload)
                    stream = r.u8()
                    self._logs.setdefault(f.id, []).append((stream, r.bytes()))
                    continue
                if f.id != rid:
                    self._stash.setdefault(f.id, []).append(f)
                    continue
            if f.type == ERROR:
                r = Reader(f.payload)
                code = r.u32()
                raise KilnError(code, r.str(), f.id)
            return f

    def logs_for(self, rid):
        return self._logs.pop(rid, [])

    def request(self, ftype, payload=b"", expect=None):
        rid = self.send(ftype, payload)
        f = self.wait(rid)
        if expect is not None and f.type != expect:
            raise ValueError(f"expected frame type {expect:#x}, got {f!r}")
        return f

    # -- requests --

    def hello(self, version=VERSION):
        f = self.request(HELLO, struct.pack("<I", version), HELLO_OK)
        r = Reader(f.payload)
        return {"version": r.u32(), "agent": r.str(), "agent_version": r.str(),
                "generation": r.u32(), "state": FN_STATES.get(r.u8()), "runtime": r.str(),
                "mode": r.str(), "handler": r.str()}

    @staticmethod
    def load_payload(archive, runtime, mode, handler, env=None, init_timeout_ms=0,
                     memory_mb=0):
        return (enc_str(runtime) + enc_str(mode) + enc_str(handler)
                + struct.pack("<II", init_timeout_ms, memory_mb) + enc_kv(env)
                + enc_bytes(archive))

    def load(self, files, runtime="python", mode="server", handler="handler.handle", env=None,
             init_timeout_ms=0, memory_mb=0, archive=None):
        """Sends the code ({path: content}, see make_archive, or a ready-made
        archive). Returns {'generation', 'init_us', 'logs'}; raises KilnError."""
        if archive is None:
            archive = make_archive(files)
        return self._load_answer(self.send(LOAD, self.load_payload(
            archive, runtime, mode, handler, env, init_timeout_ms, memory_mb)))

    def prestart(self, runtime="python", init_timeout_ms=0):
        """Starts a spare runtime with no function (kiln-init's PRESTART).
        Returns {'generation' (0), 'init_us', 'logs'}; raises KilnError."""
        return self._load_answer(
            self.send(PRESTART, enc_str(runtime) + struct.pack("<I", init_timeout_ms)))

    def _load_answer(self, rid):
        """LOAD_OK for request rid as {'generation', 'init_us', 'logs'}."""
        try:
            f = self.wait(rid)
        finally:
            logs = self.logs_for(rid)
        if f.type != LOAD_OK:
            raise ValueError(f"expected LOAD_OK, got {f!r}")
        gen, init_us = struct.unpack("<II", f.payload)
        return {"generation": gen, "init_us": init_us, "logs": logs}

    @staticmethod
    def invoke_payload(payload, deadline_ms=0, context=None):
        if isinstance(payload, str):
            payload = payload.encode()
        return struct.pack("<I", deadline_ms) + enc_kv(context) + enc_bytes(payload)

    def invoke_async(self, payload, deadline_ms=0, context=None):
        """Sends an INVOKE; returns its id for wait_result."""
        return self.send(INVOKE, self.invoke_payload(payload, deadline_ms, context))

    def wait_result(self, rid):
        f = self.wait(rid)
        if f.type != RESULT:
            raise ValueError(f"expected RESULT, got {f!r}")
        r = Reader(f.payload)
        status, duration = r.u8(), r.u32()
        body, etype, emsg = r.bytes(), r.str(), r.str()
        return Result(rid, status, duration, body, etype, emsg, self.logs_for(rid))

    def invoke(self, payload, deadline_ms=0, context=None):
        """One invocation: returns a Result; raises KilnError for an ERROR
        answer (e.g. ERR_NOT_LOADED)."""
        return self.wait_result(self.invoke_async(payload, deadline_ms, context))

    def ping(self, data=b""):
        return self.request(PING, data, PONG).payload

    def entropy(self, data=None):
        self.request(ENTROPY, os.urandom(64) if data is None else data, ACK)

    def set_time(self, ns):
        self.request(TIME, struct.pack("<Q", ns), ACK)
