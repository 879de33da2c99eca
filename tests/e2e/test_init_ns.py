"""kiln-init as PID 1 without a VM: in a new mount + PID namespace, chrooted
into a copy of the staging tree that images/rootfs/build.sh made.

The command line comes from KILN_INIT_CMDLINE_FILE and the control page is a
plain file (KILN_INIT_MEM_FILE) with the magic at offset 0x1000, so the exit
status kiln-init reports is read back from that file. reboot() in a PID
namespace kills its init with SIGHUP: that is how the run ends.

Needs root (namespaces, mounts) and BUILD/rootfs (make rootfs).
"""
import os
import shutil
import signal
import struct
import subprocess
import time

import pytest

BUILD = os.environ.get("KILN_BUILD", "build")
ROOTFS = os.path.join(BUILD, "rootfs")
CTL_OFF = 0x1000
MAGIC = 0x4E4C494B

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and mounts"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)"),
    pytest.mark.skipif(not os.path.exists(os.path.join(ROOTFS, "init")),
                       reason="needs BUILD/rootfs: run images/rootfs/build.sh"),
]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("ns") / "root"
    shutil.copytree(ROOTFS, r, symlinks=True)
    return r


def start(root, cmdline, ctl=True, stdin=subprocess.DEVNULL):
    (root / "cmdline").write_text(cmdline + "\n")
    page = bytearray(2 * 4096)
    struct.pack_into("<II", page, CTL_OFF, MAGIC, 1)
    (root / "ctl").write_bytes(bytes(page))
    env = dict(os.environ, KILN_INIT_CMDLINE_FILE="/cmdline", KILN_INIT_MEM_FILE="/ctl")
    return subprocess.Popen(
        ["unshare", "--mount", "--pid", "--fork", "--root=%s" % root, "/init"],
        env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(root, p, timeout=20, input=None):
    out, err = p.communicate(input=input, timeout=timeout)
    exit_reg, ready_reg = struct.unpack_from("<II", (root / "ctl").read_bytes(), CTL_OFF + 8)
    return out.decode(), err.decode(), exit_reg, ready_reg


def run(root, cmdline, **kw):
    p = start(root, cmdline, **kw)
    return (p,) + finish(root, p)


def test_exit_status_and_ready(root):
    p, out, err, status, ready = run(root, "console=ttyS0 kiln.ctl=0x1000 -- sh -c 'echo hi; exit 7'")
    lines = out.splitlines()
    assert lines[0].startswith("kiln-init: ready monotonic_ns=")
    assert " boottime_ns=" in lines[0]
    assert lines[1] == "hi"
    assert status == 7
    assert ready != 0
    # Rebooted: a PID namespace's init dies of SIGHUP on reboot(RB_AUTOBOOT).
    assert p.returncode in (-signal.SIGHUP, 128 + signal.SIGHUP)
    assert err == ""


@pytest.mark.parametrize("cmd,want", [
    ("sh -c 'kill -9 $$'", 137),
    ("sh -c 'kill -TERM $$'", 143),
    ("no-such-command", 127),
    ("/etc/passwd", 126),
    ("sh -c 'exit 3", 2),          # unterminated quote
    ("true", 0),
])
def test_statuses(root, cmd, want):
    _, out, err, status, _ = run(root, "kiln.ctl=0x1000 -- " + cmd)
    assert status == want
    if want == 127:
        assert "kiln-init: cannot run no-such-command: No such file or directory" in err
    if want == 126:
        assert "kiln-init: cannot run /etc/passwd: Permission denied" in err


def test_quoted_separator_and_words(root):
    _, out, _, status, _ = run(
        root, 'foo="a -- b" kiln.ctl=0x1000 -- sh -c \'echo "[$1][$2]"; exit 4\' x "a  b" \'\'')
    assert status == 4
    assert "[a  b][]" in out


def test_environment_and_mounts(root):
    _, out, _, status, _ = run(
        root, "kiln.ctl=0x1000 -- sh -c 'echo $PATH $HOME; cut -d\" \" -f2,3 /proc/mounts'")
    assert status == 0
    assert "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /root" in out
    for m in ("/dev devtmpfs", "/proc proc", "/sys sysfs", "/tmp tmpfs", "/run tmpfs"):
        assert m in out


def test_reaps_orphans(root):
    # Orphans exit while the command runs; count zombies left among them.
    script = ("for i in 1 2 3 4; do (true &) ; done; sleep 0.5; "
              "grep -l '^State:.Z' /proc/[0-9]*/status | wc -l | (read n; exit $n)")
    _, _, _, status, _ = run(root, "kiln.ctl=0x1000 -- sh -c \"%s\"" % script)
    assert status == 0


def test_leftovers_killed_quickly(root):
    t = time.monotonic()
    _, _, _, status, _ = run(root, "kiln.ctl=0x1000 -- sh -c 'sleep 100 & (setsid sleep 100 &); exit 5'")
    assert status == 5
    assert time.monotonic() - t < 5


def test_no_control_page_prints_status(root):
    _, out, _, status, _ = run(root, "console=ttyS0 -- sh -c 'exit 9'")
    assert status == 0  # untouched page
    assert "kiln-init: exit status=9" in out


def test_shell_when_no_command(root):
    p = start(root, "kiln.ctl=0x1000", stdin=subprocess.PIPE)
    out, _, status, _ = finish(root, p, input=b"echo from-shell\nexit 6\n")
    assert "from-shell" in out
    assert status == 6


def _ns_init_pid(unshare_pid):
    for _ in range(200):
        try:
            with open("/proc/%d/task/%d/children" % (unshare_pid, unshare_pid)) as f:
                kids = f.read().split()
            if kids:
                return int(kids[0])
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    raise AssertionError("no init process")


def _wait_ready(p):
    line = p.stdout.readline().decode()
    assert line.startswith("kiln-init: ready")


def test_sigterm_forwarded(root):
    p = start(root, "kiln.ctl=0x1000 -- sh -c 'trap \"exit 9\" TERM; sleep 100 & wait'")
    _wait_ready(p)
    time.sleep(0.3)
    os.kill(_ns_init_pid(p.pid), signal.SIGTERM)
    _, _, status, _ = finish(root, p)
    assert status == 9


def test_sigterm_then_sigkill(root):
    p = start(root, "kiln.ctl=0x1000 -- sh -c 'trap \"\" TERM; while :; do sleep 0.1; done'")
    _wait_ready(p)
    time.sleep(0.3)
    t = time.monotonic()
    os.kill(_ns_init_pid(p.pid), signal.SIGPWR)
    _, err, status, _ = finish(root, p)
    assert status == 143
    assert 2.5 < time.monotonic() - t < 8
    assert "did not stop" in err
