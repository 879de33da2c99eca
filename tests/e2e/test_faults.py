"""kilnd when things break (issue 12, "Fault tests"; docs/kilnd.md,
"Failures and recovery"): kill -9 of kilnd during a deploy and during async
calls, a corrupted snapshot or code blob in the store, the disk filling up.

Every function here is an sh function: its deploy restores the cached base
snapshot and takes seconds. Each test has its own kilnd and state directory.
"""
import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import Kilnd, vmm_pids


def describe(k, name):
    r = k.request("GET", f"/system/function/{name}")
    assert r.status == 200, (r.status, r.body)
    return r.json()


def deploy_sh(k, name, script, method="POST", wait=True):
    # A generous timeout: this host's guests run their kernel emulated and
    # share two CPUs, so a few VMs started at once can be slow.
    return k.deploy(name, {"handler.sh": script}, method=method, wait=wait, runtime="sh",
                    timeout=120)


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def store_tmp_files(state_dir):
    return [p for d in ("code", "snapshots") if (state_dir / d).is_dir()
            for p in (state_dir / d).iterdir() if p.name.startswith(".tmp-")]


@pytest.fixture(scope="module")
def pinned_vmm(vmm, tmp_path_factory):
    """A copy of build/kiln-vmm for the whole module: a `make` elsewhere in
    the checkout during the run would otherwise change the binary (and with
    it the base snapshot's key: a boot) between a kilnd and its restart."""
    path = tmp_path_factory.mktemp("vmm") / "kiln-vmm"
    shutil.copy2(vmm, path)
    return path


@pytest.fixture
def make_kilnd(kvm, pinned_vmm, kernel, rootfs_python, tmp_path):
    made = []

    def make(workdir=None, extra=("--pause-after", "0")):
        k = Kilnd(workdir or tmp_path, kernel, rootfs_python,
                  extra=("--vmm", str(pinned_vmm), *extra))
        made.append(k)
        return k
    yield make
    for k in made:
        if k.proc.poll() is None:
            k.stop()


# ---- 2. kill -9 of kilnd ----------------------------------------------------

def test_kill9_during_deploy_and_async_calls(make_kilnd):
    k = make_kilnd()
    r = deploy_sh(k, "fx-dur", "read b; echo \"v1 $b\"\n")
    assert r.status == 201, (r.body, k.tail())
    run_dir = k.info()["run_dir"]

    # Async calls: several accepted, some running when kilnd dies.
    ids = []
    for i in range(3):
        acc = k.request("POST", "/async-function/fx-dur", f"call{i}".encode())
        assert acc.status == 202, acc.body
        ids.append(acc.header("x-call-id"))
    wait_for(lambda: describe(k, "fx-dur")["instances"]["busy"] > 0, 60, "no call started")

    # A second version whose deploy is killed while it loads or snapshots.
    r = deploy_sh(k, "fx-dur", "read b; echo \"v2 $b\"\n", method="PUT", wait=False)
    assert r.status == 202, r.body
    stages = []

    def in_stage():
        st = describe(k, "fx-dur").get("deploy") or {}
        stages.append(st.get("stage"))
        return st.get("version") == 2 and st.get("stage") in ("loading", "snapshotting")
    wait_for(in_stage, 60, f"the deploy never reached loading/snapshotting: {stages}")
    k.kill9()

    # Nothing the first kilnd started outlives it (PR_SET_PDEATHSIG; the
    # restart would kill the rest from the run directory's pid files).
    wait_for(lambda: not vmm_pids(run_dir), 10,
             f"kiln-vmm of the killed kilnd still running: {vmm_pids(run_dir)}")

    k.start()
    d = describe(k, "fx-dur")
    assert d["status"] == "ready" and d["version"] == 1, d
    v2 = [v for v in d.get("versions", []) if v["version"] == 2]
    assert v2 and v2[0]["status"] == "failed" and v2[0].get("error"), d
    r = k.invoke("fx-dur", b"after")
    assert r.status == 200 and r.body == b"v1 after\n", (r.status, r.body)

    # Every accepted async call completes (at least once).
    for i, cid in enumerate(ids):
        st = wait_for(lambda: (lambda s: s if s["status"] == "done" else None)(
            k.request("GET", f"/system/calls/{cid}").json()), 120, f"call {cid} not done")
        assert st["status_code"] == 200 and st["body"] == f"v1 call{i}\n", st

    # The function can be deployed again, and its new version serves.
    r = deploy_sh(k, "fx-dur", "read b; echo \"v3 $b\"\n", method="PUT")
    assert r.status == 201, r.body
    assert k.invoke("fx-dur", b"x").body == b"v3 x\n"
    assert not store_tmp_files(k.state_dir)


