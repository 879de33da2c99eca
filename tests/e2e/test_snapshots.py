"""Snapshots of a real Linux guest with the Python runtime (SnapFaaS's
lifecycle): boot once and snapshot (the base, cached), restore the base and
load a function, take a diff snapshot of it (the function snapshot), then
serve invocations from restores of that, never booting a kernel again.

The base snapshot is cached under ${KILN_CACHE}/snapshots, keyed by the
hashes of the kernel, the root filesystem, kiln-init and kiln-vmm, so only
the first run on a machine pays for a boot.
"""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import kilnclient as kc
from conftest import BUILD, GuestVM

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
    """One request on kiln-vmm's control socket (docs/control-api.md)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock))
        s.sendall(json.dumps(request).encode() + b"\n")
        line = b""
        while not line.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            line += chunk
    reply = json.loads(line)
    assert reply.get("ok"), f"{request} -> {reply}"
    return reply


def connect_agent(uds, timeout=120.0, prepare=None):
    """Connects to kiln-init's agent and says hello (then runs `prepare`),
    retrying the whole handshake: right after a restore the guest handles the
    vsock transport-reset event, which closes connections made just before
    it, so a client (as kilnd does) retries until its connection is one the
    guest made after the reset."""
    deadline = time.monotonic() + timeout
    while True:
        c = None
        try:
            # A short timeout for the handshake: a connection caught by the
            # reset may also go quiet instead of closing; then retry.
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


def send_entropy_and_time(c):
    c.entropy(os.urandom(64))
    c.set_time(time.time_ns())


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
        deadline = time.monotonic() + timeout
        while not self.uds.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"restore exited {self.proc.returncode}: "
                                     f"{self.stderr_path.read_text(errors='replace')}")
            assert time.monotonic() < deadline, "vsock socket never appeared"
            time.sleep(0.01)

    def fresh_client(self):
        """Agent connection with the host's entropy and time sent, as kilnd does
        after every restore."""
        self.wait_socket()
        return connect_agent(self.uds, prepare=send_entropy_and_time)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        err = self.stderr_path.read_text(errors="replace")
        assert "AddressSanitizer" not in err and "runtime error:" not in err, err


@pytest.fixture(scope="module")
def base_snapshot(kvm, vmm, kernel, rootfs_python, tmp_path_factory):
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


@pytest.fixture(scope="module")
def function_snapshot(vmm, base_snapshot, rootfs_python, tmp_path_factory):
    """Restore the base, load the handler (its import is paid here, once), and
    take a diff snapshot on top of the base."""
    work = tmp_path_factory.mktemp("fn")
    record_digests(base_snapshot)
    r = Restored(vmm, base_snapshot, rootfs_python, work, "load")
    try:
        c = r.fresh_client()
        c.load({"handler.py": HANDLER}, runtime="python", mode="server", handler="handler.handle")
        res = c.invoke(json.dumps({"n": 0}), deadline_ms=60000)
        assert res.ok, res
        c.close()
        reply = api(r.api, {"op": "snapshot", "dir": str(work / "snap"), "diff": True})
        assert reply["diff"] is True
        # The same state as a full snapshot, to compare sizes with.
        api(r.api, {"op": "snapshot", "dir": str(work / "full"), "diff": False})
    finally:
        r.stop()
    record_digests(work / "snap")
    return work / "snap"


DIGESTS = {}  # snapshot file -> (sha256, mtime) when first used


def record_digests(snap):
    for name in ("state", "memory"):
        p = snap / name
        DIGESTS.setdefault(p, (sha256_file(p), p.stat().st_mtime_ns))


def invoke_checked(client, n):
    res = client.invoke(json.dumps({"n": n}), deadline_ms=60000)
    assert res.ok, res
    body = json.loads(res.body)
    assert body["n"] == n and body["double"] == 2 * n, body
    return body


def test_diff_snapshot_holds_only_changed_pages(base_snapshot, function_snapshot):
    """The function snapshot stores what changed since the base, not what the
    base already has: it is smaller than a full snapshot of the same VM, and
    both memory files are sparse (only touched pages are allocated)."""
    base = (base_snapshot / "memory").stat()
    diff = (function_snapshot / "memory").stat()
    full = (function_snapshot.parent / "full" / "memory").stat()
    assert 0 < diff.st_blocks < full.st_blocks, (diff.st_blocks, full.st_blocks)
    assert base.st_blocks * 512 < base.st_size / 2, "base memory file is not sparse"
    assert full.st_blocks * 512 < full.st_size / 2, "full memory file is not sparse"


def test_restore_20_times_several_concurrently(vmm, function_snapshot, rootfs_python, tmp_path):
    results = {}

    def one(i):
        r = Restored(vmm, function_snapshot, rootfs_python, tmp_path, f"r{i}")
        try:
            c = r.fresh_client()
            body = invoke_checked(c, 1000 + i)
            results[i] = (time.monotonic() - r.started, body)
            c.close()
        finally:
            r.stop()

    with ThreadPoolExecutor(max_workers=4) as pool:
        for f in [pool.submit(one, i) for i in range(20)]:
            f.result()
    assert sorted(results) == list(range(20))
    # The handler was imported before the snapshot, never again after it.
    assert len({b["loaded_at"] for _, b in results.values()}) == 1


def test_restored_vms_get_fresh_entropy_and_time(vmm, function_snapshot, rootfs_python, tmp_path):
    a = Restored(vmm, function_snapshot, rootfs_python, tmp_path, "a")
    b = Restored(vmm, function_snapshot, rootfs_python, tmp_path, "b")
    try:
        ca, cb = a.fresh_client(), b.fresh_client()
        ra, rb = invoke_checked(ca, 1), invoke_checked(cb, 1)
        assert ra["rand"] != rb["rand"]
        for body in (ra, rb):
            assert abs(body["now"] - time.time()) < 30, body  # the wall clock was set
            assert body["now"] > body["loaded_at"]
        ca.close()
        cb.close()
    finally:
        a.stop()
        b.stop()


def test_snapshot_chain(vmm, function_snapshot, rootfs_python, tmp_path):
    r = Restored(vmm, function_snapshot, rootfs_python, tmp_path, "c1")
    try:
        c = r.fresh_client()
        invoke_checked(c, 5)
        c.close()
        api(r.api, {"op": "snapshot", "dir": str(tmp_path / "chain"), "diff": True})
    finally:
        r.stop()
    r2 = Restored(vmm, tmp_path / "chain", rootfs_python, tmp_path, "c2")
    try:
        c = r2.fresh_client()
        invoke_checked(c, 6)
        c.close()
    finally:
        r2.stop()


def test_restore_into_prestarted_vmm(vmm, function_snapshot, rootfs_python, tmp_path):
    apisock = tmp_path / "pre.api"
    uds = tmp_path / "pre.vsock"
    proc = subprocess.Popen([str(vmm), "--prestart", "--mem", "256", "--vcpus", "1",
                             "--api-sock", str(apisock), "--console", str(tmp_path / "pre.log")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not apisock.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        reply = api(apisock, {"op": "restore", "dir": str(function_snapshot),
                              "disks": [str(rootfs_python)], "vsock_uds": str(uds)})
        assert reply["state"] == "running"
        c = connect_agent(uds, prepare=send_entropy_and_time)
        invoke_checked(c, 77)
        c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_snapshot_files_unchanged_by_restores(base_snapshot, function_snapshot):
    # Every restore above mapped these files MAP_PRIVATE and wrote guest
    # memory through them: the files must be exactly as they were taken.
    for d in (base_snapshot, function_snapshot):
        for name in ("state", "memory"):
            p = d / name
            assert DIGESTS[p] == (sha256_file(p), p.stat().st_mtime_ns), p
