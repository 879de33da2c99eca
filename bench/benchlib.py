"""Shared pieces of kiln's benchmark harness (stdlib only).

- Vmm: one VMM process, spawned with a monotonic timestamp, whose stdout is
  watched for a first byte or a line; every process it starts is killed on
  error, Ctrl-C or exit (see kill_all).
- smaps_memory: resident memory of a process, split into guest RAM and the
  rest.
- machine_info: a description of this host for RESULTS.md.
- update_results: replaces one "## Section" of bench/RESULTS.md, keeping the
  others.
- percentile/median helpers and formatting.
"""
import atexit
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024

# Every Vmm still running; kill_all() ends them.
_live = set()


class BenchError(Exception):
    """A benchmark could not run (missing tool, failed build, ...)."""


def log(msg):
    """Progress on stderr, so stdout holds only the results table."""
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def kill_all():
    """Kills (SIGKILL) and reaps every VMM process this harness started."""
    for vmm in list(_live):
        vmm.kill()
    for g in list(_guests):
        g.proc.kill()
        g.stop(timeout=5)


def _on_signal(signum, _frame):
    kill_all()
    raise KeyboardInterrupt(f"signal {signum}")


def install_cleanup():
    """Kill our VMMs on Ctrl-C, SIGTERM, SIGHUP and at interpreter exit."""
    atexit.register(kill_all)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)


class Vmm:
    """One VMM process. t0_ns is taken just before the spawn; stdout is a
    pipe read here, stderr goes to a temporary file (see stderr_tail)."""

    def __init__(self, name, argv):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.out = bytearray()
        self.first_byte_ns = None
        self.last_read_ns = None
        self.exit_ns = None
        self._err = tempfile.TemporaryFile(prefix="kiln-bench-")
        self.t0_ns = time.monotonic_ns()
        # A new session: the terminal's Ctrl-C reaches only us, and we kill
        # the VMM ourselves. stdin is a pipe kept open (a console that
        # never sends anything), not /dev/null (an immediate EOF).
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err,
                                     bufsize=0, start_new_session=True)
        _live.add(self)
        self._fd = self.proc.stdout.fileno()
        self._eof = False

    @property
    def pid(self):
        return self.proc.pid

    def _read_some(self, deadline_ns):
        """Waits until deadline for output; returns False at EOF or timeout."""
        if self._eof:
            return False
        left = (deadline_ns - time.monotonic_ns()) / 1e9
        if left <= 0:
            return False
        ready, _, _ = select.select([self._fd], [], [], left)
        if not ready:
            return False
        data = os.read(self._fd, 65536)
        now = time.monotonic_ns()
        if not data:
            self._eof = True
            return False
        if self.first_byte_ns is None:
            self.first_byte_ns = now
        self.out += data
        self.last_read_ns = now
        return True

    def wait_first_byte(self, timeout_s):
        """Returns ns from spawn to the first stdout byte, or None."""
        deadline = time.monotonic_ns() + int(timeout_s * 1e9)
        while self.first_byte_ns is None:
            if not self._read_some(deadline):
                return None
        return self.first_byte_ns - self.t0_ns

    def wait_line(self, regex, timeout_s):
        """Waits for a complete stdout line matching regex (bytes pattern).
        Returns (ns from spawn to the read that completed it, match) or
        (None, None) at timeout or EOF."""
        pat = re.compile(regex)
        deadline = time.monotonic_ns() + int(timeout_s * 1e9)
        scanned = 0
        while True:
            end = self.out.rfind(b"\n")
            if end >= scanned:
                for line in bytes(self.out[scanned:end]).split(b"\n"):
                    m = pat.search(line)
                    if m:
                        return self.last_read_ns - self.t0_ns, m
                scanned = end + 1
            if not self._read_some(deadline):
                return None, None

    def wait_exit(self, timeout_s):
        """Drains stdout until the process exits. Returns its exit status
        (negative: killed by that signal) or None at timeout."""
        deadline = time.monotonic_ns() + int(timeout_s * 1e9)
        while self._read_some(deadline):
            pass
        left = max(0.0, (deadline - time.monotonic_ns()) / 1e9)
        try:
            rc = self.proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            return None
        if self.exit_ns is None:
            self.exit_ns = time.monotonic_ns()
        self._close()
        return rc

    def kill(self):
        """SIGKILL (if still running) and reap. Safe to call twice."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._close()

    def _close(self):
        _live.discard(self)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def stderr_tail(self, lines=15):
        """The last lines of the VMM's stderr and stdout, for error messages."""
        self._err.seek(0)
        err = self._err.read().decode(errors="replace").splitlines()[-lines:]
        out = bytes(self.out).decode(errors="replace").splitlines()[-lines:]
        text = ""
        if err:
            text += "  stderr:\n" + "\n".join("    " + l for l in err) + "\n"
        if out:
            text += "  stdout:\n" + "\n".join("    " + l for l in out) + "\n"
        return text or "  (no output)\n"