# ---- 3. a corrupted snapshot or code blob -----------------------------------

def flip(path, at=None):
    data = bytearray(path.read_bytes())
    assert data, path
    i = len(data) // 2 if at is None else at
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupted_snapshot_is_rebuilt_and_corrupted_code_reported(make_kilnd):
    k = make_kilnd()
    # fx-snap: its snapshot's state file gets a flipped byte, its code is fine:
    # rebuilt from the code. fx-mem: memory file truncated, same. fx-both:
    # snapshot and code blob corrupted: failed with a reason, never served.
    # fx-code: only its code blob corrupted: reported, keeps serving from its
    # verified snapshot.
    names = ("fx-snap", "fx-mem", "fx-both", "fx-code")
    for n in names:
        r = deploy_sh(k, n, f"read b; echo \"{n} $b\"\n")
        assert r.status == 201, (r.body, k.tail())
    desc = {n: describe(k, n) for n in names}
    snaps = {n: k.state_dir / "snapshots" / desc[n]["snapshot"]["id"] for n in names}
    assert len(set(snaps.values())) == len(names)  # different code: own snapshots
    for n in names:
        assert (snaps[n] / "sha256sums").is_file(), list(snaps[n].iterdir())
    k.stop()

    flip(snaps["fx-snap"] / "state")
    mem = snaps["fx-mem"] / "memory"
    os.truncate(mem, mem.stat().st_size // 2)
    flip(snaps["fx-both"] / "state", at=100)
    for n in ("fx-both", "fx-code"):
        flip(k.state_dir / "code" / (desc[n]["code_sha256"] + ".klna"))

    k.start()
    log = k.tail(100000)
    for n in ("fx-snap", "fx-mem", "fx-both"):
        sid = desc[n]["snapshot"]["id"]
        assert f"snapshot {sid} is corrupted or unreadable, refused" in log, log
    assert "is corrupted (its sha256 does not match)" in log, log
    for n in ("fx-snap", "fx-mem"):
        d = wait_for(lambda: (lambda d: d if d["snapshot"] and d["snapshot"]["id"]
                              != desc[n]["snapshot"]["id"] else None)(describe(k, n)),
                     120, f"{n} not rebuilt:\n{k.tail()}")
        assert d["status"] == "ready" and d["version"] == 1, d
        r = k.invoke(n, b"ok")
        if r.status == 502 and b"microVM was lost" in r.body:
            # Known, not this test's subject: on this loaded host a cold
            # restore's guest can miss kiln-vmm's 5 s window to answer the
            # first CONNECT (20decd4); the next call restores again.
            r = k.invoke(n, b"ok")
        assert r.status == 200 and r.body == f"{n} ok\n".encode(), (r.status, r.body)
    d = describe(k, "fx-both")
    assert d["status"] == "failed", d
    assert "code blob corrupted" in d["versions"][0]["error"], d
    r = k.invoke("fx-both", b"x")
    assert r.status != 200 and b"fx-both" not in r.body.replace(b"'fx-both'", b""), r.body
    r = k.invoke("fx-code", b"still")
    assert r.status == 200 and r.body == b"fx-code still\n", (r.status, r.body)
    # A new deploy of the same code repairs the blob; fx-both serves again.
    r = deploy_sh(k, "fx-both", "read b; echo \"fx-both $b\"\n", method="PUT")
    assert r.status == 201, r.body
    assert k.invoke("fx-both", b"back").body == b"fx-both back\n"
    assert not store_tmp_files(k.state_dir)


# ---- 1. the disk fills up ---------------------------------------------------

def fill(path):
    """Writes path until the file system is full."""
    chunk = b"\xa5" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass
        try:
            while True:
                f.write(b"\xa5" * 4096)
        except OSError:
            pass


def test_disk_full_while_deploying(make_kilnd, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    mnt = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160m,mode=0700", "tmpfs",
                          str(state)], stderr=subprocess.PIPE, text=True)
    if mnt.returncode:
        pytest.skip(f"cannot mount a tmpfs for the state directory: {mnt.stderr.strip()}")
    try:
        k = make_kilnd()
        r = deploy_sh(k, "fx-full", "read b; echo \"v1 $b\"\n")
        assert r.status == 201, (r.body, k.tail())
        assert k.invoke("fx-full", b"a").body == b"v1 a\n"
        filler = state / "filler"
        fill(filler)

        r = deploy_sh(k, "fx-full", "read b; echo \"v2 $b\"\n", method="PUT")
        assert r.status == 507, (r.status, r.body, k.tail())
        assert "No space left on device" in r.json()["error"], r.body
        d = describe(k, "fx-full")
        assert d["status"] == "ready" and d["version"] == 1, d
        assert all(v["status"] != "ready" for v in d["versions"] if v["version"] != 1), d
        # A little space: the code and the registry row fit, the snapshot
        # (about 1 MiB of guest memory written, see the v1 snapshot) does not.
        # The same answer, and its partial files are gone at once. Free space
        # is set to 384 KiB exactly: whatever the failed deploy above gave back
        # (a journal, a partial blob) counts too.
        snap = state / "snapshots" / describe(k, "fx-full")["snapshot"]["id"]
        snap_bytes = sum(f.stat().st_blocks * 512 for f in snap.iterdir())
        assert snap_bytes > (512 << 10), snap_bytes
        st = os.statvfs(state)
        free = st.f_bavail * st.f_frsize
        want = 384 << 10
        if free < want:
            os.truncate(filler, max(0, filler.stat().st_size - (want - free)))
        else:
            with open(filler, "ab") as f:
                f.write(b"\xa5" * (free - want))
        r = deploy_sh(k, "fx-full", "read b; echo \"v2b $b\"\n", method="PUT")
        assert r.status == 507, (r.status, r.body, k.tail())
        assert "No space left on device" in r.json()["error"], r.body
        assert not store_tmp_files(state), store_tmp_files(state)
        d = describe(k, "fx-full")
        assert d["status"] == "ready" and d["version"] == 1, d
        assert all(v["status"] == "failed" for v in d["versions"] if v["version"] != 1), d
        fill(state / "filler2")
        r = k.invoke("fx-full", b"b")  # a synchronous call needs no disk
        assert r.status == 200 and r.body == b"v1 b\n", (r.status, r.body)
        acc = k.request("POST", "/async-function/fx-full", b"c")
        assert acc.status >= 500 or acc.status == 202, (acc.status, acc.body)
        cid = acc.header("x-call-id") if acc.status == 202 else None

        filler.unlink()
        (state / "filler2").unlink()
        if cid:  # accepted: it was stored, so it completes
            st = wait_for(lambda: (lambda s: s if s["status"] == "done" else None)(
                k.request("GET", f"/system/calls/{cid}").json()), 120, "async call lost")
            assert st["body"] == "v1 c\n", st
        r = deploy_sh(k, "fx-full", "read b; echo \"v3 $b\"\n", method="PUT")
        assert r.status == 201, (r.status, r.body)
        v3 = r.json()["version"]
        assert k.invoke("fx-full", b"d").body == b"v3 d\n"
        k.stop()
        k.start()  # store_open cleans up whatever a failed write left
        assert not store_tmp_files(state), store_tmp_files(state)
        assert describe(k, "fx-full")["version"] == v3
        k.stop()
    finally:
        subprocess.run(["umount", "-l", str(state)])
