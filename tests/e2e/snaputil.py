"""Helpers for end-to-end snapshot tests of the Python runtime: the control
socket, the agent handshake, kiln-vmm restored in a new process or into a
pre-started one, and the base and function snapshots (SnapFaaS's
lifecycle: boot once and snapshot, restore and load a function, snapshot
that as a diff).

The base snapshot is cached under ${KILN_CACHE}/snapshots, keyed by the
hashes of the kernel, the root filesystem, kiln-init and kiln-vmm, so only
the first run on a machine pays for a boot.
"""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from conftest import BUILD, GuestVM, check_stderr, terminate  # noqa: I100 - conftest puts tests/ on sys.path
import kilnclient as kc
from kilnvmm import ControlClient

BOOT_TIMEOUT = 1200
CALL_TIMEOUT = 300.0
HANDSHAKE_TIMEOUT = 15.0
CACHE = Path(os.environ.get("KILN_CACHE", Path.home() / ".cache/kiln"))

HANDLER = '''
import os, time

loaded_at = time.time()

def handle(event, context):
    return {"n": event["n"], "double": event["n"] * 2,
            "rand": os.urandom(16).hex(), "now": time.time(), "loaded_at": loaded_at}
'''


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def api(sock, request, timeout=120.0):
    """One request on kiln-vmm's control socket (docs/control-api.md); its
    reply must say ok."""
    with ControlClient(sock, timeout=timeout, connect_timeout=0) as c:
        return c.ok(**request)


