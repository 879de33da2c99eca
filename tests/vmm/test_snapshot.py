"""kiln-vmm snapshots: pause, snapshot, restore (in a new process and into a
pre-started kiln-vmm), diff snapshots and chains, refusals, and the control
socket (docs/snapshots.md, docs/control-api.md).

The guest is tests/vmm/guests/snap_count.S: it prints "tick 1", "tick 2"...
forever. A snapshot restored anywhere must continue that sequence exactly:
the console of the original run up to the snapshot, followed by the console
of the restored run, must read "tick 1\\n" ... "tick N\\n" with nothing lost,
repeated or restarted (a port I/O exit left half done at the snapshot would
repeat or drop a character). snap_blk.S checks virtio-blk queue positions.
"""

import hashlib
import json
import os
import re
import shutil
import socket
import stat
import struct
import subprocess
import time

import pytest

from conftest import check_no_crash, VmmResult
from kilnvmm import ControlClient

pytestmark = pytest.mark.kvm

MiB = 1 << 20
TICK = re.compile(r"tick (\d+)")


# ---- helpers ------------------------------------------------------------------

class Api(ControlClient):
    """The shared control-socket client (tests/kilnvmm.py), failing the test
    when kiln-vmm exits before it serves the socket."""

    def __init__(self, path, timeout=15, proc=None):
        try:
            super().__init__(path, timeout=timeout,
                             alive=None if proc is None else lambda: proc.poll() is None)
        except (FileNotFoundError, ConnectionRefusedError):
            if proc is not None and proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"kiln-vmm exited with {proc.returncode} before serving "
                            f"{path}:\n{err.decode(errors='replace')}")
            raise


