#!/usr/bin/python3
"""The "kilnd" benchmark group: the whole FaaS path, HTTP in to HTTP out,
beside the same handler as a plain host process behind the same HTTP server.

Usage: bench/kilnd.py --build BUILD_DIR

One kilnd (its own state directory, a free port) serves Python functions
from restores of their snapshots (the base snapshot is kilnd's own, cached
in KILN_CACHE/base; a missing one costs one boot). Measures, in one run:

  1. warm invocations of an echo function through the full HTTP path, with
     wrk from Debian: latency p50/p99 at one connection, and throughput at
     four connections (two VMs); kilnd's own share of each call from the
     Server-Timing header kilnd sends ("kilnd": request in to response out,
     minus "vm": INVOKE written to RESULT read);
  2. the lower bound: build/bench/kiln-floor, kilnd's HTTP server code
     (src/daemon/http.c) in front of build/kiln-init run as a host process
     with the same handler, under the same wrk runs;
  3. cold invocations: a function with keep_alive 0, each call waiting for
     the previous VM to be gone, so each is a restore (checked through
     X-Kiln-Start), beside the bare path of the Snapshots group on the same
     snapshot: a restore into a pre-started kiln-vmm, connect, ENTROPY,
     TIME, INVOKE, RESULT, driven from Python;
  4. density: one function with min_instances N kept idle (paused), each
     VM's PSS (/proc/PID/smaps_rollup) and the host CPU that kilnd and all
     its VMs use while idle, over 30 s.

  5. load (also alone: `bench/kilnd.py --build build --only load`): 200
     concurrent clients (wrk -c 200) for 60 s against a warm function
     (`max_instances` 4, `queue_timeout` 30 s), every response counted by
     status: 200, the documented 429 (a call that waited its queue_timeout
     for a slot), anything else is a failure, as are wrk's socket errors.
     `--kilnd-flags "..."` passes flags to kilnd (the same run with the
     jail or seccomp on and off); each set of flags gets its own section.

Prints a table and rewrites the "## kilnd" section of bench/RESULTS.md
(the load part: "## kilnd load (FLAGS)").

Environment: BENCH_QUICK=1 (short runs, 20 VMs, RESULTS.md left alone),
BENCH_KILND_SECONDS (wrk duration, default 20), BENCH_KILND_COLD (cold
calls, default 20), BENCH_KILND_VMS (idle VMs, default 500),
BENCH_LOAD_CLIENTS (200), BENCH_LOAD_SECONDS (60; quick: 10),
BENCH_LOAD_VMS (4), BENCH_RESULTS.
"""
import base64
import datetime
import http.client
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

kc = bl.kc

ECHO = "def handle(event, context):\n    return event\n"
EVENT = b'{"hello": "world", "n": 42}'
# What both wrk scripts start with: POST the event, keep every thread (their
# counters are summed in done()).
WRK_POST_LUA = r'''
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
threads = {}

function setup(thread)
  table.insert(threads, thread)
end
'''

WRK_LUA = (WRK_POST_LUA + r'''
kilnd_ms = {}
vm_ms = {}
bad = 0

function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
  end
  local st = headers["Server-Timing"]
  if st then
    local k = string.match(st, "kilnd;dur=([%%d.]+)")
    local v = string.match(st, "vm;dur=([%%d.]+)")
    if k then table.insert(kilnd_ms, tonumber(k)) end
    if v then table.insert(vm_ms, tonumber(v)) end
  end
end

function done(summary, latency, requests)
  local ks, vs, b = {}, {}, 0
  for _, t in ipairs(threads) do
    for _, x in ipairs(t:get("kilnd_ms")) do table.insert(ks, x) end
    for _, x in ipairs(t:get("vm_ms")) do table.insert(vs, x) end
    b = b + t:get("bad")
  end
  table.sort(ks)
  table.sort(vs)
  local function pct(t, p)
    if #t == 0 then return -1 end
    return t[math.max(1, math.ceil(#t * p / 100))]
  end
  io.write(string.format("KILN bad=%%d n=%%d kilnd_p50=%%.4f kilnd_p99=%%.4f vm_p50=%%.4f\n",
                         b, #ks, pct(ks, 50), pct(ks, 99), pct(vs, 50)))
  for _, p in ipairs({50, 99}) do
    io.write(string.format("KILN lat_p%%d=%%d\n", p, latency:percentile(p)))
  end
end
''') % EVENT.decode()


