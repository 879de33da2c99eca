"""A function that attacks its host, through kilnd (issue 12, "Tests that,
from inside a guest, try to break out or hurt the host"; docs/security.md,
"Guest-facing limits").

Each attack runs in one function while another function (`atk-ok`) keeps
being called: it must answer during and after the attack, kilnd must stay
up, and the attacked function's next call must succeed. The attacks: a fork
bomb, a memory hog, 10 GiB written to stdout, 1.1 MB of log lines, and a
handler that never returns.

Every function is an sh function deployed from the cached base snapshot
(no boot). One kilnd serves the module, with small log files so that their
rotation is exercised (--log-max-bytes 1 MiB, --log-keep 2).
"""
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import Kilnd, vmm_pids

LOG_MAX = 1 << 20
LOG_KEEP = 2

# The bystander: answers "ok <body>".
OK = 'read b; echo "ok $b"\n'

# One script for every attacker: the body says which attack to run; any
# other body is an ordinary call that must work after the attack.
ATTACK = r'''read b
case "$b" in
bomb0)   f(){ f|f& }; f ;;
bomb)    f(){ f|f& }; f; while :; do :; done ;;
procs)   ls -d /proc/[0-9]* | wc -l ;;
hog)     s=x; while :; do s="$s$s"; done ;;
flood)   dd if=/dev/zero bs=1048576 count=10240 2>/dev/null ;;
logs)    yes 0123456789012345678901234567890123456789 | head -c 1100000 >&2; echo logged ;;
spin)    while :; do :; done ;;
limits)  cat /proc/sys/kernel/threads-max ;;
*)       echo "alive $b" ;;
esac
'''


@pytest.fixture(scope="module")
def k(kvm, vmm, kernel, rootfs_python, tmp_path_factory):
    # A copy of kiln-vmm: a `make` elsewhere during the run must not change
    # the binary (and the base snapshot's key) under this kilnd.
    pinned = tmp_path_factory.mktemp("vmm") / "kiln-vmm"
    shutil.copy2(vmm, pinned)
    d = Kilnd(tmp_path_factory.mktemp("attacks"), kernel, rootfs_python,
              extra=("--vmm", str(pinned), "--pause-after", "0",
                     "--log-max-bytes", str(LOG_MAX), "--log-keep", str(LOG_KEEP)))
    yield d
    assert d.stop() == 0, d.tail()


def deploy(k, name, script, **spec):
    # Generous timeouts for deploys: this host's guests run their kernel
    # emulated and share two CPUs with other busy guests.
    spec.setdefault("timeout", 120)
    r = k.deploy(name, {"handler.sh": script}, runtime="sh", **spec)
    assert r.status == 201, (r.status, r.body, k.tail())


@pytest.fixture(scope="module")
def ok(k):
    deploy(k, "atk-ok", OK)
    r = k.invoke("atk-ok", b"first\n")
    assert r.status == 200 and r.body == b"ok first\n", (r.status, r.body, k.tail())
    return "atk-ok"


def bystander_answers(k, ok, tag):
    r = k.invoke(ok, f"{tag}\n".encode(), timeout=300)
    assert r.status == 200, (tag, r.status, r.body, k.tail())
    assert r.body == f"ok {tag}\n".encode()