_SMAPS_HEADER = re.compile(
    r"^([0-9a-f]+)-([0-9a-f]+) (\S+) (\S+) (\S+) (\d+)\s*(.*)$")


def smaps_memory(pid, guest_bytes):
    """Reads /proc/PID/smaps. Returns a dict with total_rss, guest_rss,
    beyond (= total - guest, bytes) and guest_map (the mapping taken as
    guest RAM: the anonymous mapping whose size is guest_bytes, or at most
    4 MiB more for alignment, with the most resident pages), or None for
    guest_rss/guest_map when there is no such mapping."""
    maps = []
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = _SMAPS_HEADER.match(line)
            if m:
                start, end = int(m.group(1), 16), int(m.group(2), 16)
                cur = {"start": start, "size": end - start, "perms": m.group(3),
                       "inode": int(m.group(6)), "path": m.group(7).strip(), "rss": 0}
                maps.append(cur)
            elif line.startswith("Rss:") and cur is not None:
                cur["rss"] = int(line.split()[1]) * 1024
    total = sum(m["rss"] for m in maps)
    candidates = [m for m in maps
                  if m["inode"] == 0 and not m["path"].startswith(("/", "[")) and
                  guest_bytes <= m["size"] <= guest_bytes + 4 * MIB]
    guest = max(candidates, key=lambda m: m["rss"], default=None)
    return {
        "total_rss": total,
        "guest_rss": guest["rss"] if guest else None,
        "beyond": total - guest["rss"] if guest else None,
        "guest_map": guest,
    }


