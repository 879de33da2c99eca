"""Snapshots of a real Linux guest with the Python runtime (SnapFaaS's
lifecycle): boot once and snapshot (the base, cached), restore the base and
load a function, take a diff snapshot of it (the function snapshot), then
serve invocations from restores of that, never booting a kernel again.

The base snapshot is cached under ${KILN_CACHE}/snapshots, keyed by the
hashes of the kernel, the root filesystem, kiln-init and kiln-vmm, so only
the first run on a machine pays for a boot.
"""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from kilnvmm import ControlClient

from snaputil import (DIGESTS, Prestarted, Restored, api, connect_once, invoke_checked,
                      make_base_snapshot, make_function_snapshot, record_digests,
                      send_entropy_and_time, sha256_file)


@pytest.fixture(scope="module")
def base_snapshot(kvm, vmm, kernel, rootfs_python, tmp_path_factory):
    return make_base_snapshot(vmm, kernel, rootfs_python, tmp_path_factory)


@pytest.fixture(scope="module")
def function_snapshot(vmm, base_snapshot, rootfs_python, tmp_path_factory):
    """Restore the base, load the handler, take a diff snapshot on top of the
    base (and a full one of the same state, to compare sizes with)."""
    return make_function_snapshot(vmm, base_snapshot, rootfs_python, tmp_path_factory, full=True)


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


@pytest.fixture(scope="module")
def parked_snapshot(vmm, base_snapshot, rootfs_python, tmp_path_factory):
    """The function snapshot taken as kilnd takes it: its host connection
    open and idle, so kiln-vmm parks it in the snapshot."""
    return make_function_snapshot(vmm, base_snapshot, rootfs_python, tmp_path_factory,
                                  keep_open=True)


def test_parked_connection_is_taken_over_after_restore(vmm, parked_snapshot, rootfs_python,
                                                       tmp_path):
    """Each restore's first CONNECT takes over the stream the snapshot kept
    open: no accept in the guest (its timeline starts over at ENTROPY), yet
    each VM gets its own entropy and the host's clock before its handler
    runs; a second connection is an ordinary one."""
    bodies = []
    vms = [Restored(vmm, parked_snapshot, rootfs_python, tmp_path, "pk1"),
           Prestarted(vmm, tmp_path, "pk2", mem=256)]
    try:
        vms[0].wait_socket()
        vms[1].wait_ready()
        vms[1].restore(parked_snapshot, rootfs_python)
        for vm in vms:
            c = connect_once(vm.uds, prepare=send_entropy_and_time)
            body = invoke_checked(c, 11)
            assert abs(body["now"] - time.time()) < 1.0, body
            bodies.append(body)
            lines = c.wait(c.send(0x0E)).payload.decode().splitlines()
            assert lines[0] == "+0 recv ENTROPY 64", lines
            c2 = connect_once(vm.uds, prepare=send_entropy_and_time)
            lines = c2.wait(c2.send(0x0E)).payload.decode().splitlines()
            assert lines[0] == "+0 accept 0", lines
            invoke_checked(c2, 12)
            c2.close()
            c.close()
    finally:
        for vm in vms:
            vm.stop()
    assert bodies[0]["rand"] != bodies[1]["rand"]
    assert bodies[0]["loaded_at"] == bodies[1]["loaded_at"]


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
    pre = Prestarted(vmm, tmp_path, "pre", mem=256)
    try:
        pre.wait_ready()
        assert pre.restore(function_snapshot, rootfs_python)["state"] == "running"
        c = connect_once(pre.uds, prepare=send_entropy_and_time)
        invoke_checked(c, 77)
        c.close()
    finally:
        pre.stop()


def test_restore_counts_exits_and_traces_the_first_answer(vmm, function_snapshot, rootfs_python,
                                                          tmp_path):
    """The breakdown's sources (bench/snapshots.py): kiln-vmm's "stats" op
    counts exits (its own and KVM's) across a restore and a call, and
    kiln-init's TRACE gives the connection's timeline in order."""
    pre = Prestarted(vmm, tmp_path, "stats", mem=256)
    try:
        pre.wait_ready()
        before = api(pre.api, {"op": "stats"})
        assert before["vcpus"] == 1 and set(before["exits"]) >= {"pio", "mmio", "intr"}
        pre.restore(function_snapshot, rootfs_python)
        c = connect_once(pre.uds, prepare=send_entropy_and_time)
        invoke_checked(c, 78)
        after = api(pre.api, {"op": "stats"})
        assert after["exits"]["mmio"] > before["exits"]["mmio"]  # virtio notifications
        if "kvm" in after:
            assert after["kvm"]["exits"] > before["kvm"].get("exits", 0)
        rid = c.send(0x0E)
        f = c.wait(rid)
        assert f.type == 0x0E, f
        lines = f.payload.decode().splitlines()
        # the guest's counters since boot close the answer (docs/protocol.md)
        counts = lines.pop().split()
        assert counts[0] == "counts", counts
        counted = dict(zip(counts[1::2], map(int, counts[2::2])))
        assert counted["syscalls"] > 100 and counted["interrupts"] > 0, counted
        assert counted["switches"] > 0, counted
        assert lines[0] == "+0 accept 0"
        kinds = [ln.split()[1:3] for ln in lines]
        assert ["recv", "ENTROPY"] in kinds and ["recv", "INVOKE"] in kinds
        assert kinds.index(["recv", "ENTROPY"]) < kinds.index(["recv", "INVOKE"]) < \
            kinds.index(["queued", "RESULT"])
        stamps = [int(ln.split()[0][1:]) for ln in lines]
        assert stamps == sorted(stamps)
        # a second TRACE starts from the first one's answer
        rid = c.send(0x0E)
        assert c.wait(rid).payload.decode().splitlines()[0].split()[1:3] == ["recv", "TRACE"]
        c.close()
    finally:
        pre.stop()