LOAD_LUA = (WRK_POST_LUA + r'''
ok = 0
shed = 0
other = 0

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
  elseif status == 429 then
    shed = shed + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local o, s, x = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    s = s + t:get("shed")
    x = x + t:get("other")
  end
  local e = summary.errors
  io.write(string.format("KILN ok=%%d shed=%%d other=%%d\n", o, s, x))
  io.write(string.format("KILN err_connect=%%d err_read=%%d err_write=%%d err_timeout=%%d "
                         .. "err_status=%%d\n", e.connect, e.read, e.write, e.timeout, e.status))
  for _, p in ipairs({50, 90, 99}) do
    io.write(string.format("KILN lat_p%%d=%%d\n", p, latency:percentile(p)))
  end
  io.write(string.format("KILN lat_max=%%d\n", latency.max))
end
''') % EVENT.decode()


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



class Kilnd:
    def __init__(self, build, work, kernel, rootfs, extra=(), env=None):
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = self.work / "kilnd.log"
        self.proc = subprocess.Popen(
            [str(Path(build) / "kilnd"), "--state-dir", str(self.work / "state"),
             "--port", str(self.port), "--kernel", str(kernel), "--rootfs", str(rootfs),
             "--vmm", str(Path(build) / "kiln-vmm"), *extra],
            stdin=subprocess.DEVNULL, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
            start_new_session=True, env=env)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.request("GET", "/healthz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise bl.BenchError(f"kilnd did not start:\n{self.tail()}")
            time.sleep(0.05)

    def tail(self):
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def request(self, method, path, body=None, headers=None, timeout=1800):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def deploy(self, name, **spec):
        body = {"name": name, "runtime": "python", "handler": "handler.handle",
                "code": base64.b64encode(kc.make_tar({"handler.py": ECHO})).decode(), **spec}
        st, _, out = self.request("POST", "/system/functions?wait=1", json.dumps(body))
        if st not in (200, 201, 202):
            raise bl.BenchError(f"deploy of {name}: {st} {out[:500]!r}\n{self.tail()}")

    def describe(self, name):
        st, _, out = self.request("GET", f"/system/function/{name}", timeout=60)
        if st != 200:
            raise bl.BenchError(f"describe {name}: {st} {out[:300]!r}")
        return json.loads(out)

    def invoke(self, name):
        st, h, out = self.request("POST", f"/function/{name}", EVENT,
                                  {"Content-Type": "application/json"}, timeout=600)
        if st != 200 or json.loads(out) != json.loads(EVENT):
            raise bl.BenchError(f"invoke {name}: {st} {out[:300]!r}")
        return h

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def server_timing(h):
    st = h.get("server-timing", "")
    k = re.search(r"kilnd;dur=([\d.]+)", st)
    v = re.search(r"vm;dur=([\d.]+)", st)
    return (float(k.group(1)) if k else None, float(v.group(1)) if v else None)


def wrk(url, conns, seconds, work, script=WRK_LUA, name="echo.lua", timeout_s=30):
    """One wrk run; returns a dict of its figures (latencies in µs)."""
    lua = Path(work) / name
    lua.write_text(script)
    argv = ["wrk", "-t", str(min(conns, 2)), "-c", str(conns), "-d", f"{seconds}s",
            "--timeout", f"{timeout_s}s", "-s", str(lua), url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise bl.BenchError(f"wrk failed: {out.stderr}")
    text = out.stdout
    r = {"argv": " ".join(argv[:-3] + [name, url])}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    r["rps"] = float(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in", text)
    r["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", text)
    r["socket_errors"] = m.group(1) if m else ""
    for line in text.splitlines():  # the Lua script's "KILN k=v k=v" lines
        if line.startswith("KILN "):
            r.update((k, float(v)) for k, v in re.findall(r"(\w+)=([-\d.]+)", line))
    return r


def children(pid):
    out = []
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(x) for x in (t / "children").read_text().split()]
        except OSError:
            pass
    return out


def pss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def restored(pid):
    """True when this kiln-vmm has a snapshot's memory file mapped."""
    try:
        return "/snapshots/" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])  # utime, stime
        except OSError:
            pass
    return total


