#!/usr/bin/python3
"""The "Snapshots" benchmark group: creating and restoring snapshots of a
real guest (the Python root filesystem with kiln-init's agent), as kilnd
uses them.

Usage: bench/snapshots.py --build BUILD_DIR

Snapshots (made as tests/e2e/test_snapshots.py makes them):
  base      the booted guest, agent idle (cached in ~/.cache/kiln/snapshots)
  python    restore base, LOAD a Python handler (server mode), one INVOKE,
            then a diff snapshot (and a full one, for sizes)
  sh        the same with an exec-mode shell function

Measures:
  1. creation time and file sizes (apparent and allocated), beside the
     guest memory the VMM had touched when the snapshot was taken;
  2. restore to running: new process (`kiln-vmm -vv --restore`: its own
     "first guest entry" timing line, and the harness's spawn -> vsock
     socket), and pre-started (`--prestart`, then {"op":"restore"}: the
     reply's load/apply/total and the client's round trip);
  3. restore to first answer: restore + vsock connect + ENTROPY + TIME +
     INVOKE -> RESULT, per function, new process and pre-started;
  4. restores per CPU-second: K new-process restores back to back, each
     answering one Python invocation, divided by the CPU time used.
Prints a table and rewrites the "## Snapshots" section of bench/RESULTS.md.

Environment: BENCH_QUICK=1 (3 runs, K=5, RESULTS.md left alone),
BENCH_SNAP_RUNS (default 10), BENCH_SNAP_K (default 20),
BENCH_BOOT_TIMEOUT, BENCH_KERNEL, BENCH_RESULTS.
"""
import datetime
import json
import os
import re
import resource
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402
import guestprof  # noqa: E402

kc = bl.kc
PY_HANDLER = '''import os, time

loaded_at = time.time()

def handle(event, context):
    return {"n": event["n"], "rand": os.urandom(8).hex(), "loaded_at": loaded_at}
'''
SH_HANDLER = 'echo "{\\"ok\\": true}"\n'
FUNCS = {
    "python": dict(files={"handler.py": PY_HANDLER}, runtime="python", mode="server",
                   handler="handler.handle"),
    "sh": dict(files={"handler.sh": SH_HANDLER}, runtime="sh", mode="exec",
               handler="sh handler.sh"),
}
GOAL_PRE_MS = 0.5  # issue 9: the restore itself into a pre-started kiln-vmm
GOAL_NEW_MS = 10.0
_SMAPS = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ (\d+)\s*(.*)$")


def guest_pages(pid, mem_bytes):
    """(resident, private dirty) bytes of the VMM's guest RAM: every mapping
    of a snapshot `memory` file plus the anonymous mapping of guest size (the
    slot a MAP_FIXED restore maps over). Resident = pages the guest (or the
    VMM) has touched since the mapping was made, dirty = those written
    (copied on write)."""
    rss = dirty = 0
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = _SMAPS.match(line)
            if m:
                size = int(m.group(2), 16) - int(m.group(1), 16)
                path = m.group(4).strip()
                cur = (path.endswith("/memory") or
                       (int(m.group(3)) == 0 and not path and
                        mem_bytes <= size <= mem_bytes + 4 * bl.MIB))
            elif cur and line.startswith("Rss:"):
                rss += int(line.split()[1]) * 1024
            elif cur and line.startswith("Private_Dirty:"):
                dirty += int(line.split()[1]) * 1024
    return rss, dirty


def invoke_once(c, kind, n):
    payload = json.dumps({"n": n}) if kind == "python" else b""
    r = c.invoke(payload, deadline_ms=600000)
    if not r.ok:
        raise bl.BenchError(f"{kind} invocation failed: {r}")
    return r


def make_function_snapshot(vmm, base, rootfs, work, kind, keep_open=True):
    """Restores base, loads the function, invokes it once, takes a diff and
    a full snapshot. With keep_open (as kilnd does) the connection stays
    open through the snapshot and kiln-vmm parks it; without, it is closed
    first and a restore must make a new one. Returns {'diff': dir, 'full':
    dir, 'diff_reply', 'full_reply', 'touched'}."""
    tag = kind if keep_open else f"{kind}-closed"
    bl.log(f"{tag}: restore base, LOAD, snapshot (diff and full)")
    g = bl.Guest.restore(vmm, base, [rootfs], work, f"make-{tag}")
    try:
        g.wait_path(g.uds)
        c = bl.connect_agent(g.uds, prepare=bl.entropy_and_time)
        spec = FUNCS[kind]
        c.load(spec["files"], runtime=spec["runtime"], mode=spec["mode"],
               handler=spec["handler"])
        invoke_once(c, kind, 0)
        counts = guest_trace(c, with_counts=True)[1]
        if not keep_open:
            c.close()
        touched = guest_pages(g.pid, bl.GUEST_MEM_MIB * bl.MIB)[0]
        out = {"touched": touched, "diff": work / f"{tag}-diff", "full": work / f"{tag}-full",
               "counts": counts}
        # As kilnd does: the connection stays open (idle) through the
        # snapshot, so kiln-vmm parks it and a restore's CONNECT takes it
        # over (docs/vsock.md, "Parked connections").
        out["diff_reply"], _ = bl.api(g.api, {"op": "snapshot", "dir": str(out["diff"]),
                                              "diff": True})
        out["full_reply"], _ = bl.api(g.api, {"op": "snapshot", "dir": str(out["full"]),
                                              "diff": False})
        c.close()
        return out
    finally:
        g.stop()


