"""What every test tier needs of kiln-vmm (tests/vmm, tests/e2e): the one
list of sanitizer markers that fail a test when a process prints them, and
the one client of kiln-vmm's control socket (docs/control-api.md: one JSON
object per line each way)."""

import json
import socket
import time

# Lines AddressSanitizer, LeakSanitizer and UBSan print when they find
# something (make asan builds with all three, and -fno-sanitize-recover).
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",  # UBSan
)


def sanitizer_report(text):
    """Returns the first sanitizer marker in text, or None."""
    for marker in SANITIZER_MARKERS:
        if marker in text:
            return marker
    return None


class ControlClient:
    """A connection to kiln-vmm's control socket at `path`. Connecting is
    retried for `connect_timeout` seconds while the socket is not there yet
    (kiln-vmm starting); `alive`, when given, is called between attempts and
    returns False once waiting is pointless (the process exited)."""

    def __init__(self, path, timeout=15.0, connect_timeout=None, alive=None):
        deadline = time.monotonic() + (timeout if connect_timeout is None else connect_timeout)
        while True:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if (alive is not None and not alive()) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.buf = b""

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv(self):
        """The next reply (a dict). Raises EOFError when kiln-vmm closes."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("kiln-vmm closed the control connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, **req):
        """Sends one request and returns its reply, whatever it says."""
        self.send_raw(json.dumps(req).encode() + b"\n")
        return self.recv()

    def ok(self, **req):
        """Sends one request; its reply must say ok. Returns the reply."""
        r = self.call(**req)
        assert r.get("ok") is True, f"{req} -> {r}"
        return r

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- seccomp: making a thread of a running kiln-vmm call something ---------
#
# The seccomp tests (tests/vmm/test_seccomp.py, tests/e2e/test_kilnd.py) need
# a real kiln-vmm thread, set up and filtered, to make a system call it never
# makes: no test-only backdoor in kiln-vmm. They take it over with ptrace
# (x86-64 only): seize the thread, interrupt it while it waits in a system
# call (poll, epoll_wait, futex, KVM_RUN), point it back at its `syscall`
# instruction with another call number and arguments, and let it go.

PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_CONT = 7
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000  # __WALL: wait for threads too

# Call numbers and ioctl requests the tests use (x86-64).
NR_IOCTL = 16
NR_SOCKET = 41
NR_GETPID = 39
NR_EXECVE = 59
NR_PTRACE = 101
AF_INET = 2
SOCK_STREAM = 1
KVM_CREATE_VM = 0xAE01


def _user_regs():
    import ctypes

    class UserRegs(ctypes.Structure):  # struct user_regs_struct, <sys/user.h>
        _fields_ = [(n, ctypes.c_ulonglong) for n in (
            "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs "
            "eflags rsp ss fs_base gs_base ds es fs gs").split()]
    return UserRegs


def thread_ids(pid):
    """{thread name (comm): tid} of process pid; kiln-vmm names its threads
    kiln-vcpuN and kiln-io, the main thread keeps the process's name."""
    import os
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                out[f.read().strip()] = int(tid)
        except OSError:
            pass
    return out


def inject_syscall(tid, nr, *args, timeout=10.0):
    """Makes thread `tid` (of another process; needs CAP_SYS_PTRACE or
    ptrace rights over it) call system call `nr` with up to six `args`
    in place of the system call it is waiting in, then detaches: what the
    call does to the process is the caller's to check. Raises OSError when
    ptrace refuses, TimeoutError when the thread is never caught in a
    system call within `timeout` seconds."""
    import ctypes
    import os
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    regs = _user_regs()()

    def ptrace(req, data=None):
        if libc.ptrace(req, tid, None, data) < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"ptrace({req:#x}, {tid}): {os.strerror(e)}")

    ptrace(PTRACE_SEIZE)
    deadline = time.monotonic() + timeout
    try:
        while True:
            ptrace(PTRACE_INTERRUPT)
            os.waitpid(tid, WALL)
            ptrace(PTRACE_GETREGS, ctypes.addressof(regs))
            in_call = regs.orig_rax < 2**63  # orig_rax is -1 outside a system call
            if in_call:
                with open(f"/proc/{tid}/mem", "rb", buffering=0) as mem:
                    mem.seek(regs.rip - 2)
                    in_call = mem.read(2) == b"\x0f\x05"  # syscall
            if in_call:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"thread {tid} was never caught in a system call")
            ptrace(PTRACE_CONT)
            time.sleep(0.01)
        vals = list(args) + [0] * (6 - len(args))
        regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9 = [v % 2**64 for v in vals]
        regs.rax = nr
        regs.orig_rax = 2**64 - 1  # no system call restart on the way out
        regs.rip -= 2              # back onto the syscall instruction
        ptrace(PTRACE_SETREGS, ctypes.addressof(regs))
    finally:
        libc.ptrace(PTRACE_DETACH, tid, None, None)
