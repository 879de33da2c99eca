#!/usr/bin/python3
"""The "Guest I/O" benchmark group: vsock, warm invocations and virtio-blk
reads in a real guest, beside a plain host process as the lower bound.

Usage: bench/io.py --build BUILD_DIR

The guest is the Python root filesystem with kiln-init's agent on vsock
port 1024, restored from the cached base snapshot (made once, as
tests/e2e/test_snapshots.py makes it, when missing). The host side is
build/kiln-init run as an ordinary process with KILN_AGENT_LISTEN=unix:PATH.

Measures:
  1. PING round trips, 64 B and 1 MiB payloads (p50/p99);
  2. warm invocations of a trivial Lambda-style Python handler (p50/p99);
  3. sequential reads in the guest, timed by the guest (/proc/uptime around
     a `dd`, minus the cost of starting dd): a file of the root disk
     (/usr/bin/python3.11) in the restored VM, cold then warm; and, unless
     BENCH_QUICK, a 64 MiB random second disk (/dev/vdb) in a VM booted
     with two disks (~1-2 min), cold then warm.
Prints a table and rewrites the "## Guest I/O" section of bench/RESULTS.md.

Environment: BENCH_QUICK=1 (fewer runs, no two-disk boot, RESULTS.md left
alone), BENCH_IO_PINGS (default 200), BENCH_IO_BIG_PINGS (default 5),
BENCH_IO_INVOKES (default 200), BENCH_BOOT_TIMEOUT (default 1200),
BENCH_KERNEL, BENCH_RESULTS.
"""
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

kc = bl.kc
HANDLER = "def handle(event, context):\n    return event\n"
ROOT_FILE = "/usr/bin/python3.11"  # the python rootfs's largest file (6.5 MiB)
DATA_MIB = 64
# Timed by the guest: dd's start-up cost (count=0) is measured and subtracted.
READ_SH = '''F="$1"
read a _ < /proc/uptime
dd if="$F" of=/dev/null bs=1M count=0 2>/dev/null
read b _ < /proc/uptime
dd if="$F" of=/dev/null bs=1M 2>/dev/null
read c _ < /proc/uptime
echo "$a $b $c"
'''


def read_in_guest(c, path):
    """Loads the exec-mode read script for `path` and runs it once; returns
    (read s, dd start-up s, invocation wall ns)."""
    t0 = time.perf_counter_ns()
    res = c.invoke(b"", deadline_ms=600000)
    wall = time.perf_counter_ns() - t0
    if not res.ok:
        raise bl.BenchError(f"read of {path} in the guest failed: {res}")
    a, b, cc = (float(x) for x in res.body.split())
    return max(0.0, (cc - b) - (b - a)), b - a, wall


def load_reader(c, path):
    c.load({"read.sh": READ_SH}, runtime="sh", mode="exec",
           handler=f"sh read.sh {shlex.quote(path)}")