RETRIES = []  # one entry per silent connection retried (see benchlib.connect_agent)


def _retried(why):
    RETRIES.append(why)


def first_answer(uds, kind):
    """vsock connect (retried across the transport reset) + ENTROPY + TIME +
    INVOKE -> RESULT."""
    c = bl.connect_agent(uds, hello=False, prepare=bl.entropy_and_time, on_retry=_retried)
    try:
        invoke_once(c, kind, 1)
    finally:
        c.close()


def restore_new(vmm, snap, rootfs, work, name, kind):
    """One new-process restore answering one invocation. Returns a dict of ns
    (socket, answer) and kiln-vmm's own timings (ms)."""
    g = bl.Guest.restore(vmm, snap, [rootfs], work, name)
    try:
        sock_ns = g.wait_path(g.uds)
        first_answer(g.uds, kind)
        answer_ns = time.monotonic_ns() - g.t0_ns
    finally:
        g.stop()
    r = {"socket_ns": sock_ns, "answer_ns": answer_ns}
    r.update(g.timings())
    return r


def restore_pre(vmm, snap, rootfs, work, name, kind):
    """One restore into a pre-started kiln-vmm (started and idle first, not
    timed), answering one invocation."""
    g = bl.Guest.prestart(vmm, work, name)
    try:
        g.wait_path(g.api)
        time.sleep(0.05)  # idle, as in a pool
        t0 = time.monotonic_ns()
        reply, rtt = bl.api(g.api, {"op": "restore", "dir": str(snap), "disks": [str(rootfs)],
                                    "vsock_uds": str(g.uds)})
        first_answer(g.uds, kind)
        answer_ns = time.monotonic_ns() - t0
    finally:
        g.stop()
    return {"rtt_ns": rtt, "answer_ns": answer_ns, "total_ms": reply.get("total_ms"),
            "load_ms": reply.get("load_ms"), "apply_ms": reply.get("apply_ms")}


# ---- breakdown of restore -> first answer ------------------------------------------
TRACE = 0x0E  # docs/protocol.md: kiln-init's timeline of this connection
# KVM's own counters (the control socket's "stats" op) shown in the table.
KVM_COUNTERS = ("exits", "io_exits", "mmio_exits", "halt_exits", "irq_exits",
                "irq_window_exits", "signal_exits", "insn_emulation", "pf_taken", "pf_fixed",
                "pf_guest", "irq_injections", "tlb_flush", "hypercalls")
_TRACE_LINE = re.compile(r"^\+(\d+) (\w+)(?: (\w+))? (\d+)$")


def vmm_stats(sock):
    reply, _ = bl.api(sock, {"op": "stats"})
    out = {f"exit_{k}": v for k, v in reply.get("exits", {}).items()}
    out.update({f"kvm_{k}": v for k, v in reply.get("kvm", {}).items()})
    return out


def guest_trace(c, with_counts=False):
    """kiln-init's timeline of connection c (TRACE), as [(us, what, type)];
    with_counts, also the guest's counters since boot from the same answer
    ({"syscalls", "interrupts", "switches"}: /proc/stat, the first from
    kiln's kernel patch), as (timeline, counters)."""
    rid = c.send(TRACE)
    f = c.wait(rid)
    if f.type != TRACE:
        raise bl.BenchError(f"TRACE answered with {f!r}")
    ev, counts = [], {}
    for line in f.payload.decode().splitlines():
        m = _TRACE_LINE.match(line)
        if m:
            ev.append((int(m.group(1)), m.group(2), m.group(3)))
        elif line.startswith("counts "):
            words = line.split()[1:]
            counts = {k: int(v) for k, v in zip(words[0::2], words[1::2])}
    return (ev, counts) if with_counts else ev


def count_diff(after, before, overhead):
    """Guest counter differences minus one TRACE's own share, by key."""
    return {k: after[k] - before[k] - overhead.get(k, 0) for k in after if k in before}


def _first(ev, what, ftype=None, after=-1):
    for us, w, t in ev:
        if us > after and w == what and (ftype is None or t == ftype):
            return us
    return None


def record_working_set(vmm, snap, rootfs, work, name, kind):
    """Restores snap into a pre-started kiln-vmm, answers one call as kilnd
    does (pipelined), and has kiln-vmm write the pages touched so far as the
    snapshot's working set (docs/snapshots.md, "Working-set prefetch").
    Returns the file's path."""
    g = bl.Guest.prestart(vmm, work, name)
    path = Path(work) / f"{name}.working-set"
    try:
        g.wait_path(g.api)
        bl.api(g.api, {"op": "restore", "dir": str(snap), "disks": [str(rootfs)],
                       "vsock_uds": str(g.uds)})
        c = bl.connect_agent(g.uds, prepare=bl.entropy_and_time)
        try:
            invoke_once(c, kind, 1)
            rep, _ = bl.api(g.api, {"op": "working-set", "path": str(path)})
            if not rep.get("ok"):
                raise bl.BenchError(f"working-set: {rep}")
            bl.log(f"working set of the {kind} snapshot: {rep['pages']} pages in "
                   f"{rep['runs']} runs")
        finally:
            c.close()
    finally:
        g.stop()
    return path


