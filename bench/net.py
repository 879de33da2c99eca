#!/usr/bin/python3
"""The "Network" benchmark group: guest-to-host TCP throughput and round
trips over kiln-vmm's virtio-net on a tap, beside the same transfer between
two network namespaces on the host (the floor) and QEMU microvm's
virtio-net on the same tap setup.

Usage: bench/net.py --build BUILD_DIR

Everything runs in network namespaces this group creates and removes (the
host's own network is never touched):
  floor: client and server in two namespaces joined by a veth pair;
  kiln:  the Python root filesystem's base snapshot taken with a network
         device (`--net none`, cached as KILN_CACHE/snapshots/<key>/net-base),
         restored with `--net tap=NAME` inside a namespace that holds the
         tap's host end and the server; the guest's address comes in a NET
         frame, the client is a Python handler loaded through the agent;
  QEMU:  qemu-system-x86_64 -M microvm booting the same kernel and root
         filesystem with -netdev tap (vhost=off: no /dev/vhost-net here) in
         a namespace of the same shape; kiln-init's command configures eth0
         and runs the same client (unless BENCH_QUICK; ~1.5 min to boot).
The client connects, does BENCH_NET_RTTS one-byte ping-pongs (TCP_NODELAY),
then sends BENCH_NET_MIB MiB and waits for the server's one-byte answer.
Prints a table and rewrites the "## Network" section of bench/RESULTS.md.

Needs root (namespaces, taps). Environment: BENCH_QUICK=1 (no QEMU, fewer
round trips, RESULTS.md left alone), BENCH_NET_MIB (default 2),
BENCH_NET_RTTS (default 50), BENCH_NET_RESTORES (default 20), BENCH_BOOT_TIMEOUT (default 1200), BENCH_KERNEL,
BENCH_RESULTS.
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

kc = bl.kc
NET = 0x0F
PORT = 5201

# The client: guest handler and host process alike. Prints/returns JSON.
CLIENT = r'''
import json, socket, sys, time

def run(host, port, mib, rtts):
    s = socket.create_connection((host, port), timeout=120)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"%d %d\n" % (rtts, mib))
    lat = []
    for _ in range(rtts):
        t = time.perf_counter_ns()
        s.sendall(b"x")
        if s.recv(1) != b"x":
            raise RuntimeError("bad echo")
        lat.append(time.perf_counter_ns() - t)
    buf = b"\0" * 65536
    t = time.perf_counter_ns()
    for _ in range(mib * 16):
        s.sendall(buf)
    if s.recv(1) != b"k":
        raise RuntimeError("no answer")
    secs = (time.perf_counter_ns() - t) / 1e9
    s.close()
    return {"lat_ns": lat, "secs": secs, "mib": mib}

def handle(event, context):
    return run(event["host"], event["port"], event["mib"], event["rtts"])

if __name__ == "__main__":
    print("KILNNET " + json.dumps(run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                      int(sys.argv[4]))), flush=True)
'''

SERVER = r'''
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(4)
print("ready", flush=True)
while True:
    c, _ = srv.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = c.makefile("rb")
    rtts, mib = (int(x) for x in f.readline().split())
    for _ in range(rtts):
        c.sendall(f.read(1))
    left = mib << 20
    while left:
        n = len(f.read1(min(left, 1 << 20)))
        if not n:
            break
        left -= n
    c.sendall(b"k")
    f.close()
    c.close()
'''


def sh(*args, check=True):
    return subprocess.run([str(a) for a in args], check=check, capture_output=True, text=True)


class Netns:
    """A network namespace of this group, removed by close()."""

    def __init__(self, tag):
        self.name = f"kilnb-{tag}-{uuid.uuid4().hex[:6]}"
        sh("ip", "netns", "add", self.name)
        sh("ip", "-n", self.name, "link", "set", "lo", "up")

    def run(self, *args, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.name, *map(str, args)], **kw)

    def close(self):
        sh("ip", "netns", "del", self.name, check=False)


def start_server(ns, ip, work):
    path = Path(work) / "server.py"
    path.write_text(SERVER)
    p = ns.run("/usr/bin/python3", path, ip, PORT, stdout=subprocess.PIPE,
               stderr=subprocess.DEVNULL)
    if p.stdout.readline().strip() != b"ready":
        raise bl.BenchError("the benchmark's TCP server did not start")
    return p


def summary(res):
    lat = sorted(res["lat_ns"])
    return {"mibps": res["mib"] / res["secs"] if res["secs"] > 0 else None,
            "rtt_p50": bl.percentile(lat, 50), "rtt_p99": bl.percentile(lat, 99)}


def floor(work, mib, rtts):
    """Client and server in two namespaces joined by a veth pair."""
    a, b = Netns("fa"), Netns("fb")
    srv = None
    try:
        ia, ib = "kbfa" + uuid.uuid4().hex[:4], "kbfb" + uuid.uuid4().hex[:4]
        sh("ip", "link", "add", ia, "netns", a.name, "type", "veth", "peer", "name", ib,
           "netns", b.name)
        sh("ip", "-n", a.name, "addr", "add", "10.206.0.1/30", "dev", ia)
        sh("ip", "-n", b.name, "addr", "add", "10.206.0.2/30", "dev", ib)
        sh("ip", "-n", a.name, "link", "set", ia, "up")
        sh("ip", "-n", b.name, "link", "set", ib, "up")
        srv = start_server(b, "10.206.0.2", work)
        path = Path(work) / "client.py"
        path.write_text(CLIENT)
        out = a.run("/usr/bin/python3", path, "10.206.0.2", PORT, mib, rtts,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        so, se = out.communicate(timeout=600)
        line = [ln for ln in so.decode().splitlines() if ln.startswith("KILNNET ")]
        if not line:
            raise bl.BenchError(f"floor client failed: {se.decode()[-500:]}")
        return summary(json.loads(line[0][8:]))
    finally:
        if srv:
            srv.kill()
            srv.wait()
        a.close()
        b.close()


def net_base(vmm, kernel, rootfs, build, work, timeout):
    """The base snapshot with a network device (booted with --net none)."""
    key = bl.snapshot_key(kernel, rootfs, build)
    cached = bl.CACHE / "snapshots" / key / "net-base"
    if (cached / "state").is_file():
        bl.log(f"network base snapshot: cached {cached}")
        return cached
    bl.log("network base snapshot: not cached; booting the Python rootfs (~1-2 min)")
    g = bl.Guest(vmm, work, "netbase",
                 ["--kernel", kernel, "--mem", bl.GUEST_MEM_MIB, "--disk", rootfs,
                  "--vsock-uds", Path(work) / "netbase.vsock", "--net", "none",
                  "--cmdline", bl.GUEST_CMDLINE + " kiln.netwarm=1"])
    try:
        g.wait_ready(timeout)
        with bl.connect_agent(g.uds) as c:
            c.hello()
        bl.api(g.api, {"op": "snapshot", "dir": str(Path(work) / "net-snap"), "diff": False})
    finally:
        g.stop()
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.parent / f"net-base.tmp{os.getpid()}"
    shutil.move(str(Path(work) / "net-snap"), tmp)
    try:
        os.rename(tmp, cached)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return cached


def kiln(vmm, base, rootfs, work, mib, rtts):
    """kiln-vmm restored with a tap in a namespace holding the server."""
    ns = Netns("k")
    srv = g = None
    tap = "ktb" + uuid.uuid4().hex[:6]
    try:
        # kiln-vmm creates the tap inside the namespace (tap=NAME).
        argv = [vmm, "--restore", base, "--disk", rootfs, "--vsock-uds",
                Path(work) / "knet.vsock", "--net", f"tap={tap}",
                "--api-sock", Path(work) / "knet.api", "--console", Path(work) / "knet.console"]
        g = ns.run(*argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=open(Path(work) / "knet.stderr", "wb"), start_new_session=True)
        for _ in range(300):
            if sh("ip", "-n", ns.name, "link", "show", tap, check=False).returncode == 0:
                break
            time.sleep(0.05)
        sh("ip", "-n", ns.name, "addr", "add", "10.205.0.1/30", "dev", tap)
        sh("ip", "-n", ns.name, "link", "set", tap, "up")
        srv = start_server(ns, "10.205.0.1", work)
        with bl.connect_agent(Path(work) / "knet.vsock") as c:
            bl.entropy_and_time(c)
            c.request(NET, b"10.205.0.2/30 10.205.0.1", kc.ACK)
            c.load({"client.py": CLIENT}, handler="client.handle")
            res = c.invoke(json.dumps({"host": "10.205.0.1", "port": PORT, "mib": mib,
                                       "rtts": rtts}).encode(), deadline_ms=600000)
            if not res.ok:
                raise bl.BenchError(f"kiln guest client failed: {res}")
            return summary(json.loads(res.body))
    finally:
        if g:
            g.kill()
            g.wait()
        if srv:
            srv.kill()
            srv.wait()
        ns.close()


# The QEMU guest's program, read by kiln-init's command from a raw second
# disk (/dev/vdb, NUL-padded): eth0's address by ioctl, then the client.
QEMU_PROG = r'''
import fcntl, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
def req(ip):
    return struct.pack("16sH2s4s8s", b"eth0", socket.AF_INET, b"", socket.inet_aton(ip), b"")
fcntl.ioctl(s, 0x8916, req("10.205.0.2"))        # SIOCSIFADDR
fcntl.ioctl(s, 0x891c, req("255.255.255.252"))   # SIOCSIFNETMASK
fcntl.ioctl(s, 0x8914, struct.pack("16sH14s", b"eth0", 0x41, b""))  # SIOCSIFFLAGS up|running
'''


def qemu(kernel, rootfs, work, mib, rtts, timeout):
    """QEMU microvm with virtio-net on a tap in a namespace holding the server."""
    real = bl.qemu_path()
    if not real:
        raise bl.BenchError("qemu-system-x86_64 not found")
    ns = Netns("q")
    srv = q = None
    tap = "kqb" + uuid.uuid4().hex[:6]
    try:
        sh("ip", "-n", ns.name, "tuntap", "add", "dev", tap, "mode", "tap", "vnet_hdr")
        sh("ip", "-n", ns.name, "addr", "add", "10.205.0.1/30", "dev", tap)
        sh("ip", "-n", ns.name, "link", "set", tap, "up")
        srv = start_server(ns, "10.205.0.1", work)
        prog = (QEMU_PROG + "import sys\n"
                f"sys.argv = ['c', '10.205.0.1', '{PORT}', '{mib}', '{rtts}']\n"
                + CLIENT).encode()
        disk = Path(work) / "prog.raw"
        disk.write_bytes(prog + b"\0" * (-len(prog) % 4096 or 4096))
        wrapper = Path(work) / "qemu-in-ns"
        wrapper.write_text(f"#!/bin/sh\nexec ip netns exec {ns.name} {real} \"$@\"\n")
        wrapper.chmod(0o755)
        cmd = ("/usr/bin/python3 -c "
               "\"exec(open('/dev/vdb','rb').read().rstrip(bytes(1)))\"")
        append = (f"{bl.kiln_guest_args()} root=/dev/vda ro rootfstype=ext4 "
                  "virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=512@0xfeb00c00:11 "
                  "virtio_mmio.device=512@0xfeb00a00:10 "
                  f"init=/sbin/kiln-init quiet -- {cmd}")
        extra = ["-device", "i8042",
                 "-drive", f"id=d0,file={rootfs},format=raw,if=none,readonly=on",
                 "-device", "virtio-blk-device,drive=d0",
                 "-drive", f"id=d1,file={disk},format=raw,if=none,readonly=on",
                 "-device", "virtio-blk-device,drive=d1",
                 "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no,vhost=off",
                 "-device", "virtio-net-device,netdev=n0"]
        bl.log("QEMU: booting with a tap (~1.5 min on nested KVM)")
        q = bl.QemuGuest(work, "qnet", kernel, append, extra=extra,
                         machine_opts=",auto-kernel-cmdline=off", qemu=str(wrapper))
        _, m = q.wait_console(rb"KILNNET (\{.*\})", timeout)
        return summary(json.loads(m.group(1)))
    finally:
        if q:
            q.stop()
        if srv:
            srv.kill()
            srv.wait()
        ns.close()


# Runs inside the namespace: opens the tap as kilnd does and execs kiln-vmm
# with it as fd 3 (argv[1]: the tap's name, the rest: kiln-vmm's argv).
TAP_EXEC = r'''
import fcntl, os, struct, sys
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", sys.argv[1].encode(), 0x0002 | 0x1000 | 0x4000))
if fd != 3:
    os.dup2(fd, 3)
os.set_inheritable(3, True)  # dup2(3, 3) would leave it close-on-exec
os.execv(sys.argv[2], sys.argv[2:])
'''


def restore_times(vmm, base, rootfs, work, n):
    """Restores into pre-started kiln-vmm processes (kilnd's pool): with
    "net":"none", and with a tap inherited as fd 3 ("net":"tap-fd=3").
    Returns {mode: [total_ms, ...]} from kiln-vmm's restore replies."""
    ns = Netns("r")
    wrapper = Path(work) / "tap-exec.py"
    wrapper.write_text(TAP_EXEC)
    out = {"none": [], "tap-fd=3": []}
    try:
        for i in range(n):
            for mode in out:
                api = Path(work) / f"r{i}.api"
                vs = Path(work) / f"r{i}.vsock"
                tap = f"ktr{i}"
                argv = [vmm, "--prestart", "--mem", bl.GUEST_MEM_MIB, "--vcpus", 1,
                        "--api-sock", api, "--console", Path(work) / f"r{i}.console"]
                if mode == "none":
                    p = ns.run(*argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
                else:
                    p = ns.run("/usr/bin/python3", wrapper, tap, *argv, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
                try:
                    for _ in range(600):
                        if api.exists():
                            break
                        time.sleep(0.01)
                    time.sleep(0.2)  # its VM and vCPUs created
                    reply, _ = bl.api(api, {"op": "restore", "dir": str(base),
                                            "disks": [str(rootfs)], "vsock_uds": str(vs),
                                            "net": mode})
                    out[mode].append(reply["total_ms"])
                finally:
                    p.kill()
                    p.wait()
                    for f in (api, vs):
                        try:
                            f.unlink()
                        except FileNotFoundError:
                            pass
    finally:
        ns.close()
    return out


def fmt(s):
    if not s:
        return ["-", "-", "-"]
    rate = s["mibps"]
    return [("-" if not rate else f"{rate:.1f} MiB/s" if rate >= 1 else
             f"{rate * 1024:.1f} KiB/s"),
            bl.fmt_dur(s["rtt_p50"]), bl.fmt_dur(s["rtt_p99"])]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: Network SKIPPED: needs root (network namespaces, taps)")
        return 0
    ok, why = bl.kvm_usable()
    if not ok:
        print(f"bench: Network SKIPPED: {why}")
        return 0
    bl.install_cleanup()
    build = Path(args.build)
    vmm = build / "kiln-vmm"
    kernel = bl.find_kernel()
    rootfs = bl.find_rootfs_python(build)
    quick = bl.quick()
    # ~40 KiB/s through a guest on nested KVM: 2 MiB is a minute there.
    mib = bl.env_int("BENCH_NET_MIB", 1 if quick else 2)
    rtts = bl.env_int("BENCH_NET_RTTS", 20 if quick else 50)
    timeout = bl.env_int("BENCH_BOOT_TIMEOUT", 1200)
    rows, problems = [], []
    base = None
    work2 = tempfile.mkdtemp(prefix="kiln-bench-netr-")
    with tempfile.TemporaryDirectory(prefix="kiln-bench-net-") as work:
        try:
            rows.append(["two network namespaces, veth (floor)"] + fmt(floor(work, mib, rtts)))
        except (bl.BenchError, subprocess.SubprocessError, OSError) as e:
            problems.append(f"floor: {e}")
        try:
            base = net_base(vmm, kernel, rootfs, build, work, timeout)
            rows.append(["kiln-vmm virtio-net, tap"] + fmt(kiln(vmm, base, rootfs, work, mib,
                                                                 rtts)))
        except (bl.BenchError, subprocess.SubprocessError, OSError, kc.KilnError) as e:
            problems.append(f"kiln: {e}")
        if not quick:
            try:
                rows.append(["QEMU microvm virtio-net, tap"] + fmt(qemu(kernel, rootfs, work,
                                                                     mib, rtts, timeout)))
            except (bl.BenchError, subprocess.SubprocessError, OSError) as e:
                problems.append(f"QEMU: {e}")
    restores = None
    try:
        if base:
            restores = restore_times(vmm, base, rootfs, work2, bl.env_int(
                "BENCH_NET_RESTORES", 5 if quick else 20))
    except (bl.BenchError, subprocess.SubprocessError, OSError) as e:
        problems.append(f"pool restores: {e}")
    head = ["guest -> host TCP", f"throughput ({mib} MiB)", f"RTT p50 ({rtts})", "RTT p99"]
    print(bl.text_rows(head, rows))
    rhead = ["restore into a pre-started kiln-vmm", "runs", "p50", "p99"]
    rrows = []
    if restores:
        for mode, v in restores.items():
            v = sorted(v)
            rrows.append([f'"net": "{mode}"', str(len(v)), f"{bl.percentile(v, 50):.3f} ms",
                          f"{bl.percentile(v, 99):.3f} ms"])
        print(bl.text_rows(rhead, rrows))
    shutil.rmtree(work2, ignore_errors=True)
    for p in problems:
        print(f"  not measured: {p}")
    if not quick:
        info = "\n".join(["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in
                                                bl.machine_info(bl.qemu_path())])
        body = (f"{datetime.date.today()}, `BENCH_NET_MIB={mib} BENCH_NET_RTTS={rtts} "
                "bench/net.py`\n\n" + info + "\n\n" + bl.md_rows(head, rows) + "\n"
                + "\n" + bl.md_rows(rhead, rrows) + "\n"
                + "".join(f"\n- not measured: {p}" for p in problems)
                + "\n\nCommand: `make bench` (bench/net.py). The client is the same Python "
                "program everywhere (one-byte ping-pongs with TCP_NODELAY, then "
                f"{mib} MiB in 64 KiB writes); in the guests it runs in user mode, "
                "natively, but every packet crosses the guest kernel's network stack, "
                "which this nested KVM emulates at ~1 MIPS. The restores are kiln-vmm's own "
                "`total_ms` (request to vCPUs running) into processes started with "
                "`--prestart`, the tap opened beforehand and inherited as fd 3, as kilnd's "
                "pool does.\n")
        bl.update_results(os.environ.get("BENCH_RESULTS", bl.ROOT / "bench/RESULTS.md"),
                          "## Network", body)
    return 1 if problems and not rows else 0


if __name__ == "__main__":
    sys.exit(main())
