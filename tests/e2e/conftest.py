"""End-to-end fixtures: the real guest kernel and initramfs, built (cached) once."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / os.environ.get("KILN_BUILD", "build")
sys.path.insert(0, str(ROOT / "tests"))  # kilnclient


def kvm_usable():
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError as e:
        return False, f"/dev/kvm not available ({e.strerror}): end-to-end KVM tests skipped"
    os.close(fd)
    return True, ""


@pytest.fixture(scope="session")
def kvm():
    ok, why = kvm_usable()
    if not ok:
        pytest.skip(why)


@pytest.fixture(scope="session")
def kernel():
    if os.environ.get("KILN_KERNEL"):  # a developer's own vmlinux
        return Path(os.environ["KILN_KERNEL"])
    out = subprocess.run([str(ROOT / "images/kernel/build.sh")], stdout=subprocess.PIPE,
                         text=True, check=True, timeout=3600)
    path = Path(out.stdout.strip().splitlines()[-1])
    assert path.is_file(), f"kernel build printed {path}, which is not a file"
    return path


@pytest.fixture(scope="session")
def initramfs():
    subprocess.run([str(ROOT / "images/rootfs/build.sh"), str(BUILD)], check=True,
                   stdout=subprocess.DEVNULL, timeout=600)
    path = BUILD / "initramfs.cpio"
    assert path.is_file()
    return path


@pytest.fixture(scope="session")
def vmm():
    path = BUILD / "kiln-vmm"
    assert path.is_file(), f"{path} missing: run make first"
    return path


@pytest.fixture(scope="session")
def rootfs_python():
    out = subprocess.run([str(ROOT / "images/rootfs/build-runtime.sh"), str(BUILD), "python"],
                         stdout=subprocess.PIPE, text=True, check=True, timeout=1800)
    path = Path(out.stdout.strip().splitlines()[-1])
    assert path.is_file(), f"build-runtime.sh printed {path}, which is not a file"
    return path


class GuestVM:
    """A kiln-vmm process booting the Python root filesystem with kiln-init's
    agent on vsock port 1024; `uds` is the host side of its vsock."""

    READY = re.compile(rb"^kiln-init: ready monotonic_ns=(\d+)", re.M)

    def __init__(self, vmm, kernel, rootfs, workdir, mem=256, extra=()):
        self.workdir = Path(workdir)
        self.uds = str(self.workdir / "vsock.sock")
        self.console = self.workdir / "console.log"
        self.stderr = self.workdir / "vmm.stderr"
        self.args = [str(vmm), "--kernel", str(kernel), "--disk", str(rootfs),
                     "--mem", str(mem), "--vsock-uds", self.uds,
                     "--console", str(self.console), *extra, "--cmdline",
                     "root=/dev/vda ro rootfstype=ext4 init=/sbin/kiln-init kiln.agent=1024 quiet"]
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(self.stderr, "wb"))

    def diag(self):
        out = self.console.read_bytes()[-3000:] if self.console.exists() else b""
        err = self.stderr.read_bytes()[-3000:] if self.stderr.exists() else b""
        return f"console:\n{out.decode(errors='replace')}\nstderr:\n{err.decode(errors='replace')}"

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.console.exists() and self.READY.search(self.console.read_bytes()):
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"kiln-vmm exited {self.proc.returncode} before the "
                                     f"guest was ready\n{self.diag()}")
            time.sleep(0.5)
        raise AssertionError(f"guest not ready after {timeout}s\n{self.diag()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        err = self.stderr.read_text(errors="replace") if self.stderr.exists() else ""
        assert "AddressSanitizer" not in err and "runtime error:" not in err, err
        return self.proc.returncode
