"""Attacks a jailed kiln-vmm's jail from inside, as the VM would see it.

    jail_probe.py PID PORT PATH...

Enters every namespace of process PID (mount, PID, network, IPC, UTS,
cgroup: as `nsenter --all` would), becomes its uid and gid with no groups, no
capabilities and no_new_privs (as the jailed kiln-vmm runs), forks once (a
PID namespace takes effect for children), and then tries what a compromised
kiln-vmm would: read /etc/shadow, list /proc, see host PIDs, reach the host's
TCP port PORT and the network, write to the jail's root, and reach each host
PATH. Prints one JSON object with what happened; run it as root with a
single-threaded interpreter (setns of a mount namespace needs that).
"""
import ctypes
import encodings.idna  # noqa: F401 (loaded before the jail hides the host files)
import errno
import json
import os
import socket
import sys

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWPID = 0x08000000, 0x40000000, 0x20000000
PR_SET_NO_NEW_PRIVS = 38

libc = ctypes.CDLL(None, use_errno=True)


def attempt(fn):
    """'ok: ...' or the errno name the attempt failed with."""
    try:
        r = fn()
        return "ok" if r is None else f"ok: {r}"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def main():
    pid, port, paths = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    st = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        st[k] = v.split()
    uid, gid = int(st["Uid"][0]), int(st["Gid"][0])
    host_pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    order = [("cgroup", CLONE_NEWCGROUP), ("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS),
             ("net", CLONE_NEWNET), ("pid", CLONE_NEWPID), ("mnt", CLONE_NEWNS)]
    fds = [(name, os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY), flag)
           for name, flag in order]
    for name, fd, flag in fds:
        if libc.setns(fd, flag) != 0:
            print(json.dumps({"error": f"setns {name}: {os.strerror(ctypes.get_errno())}"}))
            return 1
        os.close(fd)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # from root to non-root: every capability goes
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    r, w = os.pipe()
    child = os.fork()
    if child:
        os.close(w)
        data = b""
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            data += b
        os.waitpid(child, 0)
        sys.stdout.write(data.decode() + "\n")
        return 0
    os.close(r)
    out = {"uid": os.getuid(), "gid": os.getgid(), "pid_inside": os.getpid()}
    caps = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k.startswith("Cap") or k == "NoNewPrivs":
            caps[k] = v.strip()
    out["status"] = caps
    out["shadow"] = attempt(lambda: open("/etc/shadow").read(1))
    out["etc"] = attempt(lambda: os.listdir("/etc"))
    out["proc"] = attempt(lambda: sorted(os.listdir("/proc")))
    out["root"] = attempt(lambda: sorted(os.listdir("/")))
    out["proc1_root_shadow"] = attempt(lambda: open("/proc/1/root/etc/shadow").read(1))
    out["write_root"] = attempt(lambda: open("/planted", "w").close())
    out["mkdir_root"] = attempt(lambda: os.mkdir("/planted-dir"))
    seen = []
    for p in host_pids:
        if p in (1, os.getpid()):
            continue  # inside: kiln-vmm itself and this probe
        try:
            os.kill(p, 0)
            seen.append(p)
        except ProcessLookupError:
            pass
        except PermissionError:
            seen.append(p)
    out["host_pids_checked"] = len(host_pids)
    out["host_pids_visible"] = seen

    def tcp(host):
        with socket.create_connection((host, port), timeout=3):
            pass
    out["tcp_loopback"] = attempt(lambda: tcp("127.0.0.1"))
    out["tcp_outside"] = attempt(lambda: tcp("1.1.1.1"))
    out["interfaces"] = [n for _, n in socket.if_nameindex()]
    out["paths"] = {p: attempt(lambda p=p: os.stat(p) and None) for p in paths}
    files = []
    for d, dirs, names in os.walk("/"):
        if d == "/":
            dirs[:] = [x for x in dirs if x != "proc"]
        files += [os.path.join(d, n) for n in names]
    out["files"] = sorted(files)
    os.write(w, json.dumps(out).encode())
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
