"""What every test tier needs of kiln-vmm (tests/vmm, tests/e2e): the one
list of sanitizer markers that fail a test when a process prints them, and
the one client of kiln-vmm's control socket (docs/control-api.md: one JSON
object per line each way)."""

import json
import socket
import time

# Lines AddressSanitizer, LeakSanitizer and UBSan print when they find
# something (make asan builds with all three, and -fno-sanitize-recover).
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",  # UBSan
)


def sanitizer_report(text):
    """Returns the first sanitizer marker in text, or None."""
    for marker in SANITIZER_MARKERS:
        if marker in text:
            return marker
    return None


class ControlClient:
    """A connection to kiln-vmm's control socket at `path`. Connecting is
    retried for `connect_timeout` seconds while the socket is not there yet
    (kiln-vmm starting); `alive`, when given, is called between attempts and
    returns False once waiting is pointless (the process exited)."""

    def __init__(self, path, timeout=15.0, connect_timeout=None, alive=None):
        deadline = time.monotonic() + (timeout if connect_timeout is None else connect_timeout)
        while True:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if (alive is not None and not alive()) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.buf = b""

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv(self):
        """The next reply (a dict). Raises EOFError when kiln-vmm closes."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("kiln-vmm closed the control connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, **req):
        """Sends one request and returns its reply, whatever it says."""
        self.send_raw(json.dumps(req).encode() + b"\n")
        return self.recv()

    def ok(self, **req):
        """Sends one request; its reply must say ok. Returns the reply."""
        r = self.call(**req)
        assert r.get("ok") is True, f"{req} -> {r}"
        return r

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