class Run:
    """A kiln-vmm in the background with its console in a file."""

    def __init__(self, vmm, tmp_path, name, *args, api=True, stdin=subprocess.DEVNULL):
        self.console = tmp_path / f"{name}.console"
        self.sock = tmp_path / f"{name}.sock" if api else None
        argv = [str(vmm.path)] + [str(a) for a in args]
        if "--console" not in args:
            argv += ["--console", str(self.console)]
        if api:
            argv += ["--api-sock", str(self.sock)]
        self.argv = argv
        self.p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.api = Api(self.sock, proc=self.p) if api else None

    def text(self):
        return self.console.read_text() if self.console.exists() else ""

    def wait_ticks(self, n, timeout=30):
        """Waits until the console has n more complete tick lines."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.text().count("\n") >= n:
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        pytest.fail(f"no {n} ticks on the console: {self.text()[-200:]!r}" + self.finish().describe())

    def finish(self, timeout=30):
        """Stops it (through the API, else SIGTERM) and returns a VmmResult."""
        if self.p.poll() is None and self.api:
            try:
                self.api.call(op="stop")
            except (OSError, EOFError):
                pass
        try:
            out, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
        if self.api:
            self.api.close()
        r = VmmResult(self.argv, self.p.returncode, out.decode(errors="replace"),
                      err.decode(errors="replace"))
        check_no_crash(r)
        return r


def assert_continuous(*texts):
    """The concatenated consoles read tick 1, 2, 3... with at most a partial
    last line; every console after the first adds at least one tick."""
    text = "".join(texts)
    lines = text.split("\n")
    for i, line in enumerate(lines[:-1]):
        assert line == f"tick {i + 1}", (
            f"line {i + 1} is {line!r}, expected 'tick {i + 1}'; around it: "
            f"{lines[max(0, i - 3):i + 3]}")
    assert f"tick {len(lines)}".startswith(lines[-1]), f"bad last line {lines[-1]!r}"
    for t in texts[1:]:
        assert t.count("\n") >= 1, f"a restored run printed nothing: {texts}"


def file_ids(d):
    """(mtime_ns, sha256) of every file in snapshot directory d."""
    out = {}
    for f in sorted(os.listdir(d)):
        p = os.path.join(d, f)
        with open(p, "rb") as fh:
            out[f] = (os.stat(p).st_mtime_ns, hashlib.sha256(fh.read()).hexdigest())
    return out


def take_snapshot(vmm, tmp_path, name="orig", ticks=5, diff=False):
    """Boots snap_count, pauses it after `ticks` ticks, snapshots it into
    tmp_path/snap, stops it. Returns (snapshot dir, console text)."""
    run = Run(vmm, tmp_path, name, "--kernel", vmm.guest("snap_count"), "--mem", 128)
    run.wait_ticks(ticks)
    run.api.ok(op="pause")
    snap = tmp_path / "snap"
    r = run.api.ok(op="snapshot", dir=str(snap), diff=diff)
    assert r["dir"] == str(snap.resolve()) and r["diff"] is False
    res = run.finish()
    assert res.returncode == 0, res.describe()
    return snap, run.text()


@pytest.fixture
def snap(vmm, tmp_path):
    return take_snapshot(vmm, tmp_path)


# ---- restore --------------------------------------------------------------------

def test_restore_in_new_process_continues(vmm, tmp_path, snap):
    d, before = snap
    st = os.stat(d / "memory")
    assert st.st_size == 128 * MiB
    assert st.st_blocks * 512 < 4 * MiB, "the memory file is not sparse"
    ids = file_ids(d)
    run = Run(vmm, tmp_path, "restored", "--restore", d)
    run.wait_ticks(10)
    state = run.api.ok(op="state")
    assert state["state"] == "running" and state["restored_from"] == str(d.resolve())
    assert state["memory_mib"] == 128 and state["vcpus"] == 1
    res = run.finish()
    assert res.returncode == 0, res.describe()
    assert_continuous(before, run.text())
    assert file_ids(d) == ids, "a restore modified the snapshot"


def test_restore_into_prestarted_vmm(vmm, tmp_path, snap):
    d, before = snap
    pre = Run(vmm, tmp_path, "pre", "--prestart", "--mem", 128, "--console",
              tmp_path / "pre.console")
    assert pre.api.ok(op="state")["state"] == "waiting"
    r = pre.api.call(op="pause")
    assert r["ok"] is False and "waiting" in r["error"]
    r = pre.api.ok(op="restore", dir=str(d))
    assert r["state"] == "running" and r["total_ms"] < 1000
    pre.wait_ticks(10)
    r = pre.api.call(op="restore", dir=str(d))
    assert r["ok"] is False and "running" in r["error"]
    res = pre.finish()
    assert res.returncode == 0, res.describe()
    assert_continuous(before, pre.text())


def test_prestarted_vmm_console_from_request(vmm, tmp_path, snap):
    d, before = snap
    out = tmp_path / "from-request.console"
    pre = Run(vmm, tmp_path, "pre", "--prestart", "--mem", 128)
    pre.api.ok(op="restore", dir=str(d), console=str(out))
    deadline = time.monotonic() + 30
    while (not out.exists() or out.read_text().count("\n") < 5) and time.monotonic() < deadline:
        time.sleep(0.02)
    res = pre.finish()
    assert res.returncode == 0, res.describe()
    assert_continuous(before, out.read_text())


def test_prestarted_vmm_refuses_other_memory_size(vmm, tmp_path, snap):
    d, _ = snap
    pre = Run(vmm, tmp_path, "pre", "--prestart", "--mem", 64)
    r = pre.api.call(op="restore", dir=str(d))
    assert r["ok"] is False and "128 MiB" in r["error"], r
    # Still waiting: a right-sized restore would be accepted; stop it.
    assert pre.api.ok(op="state")["state"] == "waiting"
    pre.finish()


def test_prestarted_vmm_refuses_bad_request_fields(vmm, tmp_path, snap):
    d, _ = snap
    pre = Run(vmm, tmp_path, "pre", "--prestart", "--mem", 128)
    for field, value, message in (("vsock_connect_ms", 0, "vsock_connect_ms"),
                                  ("vsock_connect_ms", "5000", "vsock_connect_ms"),
                                  ("vsock_connect_ms", 600001, "vsock_connect_ms"),
                                  ("working_set", 7, "working_set")):
        r = pre.api.call(op="restore", dir=str(d), **{field: value})
        assert r["ok"] is False and message in r["error"], r
    assert pre.api.ok(op="state")["state"] == "waiting"
    pre.finish()


def test_two_restores_at_once(vmm, tmp_path, snap):
    d, before = snap
    a = Run(vmm, tmp_path, "a", "--restore", d)
    b = Run(vmm, tmp_path, "b", "--restore", d)
    a.wait_ticks(10)
    b.wait_ticks(10)
    for run in (a, b):
        res = run.finish()
        assert res.returncode == 0, res.describe()
        assert_continuous(before, run.text())


def test_snapshot_while_running_resumes(vmm, tmp_path):
    run = Run(vmm, tmp_path, "orig", "--kernel", vmm.guest("snap_count"))
    run.wait_ticks(3)
    r = run.api.ok(op="snapshot", dir=str(tmp_path / "live"))
    assert r["state_bytes"] > 0 and r["memory_pages"] > 0
    n = run.text().count("\n")
    run.wait_ticks(n + 5)  # still counting
    assert run.api.ok(op="state")["state"] == "running"
    res = run.finish()
    assert res.returncode == 0, res.describe()
    first = run.text()
    again = Run(vmm, tmp_path, "again", "--restore", tmp_path / "live")
    again.wait_ticks(5)
    again.finish()
    # The restored run continues from some tick the original printed.
    later = again.text()
    cut = later.index("\n") + 1
    m = TICK.match(later[cut:])
    assert m, later[:100]
    k = int(m.group(1))
    assert f"tick {k - 1}\n" in first
    assert_continuous("".join(f"tick {i}\n" for i in range(1, k)), later[cut:])


def test_pause_resume(vmm, tmp_path):
    run = Run(vmm, tmp_path, "orig", "--kernel", vmm.guest("snap_count"))
    run.wait_ticks(3)
    assert run.api.ok(op="pause")["state"] == "paused"
    assert run.api.ok(op="pause")["state"] == "paused"  # idempotent
    n = run.text()
    time.sleep(0.3)
    assert run.text() == n, "the guest ran while paused"
    assert run.api.ok(op="state")["state"] == "paused"
    assert run.api.ok(op="resume")["state"] == "running"
    run.wait_ticks(n.count("\n") + 3)
    res = run.finish()
    assert res.returncode == 0, res.describe()
    assert_continuous(run.text())


def test_profile_samples_the_guest(vmm, tmp_path):
    """The profile op: samples while the guest runs, none while it is
    paused, every sample accounted for, bad requests refused."""
    run = Run(vmm, tmp_path, "prof", "--kernel", vmm.guest("snap_count"))
    run.wait_ticks(2)
    for bad in ({"hz": 0}, {"hz": 10001}, {"hz": "fast"}, {}, {"hz": 10, "stop": True}):
        r = run.api.call(op="profile", **bad)
        assert r["ok"] is False and ("profile" in r["error"] or "hz" in r["error"]), r
    assert run.api.ok(op="profile", hz=1000) == {"ok": True, "profiling": True, "hz": 1000}
    time.sleep(0.5)
    r = run.api.ok(op="profile", stop=True)
    assert r["hz"] == 1000 and r["dropped"] == 0
    assert r["samples"] >= 10, r  # the guest ran for 0.5 s
    # snap_count runs at low addresses: all of it counts as "user" (not kernel half)
    assert r["samples"] == r["user"] + sum(n for _, n in r["kernel"]), r
    # Paused: the vCPU is parked, nothing is sampled.
    assert run.api.ok(op="pause")["state"] == "paused"
    run.api.ok(op="profile", hz=1000)
    time.sleep(0.3)
    assert run.api.ok(op="profile", stop=True)["samples"] == 0
    assert run.api.ok(op="resume")["state"] == "running"
    n = run.text().count("\n")
    run.wait_ticks(n + 2)  # the kicks left the guest running
    res = run.finish()
    assert res.returncode == 0, res.describe()
    assert_continuous(run.text())


# ---- diff snapshots ---------------------------------------------------------------

def test_diff_chain(vmm, tmp_path, snap):
    d, c1 = snap
    base_ids = file_ids(d)
    consoles = [c1]
    parent = d
    for i in (1, 2):
        run = Run(vmm, tmp_path, f"gen{i}", "--restore", parent)
        run.wait_ticks(5)
        run.api.ok(op="pause")
        diff = tmp_path / f"diff{i}"
        r = run.api.ok(op="snapshot", dir=str(diff), diff=True)
        assert r["diff"] is True
        assert r["memory_pages"] < 64, r
        # The same VM cannot write a diff over its own parent.
        bad = run.api.call(op="snapshot", dir=str(parent), diff=True)
        assert bad["ok"] is False and "parent" in bad["error"]
        res = run.finish()
        assert res.returncode == 0, res.describe()
        consoles.append(run.text())
        st = os.stat(diff / "memory")
        assert st.st_size == 128 * MiB and st.st_blocks * 512 <= 512 * 1024
        assert str(parent.resolve()).encode() in (diff / "state").read_bytes()
        parent = diff
    last = Run(vmm, tmp_path, "gen3", "--restore", parent)
    last.wait_ticks(5)
    res = last.finish()
    assert res.returncode == 0, res.describe()
    consoles.append(last.text())
    assert_continuous(*consoles)
    assert file_ids(d) == base_ids


def test_diff_after_full_snapshot_of_booted_vm(vmm, tmp_path):
    run = Run(vmm, tmp_path, "orig", "--kernel", vmm.guest("snap_count"))
    run.wait_ticks(3)
    r = run.api.call(op="snapshot", dir=str(tmp_path / "d0"), diff=True)
    assert r["ok"] is False and "needs a parent" in r["error"]
    run.api.ok(op="pause")
    run.api.ok(op="snapshot", dir=str(tmp_path / "full"))
    run.api.ok(op="resume")
    run.wait_ticks(run.text().count("\n") + 5)
    run.api.ok(op="pause")
    r = run.api.ok(op="snapshot", dir=str(tmp_path / "d1"), diff=True)
    assert r["memory_pages"] < 64
    before = run.text()
    run.finish()
    again = Run(vmm, tmp_path, "again", "--restore", tmp_path / "d1")
    again.wait_ticks(5)
    res = again.finish()
    assert res.returncode == 0, res.describe()
    assert_continuous(before, again.text())


def test_broken_parent_is_refused(vmm, tmp_path, snap):
    d, _ = snap
    run = Run(vmm, tmp_path, "gen1", "--restore", d)
    run.wait_ticks(3)
    run.api.ok(op="pause")
    run.api.ok(op="snapshot", dir=str(tmp_path / "diff"), diff=True)
    run.finish()
    # Rewrite the parent: the diff no longer matches it.
    take_snapshot(vmm, tmp_path, name="other")
    r = vmm.run("--restore", tmp_path / "diff", "--console", tmp_path / "x.console")
    assert r.returncode == 1, r.describe()
    assert "has changed since the diff was taken" in r.stderr, r.describe()


# ---- refusals ------------------------------------------------------------------------

def corrupt(d, what):
    state = bytearray((d / "state").read_bytes())
    if what == "magic":
        state[0:8] = b"NOTKILN!"
    elif what == "version":
        state[8:12] = struct.pack("<I", 99)
    elif what == "truncated":
        state = state[:len(state) // 2]
    elif what == "flipped":
        state[len(state) // 2] ^= 0x10
    elif what == "empty":
        state = bytearray()
    elif what == "memsize":
        with open(d / "memory", "r+b") as f:
            f.truncate(64 * MiB)
    elif what == "nostate":
        (d / "state").unlink()
        return
    (d / "state").write_bytes(bytes(state))


@pytest.mark.parametrize("what,message", [
    ("magic", "wrong magic"),
    ("version", "format version 99 is not supported"),
    ("truncated", "truncated"),
    ("flipped", "checksum mismatch"),
    ("empty", "wrong magic"),
    ("memsize", "has 67108864 bytes"),
    ("nostate", "cannot open"),
])
def test_refuses_damaged_snapshot(vmm, tmp_path, snap, what, message):
    d, _ = snap
    bad = tmp_path / f"bad-{what}"
    shutil.copytree(d, bad)
    corrupt(bad, what)
    ids = file_ids(bad)
    r = vmm.run("--restore", bad, "--console", tmp_path / "x.console")
    assert r.returncode == 1, r.describe()
    assert any(message in l for l in r.error_lines()), r.describe()
    assert file_ids(bad) == ids
    # The same refusal through a pre-started kiln-vmm, which stays usable.
    pre = Run(vmm, tmp_path, "pre", "--prestart", "--mem", 128)
    reply = pre.api.call(op="restore", dir=str(bad))
    assert reply["ok"] is False and message in reply["error"], reply
    assert pre.api.ok(op="state")["state"] == "waiting"
    pre.finish()


def test_refuses_memory_over_limit(vmm, tmp_path, snap):
    d, _ = snap
    r = vmm.run("--restore", d, "--max-mem", 64, "--console", tmp_path / "x.console")
    assert r.returncode == 1, r.describe()
    assert any("more than the limit of 64 MiB" in l for l in r.error_lines()), r.describe()
    pre = Run(vmm, tmp_path, "pre", "--prestart", "--mem", 128, "--max-mem", 100)
    reply = pre.api.call(op="restore", dir=str(d))
    assert reply["ok"] is False and "limit of 100 MiB" in reply["error"]
    pre.finish()


def test_restore_usage_errors(vmm, tmp_path, snap):
    d, _ = snap
    for args in (["--restore", d, "--mem", 64], ["--restore", d, "--kernel", "x"],
                 ["--prestart", "--mem", 64], ["--restore", d, "--prestart"],
                 ["--restore", d, "--vsock-connect-ms", 0],
                 ["--restore", d, "--vsock-connect-ms", 600001],
                 ["--restore", d, "--vsock-connect-ms", "5s"]):
        r = vmm.run(*args)
        assert r.returncode == 2, r.describe()


# ---- virtio-blk ------------------------------------------------------------------------

SECTORS = b"SNAP-SECTOR-ZERO" + bytes(496) + b"SNAP-SECTOR-ONE!" + bytes(496) + bytes(3072)


@pytest.fixture
def blk_snapshot(vmm, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(SECTORS)
    run = Run(vmm, tmp_path, "blk", "--kernel", vmm.guest("snap_blk"), "--disk", disk)
    deadline = time.monotonic() + 30
    while "waiting\n" not in run.text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "read 1: SNAP-SECTOR-ZERO\n" in run.text(), run.text()
    run.api.ok(op="snapshot", dir=str(tmp_path / "blksnap"))
    run.finish()
    return tmp_path / "blksnap", disk


def test_virtio_blk_queue_positions_restored(vmm, tmp_path, blk_snapshot):
    d, disk = blk_snapshot
    argv = [str(vmm.path), "--restore", str(d), "--disk", str(disk)]
    p = subprocess.run(argv, input=b"g", capture_output=True, timeout=60)
    r = VmmResult(argv, p.returncode, p.stdout.decode(errors="replace"),
                  p.stderr.decode(errors="replace"))
    check_no_crash(r)
    assert r.returncode == 0, r.describe()
    assert "read 2: SNAP-SECTOR-ONE!\n" in r.stdout, r.describe()
    assert "FAIL" not in r.stdout and "snap blk ok" in r.stdout, r.describe()
    assert disk.read_bytes() == SECTORS


@pytest.mark.parametrize("disks,message", [
    ([], "has 1 disk(s), 0 given"),
    (["other"], "sectors; the snapshot's disk 1 had"),
    (["same,rw"], "must be read-only"),
    (["same", "same"], "has 1 disk(s), 2 given"),
])
def test_restore_refuses_other_disk_set(vmm, tmp_path, blk_snapshot, disks, message):
    d, disk = blk_snapshot
    other = tmp_path / "other.img"
    other.write_bytes(bytes(8192))
    args = []
    for x in disks:
        args += ["--disk", str(disk) + x[4:] if x.startswith("same") else other]
    r = vmm.run("--restore", d, *args, "--console", tmp_path / "x.console")
    assert r.returncode == 1, r.describe()
    assert any(message in l for l in r.error_lines()), r.describe()


def test_restore_refuses_vsock_mismatch(vmm, tmp_path, snap):
    d, _ = snap
    r = vmm.run("--restore", d, "--vsock-uds", tmp_path / "v.sock", "--console",
                tmp_path / "x.console")
    assert r.returncode == 1, r.describe()
    assert any("no vsock device" in l for l in r.error_lines()), r.describe()


def vsock_snapshot(vmm, tmp_path):
    """Snapshots snap_count with a vsock device into tmp_path/vs; returns
    its console text."""
    run = Run(vmm, tmp_path, "orig", "--kernel", vmm.guest("snap_count"), "--vsock-uds",
              tmp_path / "v.sock")
    run.wait_ticks(3)
    run.api.ok(op="pause")
    run.api.ok(op="snapshot", dir=str(tmp_path / "vs"))
    before = run.text()
    run.finish()
    return before


def test_vsock_device_snapshot_and_restore(vmm, tmp_path):
    before = vsock_snapshot(vmm, tmp_path)
    r = vmm.run("--restore", tmp_path / "vs", "--console", tmp_path / "x.console")
    assert r.returncode == 1 and any("--vsock-uds" in l for l in r.error_lines()), r.describe()
    again = Run(vmm, tmp_path, "again", "--restore", tmp_path / "vs", "--vsock-uds",
                tmp_path / "v2.sock")
    again.wait_ticks(5)
    assert (tmp_path / "v2.sock").exists()
    res = again.finish()
    assert res.returncode == 0, res.describe()
    assert_continuous(before, again.text())


def test_prestarted_vmm_listens_on_its_vsock_socket(vmm, tmp_path):
    """--prestart --vsock-uds binds the socket before any restore (kilnd's
    pool does, so a restore need not): a restore naming another socket is
    refused and leaves the VMM waiting, one naming none (or the same) gets
    it, and a VMM stopped without a restore removes its socket file."""
    before = vsock_snapshot(vmm, tmp_path)
    staged = tmp_path / "staged.sock"
    pre = Run(vmm, tmp_path, "pre", "--prestart", "--mem", 128, "--vsock-uds", staged)
    assert pre.api.ok(op="state")["state"] == "waiting"
    assert stat.S_ISSOCK(os.stat(staged).st_mode)
    r = pre.api.call(op="restore", dir=str(tmp_path / "vs"), vsock_uds=str(tmp_path / "o.sock"))
    assert r["ok"] is False and str(staged) in r["error"] and "pre-started" in r["error"], r
    assert pre.api.ok(op="state")["state"] == "waiting"
    assert not (tmp_path / "o.sock").exists()
    pre.api.ok(op="restore", dir=str(tmp_path / "vs"))
    pre.wait_ticks(5)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.connect(str(staged))  # the restored device serves it
    res = pre.finish()
    assert res.returncode == 0, res.describe()
    assert_continuous(before, pre.text())
    idle = tmp_path / "idle.sock"
    unused = Run(vmm, tmp_path, "unused", "--prestart", "--mem", 128, "--vsock-uds", idle)
    assert unused.api.ok(op="state")["state"] == "waiting" and idle.exists()
    unused.finish()
    assert not idle.exists(), "a pre-started kiln-vmm left its vsock socket behind"
    r = vmm.run("--prestart", "--mem", 128, "--vsock-uds", tmp_path / "c.sock", "--vsock-cid", 9,
                "--api-sock", tmp_path / "c.api")
    assert r.returncode == 2 and any("CID" in l for l in r.error_lines()), r.describe()


def test_rng_device_snapshot_and_restore(vmm, tmp_path):
    """A virtio-rng device comes back from the snapshot alone: the restore
    needs (and takes) no --rng, and its slot and state are the snapshot's."""
    run = Run(vmm, tmp_path, "orig", "--kernel", vmm.guest("snap_count"), "--rng")
    run.wait_ticks(3)
    run.api.ok(op="pause")
    run.api.ok(op="snapshot", dir=str(tmp_path / "rs"))
    before = run.text()
    run.finish()
    r = vmm.run("--restore", tmp_path / "rs", "--rng", "--console", tmp_path / "x.console")
    assert r.returncode == 2 and any("--rng" in l for l in r.error_lines()), r.describe()
    again = Run(vmm, tmp_path, "again", "--restore", tmp_path / "rs")
    again.wait_ticks(5)
    res = again.finish()
    assert res.returncode == 0, res.describe()
    assert_continuous(before, again.text())