def connect_agent(uds, timeout=120.0, prepare=None):
    """Connects to kiln-init's agent and says hello (then runs `prepare`),
    retrying the whole handshake while the guest is not listening yet (a VM
    still booting). A restored VM needs no retry: see connect_once."""
    deadline = time.monotonic() + timeout
    while True:
        c = None
        try:
            c = kc.Client.connect_vsock(str(uds), kc.AGENT_PORT, timeout=HANDSHAKE_TIMEOUT)
            c.hello()
            if prepare:
                prepare(c)
            c.settimeout(CALL_TIMEOUT)
            return c
        except (kc.ConnectionClosed, OSError):
            if c:
                c.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def connect_once(uds, prepare=None):
    """One CONNECT to the agent of a restored VM, then HELLO (and `prepare`),
    with no retry: the first connection after a restore must work (and the
    socket file appears only once kiln-vmm listens on it)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(HANDSHAKE_TIMEOUT)
    try:
        s.connect(str(uds))
        s.sendall(f"CONNECT {kc.AGENT_PORT}\n".encode())
        line = b""
        while not line.endswith(b"\n") and len(line) <= 64:
            ch = s.recv(1)
            if not ch:
                raise kc.ConnectionClosed(f"vsock CONNECT {kc.AGENT_PORT}: closed")
            line += ch
        if not line.startswith(b"OK "):
            raise kc.ConnectionClosed(f"vsock CONNECT {kc.AGENT_PORT}: {line!r}")
    except BaseException:
        s.close()
        raise
    c = kc.Client(s)
    try:
        c.hello()
        if prepare:
            prepare(c)
        c.settimeout(CALL_TIMEOUT)
    except BaseException:
        c.close()
        raise
    return c


def send_entropy_and_time(c):
    c.entropy(os.urandom(64))
    c.set_time(time.time_ns())


def wait_path(path, proc, timeout=30.0, what="socket"):
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if proc.poll() is not None:
            raise AssertionError(f"kiln-vmm exited {proc.returncode} before its {what} appeared")
        assert time.monotonic() < deadline, f"{what} {path} never appeared"
        time.sleep(0.002)


class Restored:
    """A kiln-vmm restored from a snapshot in a new process."""

    def __init__(self, vmm, snap, rootfs, workdir, name):
        self.dir = Path(workdir)
        self.uds = self.dir / f"{name}.vsock"
        self.api = self.dir / f"{name}.api"
        self.console = self.dir / f"{name}.console"
        self.stderr_path = self.dir / f"{name}.stderr"
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(vmm), "--restore", str(snap), "--disk", str(rootfs),
             "--vsock-uds", str(self.uds), "--api-sock", str(self.api),
             "--console", str(self.console)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.stderr_path, "wb"))

    def wait_socket(self, timeout=30.0):
        try:
            wait_path(self.uds, self.proc, timeout, "vsock socket")
        except AssertionError as e:
            raise AssertionError(f"{e}: {self.stderr_path.read_text(errors='replace')}")

    def fresh_client(self):
        """Agent connection with the host's entropy and time sent, as kilnd does
        after every restore: one CONNECT, no retry."""
        self.wait_socket()
        return connect_once(self.uds, prepare=send_entropy_and_time)

    def stop(self):
        terminate(self.proc)
        check_stderr(self.stderr_path.read_text(errors="replace"))


class Prestarted:
    """A kiln-vmm started with --prestart, waiting for a restore request."""

    def __init__(self, vmm, workdir, name, mem=256, vcpus=1):
        self.dir = Path(workdir)
        self.api = self.dir / f"{name}.api"
        self.uds = self.dir / f"{name}.vsock"
        self.console = self.dir / f"{name}.console"
        self.stderr_path = self.dir / f"{name}.stderr"
        self.proc = subprocess.Popen(
            [str(vmm), "--prestart", "--mem", str(mem), "--vcpus", str(vcpus),
             "--api-sock", str(self.api), "--console", str(self.console)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.stderr_path, "wb"))

    def wait_ready(self, timeout=30.0):
        """Until the control socket exists: it appears once it listens."""
        wait_path(self.api, self.proc, timeout, "control socket")

    def restore(self, snap, rootfs, **extra):
        return api(self.api, {"op": "restore", "dir": str(snap), "disks": [str(rootfs)],
                              "vsock_uds": str(self.uds), **extra})

    def stop(self):
        terminate(self.proc)
        check_stderr(self.stderr_path.read_text(errors="replace"))


DIGESTS = {}  # snapshot file -> (sha256, mtime) when first used


def record_digests(snap):
    for name in ("state", "memory"):
        p = snap / name
        DIGESTS.setdefault(p, (sha256_file(p), p.stat().st_mtime_ns))


def make_base_snapshot(vmm, kernel, rootfs_python, tmp_path_factory):
    """The booted guest with its agent serving, snapshotted (cached)."""
    key = hashlib.sha256("\n".join([
        sha256_file(kernel), sha256_file(rootfs_python),
        sha256_file(BUILD / "kiln-init"), sha256_file(vmm)]).encode()).hexdigest()
    cached = CACHE / "snapshots" / key / "base"
    if (cached / "state").is_file():
        record_digests(cached)
        return cached
    work = tmp_path_factory.mktemp("base")
    g = GuestVM(vmm, kernel, rootfs_python, work, extra=("--api-sock", str(work / "api")))
    try:
        g.wait_ready(BOOT_TIMEOUT)
        with connect_agent(g.uds) as c:  # the agent is up and serving
            assert c.hello()["state"] == "none"
        api(work / "api", {"op": "snapshot", "dir": str(work / "snap"), "diff": False})
    finally:
        g.stop()
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.parent / f"base.tmp{os.getpid()}"
    shutil.move(str(work / "snap"), tmp)
    try:
        os.rename(tmp, cached)
    except OSError:  # another run won the race: use its snapshot
        shutil.rmtree(tmp, ignore_errors=True)
    record_digests(cached)
    return cached


def make_function_snapshot(vmm, base_snapshot, rootfs_python, tmp_path_factory, full=False,
                           keep_open=False):
    """Restore the base, load the handler (its import is paid here, once), and
    take a diff snapshot on top of the base (and, with `full`, a full one of
    the same state next to it, in ../full). The host connection is closed
    before the snapshot, so a restore must end the guest's side of it; with
    `keep_open` it stays open and idle through the snapshot, as kilnd keeps
    it, and kiln-vmm parks it (docs/vsock.md, "Parked connections")."""
    work = tmp_path_factory.mktemp("fn")
    record_digests(base_snapshot)
    r = Restored(vmm, base_snapshot, rootfs_python, work, "load")
    try:
        c = r.fresh_client()
        c.load({"handler.py": HANDLER}, runtime="python", mode="server", handler="handler.handle")
        res = c.invoke(json.dumps({"n": 0}), deadline_ms=60000)
        assert res.ok, res
        if not keep_open:
            c.close()
        reply = api(r.api, {"op": "snapshot", "dir": str(work / "snap"), "diff": True})
        assert reply["diff"] is True
        if full:
            api(r.api, {"op": "snapshot", "dir": str(work / "full"), "diff": False})
        c.close()
    finally:
        r.stop()
    record_digests(work / "snap")
    return work / "snap"


def invoke_checked(client, n):
    res = client.invoke(json.dumps({"n": n}), deadline_ms=60000)
    assert res.ok, res
    body = json.loads(res.body)
    assert body["n"] == n and body["double"] == 2 * n, body
    return body


# ---- measuring the control socket -------------------------------------------------------

def _rtt_main(argv):
    """python3 tests/e2e/snaputil.py rtt --vmm A [--vmm B ...] --snapshot DIR
    [--mem MiB] [--disk PATH] [--vsock] [--rounds N] [--states N]

    Client-observed round trips of the control socket, the binaries
    interleaved round by round: per round and binary, a --prestart kiln-vmm,
    one `restore` (round trip and the reply's total_ms), then `state` N times
    on the same connection and N times on a new connection each."""
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(prog="snaputil.py rtt")
    ap.add_argument("--vmm", action="append", required=True)
    ap.add_argument("--snapshot", required=True)
    ap.add_argument("--mem", default="256")
    ap.add_argument("--disk", action="append", default=[])
    ap.add_argument("--vsock", action="store_true")
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--states", type=int, default=20)
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="kiln-rtt"))

    def call(s, req):
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise EOFError("kiln-vmm closed the control connection")
            buf += chunk
        reply = json.loads(buf)
        assert reply.get("ok"), reply
        return reply

    def connect(path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(str(path))
        return s

    res = {v: {"restore": [], "restore total_ms": [], "state": [], "state, new conn": []}
           for v in a.vmm}
    for i in range(a.rounds):
        for v in a.vmm:
            p = Prestarted(v, tmp, f"p{i}", mem=a.mem)
            try:
                p.wait_ready()
                s = connect(p.api)
                call(s, {"op": "state"})
                req = {"op": "restore", "dir": a.snapshot, "disks": a.disk}
                if a.vsock:
                    req["vsock_uds"] = str(p.uds)
                t0 = time.perf_counter()
                r = call(s, req)
                res[v]["restore"].append((time.perf_counter() - t0) * 1e3)
                res[v]["restore total_ms"].append(r["total_ms"])
                for _ in range(a.states):
                    t0 = time.perf_counter()
                    call(s, {"op": "state"})
                    res[v]["state"].append((time.perf_counter() - t0) * 1e3)
                    t0 = time.perf_counter()
                    with connect(p.api) as s2:
                        call(s2, {"op": "state"})
                    res[v]["state, new conn"].append((time.perf_counter() - t0) * 1e3)
                s.close()
            finally:
                p.stop()
    for v in a.vmm:
        print(v)
        for k, xs in res[v].items():
            xs = sorted(xs)
            q = lambda f: xs[min(len(xs) - 1, int(round(f * (len(xs) - 1))))]  # noqa: E731
            print(f"  {k:18s} n={len(xs):5d} p50={q(.5):7.3f} p90={q(.9):7.3f} "
                  f"p99={q(.99):7.3f} max={xs[-1]:7.3f} ms")


if __name__ == "__main__":
    import sys

    if len(sys.argv) < 2 or sys.argv[1] != "rtt":
        sys.exit("usage: snaputil.py rtt --vmm PATH [--vmm PATH] --snapshot DIR ...")
    _rtt_main(sys.argv[2:])
