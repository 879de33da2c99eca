#!/usr/bin/python3
"""What kiln-vmm's seccomp filters cost on the restore path.

Usage: bench/seccomp.py --on BUILD --off BUILD_NOSECCOMP [--runs N] [--snapshot DIR]

`--on` is a normal build, `--off` one made with `make SECCOMP=0` (its
kiln-vmm says "seccomp filters are off"). Both restore the same snapshot
(the cached base snapshot of the `--on` build, unless --snapshot names
one): a kiln-vmm is pre-started (`--prestart`, every thread filtered by
the time its control socket answers), then, timed:

  restore   {"op":"restore"} round trip on the control socket, and the
            reply's own total_ms (devices, memory mapping, KVM state);
  answer    restore + vsock CONNECT + HELLO + ENTROPY + TIME: the guest's
            agent answering, as kilnd's first call after a restore.

Runs alternate on/off (the order flips every run) so that the load other
processes put on the machine falls on both alike. Prints medians and p90s.
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

ROOT = bl.ROOT
from kilnvmm import ControlClient  # noqa: E402 - benchlib puts tests/ on sys.path


def base_snapshot(build):
    """The base snapshot tests/e2e/snaputil.py cached for this build."""
    rootfs = build / "rootfs-python.ext4"
    snap = bl.CACHE / "snapshots" / bl.snapshot_key(bl.find_kernel(), rootfs, build) / "base"
    if not (snap / "state").is_file():
        sys.exit(f"no base snapshot for {build} in {snap.parent}: run "
                 f"KILN_BUILD={build.name} pytest tests/e2e/test_snapshots.py once")
    return snap


def connect_agent(uds):
    """HELLO, ENTROPY and TIME, as kilnd's first call after a restore."""
    return bl.connect_agent(uds, timeout=30.0, prepare=bl.entropy_and_time)


def one(vmm, snap, rootfs, work, tag):
    api, uds = work / f"{tag}.api", work / f"{tag}.vsock"
    err = open(work / f"{tag}.stderr", "wb")
    p = subprocess.Popen([str(vmm), "--prestart", "--mem", "256", "--api-sock", str(api),
                          "--console", str(work / f"{tag}.console")],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    try:
        with ControlClient(api, timeout=60, connect_timeout=30) as ctl:
            ctl.ok(op="state")  # served by the main thread: every filter is on
            t0 = time.monotonic()
            r = ctl.ok(op="restore", dir=str(snap), disks=[str(rootfs)], vsock_uds=str(uds))
            t1 = time.monotonic()
            c = connect_agent(uds)
            t2 = time.monotonic()
            c.close()
            ctl.ok(op="stop")
        p.wait(timeout=30)
        return (t1 - t0) * 1e3, r["total_ms"], (t2 - t0) * 1e3
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def summary(xs):
    xs = sorted(xs)
    return statistics.median(xs), xs[min(len(xs) - 1, int(len(xs) * 0.9))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--on", type=Path, default=ROOT / "build")
    ap.add_argument("--off", type=Path, default=ROOT / "build-noseccomp")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--snapshot", type=Path)
    a = ap.parse_args()
    snap = a.snapshot or base_snapshot(a.on)
    rootfs = a.on / "rootfs-python.ext4"
    res = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="kiln-bench-seccomp-") as tmp:
        work = Path(tmp)
        for i in range(a.runs):
            order = ("on", "off") if i % 2 == 0 else ("off", "on")
            for which in order:
                build = a.on if which == "on" else a.off
                res[which].append(one(build / "kiln-vmm", snap, rootfs, work, f"{which}{i}"))
    print(f"seccomp on ({a.on}) vs off ({a.off}), {a.runs} pre-started restores each of {snap}")
    print(f"{'':24}{'on: median':>12}{'p90':>9}{'off: median':>13}{'p90':>9}")
    for k, name in enumerate(("restore round trip ms", "restore total_ms", "restore -> agent ms")):
        on = summary([r[k] for r in res["on"]])
        off = summary([r[k] for r in res["off"]])
        print(f"{name:24}{on[0]:12.3f}{on[1]:9.3f}{off[0]:13.3f}{off[1]:9.3f}")


if __name__ == "__main__":
    main()