def test_net_device_snapshot_and_restore(vmm, tmp_path):
    """A virtio-net device's host side is given again at restore (--net):
    without it the restore is refused naming the network device, another MAC
    than the snapshot's is refused, and with --net none (or another host
    side) the guest goes on where it stopped."""
    run = Run(vmm, tmp_path, "orig", "--kernel", vmm.guest("snap_count"),
              "--net", "none,mac=02:00:00:00:00:07")
    run.wait_ticks(3)
    run.api.ok(op="pause")
    run.api.ok(op="snapshot", dir=str(tmp_path / "ns"))
    before = run.text()
    run.finish()
    r = vmm.run("--restore", tmp_path / "ns", "--console", tmp_path / "x.console")
    assert r.returncode == 1 and any("network device" in l for l in r.error_lines()), \
        r.describe()
    r = vmm.run("--restore", tmp_path / "ns", "--net", "none,mac=02:00:00:00:00:08",
                "--console", tmp_path / "y.console")
    assert r.returncode == 1 and any("02:00:00:00:00:07" in l for l in r.error_lines()), \
        r.describe()
    r = vmm.run("--restore", tmp_path / "ns", "--net", "tap-fd=x",
                "--console", tmp_path / "z.console")
    assert r.returncode == 2, r.describe()
    again = Run(vmm, tmp_path, "again", "--restore", tmp_path / "ns", "--net", "none")
    again.wait_ticks(5)
    res = again.finish()
    assert res.returncode == 0, res.describe()
    assert_continuous(before, again.text())


