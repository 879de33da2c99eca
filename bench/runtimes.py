#!/usr/bin/python3
"""The "Runtimes" benchmark group: cold and warm calls per runtime and
handler form through kilnd, each runtime image's size and each base
snapshot's size, beside Lambda's published init durations.

Usage: bench/runtimes.py --build BUILD_DIR

One kilnd (its own state directory, a free port; base snapshots from
KILN_CACHE/base, a missing one costs a boot) serves one function per
runtime and form, each answering a short event:

  python        server mode, Lambda's handle(event, context)
  python-exec   exec mode, `python3 app.py` per call (OpenFaaS classic)
  sh            exec mode, `sh handler.sh` per call
  native        server mode, examples/native/server.c built static
  native-exec   exec mode, examples/native/exec.c built static
  c             server mode, examples/native/server.c deployed as source:
                kilnd compiles it in its builder microVM (the deploy column
                then includes the build; the -warm twin is served by the
                build cache; every build is real: the bench's kilnd has a
                build cache of its own, empty)
  rust          exec mode, examples/rust/main.rs deployed as source (its
                build takes minutes on the nested KVM: BENCH_RUST=0 leaves
                it out)
  node          server mode, index.handler (BENCH_NODE=0 leaves it out)

Cold: keep_alive 0, each call after the previous VM is gone, so each is a
restore of the function's snapshot (checked through X-Kiln-Start). Warm: the
same function with a long keep_alive, calls one after another on a live VM.
Times are the client's, HTTP on loopback.

Prints a table and rewrites the "## Runtimes" section of bench/RESULTS.md.

Environment: BENCH_QUICK=1 (fewer calls, RESULTS.md left alone),
BENCH_RUNTIMES_CALLS (calls per measurement, default 7; exec-mode forms
get at most 3 here: each call is a fork and exec in an emulated kernel),
BENCH_RUNTIMES_FORMS (e.g. `native,sh`: only those forms), BENCH_NODE=0,
BENCH_RUST=0,
BENCH_RESULTS.
"""
import base64
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402
from kilnd import Kilnd  # noqa: E402

kc = bl.kc

# Lambda's init durations, p50, from the public lambda-perf data of
# 2023-03-19 (https://maxday.github.io/lambda-perf/), as the issue cites them.
LAMBDA_INIT_MS = {"python": 106, "node": 208, "native": 17, "rust": 17}
LAMBDA_NOTE = {"python": "Python 3.9", "node": "Node 18", "native": "Rust (provided.al2)",
               "rust": "Rust (provided.al2)"}

EVENT = b"hello kiln"
PY = "def handle(event, context):\n    return {'got': event}\n"
PY_EXEC = "import sys\nsys.stdout.write('got ' + sys.stdin.read())\n"
SH = 'read b\necho "got $b"\n'
NODE = "exports.handler = async (event) => ({got: event});\n"


def native_bins(work):
    out = {}
    for name in ("server", "exec"):
        path = work / f"native-{name}"
        subprocess.run(["cc", "-static", "-O2", "-o", str(path),
                        str(bl.ROOT / "examples" / "native" / f"{name}.c")], check=True)
        out[name] = path.read_bytes()
    return out


def forms(work, with_node):
    """(name, runtime, spec fields, files, exec?, what the answer holds) per
    measured form; BENCH_RUNTIMES_FORMS (comma-separated names) keeps some."""
    bins = native_bins(work)
    rows = [
        ("python", "python", {}, {"handler.py": PY}, False, b"got"),
        ("python-exec", "python", {"mode": "exec", "handler": "python3 app.py"},
         {"app.py": PY_EXEC}, True, b"got"),
        ("sh", "sh", {}, {"handler.sh": SH}, True, b"got"),
        ("native", "native", {"mode": "server", "handler": "bootstrap"},
         {"bootstrap": (bins["server"], 0o755)}, False, b"HELLO KILN"),
        ("native-exec", "native", {}, {"bootstrap": (bins["exec"], 0o755)}, True,
         b"HELLO KILN"),
        ("c", "c", {"mode": "server"},
         {"server.c": (bl.ROOT / "examples" / "native" / "server.c").read_text()}, False,
         b"HELLO KILN"),
    ]
    if os.environ.get("BENCH_RUST") != "0":
        rows.append(("rust", "rust", {},
                     {"main.rs": (bl.ROOT / "examples" / "rust" / "main.rs").read_text()}, True,
                     b"HELLO KILN"))
    if with_node:
        rows.append(("node", "node", {}, {"index.js": NODE}, False, b"got"))
    keep = os.environ.get("BENCH_RUNTIMES_FORMS")
    return [r for r in rows if not keep or r[0] in keep.split(",")]


