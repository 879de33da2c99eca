#!/usr/bin/python3
"""The jail's cost on a restore into a pre-started kiln-vmm, through kilnd.

    bench/jail_restore.py BUILD KERNEL ROOTFS [N]

Deploys one Python function and N-1 functions sharing its snapshot, then calls
each once (N cold restores into pre-started VMs), in four rounds on the same
state directory: kilnd --no-jail, --jail, --no-jail, --jail (alternating, so
the page cache favours neither), and prints kilnd's
kiln_restore_duration_seconds (restore request sent -> kiln-vmm's reply;
jailed, it includes binding the snapshot chain and disk into the jail) and
each call's latency. Needs root and /dev/kvm; minutes on nested KVM.
"""
import base64
import io
import json
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import http.client
from pathlib import Path

HANDLER = b"def handle(event, context):\n    return {'ok': True}\n"


def tar():
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w") as t:
        i = tarfile.TarInfo("handler.py")
        i.size = len(HANDLER)
        t.addfile(i, io.BytesIO(HANDLER))
    return base64.b64encode(b.getvalue()).decode()


def req(port, method, path, body=None, timeout=1800):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request(method, path, body=json.dumps(body) if isinstance(body, dict) else body)
    r = c.getresponse()
    return r.status, r.read()


def start(build, state, port, kernel, rootfs, extra):
    p = subprocess.Popen([f"{build}/kilnd", "--state-dir", state, "--port", str(port),
                          "--kernel", kernel, "--rootfs", rootfs, "--pool", "2", *extra],
                         stdout=open(f"{state}.log", "ab"), stderr=subprocess.STDOUT)
    for _ in range(600):
        try:
            if req(port, "GET", "/healthz", timeout=2)[0] == 200:
                return p
        except OSError:
            time.sleep(0.1)
    raise SystemExit("kilnd did not start: see " + state + ".log")


def restore_hist(port):
    text = req(port, "GET", "/metrics")[1].decode()
    s = float(re.search(r"^kiln_restore_duration_seconds_sum (\S+)", text, re.M).group(1))
    n = float(re.search(r"^kiln_restore_duration_seconds_count (\S+)", text, re.M).group(1))
    return s, n


def run(port, names):
    s0, n0 = restore_hist(port)
    lat = []
    for name in names:
        t = time.monotonic()
        st, body = req(port, "POST", f"/function/{name}", b"{}")
        lat.append((time.monotonic() - t) * 1000)
        assert st == 200, (st, body)
        time.sleep(1.5)  # let the pool refill: each call restores into a ready VM
    s1, n1 = restore_hist(port)
    return (s1 - s0) / (n1 - n0) * 1000, n1 - n0, lat


def main():
    build, kernel, rootfs = sys.argv[1:4]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    work = tempfile.mkdtemp(prefix="kiln-bench-jail-restore-")
    state, port = f"{work}/state", 18000 + int(time.time()) % 1000
    names = [f"jr-{i}" for i in range(n)]
    results = {"jailed": [0.0, 0, []], "unjailed": [0.0, 0, []]}
    rounds = [("unjailed", ["--no-jail"]), ("jailed", ["--jail"])] * 2
    for r, (mode, extra) in enumerate(rounds):
        k = start(build, state, port, kernel, rootfs, extra)
        try:
            if r == 0:
                for name in names:
                    st, body = req(port, "POST", "/system/functions?wait=1",
                                   {"name": name, "runtime": "python", "code": tar()})
                    assert st == 201, (st, body)
            time.sleep(3)  # the pool fills
            mean_ms, count, lat = run(port, names)
            results[mode][0] += mean_ms * count
            results[mode][1] += count
            results[mode][2] += lat
        finally:
            k.terminate()
            k.wait()
    for mode, (total, count, lat) in results.items():
        print(f"{mode:8s}: restore (kilnd's histogram) mean {total / count:.2f} ms over {count:.0f}; "
              f"cold call latency median {statistics.median(lat):.0f} ms, min {min(lat):.0f} ms")


if __name__ == "__main__":
    main()