def fmt_us(v):
    return "-" if v is None or v < 0 else (f"{v:.0f} µs" if v < 1000 else f"{v / 1000:.2f} ms")


def fmt_ms(v):
    return "-" if v is None or v < 0 else (f"{v * 1000:.0f} µs" if v < 1 else f"{v:.2f} ms")


def run(args):
    if args.only == "load":
        return run_load(args)
    rc = run_main(args)
    if args.only == "all":
        rc = run_load(args) or rc
    return rc


def run_main(args):
    build = Path(args.build).resolve()
    if not bl.kvm_usable():
        print("bench: SKIPPED kilnd group: /dev/kvm is not usable", file=sys.stderr)
        return 0
    if not shutil.which("wrk"):
        raise bl.BenchError("wrk not found: run scripts/setup")
    floor = build / "bench" / "kiln-floor"
    if not floor.exists():
        raise bl.BenchError(f"{floor} not found: run 'make bench'")
    quick = bl.quick()
    seconds = bl.env_int("BENCH_KILND_SECONDS", 5 if quick else 20)
    ncold = bl.env_int("BENCH_KILND_COLD", 5 if quick else 20)
    nvms = bl.env_int("BENCH_KILND_VMS", 20 if quick else 500)
    kernel = bl.find_kernel()
    rootfs = bl.find_rootfs_python(build)
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-kilnd-"))
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    res = {}
    k = None
    try:
        bl.log("kilnd: starting; deploying echo (a missing base snapshot costs a boot)")
        k = Kilnd(build, work / "kilnd", kernel, rootfs,
                  extra=("--pool", "8", "--mem-budget", str(max(4096, (nvms + 16) * 128))))
        t0 = time.monotonic()
        k.deploy("echo", max_instances=2, concurrency=2, queue_timeout=60, keep_alive=3600)
        res["deploy_s"] = time.monotonic() - t0
        for _ in range(20):
            k.invoke("echo")
        url = f"http://127.0.0.1:{k.port}/function/echo"
        bl.log(f"kilnd: wrk, 1 connection, {seconds} s")
        res["k1"] = wrk(url, 1, seconds, work)
        bl.log(f"kilnd: wrk, 4 connections, {seconds} s")
        res["k4"] = wrk(url, 4, seconds, work)

        bl.log("floor: kiln-init on the host behind kilnd's HTTP server")
        agent = bl.HostAgent(build, work / "host")
        try:
            c = agent.client()
            c.hello()
            c.load({"handler.py": ECHO}, runtime="python", mode="server",
                   handler="handler.handle")
            c.close()
            port = free_port()
            fp = subprocess.Popen([str(floor), "--port", str(port), "--agent", agent.sock],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                line = fp.stdout.readline()
                if "listening" not in line:
                    raise bl.BenchError(f"kiln-floor: {line}")
                furl = f"http://127.0.0.1:{port}/function/echo"
                for _ in range(20):
                    subprocess.run(["curl", "-sf", "-d", EVENT, furl], check=True,
                                   stdout=subprocess.DEVNULL)
                res["f1"] = wrk(furl, 1, seconds, work)
                res["f4"] = wrk(furl, 4, seconds, work)
            finally:
                fp.terminate()
                fp.wait()
        finally:
            agent.stop()

        bl.log(f"kilnd: {ncold} cold calls (keep_alive 0)")
        k.deploy("cold", max_instances=1, keep_alive=0)
        cold, cold_kilnd = [], []
        for i in range(ncold + 1):
            deadline = time.monotonic() + 120
            while k.describe("cold")["instances"]["running"]:
                if time.monotonic() > deadline:
                    raise bl.BenchError("the cold function's VM never went away")
                time.sleep(0.05)
            t = time.monotonic_ns()
            h = k.invoke("cold")
            ns = time.monotonic_ns() - t
            if h.get("x-kiln-start") != "cold":
                raise bl.BenchError(f"call {i} was not cold: {h}")
            if i:  # the first one warms the host's page cache for the snapshot
                cold.append(ns / 1e6)
                cold_kilnd.append(server_timing(h)[0])
        res["cold"] = cold
        res["cold_kilnd"] = [x for x in cold_kilnd if x is not None]
        snap_id = k.describe("cold")["snapshot"]["id"]
        snap = work / "kilnd" / "state" / "snapshots" / snap_id

        bl.log(f"bare: {ncold} restores of the same snapshot into a pre-started kiln-vmm")
        bare = []
        (work / "bare").mkdir()
        for i in range(ncold + 1):
            g = bl.Guest.prestart(build / "kiln-vmm", work / "bare", f"b{i}", mem=128)
            try:
                g.wait_path(g.api)
                time.sleep(0.05)
                t = time.monotonic_ns()
                bl.api(g.api, {"op": "restore", "dir": str(snap), "disks": [str(rootfs)],
                               "vsock_uds": str(g.uds)})
                cl = bl.connect_agent(g.uds, hello=False, prepare=bl.entropy_and_time)
                r = cl.invoke(EVENT, deadline_ms=600000)
                ns = time.monotonic_ns() - t
                cl.close()
                if not r.ok:
                    raise bl.BenchError(f"bare invocation failed: {r}")
                if i:
                    bare.append(ns / 1e6)
            finally:
                g.stop()
        res["bare"] = bare

        bl.log(f"density: {nvms} idle VMs of one function (min_instances)")
        for name in ("echo", "cold"):  # their VMs map the same snapshot: gone first
            st, _, out = k.request("DELETE", "/system/functions",
                                   json.dumps({"functionName": name}))
            if st not in (200, 202, 204):
                raise bl.BenchError(f"remove {name}: {st} {out[:300]!r}")
        deadline = time.monotonic() + 120
        while any(restored(p) for p in children(k.proc.pid)):
            if time.monotonic() > deadline:
                raise bl.BenchError("the removed functions' VMs did not go away")
            time.sleep(0.1)
        t0 = time.monotonic()
        k.deploy("idle", min_instances=nvms, max_instances=nvms, keep_alive=86400)
        deadline = time.monotonic() + 3600
        while True:
            inst = k.describe("idle")["instances"]
            if inst["running"] >= nvms and inst["paused"] >= nvms:
                break
            if time.monotonic() > deadline:
                raise bl.BenchError(f"only {inst} of {nvms} VMs after an hour\n{k.tail()}")
            time.sleep(1)
        res["density_up_s"] = time.monotonic() - t0
        time.sleep(5)
        vms = [p for p in children(k.proc.pid) if restored(p)]
        pss = [x for x in (pss_kib(p) for p in vms) if x is not None]
        allp = [k.proc.pid] + children(k.proc.pid)
        hz = os.sysconf("SC_CLK_TCK")
        c0, t0 = cpu_ticks(allp), time.monotonic()
        time.sleep(30)
        c1, t1 = cpu_ticks(allp), time.monotonic()
        res["density"] = {"vms": len(vms), "pss_kib": pss,
                          "cpu_pct": 100.0 * (c1 - c0) / hz / (t1 - t0),
                          "mem_available_kib": int(re.search(
                              r"MemAvailable:\s+(\d+)",
                              Path("/proc/meminfo").read_text()).group(1))}
        # They are still all there, and one answers.
        k.invoke("idle")
    except bl.BenchError as e:
        raise bl.BenchError(f"{e}\nkilnd's log ends:\n{k.tail() if k else ''}") from None
    finally:
        if k:
            k.stop()
        shutil.rmtree(work, ignore_errors=True)

    report(res, started, load_before, seconds, ncold, nvms, quick)
    return 0


def verdict(ok):
    return "met" if ok else "MISSED"


def report(res, started, load_before, seconds, ncold, nvms, quick):
    k1, k4, f1, f4 = res["k1"], res["k4"], res["f1"], res["f4"]
    overhead_p50_us = k1.get("kilnd_p50", -1) * 1000
    bare_p50 = bl.percentile(res["bare"], 50)
    cold_p50 = bl.percentile(res["cold"], 50)
    d = res["density"]
    pss = d["pss_kib"]
    pss_med = bl.median(pss) / 1024 if pss else None
    pss_max = max(pss) / 1024 if pss else None
    rows = [
        ("warm call, 1 connection: latency p50 / p99",
         f"{fmt_us(k1.get('lat_p50'))} / {fmt_us(k1.get('lat_p99'))}",
         f"{fmt_us(f1.get('lat_p50'))} / {fmt_us(f1.get('lat_p99'))}", "", ""),
        ("warm call, 1 connection: calls/s", f"{k1['rps']:.0f}", f"{f1['rps']:.0f}", "", ""),
        ("warm call, 4 connections (2 VMs): calls/s", f"{k4['rps']:.0f}", f"{f4['rps']:.0f}",
         "", ""),
        ("warm call, 4 connections: latency p50 / p99",
         f"{fmt_us(k4.get('lat_p50'))} / {fmt_us(k4.get('lat_p99'))}",
         f"{fmt_us(f4.get('lat_p50'))} / {fmt_us(f4.get('lat_p99'))}", "", ""),
        ("kilnd's own time per warm call (Server-Timing), p50 / p99",
         f"{fmt_ms(k1.get('kilnd_p50'))} / {fmt_ms(k1.get('kilnd_p99'))}", "",
         "≤ 200 µs p50", verdict(0 <= overhead_p50_us <= 200)),
        ("the VM's time per warm call (INVOKE written → RESULT read), p50",
         fmt_ms(k1.get("vm_p50")), "", "", ""),
        ("non-2xx responses / socket errors (all wrk runs)",
         f"{int(k1['non2xx'] + k4['non2xx'])} / {k1['socket_errors'] or k4['socket_errors'] or 0}",
         f"{int(f1['non2xx'] + f4['non2xx'])}", "", ""),
        (f"cold call through kilnd, p50 / p99 ({len(res['cold'])} calls)",
         f"{fmt_ms(cold_p50)} / {fmt_ms(bl.percentile(res['cold'], 99))}", "",
         "≤ bare + 2 ms", verdict(cold_p50 <= bare_p50 + 2)),
        ("  of which kilnd's own time (Server-Timing), p50",
         fmt_ms(bl.percentile(res["cold_kilnd"], 50)) if res["cold_kilnd"] else "-", "", "", ""),
        (f"bare restore → first answer, same snapshot, p50 / p99 ({len(res['bare'])})",
         f"{fmt_ms(bare_p50)} / {fmt_ms(bl.percentile(res['bare'], 99))}", "", "", ""),
        (f"idle VMs of one function held (asked: {nvms})", f"{d['vms']}", "", "500",
         verdict(d["vms"] >= 500)),
        ("  time to bring them up (min_instances)", f"{res['density_up_s']:.0f} s",
         "", "", ""),
        ("  PSS per idle VM, median / max",
         f"{pss_med:.2f} MiB / {pss_max:.2f} MiB" if pss else "-", "", "≤ 2 MiB",
         verdict(pss_max is not None and pss_max <= 2)),
        ("  host CPU of kilnd and all its VMs while idle (30 s)",
         f"{d['cpu_pct']:.2f}% of one core", "", "< 5%", verdict(d["cpu_pct"] < 5)),
        ("  MemAvailable with them up", f"{d['mem_available_kib'] / 1048576:.1f} GiB",
         "", "", ""),
        ("first deploy (restore base, load, snapshot)", f"{res['deploy_s']:.1f} s", "", "", ""),
    ]
    head = ("Measurement", "kilnd (microVM)", "host process floor", "Goal", "")
    print(bl.text_rows(head, rows))
    if quick:
        bl.log("BENCH_QUICK: RESULTS.md left alone")
        return
    info = bl.machine_info()
    la = os.getloadavg()
    body = (f"Last run: {started:%Y-%m-%d %H:%M} UTC, `make bench`; load average "
            f"{load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f} at the start, "
            f"{la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} at the end.\n\n"
            + bl.md_rows(("Machine", ""), info) + "\n\n"
            + bl.md_rows(head, rows) + "\n\n"
            "Method (details in [docs/benchmarks.md](../docs/benchmarks.md#kilnd)):\n\n"
            f"- *Warm*: `{k1['argv']}` (and `-c 4`) for {seconds} s after 20 warm-up calls, "
            "a POST of a 27-byte JSON event to a Python function returning its event "
            "(`max_instances` 2, `concurrency` 2); latencies are wrk's. *Floor*: the same "
            "wrk runs against `build/bench/kiln-floor`, kilnd's HTTP server code in front of "
            "`build/kiln-init` run as a host process with the same handler (one call at a time, "
            "as one VM).\n"
            "- *kilnd's own time*: each response's `Server-Timing: kilnd;dur=…, vm;dur=…`: "
            "kilnd's clock from the request read to the response queued, minus the time from "
            "the INVOKE written to the vsock socket to the RESULT read from it.\n"
            f"- *Cold*: {ncold} calls (after one discarded) of a function with `keep_alive` 0, "
            "each after its previous VM is gone, timed by the client (HTTP on loopback); each "
            "response says `X-Kiln-Start: cold`. *Bare*: the same function snapshot restored "
            "into an idle pre-started kiln-vmm (`--prestart --mem 128`) through its control "
            "socket, then connect, ENTROPY, TIME, INVOKE → RESULT from Python, as the Snapshots "
            "group times it.\n"
            f"- *Density*: a function with `min_instances` {nvms}; kilnd started with "
            "`--pool 8` and a memory budget large enough for all (guest memory is overcommitted:"
            " a restored VM maps its snapshot privately and touches little of it). PSS from "
            "`/proc/PID/smaps_rollup` of each kiln-vmm that maps a snapshot, once all are "
            "paused; CPU from `/proc/PID/stat` of kilnd and every child over 30 s.\n")
    bl.update_results(os.environ.get("BENCH_RESULTS", bl.ROOT / "bench" / "RESULTS.md"),
                      "## kilnd", body)


def run_load(args):
    """Part 5: 200 clients for 60 s against one warm function."""
    build = Path(args.build).resolve()
    if not bl.kvm_usable():
        print("bench: SKIPPED kilnd load: /dev/kvm is not usable", file=sys.stderr)
        return 0
    if not shutil.which("wrk"):
        raise bl.BenchError("wrk not found: run scripts/setup")
    quick = bl.quick()
    clients = bl.env_int("BENCH_LOAD_CLIENTS", 200)
    seconds = bl.env_int("BENCH_LOAD_SECONDS", 10 if quick else 60)
    nvms = bl.env_int("BENCH_LOAD_VMS", 4)
    queue_timeout = 30
    flags = shlex.split(args.kilnd_flags or "")
    kernel = bl.find_kernel()
    rootfs = bl.find_rootfs_python(build)
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-load-"))
    started = datetime.datetime.now(datetime.timezone.utc)
    # What guards each VM in this run: the jail (kilnd's default as root,
    # unless --no-jail) and kiln-vmm's seccomp filters (off in a SECCOMP=0
    # build, whose directory ends in -noseccomp).
    jail = os.geteuid() == 0 and "--no-jail" not in flags
    seccomp = not build.name.endswith("-noseccomp")
    res = {"flags": " ".join(flags), "build": build.name,
           "guards": f"jail {'on' if jail else 'off'}, seccomp {'on' if seccomp else 'off'}"}
    k = None
    try:
        bl.log(f"load: starting kilnd {' '.join(flags)}; deploying the echo function")
        k = Kilnd(build, work / "kilnd", kernel, rootfs,
                  extra=("--pool", str(nvms), "--mem-budget", str((nvms + 8) * 128), *flags))
        k.deploy("load", max_instances=nvms, concurrency=nvms, queue_timeout=queue_timeout,
                 keep_alive=3600)
        # Every VM up and warm before the clock starts: nvms calls at once, twice.
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=nvms) as pool:
            for _ in range(2):
                list(pool.map(lambda _: k.invoke("load"), range(nvms)))
        running = k.describe("load")["instances"]["running"]
        url = f"http://127.0.0.1:{k.port}/function/load"
        res["load_before"] = os.getloadavg()
        bl.log(f"load: wrk, {clients} connections, {seconds} s ({running} VMs warm)")
        res["w"] = wrk(url, clients, seconds, work, script=LOAD_LUA, name="load.lua",
                       timeout_s=2 * queue_timeout + 30)
        res["load_after"] = os.getloadavg()
        res["vms"] = running
        # Still serving afterwards.
        k.invoke("load")
        res["kilnd_alive"] = k.proc.poll() is None
    except bl.BenchError as e:
        raise bl.BenchError(f"{e}\nkilnd's log ends:\n{k.tail() if k else ''}") from None
    finally:
        if k:
            k.stop()
        shutil.rmtree(work, ignore_errors=True)
    return report_load(res, started, clients, seconds, nvms, queue_timeout, quick)


