#!/usr/bin/env python3
"""Guest kernel profiles from kiln-vmm's control socket, by function.

kiln-vmm's `{"op":"profile","hz":N}` starts sampling where the guest's vCPUs
are; `{"op":"profile","stop":true}` answers the samples (docs/control-api.md).
This module maps the kernel addresses to functions with the guest kernel's
System.map, for bench/snapshots.py and by hand:

    python3 bench/guestprof.py --api-sock SOCK --system-map MAP --seconds 10
    python3 bench/guestprof.py --system-map MAP --json reply.json
"""
import argparse
import bisect
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402  (the control-socket request)


class SystemMap:
    """Text symbols of a kernel, from its System.map."""

    def __init__(self, path):
        syms = []
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[1] in "tTwW":
                    syms.append((int(parts[0], 16), parts[2]))
        syms.sort()
        self.addrs = [a for a, _ in syms]
        self.names = [n for _, n in syms]

    def name(self, addr):
        i = bisect.bisect_right(self.addrs, addr) - 1
        return self.names[i] if i >= 0 else f"{addr:#x}"


def start(sock, hz):
    """Starts kiln-vmm's profile at `hz` samples a second (drops old ones)."""
    bl.api(sock, {"op": "profile", "hz": hz})


def stop(sock):
    """Stops it; returns the profile reply (samples, user, kernel)."""
    return bl.api(sock, {"op": "profile", "stop": True})[0]


def by_function(reply, smap):
    """{function: samples} for a profile reply; user space as '(user)'."""
    out = {}
    if reply.get("user"):
        out["(user space)"] = reply["user"]
    for addr, n in reply.get("kernel", []):
        fn = smap.name(int(addr, 16))
        out[fn] = out.get(fn, 0) + n
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def report(funcs, total, top=25):
    lines = [f"{total} samples"]
    for fn, n in list(funcs.items())[:top]:
        lines.append(f"{n:7d} {100.0 * n / max(total, 1):5.1f}%  {fn}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--system-map", required=True, help="the guest kernel's System.map")
    ap.add_argument("--api-sock", help="a running kiln-vmm's control socket")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long to sample")
    ap.add_argument("--hz", type=int, default=1000)
    ap.add_argument("--json", help="a saved profile reply instead of --api-sock")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    smap = SystemMap(args.system_map)
    if args.json:
        with open(args.json) as f:
            reply = json.load(f)
    elif args.api_sock:
        try:
            start(args.api_sock, args.hz)
            time.sleep(args.seconds)
            reply = stop(args.api_sock)
        except bl.BenchError as e:
            sys.exit(f"profile: {e}")
    else:
        ap.error("give --api-sock or --json")
    print(report(by_function(reply, smap), reply.get("samples", 0), args.top))


if __name__ == "__main__":
    main()
