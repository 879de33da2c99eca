"""Boots the real guest kernel to kiln-init and runs a command inside.

One boot only: on the nested KVM of kiln's build machines a Linux boot takes
minutes (guest kernel code is emulated), so this test checks everything the
foundation promises in a single run: the console works, kiln-init prints its
ready line, the command's output reaches the host, and its exit status
becomes kiln-vmm's.
"""
import os
import re
import subprocess
import time

from conftest import check_stderr

BOOT_TIMEOUT = 1200  # seconds; a boot takes ~2 minutes here, far less on hardware KVM


def test_boot_runs_command_and_returns_its_status(kvm, vmm, kernel, initramfs, tmp_path):
    console = tmp_path / "console.log"
    # The kernel splits its command line on spaces outside double quotes and
    # panics past 32 init arguments, so the command is one double-quoted word.
    cmd = ("uname -a; head -n 5 /proc/cpuinfo; echo marker-$((6*7)); "
           "echo possible=$(cat /sys/devices/system/cpu/possible) online=$(nproc); "
           "sh -c 'exit 3'; echo inner=$?; exit 7")
    start = time.monotonic()
    proc = subprocess.run(
        [str(vmm), "--kernel", str(kernel), "--initrd", str(initramfs), "--mem", "128", "--vcpus", "2",
         "--console", str(console), "--cmdline", f'quiet -- sh -c "{cmd}"'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=BOOT_TIMEOUT)
    elapsed = time.monotonic() - start
    out = console.read_text(errors="replace")
    diag = f"exit={proc.returncode} after {elapsed:.0f}s\nstderr:\n{proc.stderr}\nconsole:\n{out[-4000:]}"
    assert proc.returncode == 7, diag
    assert re.search(r"^kiln-init: ready monotonic_ns=\d+", out, re.M), diag
    assert re.search(r"^Linux \S+ 6\.1\.\d+", out, re.M), diag
    assert "processor" in out and "marker-42" in out and "inner=3" in out, diag
    # The MP table announced both vCPUs. The nested kvm_pvm host cannot start
    # a secondary CPU, so kiln-vmm boots the guest with maxcpus=1 there.
    nested = os.path.exists("/sys/module/kvm_pvm")
    assert f"possible=0-1 online={1 if nested else 2}" in out, diag
    check_stderr(proc.stderr)