# ---- the control socket -------------------------------------------------------------------

def test_control_protocol_errors(vmm, tmp_path):
    run = Run(vmm, tmp_path, "orig", "--kernel", vmm.guest("snap_count"))
    api = run.api
    api.send_raw(b"{not json\n")
    r = api.recv()
    assert r["ok"] is False and "malformed JSON" in r["error"]
    for req, msg in ((b"[1,2]\n", "must be a JSON object"), (b'{"x":1}\n', "no \"op\""),
                     (b'{"op":"dance"}\n', "unknown op 'dance'"),
                     (b'{"op":"snapshot"}\n', "needs \"dir\""),
                     (b'{"op":"snapshot","dir":"/tmp","diff":"yes"}\n', "true or false"),
                     (b'{"op":"restore","dir":"/nonexistent"}\n', "only a kiln-vmm waiting"),
                     (b'{"op":"resume"}\n', None)):
        api.send_raw(req)
        r = api.recv()
        if msg is None:
            assert r["ok"] is True
        else:
            assert r["ok"] is False and msg in r["error"], (req, r)
    # Pipelined requests are answered in order.
    api.send_raw(b'{"op":"state"}\n\n{"op":"pause"}\n{"op":"state"}\n')
    assert api.recv()["state"] == "running"
    assert api.recv()["state"] == "paused"
    assert api.recv()["state"] == "paused"
    api.ok(op="resume")
    # Another client at the same time.
    other = Api(run.sock)
    assert other.ok(op="state")["state"] == "running"
    # A line longer than 64 KiB: an error, then the connection closes.
    other.send_raw(b'{"op":"state","pad":"' + b"x" * (70 * 1024))
    r = other.recv()
    assert r["ok"] is False and "longer than" in r["error"]
    with pytest.raises((EOFError, ConnectionResetError)):
        other.recv()
    other.close()
    # The first connection still works.
    assert api.ok(op="state")["state"] == "running"
    res = run.finish()
    assert res.returncode == 0, res.describe()