def breakdown_once(vmm, snap, rootfs, work, name, kind, pipelined, working_set=None,
                   profile_hz=0, snap_counts=None):
    """One restore into a pre-started kiln-vmm answering one invocation, in
    phases: restore request, vsock connect (CONNECT/OK, retried until a
    connection survives), then ENTROPY, TIME and INVOKE either one round
    trip each (sequential) or written at once as kilnd does (pipelined).
    Then a warm call on the same connection. Around both: kiln-vmm's exit
    counters, KVM's, and the guest RAM resident/dirty in kiln-vmm.
    With profile_hz, kiln-vmm samples where the guest is during the cold
    window and the warm call (r["cold_profile"], r["warm_profile"]: profile
    replies); sampling adds exits, so such runs are not timed with the others.
    snap_counts: the guest's counters read by a TRACE just before the
    snapshot, for the cold window's system calls, interrupts and switches.
    Returns a dict (ms, counts, bytes)."""
    g = bl.Guest.prestart(vmm, work, name)
    r = {}
    try:
        g.wait_path(g.api)
        time.sleep(0.05)
        mem = bl.GUEST_MEM_MIB * bl.MIB
        s0, (rss0, dirty0) = vmm_stats(g.api), guest_pages(g.pid, mem)
        req = {"op": "restore", "dir": str(snap), "disks": [str(rootfs)],
               "vsock_uds": str(g.uds)}
        if working_set:
            req["working_set"] = str(working_set)
        if profile_hz:
            guestprof.start(g.api, profile_hz)
        t0 = time.monotonic_ns()
        rep, _ = bl.api(g.api, req)
        t1 = time.monotonic_ns()
        r["restore"] = (t1 - t0) / 1e6
        if working_set:
            pf = rep.get("prefetch", {})
            if "skipped" in pf:
                raise bl.BenchError(f"the working set was not used: {pf['skipped']}")
            r["prefetch_ms"], r["prefetch_pages"] = pf.get("ms"), pf.get("pages")
        retries = 0
        while True:
            try:
                c = kc.Client.connect_vsock(str(g.uds), kc.AGENT_PORT, timeout=10.0)
                break
            except (kc.ConnectionClosed, OSError):
                retries += 1
                if time.monotonic_ns() - t1 > 60e9:
                    raise
                time.sleep(0.002)
        t2 = time.monotonic_ns()
        r["connect"], r["connect_retries"] = (t2 - t1) / 1e6, retries
        try:
            c.settimeout(60.0)
            event = json.dumps({"n": 1}) if kind == "python" else b""
            payload = c.invoke_payload(event, deadline_ms=600000)
            if pipelined:
                ids = [c.next_id() for _ in range(3)]
                c.send_raw(kc.frame(kc.ENTROPY, ids[0], os.urandom(64)) +
                           kc.frame(kc.TIME, ids[1], struct.pack("<Q", time.time_ns())) +
                           kc.frame(kc.INVOKE, ids[2], payload))
                c.wait(ids[0])
                ta = time.monotonic_ns()
                c.wait(ids[1])
                tb = time.monotonic_ns()
                res = c.wait_result(ids[2])
                t3 = time.monotonic_ns()
                r["entropy"], r["time"], r["invoke"] = ((ta - t2) / 1e6, (tb - ta) / 1e6,
                                                        (t3 - tb) / 1e6)
            else:
                c.entropy(os.urandom(64))
                ta = time.monotonic_ns()
                c.set_time(time.time_ns())
                tb = time.monotonic_ns()
                res = c.wait_result(c.invoke_async(event, deadline_ms=600000))
                t3 = time.monotonic_ns()
                r["entropy"], r["time"], r["invoke"] = ((ta - t2) / 1e6,
                                                        (tb - ta) / 1e6, (t3 - tb) / 1e6)
            if not res.ok:
                raise bl.BenchError(f"{kind} invocation failed: {res}")
            r["answer"] = (t3 - t0) / 1e6
            if profile_hz:
                r["cold_profile"] = guestprof.stop(g.api)
            s1, (rss1, dirty1) = vmm_stats(g.api), guest_pages(g.pid, mem)
            ev, c1 = guest_trace(c, with_counts=True)
            # one TRACE's own share of the counters: a second one right after
            _, c1b = guest_trace(c, with_counts=True)
            trace_cost = {k: c1b[k] - c1[k] for k in c1 if k in c1b}
            if snap_counts:
                for k, v in count_diff(c1, snap_counts, trace_cost).items():
                    r[f"cold_g_{k}"] = v
            # a parked connection taken over: no accept, the timeline starts at ENTROPY
            r["parked"] = 1 if ev and ev[0][1] == "recv" and ev[0][2] == "ENTROPY" else 0
            # the guest's own view (its CLOCK_MONOTONIC, from the accept)
            e_in = _first(ev, "recv", "ENTROPY")
            i_in = _first(ev, "recv", "INVOKE")
            i_out = _first(ev, "queued", "RESULT")
            w_out = _first(ev, "wrote", None, after=(i_out if i_out is not None else -1) - 1)
            r["g_accept_entropy"] = None if e_in is None or r["parked"] else e_in / 1e3
            r["g_entropy_invoke"] = None if None in (e_in, i_in) else (i_in - e_in) / 1e3
            r["g_invoke_result"] = None if None in (i_in, i_out) else (i_out - i_in) / 1e3
            r["g_result_written"] = None if None in (i_out, w_out) else (w_out - i_out) / 1e3
            r["g_total"] = None if w_out is None else w_out / 1e3
            for k in set(s0) | set(s1):
                r["cold_" + k] = s1.get(k, 0) - s0.get(k, 0)
            r["cold_rss"], r["cold_dirty"] = rss1 - rss0, dirty1 - dirty0
            # one warm call on the same connection, counted the same way
            s2 = vmm_stats(g.api)
            if profile_hz:
                guestprof.start(g.api, profile_hz)
            t4 = time.monotonic_ns()
            invoke_once(c, kind, 2)
            r["warm"] = (time.monotonic_ns() - t4) / 1e6
            if profile_hz:
                r["warm_profile"] = guestprof.stop(g.api)
            r["ratio"] = r["answer"] / r["warm"] if r["warm"] else None
            s3, (rss3, dirty3) = vmm_stats(g.api), guest_pages(g.pid, mem)
            wev, c2 = guest_trace(c, with_counts=True)
            for k, v in count_diff(c2, c1b, trace_cost).items():
                r[f"warm_g_{k}"] = v
            wi, wo = _first(wev, "recv", "INVOKE"), _first(wev, "queued", "RESULT")
            r["g_warm_invoke_result"] = None if None in (wi, wo) else (wo - wi) / 1e3
            for k in set(s2) | set(s3):
                r["warm_" + k] = s3.get(k, 0) - s2.get(k, 0)
            r["warm_rss"], r["warm_dirty"] = rss3 - rss1, dirty3 - dirty1
        finally:
            c.close()
    finally:
        g.stop()
    return r


