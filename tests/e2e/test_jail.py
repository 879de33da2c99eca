"""kilnd's jailed kiln-vmm (docs/security.md "Jailer"): what a VM runs as,
what it can see and reach, its limits, and that a jail refused is a clear
error. Uses the session's kilnd (jailed: the tests run as root) and its
deployed functions; no boot of its own."""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BUILD, ROOT, vmm_pids
from test_kilnd import deploy_ok

pytestmark = pytest.mark.kvm

def status_of(pid):
    st = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        st[k] = v.split()
    return st


def cgroup_dir(pid, controller):
    """The host directory of pid's cgroup in controller's v1 hierarchy."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctls, path = line.split(":", 2)
        if controller in ctls.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/")
    return None


@pytest.fixture(scope="module")
def jailed(kilnd):
    """kilnd, a function deployed and called once (a restored VM), and the
    pid of a jailed kiln-vmm that restored it."""
    if os.geteuid() != 0:
        pytest.skip("the jail needs root: kilnd runs kiln-vmm unjailed")
    deploy_ok(kilnd, "jail-fn")  # test_kilnd's image: its snapshot is shared
    r = kilnd.invoke("jail-fn", b"{}")
    assert r.status == 200, r.body
    run_dir = kilnd.info()["run_dir"]
    pids = vmm_pids(run_dir)
    assert pids, f"no kiln-vmm of kilnd found\n{kilnd.tail()}"
    restored = []
    for p in pids:
        try:
            if any(b"/snapshots/" in ln for ln in
                   Path(f"/proc/{p}/mountinfo").read_bytes().splitlines()):
                restored.append(p)
        except OSError:
            pass
    assert restored, "no jailed kiln-vmm has a function snapshot bound in"
    return kilnd, run_dir, restored[0]


def test_identity_capabilities_namespaces(jailed):
    kilnd, run_dir, pid = jailed
    st = status_of(pid)
    uid = int(st["Uid"][0])
    assert 900000 <= uid < 900000 + 65536
    assert st["Uid"] == [str(uid)] * 4 and st["Gid"] == [str(uid)] * 4, st
    assert st.get("Groups", []) == []
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(st[cap][0], 16) == 0, (cap, st[cap])
    assert st["NoNewPrivs"] == ["1"]
    assert st["NSpid"][-1] == "1", "kiln-vmm is not PID 1 of its own PID namespace"
    for ns in ("mnt", "pid", "net", "ipc", "uts", "cgroup"):
        mine = os.readlink(f"/proc/self/ns/{ns}")
        theirs = os.readlink(f"/proc/{pid}/ns/{ns}")
        assert mine != theirs, f"kiln-vmm shares the host's {ns} namespace"
    # Every VM has its own uid.
    uids = [int(status_of(p)["Uid"][0]) for p in vmm_pids(run_dir) if Path(f"/proc/{p}").exists()]
    assert len(uids) == len(set(uids)), uids
    # kilnd can still wait for and kill it: it is kilnd's child, in its own group.
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    assert int(stat[1]) == kilnd.proc.pid and int(stat[2]) == pid, stat[:3]


def test_mounts_are_only_its_files(jailed):
    kilnd, run_dir, pid = jailed
    mounts = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        f = line.split()
        mounts[f[4]] = f[5].split(",")
    assert "ro" in mounts["/"], mounts
    assert "rw" in mounts["/vm"] and "noexec" in mounts["/vm"], mounts
    assert "/proc" in mounts
    others = {m: o for m, o in mounts.items() if m not in ("/", "/vm", "/proc")}
    state = str(kilnd.state_dir.resolve())
    for m, opts in others.items():
        assert "ro" in opts and "nosuid" in opts and "noexec" in opts, (m, opts)
        assert (m.startswith(state + "/snapshots/") or "/base/" in m or
                m == str(Path(kilnd.rootfs).resolve()) or m == str(kilnd.rootfs)), m


def test_attacks_from_inside_the_jail(jailed):
    kilnd, run_dir, pid = jailed
    probe = subprocess.run(
        ["/usr/bin/python3", str(ROOT / "tests/e2e/jail_probe.py"), str(pid), str(kilnd.port),
         # (the parents of mirrored paths exist, empty: the state directory
         # holds the snapshot, build/ the image; their other files must not)
         str(kilnd.state_dir / "registry.db"), str(kilnd.state_dir / "code"), "/etc/shadow",
         str(BUILD / "kilnd"), str(BUILD / "kiln-vmm"), run_dir],
        capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    out = json.loads(probe.stdout)
    assert out["uid"] == int(status_of(pid)["Uid"][0])
    assert out["status"]["CapEff"] == "0000000000000000"
    assert out["shadow"] in ("ENOENT", "EACCES"), out["shadow"]
    assert out["proc1_root_shadow"] in ("ENOENT", "EACCES")
    assert out["etc"] == "ENOENT"
    # /proc shows its own PID namespace only: kiln-vmm (1) and the probe.
    listing = json.loads(out["proc"][4:].replace("'", '"'))
    assert [p for p in listing if p.isdigit() and int(p) not in (1, out["pid_inside"])] == [], \
        listing
    assert out["host_pids_checked"] > 10
    assert all(p <= out["pid_inside"] for p in out["host_pids_visible"]), \
        f"host PIDs reachable from the jail: {out['host_pids_visible']}"
    assert out["tcp_loopback"] in ("ENETUNREACH", "ECONNREFUSED"), out["tcp_loopback"]
    assert out["tcp_outside"] == "ENETUNREACH", out["tcp_outside"]
    assert out["interfaces"] == ["lo"]
    assert out["write_root"] in ("EROFS", "EACCES") and out["mkdir_root"] in ("EROFS", "EACCES")
    for p, what in out["paths"].items():
        assert what == "ENOENT", f"{p} is reachable from the jail: {what}"
    # Files: the jail's kiln-vmm, its /vm, and the snapshot's and image's files.
    state = str(kilnd.state_dir.resolve())
    for f in out["files"]:
        assert (f == "/kiln-vmm" or f.startswith("/vm/") or f.startswith(state + "/snapshots/")
                or "/base/" in f or f == str(kilnd.rootfs)), f"unexpected file in the jail: {f}"


def test_cgroup_limits_and_rlimits(jailed):
    kilnd, run_dir, pid = jailed
    d = cgroup_dir(pid, "memory")
    if d is None or not d.exists():
        pytest.skip("no cgroup v1 memory hierarchy here (v2 is not tested on this host)")
    assert d.name.startswith(f"kiln-{Path(run_dir).name}-"), d
    mem_mb = 128  # the function's memory: the default
    assert int((d / "memory.limit_in_bytes").read_text()) == (mem_mb + 256) << 20
    assert str(pid) in (d / "cgroup.procs").read_text().split()
    p = cgroup_dir(pid, "pids")
    assert int((p / "pids.max").read_text()) == 66
    c = cgroup_dir(pid, "cpu")
    assert int((c / "cpu.cfs_quota_us").read_text()) == 2 * int((c / "cpu.cfs_period_us").read_text())
    limits = Path(f"/proc/{pid}/limits").read_text()
    lines = {ln[:26].strip(): ln[26:].split() for ln in limits.splitlines()[1:]}
    assert lines["Max open files"][:2] == ["2048", "2048"]
    assert lines["Max core file size"][:2] == ["0", "0"]
    assert lines["Max processes"][:2] == ["66", "66"]


def test_cgroups_of_stopped_vms_are_removed(jailed):
    kilnd, run_dir, pid = jailed
    d = cgroup_dir(pid, "memory")
    if d is None:
        pytest.skip("no cgroup v1 memory hierarchy here")
    parent, prefix = d.parent, f"kiln-{Path(run_dir).name}-"
    live = {p.name for p in Path(run_dir).iterdir() if p.is_dir()}
    # Allow a spawn or a stop in flight between the two listings.
    deadline = time.monotonic() + 30
    while True:
        groups = {g.name[len(prefix):].rsplit("-", 1)[0] for g in parent.iterdir()
                  if g.is_dir() and g.name.startswith(prefix)}
        live = {p.name for p in Path(run_dir).iterdir() if p.is_dir()}
        if groups <= live or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert groups <= live, f"cgroups without a VM: {groups - live}"


def test_jail_refused_is_a_clear_error(kilnd, tmp_path):
    """--jail with a kiln-vmm that cannot be jailed (dynamically linked)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    r = subprocess.run(
        [str(BUILD / "kilnd"), "--jail", "--vmm", "/usr/bin/true", "--state-dir",
         str(tmp_path / "s"), "--port", "0", "--socket", str(tmp_path / "sock"),
         "--kernel", str(kilnd.kernel), "--rootfs", str(kilnd.rootfs)],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r
    assert "cannot jail kiln-vmm" in r.stderr and "statically linked" in r.stderr, r.stderr
    assert "--no-jail" in r.stderr


def test_jailer_refuses_bad_arguments(tmp_path):
    j = str(BUILD / "kiln-jailer")
    for args in (["--id", "../x", "--root", "/tmp/x", "--uid", "1", "--gid", "1", "--", "v"],
                 ["--id", "x", "--root", "rel", "--uid", "1", "--gid", "1", "--", "v"],
                 ["--id", "x", "--root", "/tmp/x", "--uid", "1", "--", "v"],
                 ["--id", "x", "--root", "/tmp/x", "--uid", "1", "--gid", "1"]):
        r = subprocess.run([j, *args], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (args, r)
        assert "kiln-jailer: error:" in r.stderr, r.stderr
    # Not PID 1 of a new PID namespace: refused before touching anything.
    r = subprocess.run([j, "--id", "x", "--root", str(tmp_path / "r"), "--uid", "900999",
                        "--gid", "900999", "--", str(BUILD / "kiln-vmm")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "PID 1" in r.stderr, r
    assert not (tmp_path / "r").exists()