def test_ctl_command_line(vmm, tmp_path):
    run = Run(vmm, tmp_path, "orig", "--kernel", vmm.guest("snap_count"))
    run.wait_ticks(2)

    def ctl(*args):
        return vmm.run("ctl", "--api-sock", run.sock, *args)

    r = ctl("state")
    assert r.returncode == 0 and json.loads(r.stdout)["state"] == "running", r.describe()
    assert ctl("pause").returncode == 0
    r = ctl("snapshot", tmp_path / "cli")
    assert r.returncode == 0 and json.loads(r.stdout)["ok"] is True, r.describe()
    r = ctl("snapshot", tmp_path / "cli2", "--diff")
    assert r.returncode == 0 and json.loads(r.stdout)["diff"] is True, r.describe()
    r = ctl("raw", '{"op":"nope"}')
    assert r.returncode == 1 and "unknown op" in r.stderr, r.describe()
    assert ctl("bogus").returncode == 2
    assert ctl("resume").returncode == 0
    r = ctl("stop")
    assert r.returncode == 0, r.describe()
    res = run.finish()
    assert res.returncode == 0, res.describe()
    assert (tmp_path / "cli" / "state").exists()
    r = vmm.run("ctl", "--api-sock", tmp_path / "gone.sock", "state")
    assert r.returncode == 1 and "cannot connect" in r.stderr