BREAKDOWN_ROWS = [
    ("restore request → reply (pre-started kiln-vmm)", "restore", "ms"),
    ("  of which the working set's prefetch", "prefetch_ms", "ms"),
    ("  pages prefetched", "prefetch_pages", "n"),
    ("vsock CONNECT → OK (host)", "connect", "ms"),
    ("  connections retried", "connect_retries", "n"),
    ("  connection taken over from the snapshot (parked), of runs", "parked", "n"),
    ("ENTROPY → ACK (host; pipelined: send → first ACK)", "entropy", "ms"),
    ("TIME → ACK (host)", "time", "ms"),
    ("INVOKE → RESULT (host)", "invoke", "ms"),
    ("**restore → first answer (host)**", "answer", "ms"),
    ("guest: accept → ENTROPY received", "g_accept_entropy", "ms"),
    ("guest: ENTROPY received → INVOKE received", "g_entropy_invoke", "ms"),
    ("guest: INVOKE received → RESULT queued (runtime)", "g_invoke_result", "ms"),
    ("guest: RESULT queued → written", "g_result_written", "ms"),
    ("guest: accept → RESULT written", "g_total", "ms"),
    ("guest RAM first touched (Rss of its mappings)", "cold_rss", "MiB"),
    ("  of which written (Private_Dirty)", "cold_dirty", "MiB"),
    ("guest system calls (kiln's kernel counter)", "cold_g_syscalls", "n"),
    ("guest interrupts", "cold_g_interrupts", "n"),
    ("guest context switches", "cold_g_switches", "n"),
    ("exits to kiln-vmm: port I/O", "cold_exit_pio", "n"),
    ("exits to kiln-vmm: MMIO", "cold_exit_mmio", "n"),
    ("exits to kiln-vmm: interrupted (signal)", "cold_exit_intr", "n"),
] + [(f"KVM {k}", f"cold_kvm_{k}", "n") for k in KVM_COUNTERS] + [
    ("**warm call INVOKE → RESULT (host, same connection)**", "warm", "ms"),
    ("warm: guest INVOKE received → RESULT queued", "g_warm_invoke_result", "ms"),
    ("warm: guest RAM newly touched", "warm_rss", "MiB"),
    ("warm: exits to kiln-vmm (pio + mmio)", "warm_exit_io", "n"),
    ("warm: guest system calls", "warm_g_syscalls", "n"),
    ("warm: guest interrupts", "warm_g_interrupts", "n"),
    ("warm: guest context switches", "warm_g_switches", "n"),
    ("**cold / warm (first answer ÷ warm call)**", "ratio", "x"),
] + [(f"warm: KVM {k}", f"warm_kvm_{k}", "n") for k in KVM_COUNTERS]


def breakdown_cell(vals, unit):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    v = bl.percentile(vals, 50)
    if unit == "ms":
        return fmt_ms(v)
    if unit == "MiB":
        return f"{v / bl.MIB:.2f} MiB"
    if unit == "x":
        return f"{v:.1f}×"
    return f"{v:.0f}"


