#!/usr/bin/python3
"""The jail's cost on starting a pre-started kiln-vmm (docs/security.md "Jailer").

    bench/jail.py BUILD [PAIRS]

Starts `kiln-vmm --prestart --mem 128` PAIRS times unjailed and PAIRS times
through kiln-jailer (as kilnd does: a child in a new PID namespace execs
kiln-jailer, which builds the jail and execs kiln-vmm), interleaved, and
reports the time from the spawn to the first answer on the control socket
("spawn to ready"), and the time kilnd then spends removing the VM's jail
(kill, reap, cgroup removal). Needs root and /dev/kvm.
"""
import ctypes
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

CLONE_NEWPID = 0x20000000
libc = ctypes.CDLL(None, use_errno=True)


def ready(sock, deadline):
    while time.monotonic() < deadline:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            s.sendall(b'{"op":"state"}\n')
            if b'"ok":true' in s.recv(4096):
                s.close()
                return True
        except OSError:
            pass
        time.sleep(0.0005)
    return False


def spawn(argv, newpid):
    pid = os.fork()
    if pid == 0:
        if newpid and libc.unshare(CLONE_NEWPID) != 0:
            os._exit(126)
        if newpid:  # unshare(CLONE_NEWPID) applies to children: one more fork
            child = os.fork()
            if child:
                _, st = os.waitpid(child, 0)
                os._exit(os.waitstatus_to_exitcode(st) & 0xff)
        fd = os.open("/dev/null", os.O_RDWR)
        for i in (0, 1, 2):
            os.dup2(fd, i)
        os.execv(argv[0], argv)
    return pid


def one(build, work, i, jailed):
    d = Path(work) / f"vm-{i}"
    d.mkdir()
    vmm = str(Path(build, "kiln-vmm").resolve())
    if jailed:
        uid = 900500 + i % 100
        argv = [str(Path(build, "kiln-jailer").resolve()), "--id", f"b{i}", "--root",
                str(d / "root"), "--uid", str(uid), "--gid", str(uid), "--cgroup",
                f"kiln/bench-jail/b{i}", "--mem-max", "384", "--cpus", "2000",
                "--pids-max", "66", "--rlimit", "nofile=2048", "--", vmm, "--prestart",
                "--mem", "128", "--api-sock", "/vm/api.sock", "-q"]
        sock = str(d / "root/vm/api.sock")
    else:
        argv = [vmm, "--prestart", "--mem", "128", "--api-sock", str(d / "api.sock"), "-q"]
        sock = str(d / "api.sock")
    t0 = time.monotonic()
    pid = spawn(argv, jailed)
    ok = ready(sock, t0 + 60)
    t1 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    if jailed:  # the VM itself is the grandchild: kill its cgroup's processes
        for c in Path("/sys/fs/cgroup").glob(f"*/**/kiln/bench-jail/b{i}/cgroup.procs"):
            for p in c.read_text().split():
                try:
                    os.kill(int(p), signal.SIGKILL)
                except ProcessLookupError:
                    pass
    os.waitpid(pid, 0)
    t2 = time.monotonic()
    if jailed:
        for c in Path("/sys/fs/cgroup").glob(f"*/**/kiln/bench-jail/b{i}"):
            for _ in range(200):
                try:
                    c.rmdir()
                    break
                except OSError:
                    time.sleep(0.005)
    t3 = time.monotonic()
    shutil.rmtree(d, ignore_errors=True)
    if not ok:
        raise SystemExit(f"kiln-vmm did not answer ({'jailed' if jailed else 'unjailed'})")
    return (t1 - t0) * 1000, (t3 - t2) * 1000


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    pairs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    work = tempfile.mkdtemp(prefix="kiln-bench-jail-")
    res = {False: [], True: []}
    clean = []
    try:
        for i in range(pairs):
            for jailed in ((False, True) if i % 2 == 0 else (True, False)):
                ready_ms, clean_ms = one(build, work, 2 * i + jailed, jailed)
                res[jailed].append(ready_ms)
                if jailed:
                    clean.append(clean_ms)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for c in Path("/sys/fs/cgroup").glob("*/**/kiln/bench-jail"):
            try:
                c.rmdir()
            except OSError:
                pass
    for jailed in (False, True):
        v = sorted(res[jailed])
        print(f"{'jailed  ' if jailed else 'unjailed'} spawn to ready: median {statistics.median(v):.1f} ms, "
              f"p90 {v[int(len(v) * 0.9) - 1]:.1f} ms, min {v[0]:.1f} ms ({len(v)} runs)")
    print(f"jailed cgroup removal after the kill: median {statistics.median(clean):.1f} ms")


if __name__ == "__main__":
    main()
