"""--kvm-fd and --compat, what kiln-jailer passes to a jailed kiln-vmm
(docs/security.md "Jailer"): /dev/kvm opened by someone else, and the
nested-KVM flavour told rather than read from /sys."""
import os
import subprocess

import pytest

from conftest import check_no_crash, VmmResult

pytestmark = pytest.mark.kvm


def run_with_fd(vmm, fd_path, *args, flags=os.O_RDWR):
    fd = os.open(fd_path, flags)
    try:
        argv = [str(vmm.path), "--kvm-fd", str(fd), *[str(a) for a in args]]
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                           pass_fds=(fd,))
    finally:
        os.close(fd)
    r = VmmResult(argv, p.returncode, p.stdout.decode(errors="replace"),
                  p.stderr.decode(errors="replace"))
    check_no_crash(r)
    return r


def test_kvm_fd_runs_a_guest(vmm):
    r = run_with_fd(vmm, "/dev/kvm", "--kernel", vmm.guest("hello"), "--mem", "64")
    assert r.returncode == 0, r.describe()
    assert "Hello" in r.stdout or "hello" in r.stdout.lower(), r.describe()


def test_kvm_fd_that_is_not_kvm(vmm):
    r = run_with_fd(vmm, "/dev/null", "--kernel", vmm.guest("hello"), "--mem", "64")
    assert r.returncode == 1, r.describe()
    assert len(r.error_lines()) == 1, r.describe()


def test_kvm_fd_usage(vmm):
    for bad in ("2", "-1", "x", ""):
        r = vmm.run("--kvm-fd", bad, "--kernel", vmm.guest("hello"))
        assert r.returncode == 2, r.describe()
        assert "--kvm-fd" in r.stderr, r.describe()


def test_compat_forced(vmm):
    """--compat adds the nested-KVM arguments even where kiln-vmm cannot see
    /sys/module/kvm_pvm (as in a jail); --no-compat still wins. Runs
    kiln-vmm in a mount namespace whose /sys/module is an empty tmpfs."""
    if not os.path.exists("/sys/module/kvm_pvm"):
        pytest.skip("not the nested kvm_pvm host: its arguments would not be added")
    if os.geteuid() != 0:
        pytest.skip("hiding /sys/module needs root (unshare -m)")

    def hidden(*args):
        cmd = " ".join([str(vmm.path), "--kernel", str(vmm.guest("status")), "--mem", "64",
                        "--cmdline", "status=0", "-v", *args])
        p = subprocess.run(["unshare", "-m", "sh", "-c",
                            "mount -t tmpfs none /sys/module && exec " + cmd],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        r = VmmResult(cmd.split(), p.returncode, p.stdout.decode(errors="replace"),
                      p.stderr.decode(errors="replace"))
        check_no_crash(r)
        assert r.returncode == 0, r.describe()
        return r
    assert "clearcpuid=" not in hidden().stderr
    assert "clearcpuid=" in hidden("--compat").stderr
    assert "clearcpuid=" not in hidden("--compat", "--no-compat").stderr