def breakdown_table(bd):
    """bd: {(kind, mode): [run dicts]} -> (head, rows), p50 of each."""
    cols = sorted(bd)
    for runs in bd.values():
        for r in runs:
            r["warm_exit_io"] = r.get("warm_exit_pio", 0) + r.get("warm_exit_mmio", 0)
    head = ("Phase (p50)",) + tuple(f"{k}, {m}" for k, m in cols)
    rows = []
    for label, key, unit in BREAKDOWN_ROWS:
        if not any(r.get(key) is not None for c in cols for r in bd[c]):
            continue
        cells = tuple(breakdown_cell([r.get(key) for r in bd[c]], unit) for c in cols)
        if unit == "n" and key != "connect_retries" and all(v == "0" for v in cells):
            continue  # a counter that stayed at zero everywhere
        rows.append((label,) + cells)
    return head, rows


def profile_table(prof, system_map):
    """{kind: [breakdown_once results with profiles]} -> (head, rows): the
    share of samples in guest kernel code in the cold window and the warm
    call, and the kernel functions sampled most in the cold window."""
    smap = guestprof.SystemMap(system_map) if Path(system_map).is_file() else None
    kinds = sorted(prof)
    head = ("Guest profile (parked, pipelined; 1 kHz samples)",) + tuple(kinds)
    rows = []
    for label, which in (("cold window: samples", "cold_profile"),
                         ("warm call: samples", "warm_profile")):
        cells = []
        for kind in kinds:
            tot = sum(r[which]["samples"] for r in prof[kind])
            user = sum(r[which]["user"] for r in prof[kind])
            k = tot - user
            cells.append(f"{tot}: {100.0 * k / max(tot, 1):.0f} % guest kernel, "
                         f"{100.0 * user / max(tot, 1):.0f} % user space")
        rows.append((label,) + tuple(cells))
    if smap:
        cells = []
        for kind in kinds:
            merged = {}
            for r in prof[kind]:
                for fn, n in guestprof.by_function(r["cold_profile"], smap).items():
                    if fn != "(user space)":
                        merged[fn] = merged.get(fn, 0) + n
            top = sorted(merged.items(), key=lambda kv: -kv[1])[:6]
            cells.append(", ".join(f"`{fn}` {n}" for fn, n in top))
        rows.append(("cold window: kernel functions sampled most",) + tuple(cells))
    return head, rows


def cpu_now():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def sizes(d):
    m, s = (d / "memory").stat(), (d / "state").stat()
    return m.st_size, m.st_blocks * 512, s.st_size


def fmt_ms(v):
    return "-" if v is None else f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"


def pcts(vals, scale=1.0):
    """p50 / p99 of ms values (scale converts)."""
    vals = [v * scale for v in vals if v is not None]
    if not vals:
        return "-"
    return f"{fmt_ms(bl.percentile(vals, 50))} / {fmt_ms(bl.percentile(vals, 99))}"


def verdict(v, goal):
    return "-" if v is None else ("met" if v < goal else "MISSED")


def qemu_snapshot(work, kernel, initrd, timeout, runs):
    """QEMU microvm, same kernel + initramfs as the Boot group, idle guest:
    migrate to a file (save time, size), then -incoming from it (spawn ->
    query-status running). Returns a dict."""
    work = Path(work)
    append = f"{bl.kiln_guest_args()} quiet -- sleep 100000000"
    extra = ["-initrd", initrd, "-device", "i8042"]
    out = {}
    bl.log("QEMU: booting kernel + initramfs for migrate-to-file (~1 min on nested KVM)")
    q = bl.QemuGuest(work, "qsrc", kernel, append, extra=extra)
    img = work / "qemu-state.bin"
    try:
        out["boot_ns"], _ = q.wait_console(rb"kiln-init: ready monotonic_ns=", timeout)
        time.sleep(1.0)
        qmp = q.qmp()
        t0 = time.monotonic_ns()
        qmp.execute("migrate", uri=f"exec:cat > {img}")
        while True:
            st = qmp.execute("query-migrate")
            if st.get("status") in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.001)
        out["save_ns"] = time.monotonic_ns() - t0
        if st.get("status") != "completed":
            raise bl.BenchError(f"QEMU migrate: {st}")
        out["migrate_info"] = st
        qmp.close()
        out["touched"] = bl.smaps_memory(q.pid, bl.GUEST_MEM_MIB * bl.MIB)["guest_rss"]
    finally:
        q.stop()
    stt = img.stat()
    out["size"], out["alloc"] = stt.st_size, stt.st_blocks * 512
    out["restore_ns"] = []
    for i in range(runs):
        r = bl.QemuGuest(work, f"qdst{i}", kernel, append,
                         extra=extra + ["-incoming", f"exec:cat {img}"])
        try:
            qmp = r.qmp()
            while True:
                s = qmp.execute("query-status")
                if s.get("status") == "running":
                    break
                time.sleep(0.0005)
            out["restore_ns"].append(time.monotonic_ns() - r.t0_ns)
            qmp.close()
        finally:
            r.stop()
    return out


