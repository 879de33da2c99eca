"""The first vsock connection after a restore works, every time.

Each cycle restores the Python function snapshot (in a new kiln-vmm, or into
a pre-started one, as kilnd does on a cold call) and makes exactly one
`CONNECT 1024` as soon as it can: for a new process the moment the vsock
socket exists, for a pre-started one the moment the restore reply is read.
Then HELLO, ENTROPY, TIME and INVOKE on that connection, with no retry
anywhere. Both snapshots (base and function) were taken right after a host
connection to the agent was closed, so the guest may still hold that
socket: the restore must end it (docs/vsock.md, "Snapshots") without
disturbing the new one.

KILN_RESTORE_CYCLES (default 40) sets the number of cycles, half of each
kind; KILN_RESTORE_WORKERS (default 1) how many run at once. Run the long
version by hand, e.g.
  KILN_RESTORE_CYCLES=1000 KILN_BUILD=build python3 -m pytest -s -q \\
      tests/e2e/test_restore_connect.py
"""
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from snaputil import (Prestarted, Restored, connect_once, invoke_checked, make_base_snapshot,
                      make_function_snapshot, send_entropy_and_time)

CYCLES = int(os.environ.get("KILN_RESTORE_CYCLES", "40"))
WORKERS = int(os.environ.get("KILN_RESTORE_WORKERS", "1"))


@pytest.fixture(scope="module")
def base_snapshot(kvm, vmm, kernel, rootfs_python, tmp_path_factory):
    return make_base_snapshot(vmm, kernel, rootfs_python, tmp_path_factory)


@pytest.fixture(scope="module")
def function_snapshot(vmm, base_snapshot, rootfs_python, tmp_path_factory):
    return make_function_snapshot(vmm, base_snapshot, rootfs_python, tmp_path_factory)


def cycle_new_process(vmm, snap, rootfs, workdir, i):
    """Returns (ms from the vsock socket to OK, ms to the invocation's answer)."""
    r = Restored(vmm, snap, rootfs, workdir, f"n{i}")
    try:
        r.wait_socket()
        t0 = time.monotonic()
        c = connect_once(r.uds)
        t1 = time.monotonic()
        send_entropy_and_time(c)
        invoke_checked(c, i)
        t2 = time.monotonic()
        c.close()
    finally:
        r.stop()
    return (t1 - t0) * 1e3, (t2 - t0) * 1e3


def cycle_prestarted(vmm, snap, rootfs, workdir, i):
    """Returns (ms from the restore reply to OK, ms to the invocation's answer)."""
    p = Prestarted(vmm, workdir, f"p{i}")
    try:
        p.wait_ready()
        assert p.restore(snap, rootfs)["state"] == "running"
        t0 = time.monotonic()
        c = connect_once(p.uds)
        t1 = time.monotonic()
        send_entropy_and_time(c)
        invoke_checked(c, i)
        t2 = time.monotonic()
        c.close()
    finally:
        p.stop()
    return (t1 - t0) * 1e3, (t2 - t0) * 1e3


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


@pytest.mark.parametrize("kind", ["new_process", "prestarted"])
def test_first_connect_after_restore(kind, vmm, function_snapshot, rootfs_python, tmp_path):
    n = max(1, CYCLES // 2)
    fn = cycle_new_process if kind == "new_process" else cycle_prestarted
    failures, times = [], []

    def one(i):
        try:
            times.append(fn(vmm, function_snapshot, rootfs_python, tmp_path, i))
        except Exception as e:  # noqa: BLE001 - counted and reported below
            failures.append((i, repr(e)))

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(one, range(n)))
    if times:
        ok = [t[0] for t in times]
        inv = [t[1] for t in times]
        print(f"\n{kind}: {len(times)}/{n} cycles passed with one CONNECT each; "
              f"to OK p50 {statistics.median(ok):.1f} ms, p99 {pct(ok, 99):.1f} ms, "
              f"max {max(ok):.1f} ms; to the INVOKE answer p50 {statistics.median(inv):.1f} "
              f"ms, p99 {pct(inv, 99):.1f} ms")
    assert not failures, f"{len(failures)} of {n} cycles failed: {failures[:10]}"