def attack_while_bystander_serves(k, ok, fn, body, min_calls=2):
    """Runs the attack call in a thread; the bystander is called meanwhile
    (at least min_calls times: the attack may end before they do, so they
    are not all "during", but the first one starts while it runs). Returns
    the attack's response."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        fut = pool.submit(lambda: k.invoke(fn, f"{body}\n".encode(), timeout=900))
        time.sleep(1)
        calls = 0
        while calls < min_calls or not fut.done():
            bystander_answers(k, ok, f"during-{body}-{calls}")
            calls += 1
        r = fut.result()
    assert k.proc.poll() is None, k.tail()
    bystander_answers(k, ok, f"after-{body}")
    return r


def dir_bytes(path):
    total = 0
    for p in Path(path).rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_blocks * 512
        except OSError:
            pass
    return total


def test_guest_task_limit_is_set(k):
    deploy(k, "atk-lim", ATTACK)
    r = k.invoke("atk-lim", b"limits\n")
    assert r.status == 200, (r.status, r.body)
    assert r.body == b"512\n"


def test_fork_bomb_is_contained_and_the_vm_replaced(k, ok):
    deploy(k, "atk-bomb", ATTACK, timeout=60)
    first = k.invoke("atk-bomb", b"procs\n")
    assert first.status == 200, (first.status, first.body)
    procs = int(first.body)
    # The classic bomb returns at once; its children are in the handler's
    # process group, which kiln-init kills when the handler exits: the same
    # VM answers next, with no more processes than before.
    r = attack_while_bystander_serves(k, ok, "atk-bomb", "bomb0")
    assert r.status == 200, (r.status, r.body, k.tail())
    after = k.invoke("atk-bomb", b"procs\n")
    assert after.status == 200, (after.status, after.body)
    assert after.header("x-kiln-vm") == first.header("x-kiln-vm")
    assert int(after.body) <= procs + 2, (procs, after.body)
    # The bomb again, the handler then spinning without forking: the
    # guest's task limit makes the bomb's forks fail (they do not fill its
    # memory); the deadline ends the call and kilnd replaces the VM.
    run_dir = k.info()["run_dir"]
    vm = first.header("x-kiln-vm")
    bomb_pid = int((Path(run_dir) / vm / "pid").read_text())
    r = attack_while_bystander_serves(k, ok, "atk-bomb", "bomb")
    assert r.status == 504, (r.status, r.body, k.tail())
    deadline = time.monotonic() + 60
    while bomb_pid in vmm_pids(run_dir):  # the bombed VM is gone
        assert time.monotonic() < deadline, k.tail()
        time.sleep(0.2)
    nxt = k.invoke("atk-bomb", b"again\n")
    assert nxt.status == 200 and nxt.body == b"alive again\n", (nxt.status, nxt.body, k.tail())
    assert nxt.header("x-kiln-vm") != vm


def test_memory_hog_dies_in_its_vm(k, ok):
    deploy(k, "atk-hog", ATTACK, timeout=60, memory=128)
    run_dir = k.info()["run_dir"]
    r = attack_while_bystander_serves(k, ok, "atk-hog", "hog")
    # The guest has 128 MiB: its kernel kills the shell (out of memory) or
    # the shell gives up; either way the call fails, nothing else does.
    print(f"memory hog answered {r.status}: {r.body[:300]!r}")
    assert r.status in (500, 504), (r.status, r.body, k.tail())
    if r.status == 500:
        assert b"signal 9" in r.body or b"memory" in r.body.lower(), r.body
    nxt = k.invoke("atk-hog", b"again\n")
    assert nxt.status == 200 and nxt.body == b"alive again\n", (nxt.status, nxt.body, k.tail())
    # Host memory stays bounded by the VMs' size: every kiln-vmm's resident
    # memory is under its guest's 128 MiB plus the VMM's own few MiB.
    for pid in vmm_pids(run_dir):
        try:
            rss_kb = int(next(line.split()[1] for line in
                              Path(f"/proc/{pid}/status").read_text().splitlines()
                              if line.startswith("VmRSS:")))
        except (OSError, StopIteration):
            continue
        assert rss_kb < (128 + 64) * 1024, (pid, rss_kb)


def test_10_gib_to_stdout_is_cut_at_the_body_cap(k, ok):
    # The deadline is far away (300 s): only the cap can end this call with
    # ResponseTooLarge; at this host's guest speed 10 GiB through a pipe
    # would take hours.
    deploy(k, "atk-flood", ATTACK, timeout=300)
    info = k.info()
    state, run_dir = k.state_dir, info["run_dir"]
    before = dir_bytes(state) + dir_bytes(run_dir)
    r = attack_while_bystander_serves(k, ok, "atk-flood", "flood")
    assert r.status == 500, (r.status, r.body, k.tail())
    assert b"larger than 6291456 bytes" in r.body, r.body
    after = dir_bytes(state) + dir_bytes(run_dir)
    # Nothing of the output is kept on the host: the VM's files and logs
    # grow by far less than one cap.
    assert after - before < 8 << 20, (before, after)
    nxt = k.invoke("atk-flood", b"again\n")
    assert nxt.status == 200 and nxt.body == b"alive again\n", (nxt.status, nxt.body)


def test_log_flood_is_capped_and_rotated(k, ok):
    deploy(k, "atk-logs", ATTACK, timeout=300)
    r = attack_while_bystander_serves(k, ok, "atk-logs", "logs")
    assert r.status == 200 and r.body == b"logged\n", (r.status, r.body, k.tail())
    # kiln-init forwards 1 MiB of a call's output and a note; kilnd writes
    # them as NDJSON (about 5x larger) into 1 MiB files, keeping two rotated.
    logs = k.state_dir / "logs"
    files = sorted(logs.glob("atk-logs.log*"))
    names = [p.name for p in files]
    assert "atk-logs.log.2" in names, names
    assert "atk-logs.log.3" not in names, names
    assert all(p.stat().st_size <= LOG_MAX for p in files), [(p.name, p.stat().st_size)
                                                             for p in files]
    assert sum(p.stat().st_size for p in files) <= (LOG_KEEP + 1) * LOG_MAX
    tail = k.request("GET", "/system/logs?name=atk-logs&tail=2")
    assert tail.status == 200
    assert b"log output truncated" in tail.body, tail.body[-2000:]
    nxt = k.invoke("atk-logs", b"again\n")
    assert nxt.status == 200 and nxt.body == b"alive again\n"


def test_handler_that_never_returns_times_out_and_the_vm_is_replaced(k, ok):
    # 30 s: enough for a cold call's exec on a busy host, and the loop
    # below never ends by itself.
    deploy(k, "atk-spin", ATTACK, timeout=30)
    first = k.invoke("atk-spin", b"warm\n")
    assert first.status == 200, (first.status, first.body)
    r = attack_while_bystander_serves(k, ok, "atk-spin", "spin")
    assert r.status == 504, (r.status, r.body, k.tail())
    nxt = k.invoke("atk-spin", b"again\n")
    assert nxt.status == 200 and nxt.body == b"alive again\n", (nxt.status, nxt.body)
    assert nxt.header("x-kiln-vm") != first.header("x-kiln-vm")
