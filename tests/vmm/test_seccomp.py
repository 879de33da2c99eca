"""kiln-vmm's seccomp filters (docs/security.md#seccomp).

A real kiln-vmm, set up and running the `spin` guest, is made to call
something its threads never call: the test takes one thread over with ptrace
while it waits in a system call and swaps that call for another
(kilnvmm.inject_syscall). A forbidden call must kill kiln-vmm with SIGSYS
after one report line naming the call and the thread; an allowed one,
injected the same way, must not.
"""
import os
import select
import selectors
import signal
import subprocess
import time

import pytest

from kilnvmm import (AF_INET, KVM_CREATE_VM, NR_EXECVE, NR_GETPID, NR_IOCTL, NR_SOCKET,
                    SOCK_STREAM, ControlClient, inject_syscall, sanitizer_report, thread_ids)

pytestmark = pytest.mark.kvm

AF_UNIX = 1
REPORT = "kiln-vmm: seccomp: forbidden system call "


class Spinning:
    """kiln-vmm running the spin guest with a control socket, every thread
    past its setup (the guest ran, the control socket answered)."""

    def __init__(self, vmm, tmp_path):
        self.api = tmp_path / "api.sock"
        self.p = vmm.popen("--kernel", vmm.guest("spin"), "--api-sock", self.api)
        self.out = self.err = b""
        sel = selectors.DefaultSelector()
        sel.register(self.p.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 30
        while b"spinning\n" not in self.out and time.monotonic() < deadline:
            if self.p.poll() is not None:
                break
            if sel.select(timeout=0.5):
                chunk = os.read(self.p.stdout.fileno(), 4096)
                if not chunk:
                    break
                self.out += chunk
        sel.close()
        assert b"spinning\n" in self.out, f"the spin guest did not start: {self.finish()}"
        with ControlClient(self.api) as c:  # served by the main thread, filtered by now
            assert c.ok(op="state")["state"] == "running"
        self.threads = thread_ids(self.p.pid)
        if "seccomp filters are off" in self.peek_stderr():
            self.finish()
            pytest.skip("this kiln-vmm was built with SECCOMP=0: no filters to test")

    def peek_stderr(self):
        """What kiln-vmm wrote to stderr so far (without waiting for more)."""
        fd = self.p.stderr.fileno()
        while select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self.err += chunk
        return self.err.decode(errors="replace")

    def tid(self, name):
        """The thread called `name`; the main thread is the process itself."""
        if name == "main":
            return self.p.pid
        assert name in self.threads, f"no thread {name} in {self.threads}"
        return self.threads[name]

    def inject(self, thread, nr, *args):
        try:
            inject_syscall(self.tid(thread), nr, *args)
        except PermissionError as e:
            self.finish()
            pytest.skip(f"ptrace refused ({e}): these tests need CAP_SYS_PTRACE")

    def finish(self, timeout=30):
        """Waits for the exit (killing after timeout s); returns stderr."""
        try:
            _, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            _, err = self.p.communicate()
        self.err += err or b""
        return self.err.decode(errors="replace")


@pytest.mark.parametrize("thread, nr, args, call", [
    ("main", NR_EXECVE, (0, 0, 0), "59 (execve) in thread main"),
    ("main", NR_SOCKET, (AF_INET, SOCK_STREAM, 0), "41 (socket) in thread main"),
    ("kiln-io", NR_SOCKET, (AF_INET, SOCK_STREAM, 0), "41 (socket) in thread kiln-io"),
    ("kiln-vcpu0", NR_IOCTL, (0, KVM_CREATE_VM, 0), "16 (ioctl) in thread kiln-vcpu0"),
], ids=["main-execve", "main-inet-socket", "io-inet-socket", "vcpu-kvm-create-vm"])
def test_forbidden_call_kills_with_sigsys(vmm, tmp_path, thread, nr, args, call):
    vm = Spinning(vmm, tmp_path)
    vm.inject(thread, nr, *args)
    err = vm.finish()
    assert vm.p.returncode == -signal.SIGSYS, \
        f"kiln-vmm exited {vm.p.returncode} after a forbidden call, not by SIGSYS\n{err}"
    assert REPORT + call + "\n" in err, err
    assert sanitizer_report(err) is None, err


def test_allowed_calls_injected_the_same_way_do_not_kill(vmm, tmp_path):
    """The control experiment: the same injection with calls the main thread
    may make (getpid; a unix socket, where an inet one kills above) leaves
    kiln-vmm serving and stopping normally."""
    vm = Spinning(vmm, tmp_path)
    vm.inject("main", NR_GETPID)
    vm.inject("main", NR_SOCKET, AF_UNIX, SOCK_STREAM, 0)
    time.sleep(0.2)
    assert vm.p.poll() is None, vm.finish()
    with ControlClient(vm.api) as c:
        assert c.ok(op="state")["state"] == "running"
        c.ok(op="stop")
    err = vm.finish()
    assert vm.p.returncode == 0, f"exit status {vm.p.returncode}\n{err}"
    assert REPORT not in err, err


def test_threads_are_named_for_their_roles(vmm, tmp_path):
    """The names the reports use are the threads' names in /proc (the
    injection above and an operator's `ps -L` find them by it)."""
    vm = Spinning(vmm, tmp_path)
    try:
        assert "kiln-io" in vm.threads and "kiln-vcpu0" in vm.threads, vm.threads
    finally:
        vm.p.send_signal(signal.SIGTERM)
        vm.finish()