def deploy(k, name, runtime, spec, files):
    body = {"name": name, "runtime": runtime, "timeout": 600,
            "code": base64.b64encode(kc.make_tar(files)).decode(), **spec}
    t0 = time.monotonic()
    st, _, out = k.request("POST", "/system/functions?wait=1", json.dumps(body))
    if st not in (200, 201):
        raise bl.BenchError(f"deploy of {name}: {st} {out[:500]!r}\n{k.tail()}")
    return time.monotonic() - t0


def call(k, name, want, want_start=None):
    t0 = time.monotonic_ns()
    st, h, out = k.request("POST", f"/function/{name}", EVENT, timeout=900)
    ns = time.monotonic_ns() - t0
    if st != 200 or want not in out:
        raise bl.BenchError(f"invoke {name}: {st} {out[:300]!r}\n{k.tail()}")
    if want_start and h.get("x-kiln-start") != want_start:
        raise bl.BenchError(f"{name}: X-Kiln-Start {h.get('x-kiln-start')}, not {want_start}")
    return ns / 1e6


def wait_no_vm(k, name, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if k.describe(name)["instances"]["running"] == 0:
            return
        time.sleep(0.05)
    raise bl.BenchError(f"{name}: its VM did not go away")


def du_bytes(path):
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_blocks * 512 for p in files), sum(p.stat().st_size for p in files)


def base_of(k, name):
    """The base snapshot directory a function's snapshot layers on (its
    state file's PARENT section names it)."""
    snap = k.describe(name)["snapshot"]
    if not snap:
        return None
    state = (k.work / "state" / "snapshots" / snap["id"] / "state").read_bytes()
    m = re.search(rb"(/[\x21-\x7e]*/base/[0-9a-f]{24}-[^/\x00-\x20]+)", state)
    # By name in the shared cache: the path written may be the bench's own
    # cache directory (a link to it, gone when the report is written).
    return bl.CACHE / "base" / Path(m.group(1).decode()).name if m else None


def run(args):
    build = Path(args.build).resolve()
    if not bl.kvm_usable():
        print("bench: SKIPPED runtimes group: /dev/kvm is not usable", file=sys.stderr)
        return 0
    if not shutil.which("cc"):
        raise bl.BenchError("cc not found: run scripts/setup")
    quick = bl.quick()
    ncalls = bl.env_int("BENCH_RUNTIMES_CALLS", 3 if quick else 7)
    nexec = min(ncalls, 3)
    with_node = os.environ.get("BENCH_NODE") != "0"
    kernel = bl.find_kernel()
    rootfs = bl.find_rootfs_python(build)
    out = subprocess.run([str(bl.ROOT / "images/rootfs/build-runtime.sh"), str(build), "builder"],
                         stdout=subprocess.PIPE, text=True, timeout=3600)
    if out.returncode:
        raise bl.BenchError("images/rootfs/build-runtime.sh BUILD builder failed")
    rootfs_builder = Path(out.stdout.strip().splitlines()[-1])
    extra = ["--rootfs-builder", str(rootfs_builder)]
    rootfs_node = None
    if with_node:
        out = subprocess.run([str(bl.ROOT / "images/rootfs/build-runtime.sh"), str(build),
                              "node"], stdout=subprocess.PIPE, text=True, timeout=3600)
        if out.returncode:
            raise bl.BenchError("images/rootfs/build-runtime.sh BUILD node failed")
        rootfs_node = Path(out.stdout.strip().splitlines()[-1])
        extra += ["--rootfs-node", str(rootfs_node)]
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-runtimes-"))
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    res = []
    k = None
    try:
        # Base snapshots from the shared cache, builds not: the c and rust
        # deploys then time a real build, never KILN_CACHE/builds.
        cache = work / "cache"
        (cache / "builds").mkdir(parents=True)
        (cache / "base").symlink_to(bl.CACHE / "base", target_is_directory=True)
        k = Kilnd(build, work / "kilnd", kernel, rootfs, extra=["--pool", "2", *extra],
                  env=dict(os.environ, KILN_CACHE=str(cache)))
        for name, runtime, spec, files, is_exec, want in forms(work, with_node):
            n = nexec if is_exec else ncalls
            bl.log(f"runtimes: {name}: deploying (cold and warm), {n} calls each")
            dep_s = deploy(k, f"{name}-cold", runtime, {**spec, "keep_alive": 0}, files)
            deploy(k, f"{name}-warm", runtime, {**spec, "keep_alive": 3600}, files)
            cold = []
            call(k, f"{name}-cold", want)  # discarded: the first restore pays page cache misses
            for _ in range(n):
                wait_no_vm(k, f"{name}-cold")
                cold.append(call(k, f"{name}-cold", want, "cold"))
            call(k, f"{name}-warm", want)
            warm = [call(k, f"{name}-warm", want, "warm") for _ in range(n)]
            snap = k.describe(f"{name}-warm")["snapshot"] or {}
            res.append({"name": name, "runtime": runtime, "cold": cold, "warm": warm,
                        "deploy_s": dep_s, "base": base_of(k, f"{name}-warm"),
                        "snap_mem": snap.get("memory_bytes", 0)})
    finally:
        if k:
            k.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(res, build, {"python, sh, native, c, rust": rootfs, "node": rootfs_node,
                        "the builder (c, rust)": rootfs_builder},
           with_node, started, load_before, ncalls, nexec, quick)
    return 0