def other_vmms():
    """Returns ["PID NAME", ...] of VMM processes (qemu-system-*, kiln-vmm)
    this harness did not start: they share the CPUs and skew timings."""
    ours = {v.pid for v in _live} | {g.pid for g in _guests}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in ours:
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm.startswith("qemu-system") or comm == "kiln-vmm":
            found.append(f"{entry} {comm}")
    return found


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(1, -(-len(s) * p // 100))  # ceil(n * p / 100), at least 1
    return s[int(k) - 1]


def median(values):
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def nested_kvm():
    """True on this project's nested, software-assisted KVM (kvm_pvm)."""
    return os.path.exists("/sys/module/kvm_pvm")


def kvm_usable():
    """Returns (True, "") or (False, why)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError as e:
        return False, f"/dev/kvm is not usable ({e.strerror})"
    os.close(fd)
    return True, ""


def qemu_path():
    return shutil.which("qemu-system-x86_64")


def qemu_version(qemu):
    try:
        out = subprocess.run([qemu, "--version"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    m = re.search(r"version (\S+)", out)
    return m.group(1) if m else out.strip().splitlines()[0] if out.strip() else "unknown"


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _mem_total():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _git_head():
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def machine_info(qemu=None):
    """A list of (label, value) describing this host, for RESULTS.md."""
    info = [
        ("CPU", f"{_cpu_model()}, {os.cpu_count()} cores"),
        ("Memory", _mem_total()),
        ("Host kernel", os.uname().release),
        ("KVM", "nested KVM (kvm_pvm): guest kernel code is emulated"
         if nested_kvm() else "hardware KVM"),
    ]
    if qemu:
        info.append(("QEMU", qemu_version(qemu)))
    info.append(("kiln commit", _git_head()))
    return info


def update_results(path, heading, body):
    """Replaces the section that starts with the line `heading` (a "## "
    heading) up to the next "## " heading outside a code fence, or appends
    it; other sections are kept as they are."""
    path = Path(path)
    header = ("# kiln benchmark results\n\n"
              "Written by `make bench` (`bench/run`). One section per benchmark group; "
              "each run of a group replaces only its own section. See "
              "[docs/benchmarks.md](../docs/benchmarks.md) for what is measured and "
              "how to read the numbers.\n")
    text = path.read_text() if path.exists() else header
    lines = text.splitlines(keepends=True)
    section = body.rstrip("\n") + "\n"
    if not section.startswith(heading + "\n"):
        section = heading + "\n\n" + section
    start = end = None
    fence = False
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fence = not fence
        if fence:
            continue
        if start is None and line.rstrip("\n") == heading:
            start = i
        elif start is not None and line.startswith("## "):
            end = i
            break
    if start is None:
        if text and not text.endswith("\n"):
            text += "\n"
        new = text + "\n" + section
    else:
        end = len(lines) if end is None else end
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new)
    os.replace(tmp, path)


# ---- real guests: the Python root filesystem, snapshots, kiln-init's agent ----
# (shared by io.py and snapshots.py; the same recipe as tests/e2e)

sys.path.insert(0, str(ROOT / "tests"))
import kilnclient as kc  # noqa: E402

GUEST_CMDLINE = "root=/dev/vda ro rootfstype=ext4 init=/sbin/kiln-init kiln.agent=1024 quiet"
GUEST_MEM_MIB = 256
CACHE = Path(os.environ.get("KILN_CACHE", Path.home() / ".cache/kiln"))


def env_int(name, default, minimum=1):
    """An integer from the environment (default when unset or empty)."""
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise BenchError(f"{name}={raw!r} is not a whole number")
    if v < minimum:
        raise BenchError(f"{name} must be at least {minimum}")
    return v


def quick():
    return os.environ.get("BENCH_QUICK", "") not in ("", "0")


def sha256_file(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def find_kernel():
    """The vmlinux: BENCH_KERNEL, or what images/kernel/build.sh prints."""
    path = os.environ.get("BENCH_KERNEL")
    if path:
        return Path(path)
    out = subprocess.run([str(ROOT / "images/kernel/build.sh")], stdout=subprocess.PIPE,
                         text=True, timeout=4 * 3600)
    if out.returncode != 0 or not out.stdout.strip():
        raise BenchError(f"images/kernel/build.sh failed (status {out.returncode})")
    return Path(out.stdout.strip().splitlines()[-1])


def find_rootfs_python(build):
    """BUILD/rootfs-python.ext4 from images/rootfs/build-runtime.sh (cached)."""
    log(f"python root filesystem: images/rootfs/build-runtime.sh {build} python")
    out = subprocess.run([str(ROOT / "images/rootfs/build-runtime.sh"), str(build), "python"],
                         stdout=subprocess.PIPE, text=True, timeout=1800)
    if out.returncode != 0 or not out.stdout.strip():
        raise BenchError(f"images/rootfs/build-runtime.sh failed (status {out.returncode})")
    return Path(out.stdout.strip().splitlines()[-1])


def api(sock, request, timeout=120.0):
    """One request on kiln-vmm's control socket; returns (reply, client ns)."""
    import json
    import socket
    t0 = time.monotonic_ns()
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
    ns = time.monotonic_ns() - t0
    reply = json.loads(line) if line else {"ok": False, "error": "no reply"}
    if not reply.get("ok"):
        raise BenchError(f"control socket {sock}: {request} -> {reply}")
    return reply, ns


def entropy_and_time(c):
    """What kilnd sends after every restore."""
    c.entropy(os.urandom(64))
    c.set_time(time.time_ns())


def connect_agent(uds, timeout=120.0, prepare=None, hello=True, first_timeout=10.0,
                  on_retry=None):
    """Connects to kiln-init's agent through kiln-vmm's vsock (HELLO, then
    `prepare`), retrying the whole exchange: right after a restore the
    guest's transport reset closes connections made just before it. Seen
    here: a connection the guest accepted just before it handled the reset
    can also go silent (no RST, no answer, the guest idle), so the first
    exchange gets `first_timeout` seconds before it is retried."""
    deadline = time.monotonic() + timeout
    while True:
        c = None
        try:
            c = kc.Client.connect_vsock(str(uds), kc.AGENT_PORT, timeout=first_timeout)
            if hello:
                c.hello()
            if prepare:
                prepare(c)
            c.settimeout(300.0)
            return c
        except (kc.ConnectionClosed, OSError) as e:
            if c:
                c.close()
            if time.monotonic() > deadline:
                raise
            if on_retry and isinstance(e, TimeoutError):
                log(f"vsock connection silent for {first_timeout:g} s: retrying")
                on_retry(str(e))
            time.sleep(0.002)


class Guest:
    """A kiln-vmm process (boot, --restore or --prestart) with its files in
    workdir/name.*: vsock socket, control socket, console, stderr."""

    def __init__(self, vmm, workdir, name, args, verbose=False):
        self.dir = Path(workdir)
        self.uds = self.dir / f"{name}.vsock"
        self.api = self.dir / f"{name}.api"
        self.console = self.dir / f"{name}.console"
        self.stderr_path = self.dir / f"{name}.stderr"
        for p in (self.uds, self.api):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        self.argv = [str(vmm)] + (["-vv"] if verbose else []) + [str(a) for a in args] + [
            "--api-sock", str(self.api), "--console", str(self.console)]
        self._err = open(self.stderr_path, "wb")
        self.t0_ns = time.monotonic_ns()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._err,
                                     start_new_session=True)
        _guests.add(self)

    @property
    def pid(self):
        return self.proc.pid

    @classmethod
    def boot(cls, vmm, kernel, disks, workdir, name="boot"):
        args = ["--kernel", kernel, "--mem", GUEST_MEM_MIB]
        for d in disks:
            args += ["--disk", d]
        args += ["--vsock-uds", Path(workdir) / f"{name}.vsock", "--cmdline", GUEST_CMDLINE]
        return cls(vmm, workdir, name, args)

    @classmethod
    def restore(cls, vmm, snap, disks, workdir, name, verbose=True):
        args = ["--restore", snap]
        for d in disks:
            args += ["--disk", d]
        args += ["--vsock-uds", Path(workdir) / f"{name}.vsock"]
        return cls(vmm, workdir, name, args, verbose)

    @classmethod
    def prestart(cls, vmm, workdir, name, mem=GUEST_MEM_MIB):
        """As kilnd's pool starts them: the vsock socket (self.uds) is bound
        before the restore, which names the same one."""
        return cls(vmm, workdir, name, ["--prestart", "--mem", mem, "--vcpus", 1,
                                        "--vsock-uds", Path(workdir) / f"{name}.vsock"])

    def diag(self):
        err = self.stderr_path.read_bytes()[-2000:] if self.stderr_path.exists() else b""
        con = self.console.read_bytes()[-2000:] if self.console.exists() else b""
        return (f"  stderr:\n{err.decode(errors='replace')}\n"
                f"  console:\n{con.decode(errors='replace')}")

    def wait_path(self, path, timeout=30.0):
        """Waits for a file (a socket kiln-vmm creates); returns ns since spawn."""
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if self.proc.poll() is not None:
                raise BenchError(f"kiln-vmm exited {self.proc.returncode}\n{self.diag()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{path} never appeared\n{self.diag()}")
            time.sleep(0.0005)
        return time.monotonic_ns() - self.t0_ns

    def wait_ready(self, timeout):
        """Waits for kiln-init's ready line on the console; returns ns."""
        pat = re.compile(rb"^kiln-init: ready monotonic_ns=", re.M)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.console.exists() and pat.search(self.console.read_bytes()):
                return time.monotonic_ns() - self.t0_ns
            if self.proc.poll() is not None:
                raise BenchError(f"kiln-vmm exited {self.proc.returncode} before ready\n"
                                 f"{self.diag()}")
            time.sleep(0.2)
        raise BenchError(f"guest not ready after {timeout} s\n{self.diag()}")

    def timings(self):
        """kiln-vmm -vv's timing lines: {'first_entry_ms', 'restore_total_ms',
        'load_ms', 'apply_ms', 'process_ms'} (those present)."""
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        out = {}
        m = re.search(r"timing: first guest entry at ([\d.]+) ms", text)
        if m:
            out["first_entry_ms"] = float(m.group(1))
        m = re.search(r"timing: restore of .*: load ([\d.]+) ms, apply ([\d.]+) ms, "
                      r"total ([\d.]+) ms \(process at ([\d.]+) ms\)", text)
        if m:
            out.update(load_ms=float(m.group(1)), apply_ms=float(m.group(2)),
                       restore_total_ms=float(m.group(3)), process_ms=float(m.group(4)))
        return out

    def stop(self, timeout=30):
        """SIGTERM, wait, SIGKILL if needed; returns the exit status."""
        if self.proc.poll() is None:
            try:
                self.proc.terminate()
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _guests.discard(self)
        self._err.close()
        return self.proc.returncode


_guests = set()


def _stop_guests():
    for g in list(_guests):
        g.stop(timeout=5)


atexit.register(_stop_guests)


def snapshot_key(kernel, rootfs, build):
    """tests/e2e/test_snapshots.py's cache key for the base snapshot."""
    import hashlib
    return hashlib.sha256("\n".join([
        sha256_file(kernel), sha256_file(rootfs), sha256_file(Path(build) / "kiln-init"),
        sha256_file(Path(build) / "kiln-vmm")]).encode()).hexdigest()


def base_snapshot(vmm, kernel, rootfs, build, workdir, boot_timeout=1200):
    """The cached base snapshot (booted Python rootfs, agent idle), made as
    tests/e2e does when missing. Returns (dir, created): created is None
    for a cache hit, else {'boot_ns', 'reply'} of the snapshot request."""
    cached = CACHE / "snapshots" / snapshot_key(kernel, rootfs, build) / "base"
    if (cached / "state").is_file():
        log(f"base snapshot: cached {cached}")
        return cached, None
    log(f"base snapshot: not cached; booting the Python rootfs (~1-2 min on nested KVM)")
    work = Path(workdir)
    g = Guest.boot(vmm, kernel, [rootfs], work, "base")
    try:
        boot_ns = g.wait_ready(boot_timeout)
        with connect_agent(g.uds) as c:
            c.hello()
        reply, _ = api(g.api, {"op": "snapshot", "dir": str(work / "base-snap"), "diff": False})
    finally:
        g.stop()
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.parent / f"base.tmp{os.getpid()}"
    shutil.move(str(work / "base-snap"), tmp)
    try:
        os.rename(tmp, cached)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return cached, {"boot_ns": boot_ns, "reply": reply}


class HostAgent:
    """build/kiln-init as an ordinary host process serving the agent on a
    unix socket (KILN_AGENT_LISTEN), the python runtime run by the host's
    python3: the lower bound for the guest's numbers."""

    def __init__(self, build, workdir, python="/usr/bin/python3"):
        work = Path(workdir)
        work.mkdir(parents=True, exist_ok=True)
        self.sock = str(work / "agent.sock")
        (work / "cmdline").write_text("console=ttyS0 quiet\n")
        env = dict(os.environ, KILN_INIT_CMDLINE_FILE=str(work / "cmdline"),
                   KILN_AGENT_LISTEN="unix:" + self.sock, KILN_AGENT_FNDIR=str(work / "fn"),
                   KILN_RUNTIME_DIR=str(ROOT / "runtimes"), KILN_PYTHON=python)
        self._err = open(work / "agent.stderr", "wb")
        self.proc = subprocess.Popen([str(Path(build) / "kiln-init")], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._err, start_new_session=True)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("kiln-init: ready "):
            self.stop()
            raise BenchError(f"host kiln-init did not start: {line!r}")

    def client(self):
        return kc.Client.connect("unix:" + self.sock, timeout=120.0)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()


def timed(fn, n):
    """Calls fn() n times; returns the durations in ns."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t0)
    return out


def fmt_dur(ns):
    """ns as µs, ms or s, three significant figures or so."""
    if ns is None:
        return "-"
    if ns < 1e6:
        return f"{ns / 1e3:.0f} µs"
    if ns < 1e9:
        return f"{ns / 1e6:.2f} ms" if ns < 1e8 else f"{ns / 1e6:.0f} ms"
    return f"{ns / 1e9:.2f} s"


def p50_p99(values):
    """'p50 / p99' of ns values, or '-'."""
    if not values:
        return "-"
    return f"{fmt_dur(percentile(values, 50))} / {fmt_dur(percentile(values, 99))}"


def load_note():
    """'load average 1.23 / 1.50 / 2.00 (1/5/15 min)' plus other VMs, for RESULTS.md."""
    la = os.getloadavg()
    text = f"load average {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} (1/5/15 min)"
    others = other_vmms()
    if others:
        text += f"; other VMs running: {', '.join(others)}"
    return text


def md_rows(head, rows):
    """A markdown table from a header tuple and row tuples."""
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [str(c) for c in r]
        if cells[0].startswith("  "):  # a sub-row: markdown would drop the indent
            cells[0] = "&nbsp;&nbsp;" + cells[0].strip()
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def text_rows(head, rows):
    all_rows = [tuple(str(c) for c in head)] + [tuple(str(c) for c in r) for r in rows]
    w = [max(len(r[i]) for r in all_rows) for i in range(len(head))]
    out = []
    for j, r in enumerate(all_rows):
        out.append("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
        if j == 0:
            out.append("  ".join("-" * x for x in w))
    return "\n".join(out)


# ---- QEMU microvm with a QMP socket -----------------------------------------

QEMU_MACHINE = "microvm,x-option-roms=off,isa-serial=on,rtc=off,acpi=off"


def kiln_guest_args():
    """What kiln-vmm adds to the kernel command line (minus kiln.ctl, which
    QEMU has no device for), compatibility arguments included on nested KVM."""
    import boot  # bench/boot.py reads them from src/vmm/kcmdline.h
    return boot.KILN_BASE_ARGS + (" " + boot.COMPAT_ARGS if nested_kvm() else "")


class Qmp:
    """A QMP client on a unix socket: execute(cmd, **args) -> 'return' value."""

    def __init__(self, path, timeout=60.0):
        import socket
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buf = b""
        self._read()  # greeting
        self.execute("qmp_capabilities")

    def _read(self):
        import json
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise BenchError("QMP: connection closed")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            if line.strip():
                msg = json.loads(line)
                if "event" not in msg:
                    return msg

    def execute(self, cmd, **arguments):
        import json
        req = {"execute": cmd}
        if arguments:
            req["arguments"] = arguments
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        msg = self._read()
        if "error" in msg:
            raise BenchError(f"QMP {cmd}: {msg['error']}")
        return msg.get("return")

    def close(self):
        self.sock.close()


class QemuGuest:
    """qemu-system-x86_64 -M microvm with KVM, a QMP socket and the console
    to a file; stopped (SIGKILL) by stop() or at exit."""

    def __init__(self, workdir, name, kernel, append, mem=GUEST_MEM_MIB, extra=(),
                 machine_opts="", qemu=None):
        """qemu: the binary to run (default qemu_path()), e.g. a wrapper."""
        self.dir = Path(workdir)
        self.qmp_path = self.dir / f"{name}.qmp"
        self.console = self.dir / f"{name}.console"
        self.stderr_path = self.dir / f"{name}.stderr"
        try:
            self.qmp_path.unlink()
        except FileNotFoundError:
            pass
        self.argv = [qemu or qemu_path(), "-M", QEMU_MACHINE + machine_opts, "-enable-kvm", "-cpu",
                     "host,-arch-capabilities", "-m", str(mem), "-smp", "1", "-nodefaults",
                     "-no-user-config", "-display", "none", "-serial",
                     f"file:{self.console}", "-no-reboot", "-kernel", str(kernel),
                     "-append", append, "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
                     *[str(a) for a in extra]]
        self._err = open(self.stderr_path, "wb")
        self.t0_ns = time.monotonic_ns()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._err,
                                     start_new_session=True)
        _guests.add(self)

    @property
    def pid(self):
        return self.proc.pid

    def diag(self):
        err = self.stderr_path.read_bytes()[-2000:] if self.stderr_path.exists() else b""
        con = self.console.read_bytes()[-2000:] if self.console.exists() else b""
        return (f"  stderr:\n{err.decode(errors='replace')}\n"
                f"  console:\n{con.decode(errors='replace')}")

    def qmp(self, timeout=30.0):
        """Connects to QMP as soon as the socket accepts."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return Qmp(self.qmp_path)
            except (OSError, BenchError):
                if self.proc.poll() is not None:
                    raise BenchError(f"QEMU exited {self.proc.returncode}\n{self.diag()}")
                if time.monotonic() > deadline:
                    raise BenchError(f"no QMP socket after {timeout} s\n{self.diag()}")
                time.sleep(0.001)

    def wait_console(self, regex, timeout):
        """Waits for a console line matching regex (bytes); returns (ns, match)."""
        pat = re.compile(regex, re.M)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.console.exists():
                m = pat.search(self.console.read_bytes())
                if m:
                    return time.monotonic_ns() - self.t0_ns, m
            if self.proc.poll() is not None:
                raise BenchError(f"QEMU exited {self.proc.returncode}\n{self.diag()}")
            time.sleep(0.2)
        raise BenchError(f"no {regex!r} on the QEMU console after {timeout} s\n{self.diag()}")

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=timeout)
        _guests.discard(self)
        self._err.close()
        return self.proc.returncode


def group_main(run, doc, guest_arg=False, add_args=None):
    """The command line shared by every benchmark group: --build (and, for
    the Boot group, --guest; add_args(parser) adds a group's own options);
    runs run(args) with cleanup of every process the harness started, and
    maps errors and Ctrl-C to exit statuses 1 and 130."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--build", required=True, help="kiln's build directory")
    if guest_arg:
        ap.add_argument("--guest", required=True, help="the first-byte tiny guest ELF")
    if add_args:
        add_args(ap)
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    install_cleanup()
    try:
        return run(args)
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench: interrupted; VMMs stopped", file=sys.stderr)
        return 130
    finally:
        kill_all()