def run(args):
    ok, why = bl.kvm_usable()
    if not ok:
        print(f"bench: Snapshots SKIPPED: {why}")
        return 0
    quick = bl.quick()
    build = Path(args.build)
    vmm = build / "kiln-vmm"
    runs = bl.env_int("BENCH_SNAP_RUNS", 3 if quick else 10)
    k = bl.env_int("BENCH_SNAP_K", 5 if quick else 20)
    results_path = Path(os.environ.get("BENCH_RESULTS", bl.ROOT / "bench" / "RESULTS.md"))
    kernel = bl.find_kernel()
    rootfs = bl.find_rootfs_python(build)
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-snap-"))
    load_before = bl.load_note()
    problems = []
    try:
        base, created = bl.base_snapshot(vmm, kernel, rootfs, build, work,
                                         bl.env_int("BENCH_BOOT_TIMEOUT", 1200))
        fns = {kind: make_function_snapshot(vmm, base, rootfs, work, kind) for kind in FUNCS}

        res = {}
        for kind in FUNCS:
            snap = fns[kind]["diff"]
            bl.log(f"{kind}: {runs} new-process restores + {runs} pre-started, alternating")
            new, pre = [], []
            for i in range(runs + 1):  # run 0: warm-up, discarded
                a = restore_new(vmm, snap, rootfs, work, f"n{kind}{i}", kind)
                b = restore_pre(vmm, snap, rootfs, work, f"p{kind}{i}", kind)
                if i:
                    new.append(a)
                    pre.append(b)
            res[kind] = (new, pre)

        bl.log(f"throughput: {k} new-process restores of the python function, back to back")
        snap = fns["python"]["diff"]
        c0, w0 = cpu_now(), time.monotonic()
        for i in range(k):
            restore_new(vmm, snap, rootfs, work, f"k{i}", "python")
        cpu, wall = cpu_now() - c0, time.monotonic() - w0

        bd_runs = bl.env_int("BENCH_BREAKDOWN_RUNS", runs)
        bl.log(f"breakdown: {bd_runs} pre-started restores per function and way, interleaved")
        # The same function snapshotted with its connection closed: a
        # restore must make a new connection (kilnd before parking).
        fns_new = {kind: make_function_snapshot(vmm, base, rootfs, work, kind, keep_open=False)
                   for kind in FUNCS}
        wsets = {kind: record_working_set(vmm, fns[kind]["diff"], rootfs, work, f"ws{kind}",
                                          kind) for kind in FUNCS}
        # (column, snapshots, pipelined, prefetch)
        modes = [("new conn., sequential", fns_new, False, False),
                 ("new conn., pipelined", fns_new, True, False),
                 ("parked, pipelined", fns, True, False),
                 ("parked, pipelined+prefetch", fns, True, True)]
        bd = {}
        for i in range(bd_runs + 1):  # run 0: warm-up, discarded
            for kind in FUNCS:
                for j, (mode, snaps, pipelined, prefetch) in enumerate(modes):
                    r = breakdown_once(vmm, snaps[kind]["diff"], rootfs, work,
                                       f"b{kind}{j}-{i}", kind, pipelined,
                                       wsets[kind] if prefetch else None,
                                       snap_counts=snaps[kind]["counts"])
                    if i:
                        bd.setdefault((kind, mode), []).append(r)
        bd_head, bd_rows = breakdown_table(bd)
        prof_runs = bl.env_int("BENCH_PROFILE_RUNS", 3)
        bl.log(f"guest profile: {prof_runs} sampled restores per function (1 kHz)")
        prof = {kind: [breakdown_once(vmm, fns[kind]["diff"], rootfs, work, f"pr{kind}{i}",
                                      kind, True, None, profile_hz=1000)
                       for i in range(prof_runs)] for kind in FUNCS}
        pr_head, pr_rows = profile_table(prof, Path(kernel).parent / "System.map")
    except (kc.KilnError, kc.ConnectionClosed, OSError, ValueError) as e:
        raise bl.BenchError(f"{type(e).__name__}: {e}")

    qres, qproblem = None, None
    if quick:
        qproblem = "skipped (BENCH_QUICK)"
    elif not bl.qemu_path():
        qproblem = "qemu-system-x86_64 not found"
    else:
        try:
            initrd = Path(os.environ.get("BENCH_INITRAMFS", build / "initramfs.cpio"))
            qres = qemu_snapshot(work, kernel, initrd, bl.env_int("BENCH_BOOT_TIMEOUT", 1200),
                                 min(runs, 5))
        except Exception as e:  # noqa: BLE001 - a QEMU failure must not lose kiln's numbers
            qproblem = f"{type(e).__name__}: {e}"
            problems.append(f"QEMU migrate/incoming: {e}")

    # ---- report -----------------------------------------------------------------
    rows = []
    nfe = [r.get("first_entry_ms") for r in res["python"][0] + res["sh"][0]]
    ptot = [r["total_ms"] for r in res["python"][1] + res["sh"][1]]
    p50_new = bl.percentile([v for v in nfe if v is not None], 50) if any(nfe) else None
    p50_pre = bl.percentile(ptot, 50) if ptot else None
    n = f"{2 * runs} runs"
    rows += [
        (f"restore → vCPUs running, new process (kiln-vmm's own clock), p50 / p99 ({n})",
         pcts(nfe), f"< {GOAL_NEW_MS:g} ms", verdict(p50_new, GOAL_NEW_MS)),
        ("  of which the restore itself (load + apply), p50 / p99",
         pcts([r.get("restore_total_ms") for r in res["python"][0] + res["sh"][0]]), "", ""),
        ("  spawn → vsock socket exists (harness clock), p50 / p99",
         pcts([r["socket_ns"] for r in res["python"][0] + res["sh"][0]], 1e-6), "", ""),
        (f"restore → vCPUs ready to run, pre-started (reply's total_ms), p50 / p99 ({n})",
         pcts(ptot), f"< {GOAL_PRE_MS:g} ms", verdict(p50_pre, GOAL_PRE_MS)),
        ("  load / apply, p50",
         f"{fmt_ms(bl.percentile([r['load_ms'] for r in res['python'][1]], 50))} / "
         f"{fmt_ms(bl.percentile([r['apply_ms'] for r in res['python'][1]], 50))}", "", ""),
        ("  control-socket round trip seen by the client, p50 / p99",
         pcts([r["rtt_ns"] for r in res["python"][1] + res["sh"][1]], 1e-6), "", ""),
    ]
    for kind in FUNCS:
        new, pre = res[kind]
        rows += [
            (f"restore → first answer, {kind}, new process, p50 / p99 ({runs} runs)",
             pcts([r["answer_ns"] for r in new], 1e-6), "", ""),
            (f"restore → first answer, {kind}, pre-started, p50 / p99 ({runs} runs)",
             pcts([r["answer_ns"] for r in pre], 1e-6), "", ""),
        ]
    if RETRIES:
        rows.append(("first-answer connections retried after going silent "
                     f"({bl.fmt_dur(10e9)} timeout each, included above)", str(len(RETRIES)),
                     "", ""))
    rows.append((f"restores per CPU-second ({k} new-process restores of the python "
                 "function, one invocation each)",
                 f"{k / cpu:.1f} /CPU-s ({cpu:.2f} CPU-s; {k / wall:.1f} /s wall)", "", ""))

    size_rows = []

    def add_size(label, d, reply, touched, plus=0):
        app, alloc, st = sizes(d)
        goal = "-" if touched is None else verdict(alloc, touched + plus + 1)
        size_rows.append((label, fmt_ms(reply["total_ms"]) if reply else "(cached)",
                          f"{app / bl.MIB:.0f} MiB", f"{alloc / bl.MIB:.2f} MiB",
                          f"{st / 1024:.1f} KiB",
                          "-" if touched is None else f"{touched / bl.MIB:.2f} MiB" +
                          (f" + base {plus / bl.MIB:.2f} MiB" if plus else ""), goal))

    add_size("base (full, booted guest, agent idle)", base,
             created["reply"] if created else None, None)
    base_alloc = sizes(base)[1]
    for kind in FUNCS:
        f = fns[kind]
        add_size(f"{kind} function, diff on base", f["diff"], f["diff_reply"], f["touched"])
        # A full snapshot of a restored VM also holds the base's pages the
        # guest has not faulted in again since the restore: touched since boot
        # is at most the base's pages plus those resident now.
        add_size(f"{kind} function, full", f["full"], f["full_reply"], f["touched"],
                 base_alloc)
    size_head = ("Snapshot", "creation (reply total_ms)", "memory apparent", "memory allocated",
                 "state", "guest RAM touched", "allocated ≤ touched")

    if qres:
        pf = fns["python"]["full"]
        sock50 = bl.percentile([r["socket_ns"] for r in res["python"][0] + res["sh"][0]],
                               50) / 1e6
        q_rows = [
            ("save (kiln: full snapshot reply total_ms; QEMU: migrate to file until completed)",
             fmt_ms(fns["python"]["full_reply"]["total_ms"]), fmt_ms(qres["save_ns"] / 1e6)),
            ("file size, apparent / allocated",
             f"{sizes(pf)[0] / bl.MIB:.0f} / {sizes(pf)[1] / bl.MIB:.2f} MiB",
             f"{qres['size'] / bl.MIB:.2f} / {qres['alloc'] / bl.MIB:.2f} MiB"),
            ("guest RAM resident in the VMM when saved",
             f"{fns['python']['touched'] / bl.MIB:.2f} MiB",
             "-" if qres.get("touched") is None else f"{qres['touched'] / bl.MIB:.2f} MiB"),
            (f"new process → running, p50 (kiln: own clock, {2 * runs} runs; QEMU: spawn → "
             f"query-status running, {len(qres['restore_ns'])} runs)",
             f"{fmt_ms(p50_new)} (harness clock, spawn → vsock socket: {fmt_ms(sock50)})",
             fmt_ms(bl.percentile(qres["restore_ns"], 50) / 1e6)),
        ]
    else:
        q_rows = None
    head = ("Measurement", "kiln-vmm", "Goal", "")
    print()
    print(f"Snapshots: Python rootfs guest, {bl.GUEST_MEM_MIB} MiB, 1 vCPU")
    print(bl.text_rows(head, rows))
    print()
    print(bl.text_rows(size_head, size_rows))
    print()
    print(f"Breakdown of restore → first answer ({bd_runs} runs per column, p50)")
    print(bl.text_rows(bd_head, bd_rows))
    print()
    print(bl.text_rows(pr_head, pr_rows))
    q_head = ("Full snapshot vs QEMU migrate-to-file", "kiln-vmm (Python function VM)",
              "QEMU microvm (initramfs guest, idle)")
    if q_rows:
        print()
        print(bl.text_rows(q_head, q_rows))
    else:
        print(f"\nQEMU migrate/incoming: {qproblem}")
    shutil.rmtree(work, ignore_errors=True)
    if quick:
        print(f"\n(BENCH_QUICK: {results_path} not updated)")
        return 1 if problems else 0

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["## Snapshots", "",
             f"Last run: {now}, `make bench`; {load_before} at the start, "
             f"{bl.load_note()} at the end.", "",
             "| Machine | |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in bl.machine_info(bl.qemu_path())]
    lines += [f"| Guest | `{kernel}`, `{rootfs}` ({bl.GUEST_MEM_MIB} MiB, 1 vCPU); base "
              f"snapshot `{base}`{' (made in this run)' if created else ' (cached)'} |", "",
              bl.md_rows(head, rows), "", bl.md_rows(size_head, size_rows), "",
              f"Breakdown of restore → first answer ({bd_runs} runs per column, p50; "
              "pre-started kiln-vmm; *new conn.*: the function snapshot was taken with its "
              "connection closed, so the restore's CONNECT is a handshake with the guest; "
              "*parked*: taken with it open and idle, as kilnd takes it, so kiln-vmm answers "
              "the CONNECT itself (docs/vsock.md); *sequential*: one round trip per frame, "
              "*pipelined*: ENTROPY, TIME and INVOKE in one write, as kilnd sends them; "
              "*+prefetch*: the same with the snapshot's working set, recorded once by an "
              "earlier restore, prefetched by the restore; see "
              "[docs/snapshots.md](../docs/snapshots.md#where-a-cold-call-spends-its-time)):",
              "", bl.md_rows(bd_head, bd_rows), "",
              f"Where the guest is during those windows ({prof_runs} more restores per function, "
              "sampled by kiln-vmm's `profile` op; not timed with the runs above, since each "
              "sample is an exit; the kernel/user split is reliable, the function names a hint "
              "(docs/control-api.md)):", "", bl.md_rows(pr_head, pr_rows), "",
              *(["QEMU: " + qproblem, ""] if not q_rows else
                [bl.md_rows(q_head, q_rows), "",
                 "QEMU boots the Boot group's kernel and initramfs (`-device i8042`, guest command "
                 "`sleep`, 256 MiB, no disk, no vsock: it has none here), idle after "
                 f"`kiln-init: ready` ({qres['boot_ns'] / 1e9:.0f} s); QMP `migrate` with "
                 "`exec:cat > FILE`, polled with `query-migrate` until `completed`; then a new "
                 "QEMU with the same arguments plus `-incoming \"exec:cat FILE\"`, polled with "
                 "`query-status` from the spawn until `running`. Not the same guest as kiln's "
                 "row (QEMU cannot use kiln's vsock here), so sizes compare loosely.", ""]),
              *(["**Problems in this run:**", ""] + ["- " + p for p in problems] + [""]
                if problems else []),
              "Method (details in [docs/benchmarks.md](../docs/benchmarks.md)):", "",
              "- *New process*: `kiln-vmm -vv --restore DIR --disk ROOTFS --vsock-uds ...`; "
              "\"vCPUs running\" is kiln-vmm's `timing: first guest entry at N ms` line "
              "(its own clock from process start); the harness's clock runs from just "
              "before the spawn.",
              "- *Pre-started*: `kiln-vmm --prestart --mem 256 --vcpus 1 --vsock-uds PATH` "
              "(as kilnd's pool starts it: the vsock socket is bound before the restore) "
              "started and idle before the clock starts; `{\"op\":\"restore\"}`'s reply "
              "gives load/apply/total (request to the vCPUs ready to run, inside kiln-vmm; "
              "they are released once the reply is written); the round trip is the "
              "client's.",
              "- *First answer*: from the spawn (new process) or the restore request "
              "(pre-started) to the RESULT: vsock `CONNECT 1024` (answered by kiln-vmm "
              "itself: the snapshot's connection is parked, docs/vsock.md), ENTROPY (64 B), "
              "TIME, INVOKE. One warm-up pair per function is discarded; new-process and "
              "pre-started runs alternate.",
              "- *Sizes*: `memory` apparent size and `st_blocks * 512`; `state` size. "
              "\"Guest RAM touched\" is the VMM's resident guest RAM (smaps Rss of the "
              "snapshot-file and guest-RAM mappings) just before the snapshot.",
              "- *Restores per CPU-second*: user + system CPU of the harness and of every "
              "kiln-vmm it reaped (guest execution included: vCPU threads are kiln-vmm's), "
              "over K sequential new-process restores each answering one invocation."]
    bl.update_results(results_path, "## Snapshots", "\n".join(lines) + "\n")
    print(f"\nwritten: {results_path} (section \"## Snapshots\")")
    return 1 if problems else 0


def main():
    return bl.group_main(run, __doc__)


if __name__ == "__main__":
    sys.exit(main())