def report_load(res, started, clients, seconds, nvms, queue_timeout, quick):
    w = res["w"]
    ok, shed, other = int(w.get("ok", 0)), int(w.get("shed", 0)), int(w.get("other", 0))
    errs = {e: int(w.get(f"err_{e}", 0)) for e in ("connect", "read", "write", "timeout")}
    failed = other + sum(errs.values())
    lb, la = res["load_before"], res["load_after"]
    rows = [
        ("clients (wrk connections), duration", f"{clients}, {seconds} s", "", ""),
        ("warm VMs of the function (max_instances)", f"{res['vms']} ({nvms})", "", ""),
        ("responses: 200 / 429 (queue_timeout passed) / other",
         f"{ok} / {shed} / {other}", "", ""),
        ("socket errors: connect / read / write / timeout",
         " / ".join(str(errs[e]) for e in ("connect", "read", "write", "timeout")), "", ""),
        ("failed calls (not 200, not 429)", f"{failed}", "0", verdict(failed == 0)),
        ("throughput: 200s per second", f"{ok / seconds:.2f}", "", ""),
        ("latency p50 / p90 / p99 / max (all responses, wrk)",
         " / ".join(fmt_us(w.get(f"lat_{p}")) for p in ("p50", "p90", "p99", "max")), "", ""),
        ("load average (1/5/15 min) before / after",
         f"{lb[0]:.2f} {lb[1]:.2f} {lb[2]:.2f} / {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}", "", ""),
        ("kilnd still answering after the run", "yes" if res["kilnd_alive"] else "NO", "yes",
         verdict(res["kilnd_alive"])),
    ]
    head = ("Measurement", "kilnd", "Goal", "")
    print(bl.text_rows(head, rows))
    if quick:
        bl.log("BENCH_QUICK: RESULTS.md left alone")
        return 0 if failed == 0 else 1
    flags = res["guards"]
    info = bl.machine_info()
    body = (f"## kilnd load ({flags})\n\n"
            f"Last run: {started:%Y-%m-%d %H:%M} UTC, `bench/kilnd.py --build {res['build']} --only load"
            + (f" --kilnd-flags '{res['flags']}'" if res["flags"] else "") + "`, on a shared "
            "2-core machine with other work running (see the load averages): the figures are "
            "a loaded machine's, and the guest's kernel code is emulated (nested kvm_pvm).\n\n"
            + bl.md_rows(("Machine", ""), info) + "\n\n"
            + bl.md_rows(head, rows) + "\n\n"
            f"Method: kilnd (`--pool {nvms}`, its other defaults"
            + (f", plus `{res['flags']}`" if res["flags"] else "") + ") serves a Python echo "
            f"function (`max_instances` {nvms}, `concurrency` {nvms}, `queue_timeout` "
            f"{queue_timeout} s); after {2 * nvms} warm-up calls ({nvms} at a time) "
            f"`{w['argv']}` POSTs a 27-byte JSON event from {clients} connections for {seconds} s. "
            "A Lua script counts responses by status. 429 is kilnd's documented answer to a call "
            "that waited `queue_timeout` for a slot (docs/http-api.md); any other status, and "
            "every socket error (wrk's --timeout is twice the queue timeout plus 30 s), is a "
            "failed call. Latency is wrk's, over every response (200 and 429).\n")
    bl.update_results(os.environ.get("BENCH_RESULTS", bl.ROOT / "bench" / "RESULTS.md"),
                      f"## kilnd load ({flags})", body)
    return 0 if failed == 0 else 1


def add_args(ap):
    ap.add_argument("--only", choices=("all", "main", "load"), default="all",
                    help="main: parts 1-4; load: part 5 (200 clients); all: both")
    ap.add_argument("--kilnd-flags", default="",
                    help="extra kilnd flags, one shell-quoted string (e.g. the jail's)")


def main():
    return bl.group_main(run, __doc__, add_args=add_args)


if __name__ == "__main__":
    sys.exit(main())