def test_snapshot_files_unchanged_by_restores(vmm, base_snapshot, function_snapshot,
                                              rootfs_python, tmp_path):
    """Every restore maps these files MAP_PRIVATE and writes guest memory
    through them: the files stay exactly as they were when first used. This
    test makes a restore of its own (so it means something when run alone)
    and also covers every restore the tests before it made."""
    for d in (base_snapshot, function_snapshot):
        record_digests(d)
    r = Restored(vmm, function_snapshot, rootfs_python, tmp_path, "u")
    try:
        c = r.fresh_client()
        invoke_checked(c, 9)
        c.close()
    finally:
        r.stop()
    for d in (base_snapshot, function_snapshot):
        for name in ("state", "memory"):
            p = d / name
            assert DIGESTS[p] == (sha256_file(p), p.stat().st_mtime_ns), p


def test_working_set_prefetch(vmm, base_snapshot, function_snapshot, rootfs_python, tmp_path):
    """A restored VM's working set (the pages touched up to its first
    answer), recorded by kiln-vmm and given to later restores: they
    prefetch exactly those pages and still get fresh entropy and the host's
    clock. A damaged file, or one recorded on another snapshot, is never
    trusted: the restore goes on without it and says why."""
    ws = tmp_path / "working-set"
    rec = Prestarted(vmm, tmp_path, "rec", mem=256)
    try:
        rec.wait_ready()
        rec.restore(function_snapshot, rootfs_python)
        c = connect_once(rec.uds, prepare=send_entropy_and_time)
        invoke_checked(c, 1)
        got = api(rec.api, {"op": "working-set", "path": str(ws)})
        assert got["ok"] and got["pages"] > 100 and got["runs"] > 0, got
        c.close()
    finally:
        rec.stop()
    # The base snapshot's own working set: valid, but another snapshot's.
    other = tmp_path / "base-working-set"
    pre = Prestarted(vmm, tmp_path, "base", mem=256)
    try:
        pre.wait_ready()
        pre.restore(base_snapshot, rootfs_python)
        assert api(pre.api, {"op": "working-set", "path": str(other)})["ok"]
    finally:
        pre.stop()
    damaged = tmp_path / "damaged-working-set"
    data = bytearray(ws.read_bytes())
    data[40] ^= 0xFF
    damaged.write_bytes(bytes(data))

    bodies = []
    cases = [(ws, None), (ws, None), (damaged, "checksum"), (other, "another snapshot"),
             (tmp_path / "missing", "cannot open")]
    for i, (path, skipped) in enumerate(cases):
        p = Prestarted(vmm, tmp_path, f"ws{i}", mem=256)
        try:
            p.wait_ready()
            r = p.restore(function_snapshot, rootfs_python, working_set=str(path))
            assert r["state"] == "running", r
            if skipped:
                assert skipped in r["prefetch"]["skipped"], r
            else:
                assert r["prefetch"]["pages"] == got["pages"], (r, got)
            t0 = time.time()
            c = connect_once(p.uds, prepare=send_entropy_and_time)
            body = invoke_checked(c, 10 + i)
            t1 = time.time()
            c.close()
            # The guest's clock was set from the host's: within a second.
            assert t0 - 1 <= body["now"] <= t1 + 1, (t0, body["now"], t1)
            bodies.append(body)
        finally:
            p.stop()
        if skipped:
            assert "working set" in p.stderr_path.read_text() and \
                "not used" in p.stderr_path.read_text()
    assert len({b["rand"] for b in bodies}) == len(bodies), bodies  # fresh entropy each
    assert len({b["loaded_at"] for b in bodies}) == 1  # one snapshot, never re-imported
    # Only a restored machine has a working set.
    fresh = Prestarted(vmm, tmp_path, "fresh", mem=256)
    try:
        fresh.wait_ready()
        with ControlClient(fresh.api, timeout=60, connect_timeout=0) as cc:
            r = cc.call(op="working-set", path=str(tmp_path / "x"))
        assert not r.get("ok") and "restored" in r["error"], r
    finally:
        fresh.stop()