def host_read(path, cold):
    """Seconds to read path sequentially on the host (cold: page cache
    dropped for that file first with posix_fadvise DONTNEED)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if cold:  # dirty pages (a file just written) cannot be dropped: flush first
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        t0 = time.perf_counter_ns()
        while os.read(fd, 1 << 20):
            pass
        return (time.perf_counter_ns() - t0) / 1e9
    finally:
        os.close(fd)


def mibps(size, secs):
    if secs is None:
        return "-"
    if secs <= 0:
        return f"> {size / bl.MIB / 0.01:.0f} MiB/s (< 10 ms)"
    return f"{size / bl.MIB / secs:.1f} MiB/s"


# QEMU: the same dd as the guest's command (kiln-init runs what follows ` -- `).
QEMU_DD = ('/bin/sh -c "read a _ < /proc/uptime; dd if=/dev/vdb of=/dev/null bs=1M count=0 '
           '2>/dev/null; read b _ < /proc/uptime; dd if=/dev/vdb of=/dev/null bs=1M 2>/dev/null; '
           'read c _ < /proc/uptime; dd if=/dev/vdb of=/dev/null bs=1M 2>/dev/null; '
           'read d _ < /proc/uptime; echo KILNDD $a $b $c $d"')


def qemu_vdb(R, work, kernel, rootfs, data, timeout, problems):
    """Boots QEMU microvm with the rootfs and the data disk as virtio-blk
    (microvm's transports are filled from the last one down: 0xe00 then
    0xc00) and reads /dev/vdb twice with dd as kiln-init's command."""
    if not bl.qemu_path():
        problems.append("QEMU virtio-blk: qemu-system-x86_64 not found")
        return
    append = (f"{bl.kiln_guest_args()} root=/dev/vda ro rootfstype=ext4 "
              "virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=512@0xfeb00c00:11 "
              f"init=/sbin/kiln-init quiet -- {QEMU_DD}")
    extra = ["-device", "i8042",
             "-drive", f"id=d0,file={rootfs},format=raw,if=none,readonly=on",
             "-device", "virtio-blk-device,drive=d0",
             "-drive", f"id=d1,file={data},format=raw,if=none,readonly=on",
             "-device", "virtio-blk-device,drive=d1"]
    bl.log("QEMU: booting with the same two disks (~1-2 min on nested KVM)")
    # auto-kernel-cmdline=off: microvm would append its virtio_mmio.device=
    # arguments after ` -- `, where the kernel no longer reads them.
    q = bl.QemuGuest(work, "qvdb", kernel, append, extra=extra,
                     machine_opts=",auto-kernel-cmdline=off")
    try:
        R["q_vdb_cmd"] = q.argv
        _, m = q.wait_console(rb"KILNDD ([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+)", timeout)
        a, b, c, d = (float(x) for x in m.groups())
        R["q_vdb"] = [(max(0.0, (c - b) - (b - a)), b - a), (max(0.0, (d - c) - (b - a)), b - a)]
    except bl.BenchError as e:
        problems.append(f"QEMU virtio-blk: {e}")
    finally:
        q.stop()