def test_memory_file_holds_what_the_guest_used(vmm, tmp_path):
    """snap_touch uses 30 MiB of its 128: the full snapshot allocates about
    that much; a diff after a restore is small; a full snapshot of the
    restored VM (whose pages are mostly still in the file, not in memory)
    holds all 30 MiB again; every page comes back."""
    run = Run(vmm, tmp_path, "orig", "--kernel", vmm.guest("snap_touch"), "--mem", 128)
    run.wait_ticks(3)
    run.api.ok(op="pause")
    r = run.api.ok(op="snapshot", dir=str(tmp_path / "full"))
    before = run.text()
    run.finish()
    used = os.stat(tmp_path / "full" / "memory").st_blocks * 512
    assert 29 * MiB <= used <= 33 * MiB, used
    assert 29 * MiB <= r["memory_bytes"] <= 31 * MiB, r

    again = Run(vmm, tmp_path, "again", "--restore", tmp_path / "full")
    again.wait_ticks(5)
    again.api.ok(op="pause")
    d = again.api.ok(op="snapshot", dir=str(tmp_path / "diff"), diff=True)
    assert d["memory_bytes"] < 1 * MiB, d
    f = again.api.ok(op="snapshot", dir=str(tmp_path / "full2"))
    assert 29 * MiB <= f["memory_bytes"] <= 31 * MiB, f
    again.api.ok(op="resume")
    again.wait_ticks(again.text().count("\n") + 3)
    res = again.finish()
    assert res.returncode == 0, res.describe()
    assert "BAD" not in before + again.text()
    assert_continuous(before, again.text())

    third = Run(vmm, tmp_path, "third", "--restore", tmp_path / "full2")
    third.wait_ticks(5)
    third.finish()
    assert "BAD" not in third.text()
