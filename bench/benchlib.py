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
    ours = {v.pid for v in _live}
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