def run(args):
    ok, why = bl.kvm_usable()
    if not ok:
        print(f"bench: Guest I/O SKIPPED: {why}")
        return 0
    quick = bl.quick()
    build = Path(args.build)
    vmm = build / "kiln-vmm"
    pings = bl.env_int("BENCH_IO_PINGS", 20 if quick else 200)
    big_pings = bl.env_int("BENCH_IO_BIG_PINGS", 2 if quick else 5)
    invokes = bl.env_int("BENCH_IO_INVOKES", 20 if quick else 200)
    boot_timeout = bl.env_int("BENCH_BOOT_TIMEOUT", 1200)
    results_path = Path(os.environ.get("BENCH_RESULTS", bl.ROOT / "bench" / "RESULTS.md"))
    kernel = bl.find_kernel()
    rootfs = bl.find_rootfs_python(build)
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-io-"))
    load_before = bl.load_note()
    problems = []
    R = {}

    # ---- host lower bound -------------------------------------------------
    bl.log("host: kiln-init on a unix socket")
    host = bl.HostAgent(build, work / "host")
    try:
        c = host.client()
        c.hello()
        c.ping(b"x" * 64)
        R["h_ping64"] = bl.timed(lambda: c.ping(b"x" * 64), pings)
        big = os.urandom(1 << 20)
        c.ping(big)
        R["h_ping1m"] = bl.timed(lambda: c.ping(big), max(big_pings, 20))
        c.load({"handler.py": HANDLER}, runtime="python", mode="server",
               handler="handler.handle")
        ev = json.dumps({"n": 1})
        c.invoke(ev)
        R["h_inv"] = bl.timed(lambda: c.invoke(ev), invokes)
        c.close()
    finally:
        host.stop()

    # ---- guest, restored from the base snapshot -----------------------------
    base, created = bl.base_snapshot(vmm, kernel, rootfs, build, work, boot_timeout)
    g = bl.Guest.restore(vmm, base, [rootfs], work, "io")
    try:
        g.wait_path(g.uds)
        c = bl.connect_agent(g.uds, prepare=bl.entropy_and_time)
        c.ping(b"x" * 64)
        bl.log(f"guest: {pings} x PING 64 B")
        R["g_ping64"] = bl.timed(lambda: c.ping(b"x" * 64), pings)
        bl.log(f"guest: {big_pings} x PING 1 MiB (seconds each on nested KVM)")
        R["g_ping1m"] = bl.timed(lambda: c.ping(big), big_pings)
        bl.log(f"guest: read {ROOT_FILE} (root disk) cold, then warm")
        load_reader(c, ROOT_FILE)
        R["g_file"] = [read_in_guest(c, ROOT_FILE) for _ in range(2)]
        bl.log("guest: LOAD the Python handler (the import takes a while on nested KVM)")
        t0 = time.monotonic_ns()
        info = c.load({"handler.py": HANDLER}, runtime="python", mode="server",
                      handler="handler.handle")
        R["g_load_ns"] = time.monotonic_ns() - t0
        R["g_init_us"] = info["init_us"]
        c.invoke(ev, deadline_ms=600000)
        bl.log(f"guest: {invokes} warm invocations")
        R["g_inv"] = bl.timed(lambda: c.invoke(ev, deadline_ms=600000), invokes)
        c.close()
    except (bl.BenchError, kc.KilnError, kc.ConnectionClosed, OSError, ValueError) as e:
        problems.append(f"restored guest: {e}")
    finally:
        g.stop()

    # host reads of the same file (extracted from the image with debugfs)
    hostfile = work / "python3.11"
    subprocess.run(["debugfs", "-R", f"dump {ROOT_FILE} {hostfile}", str(rootfs)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    file_size = hostfile.stat().st_size if hostfile.exists() else None
    if file_size:
        R["h_file"] = [host_read(hostfile, True), host_read(hostfile, False)]

    # ---- second disk, fresh boot (slow) -----------------------------------
    data = work / "data.img"
    if quick:
        bl.log("BENCH_QUICK: two-disk boot for /dev/vdb skipped")
    else:
        with open(data, "wb") as f:
            for _ in range(DATA_MIB):
                f.write(os.urandom(bl.MIB))
        bl.log("guest: booting with a second 64 MiB disk (~1-2 min on nested KVM)")
        g = bl.Guest.boot(vmm, kernel, [rootfs, data], work, "vdb")
        try:
            R["vdb_boot_ns"] = g.wait_ready(boot_timeout)
            c = bl.connect_agent(g.uds)
            load_reader(c, "/dev/vdb")
            R["g_vdb"] = [read_in_guest(c, "/dev/vdb") for _ in range(2)]
            c.close()
        except (bl.BenchError, kc.KilnError, kc.ConnectionClosed, OSError, ValueError) as e:
            problems.append(f"two-disk guest: {e}")
        finally:
            g.stop()
        R["h_vdb"] = [host_read(data, True), host_read(data, False)]
        qemu_vdb(R, work, kernel, rootfs, data, boot_timeout, problems)

    # ---- report ---------------------------------------------------------------
    def gf(key, i, j=0):
        v = R.get(key)
        return v[i][j] if v else None

    rows = [
        (f"vsock PING 64 B round trip, p50 / p99 ({pings} runs)",
         bl.p50_p99(R.get("g_ping64")), bl.p50_p99(R.get("h_ping64")), "not measured (1)"),
        (f"vsock PING 1 MiB round trip, p50 / p99 ({big_pings} guest runs)",
         bl.p50_p99(R.get("g_ping1m")), bl.p50_p99(R.get("h_ping1m")), "not measured (1)"),
        (f"warm Python invocation, p50 / p99 ({invokes} runs)",
         bl.p50_p99(R.get("g_inv")), bl.p50_p99(R.get("h_inv")), "not measured (1)"),
        ("Python handler LOAD (import) in the guest, once",
         bl.fmt_dur(R.get("g_load_ns")), "-", "-"),
    ]
    if file_size:
        rows += [
            (f"read `{ROOT_FILE}` ({file_size / bl.MIB:.1f} MiB, root disk), cold",
             mibps(file_size, gf("g_file", 0)),
             mibps(file_size, R["h_file"][0]), "not measured (2)"),
            ("  same file again (page cache warm)",
             mibps(file_size, gf("g_file", 1)), mibps(file_size, R["h_file"][1]), "not measured (2)"),
        ]
    if "h_vdb" in R:
        q0 = mibps(DATA_MIB * bl.MIB, gf("q_vdb", 0)) if R.get("q_vdb") else "failed"
        q1 = mibps(DATA_MIB * bl.MIB, gf("q_vdb", 1)) if R.get("q_vdb") else "failed"
        rows += [
            (f"dd `/dev/vdb` ({DATA_MIB} MiB random, 2nd disk), cold",
             mibps(DATA_MIB * bl.MIB, gf("g_vdb", 0)), mibps(DATA_MIB * bl.MIB, R["h_vdb"][0]),
             q0),
            ("  same disk again (page cache warm)",
             mibps(DATA_MIB * bl.MIB, gf("g_vdb", 1)), mibps(DATA_MIB * bl.MIB, R["h_vdb"][1]),
             q1),
        ]
    else:
        rows.append((f"dd `/dev/vdb` ({DATA_MIB} MiB, 2nd disk)", "skipped (BENCH_QUICK)",
                     "-", "-"))
    head = ("Measurement", "kiln-vmm guest", "host process", "QEMU microvm")
    print()
    print("Guest I/O: kiln-vmm guest (restored Python rootfs, 256 MiB, 1 vCPU) "
          "vs kiln-init as a host process")
    print(bl.text_rows(head, [(r[0].replace("`", ""),) + r[1:] for r in rows]))
    dd_starts = [x[1] for k in ("g_file", "g_vdb", "q_vdb") for x in R.get(k, [])[:1]]
    for p in problems:
        print(f"\nproblem: {p}")
    shutil.rmtree(work, ignore_errors=True)
    if quick:
        print(f"\n(BENCH_QUICK: {results_path} not updated)")
        return 1 if problems else 0

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["## Guest I/O", "",
             f"Last run: {now}, `make bench`; {load_before} at the start, "
             f"{bl.load_note()} at the end.", "",
             "| Machine | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in bl.machine_info(bl.qemu_path())]
    lines += [f"| Guest | `{kernel}`, `{rootfs}` ({bl.GUEST_MEM_MIB} MiB, 1 vCPU), "
              f"restored from `{base}`{' (made in this run)' if created else ''} |", "",
              bl.md_rows(head, rows), ""]
    if problems:
        lines += ["**Problems in this run:**", ""] + [
            "- " + p.replace("\n", "\n  ") for p in problems] + [""]
    lines += [
        "(1) QEMU 7.2's microvm can do vsock only through vhost-vsock, and this machine has "
        "no `/dev/vhost-vsock` (nested kvm_pvm): no QEMU vsock or agent numbers.",
        "",
        "(2) The root-disk file read runs in the restored guest; QEMU cannot restore kiln's "
        "snapshot, and a QEMU boot costs ~1 min here, so QEMU is measured on the second-disk "
        "row only.",
        "",
        "Method (details in [docs/benchmarks.md](../docs/benchmarks.md)):",
        "",
        "- *Host process*: `build/kiln-init` run on the host with "
        "`KILN_AGENT_LISTEN=unix:PATH`, the handler in the host's `/usr/bin/python3`; the "
        "same client (`tests/kilnclient.py`) as for the guest.",
        "- *Guest*: a new `kiln-vmm --restore` of the cached base snapshot; the client "
        "connects through the hybrid vsock socket (`CONNECT 1024`). Round trips are timed "
        "by the client (`perf_counter_ns`) around one request and its reply; p99 is "
        "nearest-rank.",
        "- *Reads*: an exec-mode `sh` function runs `dd if=F of=/dev/null bs=1M` between "
        "two `read t _ < /proc/uptime` (shell builtins, 10 ms resolution); the time of a "
        "`dd ... count=0` (starting dd, seconds on nested KVM: "
        + (", ".join(f"{s:.2f} s" for s in dd_starts) or "-") +
        ") is subtracted. Cold = first read in that VM (the guest's page cache does not "
        "hold it; the host's page cache may hold the disk image); warm = the second read. "
        "The host reads the same bytes with `read()` in 1 MiB blocks, cold after "
        "`posix_fadvise(DONTNEED)`.",
    ]
    if "vdb_boot_ns" in R:
        lines.append(f"- The two-disk guest was booted (`--disk rootfs --disk data.img`), "
                     f"ready after {R['vdb_boot_ns'] / 1e9:.0f} s.")
    if R.get("q_vdb_cmd"):
        lines += ["", "QEMU command line (virtio-blk):", "", "```",
                  " ".join(shlex.quote(str(a)) for a in R["q_vdb_cmd"]), "```"]
    bl.update_results(results_path, "## Guest I/O", "\n".join(lines) + "\n")
    print(f"\nwritten: {results_path} (section \"## Guest I/O\")")
    return 1 if problems else 0


def main():
    return bl.group_main(run, __doc__)


if __name__ == "__main__":
    sys.exit(main())