def mib(b):
    return f"{b / 1048576:.1f} MiB"


def report(res, build, images, with_node, started, load_before, ncalls, nexec, quick):
    rows = []
    for r in res:
        c50, w50 = bl.percentile(r["cold"], 50), bl.percentile(r["warm"], 50)
        lam = (LAMBDA_INIT_MS.get(r["runtime"])
               if r["name"] in ("python", "node", "native", "rust") else None)
        rows.append((r["name"], f"{c50:.0f} / {max(r['cold']):.0f} ms",
                     f"{w50:.0f} / {max(r['warm']):.0f} ms", f"{c50 / w50:.1f}×",
                     f"{lam} ms ({LAMBDA_NOTE[r['runtime']]})" if lam else "",
                     f"{r['deploy_s']:.1f} s"))
    if not with_node:
        rows.append(("node", "not measured (BENCH_NODE=0)", "", "", "208 ms (Node 18)", ""))
    head = ("Function", "cold p50 / max", "warm p50 / max", "cold / warm",
            "Lambda init p50", "deploy")
    print(bl.text_rows(head, rows))
    sizes = []
    for label, img in images.items():
        if img and Path(img).exists():
            alloc, size = du_bytes(img)
            sizes.append((f"image for {label}: `{Path(img).name}`", mib(size), mib(alloc)))
    seen = set()
    for r in res:
        if r["base"] and r["base"] not in seen and r["base"].exists():
            seen.add(r["base"])
            alloc, size = du_bytes(r["base"])
            users = ", ".join(x["name"] for x in res if x["base"] == r["base"])
            sizes.append((f"base snapshot for {users}", mib(size), mib(alloc)))
    for r in res:
        if r["snap_mem"]:
            sizes.append((f"function snapshot memory: {r['name']} (a diff on its base)",
                          mib(r["snap_mem"]), ""))
    shead = ("What", "apparent size", "on disk")
    print(bl.text_rows(shead, sizes))
    if quick:
        bl.log("BENCH_QUICK: RESULTS.md left alone")
        return
    la = os.getloadavg()
    body = (f"Last run: {started:%Y-%m-%d %H:%M} UTC, `make bench`; load average "
            f"{load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f} at the start, "
            f"{la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} at the end.\n\n"
            + bl.md_rows(("Machine", ""), bl.machine_info()) + "\n\n"
            + bl.md_rows(head, rows) + "\n\n" + bl.md_rows(shead, sizes) + "\n\n"
            f"Method: one kilnd (`--pool 2`); per form two functions with the same code, "
            f"`keep_alive` 0 (cold: {ncalls} calls, {nexec} for exec-mode forms, each after the "
            "previous VM is gone, after one discarded call; every answer says `X-Kiln-Start: "
            "cold`) and `keep_alive` 3600 (warm: as many calls in a row on its live VM). A call "
            "is a POST of 10 bytes on loopback, timed by the client. Exec-mode forms fork and "
            "exec their command per call, in a guest whose kernel is emulated here: that is "
            "their warm time. Lambda's figures are init durations (p50) from the public "
            "lambda-perf data of 2023-03-19, the nearest published peer; they are not a "
            "restore and a call, so the comparison is indicative.\n")
    bl.update_results(os.environ.get("BENCH_RESULTS", bl.ROOT / "bench" / "RESULTS.md"),
                      "## Runtimes", body)


def main():
    return bl.group_main(run, __doc__)


if __name__ == "__main__":
    sys.exit(main())
