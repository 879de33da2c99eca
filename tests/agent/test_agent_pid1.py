"""kiln-init as PID 1 with its agent, without a VM: in a new mount + PID
namespace chrooted into a copy of BUILD/rootfs (as tests/e2e/test_init_ns.py
does), with KILN_AGENT_LISTEN=unix:/agent.sock so the host reaches the agent
through the copy's root directory. Exercises the PID-1 paths: mounts (/run
for function code), reaping through the agent's loop, the main command
running alongside the agent, and the busybox sh exec runtime.

Never sends TIME here: as PID 1 kiln-init would set the host's clock.
Needs root and BUILD/rootfs (images/rootfs/build.sh BUILD).
"""
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kilnclient as kc  # noqa: E402

BUILD = Path(__file__).resolve().parents[2] / os.environ.get("KILN_BUILD", "build")
ROOTFS = BUILD / "rootfs"
CTL_OFF = 0x1000
MAGIC = 0x4E4C494B

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and mounts"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)"),
    pytest.mark.skipif(not (ROOTFS / "init").exists(),
                       reason="needs BUILD/rootfs: run images/rootfs/build.sh"),
]


def start(root, cmdline):
    (root / "cmdline").write_text(cmdline + "\n")
    page = bytearray(2 * 4096)
    struct.pack_into("<II", page, CTL_OFF, MAGIC, 1)
    (root / "ctl").write_bytes(bytes(page))
    env = dict(os.environ, KILN_INIT_CMDLINE_FILE="/cmdline", KILN_INIT_MEM_FILE="/ctl",
               KILN_AGENT_LISTEN="unix:/agent.sock")
    p = subprocess.Popen(["unshare", "--mount", "--pid", "--fork", f"--root={root}", "/init"],
                         env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    line = p.stdout.readline().decode()
    assert line.startswith("kiln-init: ready "), line
    return p


def test_agent_alongside_command_as_pid1(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(ROOTFS, root, symlinks=True)
    # The command waits until the function (run by the agent) says stop.
    p = start(root, "console=ttyS0 kiln.ctl=0x1000 kiln.agent=1024 -- "
                    "sh -c 'while [ ! -e /tmp/stop ]; do sleep 0.05; done; exit 7'")
    try:
        c = kc.Client.connect(f"unix:{root}/agent.sock", timeout=20)
        assert c.hello()["state"] == "none"
        handler = 'read -r x; echo "pid1 says $x"; [ "$x" = stop ] && touch /tmp/stop; exit 0'
        c.load({"handler.sh": handler}, runtime="sh", mode="exec", handler="sh handler.sh")
        for i in range(10):
            r = c.invoke(f"hi{i}\n", deadline_ms=5000)
            assert r.ok and r.body == f"pid1 says hi{i}\n".encode(), r
        # Code went to the tmpfs on /run that kiln-init mounted, not to the copy.
        assert not (root / "run" / "kiln").exists()
        assert c.ping(b"x" * 100000) == b"x" * 100000
        r = c.invoke("stop\n", deadline_ms=5000)
        assert r.ok
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    exit_reg = struct.unpack_from("<I", (root / "ctl").read_bytes(), CTL_OFF + 8)[0]
    assert exit_reg == 7, err.decode()
    assert err.decode() == ""
