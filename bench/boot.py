#!/usr/bin/python3
"""The "Boot" benchmark group: kiln-vmm side by side with QEMU -M microvm.

Usage: bench/boot.py --build BUILD_DIR --guest FIRST_BYTE_ELF

Measures, from one run:
  1. VMM process start -> first guest instruction (tiny guest whose first
     I/O is a byte to COM1): BENCH_FIRST_RUNS runs per VMM (default 20),
     alternating, after one discarded warm-up run each.
  2. VMM process start -> "kiln-init: ready" with the real kernel and
     initramfs (128 MiB, 1 vCPU, `-- true`): BENCH_BOOT_RUNS per VMM
     (default 1), one VMM at a time.
  3. The VMM's resident memory beyond guest RAM when the ready line arrives.
Prints a table and rewrites the "## Boot" section of bench/RESULTS.md.

Environment:
  BENCH_QUICK=1        only the tiny-guest part; RESULTS.md is left alone
  BENCH_FIRST_RUNS=N   tiny-guest runs per VMM (default 20)
  BENCH_BOOT_RUNS=N    real-kernel boots per VMM (default 1)
  BENCH_BOOT_TIMEOUT=S seconds allowed per real-kernel boot (default 600)
  BENCH_KERNEL=PATH    vmlinux to boot (default: images/kernel/build.sh)
  BENCH_INITRAMFS=PATH initramfs (default: images/rootfs/build.sh BUILD_DIR)
  BENCH_RESULTS=PATH   where to write the results (default bench/RESULTS.md)

Exit status: 0 when every run worked (or when /dev/kvm is missing: the
benchmark is skipped, loudly), 1 when a run or a prerequisite failed.
"""
import datetime
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # no bench/__pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

MEM_MIB = 128
GOAL_FIRST_MS = 5.0
GOAL_BEYOND_MIB = 2.0
FIRST_BYTE_TIMEOUT_S = 30
TINY_EXIT_TIMEOUT_S = 10
READY_RE = rb"kiln-init: ready monotonic_ns=(\d+) boottime_ns=(\d+)"

QEMU_MACHINE = "microvm,x-option-roms=off,isa-serial=on,rtc=off,acpi=off"


def kiln_cmdline_macro(name):
    """A string macro from src/vmm/kcmdline.h, so QEMU gets exactly the
    arguments kiln-vmm adds (adjacent C string literals are joined)."""
    header = (Path(__file__).resolve().parent.parent / "src/vmm/kcmdline.h").read_text()
    m = re.search(r"#define\s+%s\b((?:[^\n]*\\\n)*[^\n]*)" % name, header)
    if not m:
        raise SystemExit(f"bench: {name} not found in src/vmm/kcmdline.h")
    return "".join(re.findall(r'"([^"]*)"', m.group(1)))


# kiln's base arguments minus kiln.ctl (QEMU has no control page).
KILN_BASE_ARGS = " ".join(a for a in kiln_cmdline_macro("KCMDLINE_BASE").split()
                          if not a.startswith("kiln.ctl="))
COMPAT_ARGS = kiln_cmdline_macro("KCMDLINE_COMPAT")
GUEST_COMMAND = "quiet -- true"


def env_int(name, default, minimum=1):
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise bl.BenchError(f"{name}={raw!r} is not a whole number")
    if v < minimum:
        raise bl.BenchError(f"{name} must be at least {minimum}")
    return v


# ---- command lines ----------------------------------------------------------

def kiln_argv(vmm, kernel, initrd=None, cmdline=None):
    argv = [vmm, "--kernel", kernel, "--mem", str(MEM_MIB), "--vcpus", "1",
            "--console", "stdio", "-q"]
    if initrd:
        argv += ["--initrd", initrd]
    if cmdline:
        argv += ["--cmdline", cmdline]
    return argv


# microvm has no i8042, so the guest's `reboot=k` (0xfe to port 0x64) would
# go nowhere and -no-reboot would never fire: add the one kiln-vmm has.
QEMU_RESET = ["-device", "i8042"]
# After the ready line, the guest runs `true` and reports: seconds allowed.
AFTER_READY_S = 180


def qemu_argv(qemu, kernel, initrd=None, append=None, extra=()):
    argv = [qemu, "-M", QEMU_MACHINE, "-enable-kvm", "-cpu", "host,-arch-capabilities",
            "-m", str(MEM_MIB), "-smp", "1", "-nodefaults", "-no-user-config",
            "-nographic", "-serial", "stdio", "-no-reboot", "-kernel", kernel]
    if initrd:
        argv += ["-initrd", initrd]
    if append:
        argv += ["-append", append]
    return argv + list(extra)


def qemu_append():
    """QEMU gets by hand what kiln-vmm adds itself."""
    parts = [KILN_BASE_ARGS]
    if bl.nested_kvm():
        parts.append(COMPAT_ARGS)
    parts.append(GUEST_COMMAND)
    return " ".join(parts)


# ---- 1. first guest instruction ---------------------------------------------

def first_byte_once(name, argv, want_rc):
    """Returns (first_byte_ns, exit_ns, problem): problem is None or a text."""
    vmm = bl.Vmm(name, argv)
    try:
        ns = vmm.wait_first_byte(FIRST_BYTE_TIMEOUT_S)
        if ns is None:
            vmm.kill()
            return None, None, (f"no byte on stdout within {FIRST_BYTE_TIMEOUT_S} s "
                                f"(exit status {vmm.proc.returncode})\n{vmm.stderr_tail()}")
        rc = vmm.wait_exit(TINY_EXIT_TIMEOUT_S)
        if rc is None:
            vmm.kill()
            return ns, None, f"did not exit within {TINY_EXIT_TIMEOUT_S} s after the byte"
        exit_ns = vmm.exit_ns - vmm.t0_ns
        if rc != want_rc:
            return ns, exit_ns, f"exit status {rc}, expected {want_rc}\n{vmm.stderr_tail()}"
        return ns, exit_ns, None
    finally:
        vmm.kill()


def bench_first_byte(cands, runs):
    """cands: list of (key, argv, want_rc). Returns {key: {first: [ns],
    exit: [ns], problems: [text]}}."""
    res = {k: {"first": [], "exit": [], "problems": []} for k, _, _ in cands}
    bl.log(f"first guest instruction: 1 warm-up + {runs} runs per VMM, alternating")
    if bl.other_vmms():
        bl.log(f"warning: other VMs are running ({', '.join(bl.other_vmms())}): "
               "the times are skewed")
    for i in range(runs + 1):
        order = cands if i % 2 == 0 else list(reversed(cands))
        for key, argv, want_rc in order:
            ns, exit_ns, problem = first_byte_once(key, argv, want_rc)
            if i == 0:  # warm-up: page cache, first KVM use; only failures count
                if problem and ns is None:
                    res[key]["problems"].append(f"warm-up run: {problem}")
                continue
            if ns is not None:
                res[key]["first"].append(ns)
            if exit_ns is not None:
                res[key]["exit"].append(exit_ns)
            if problem:
                res[key]["problems"].append(f"run {i}: {problem}")
    return res


# ---- 2./3. real kernel boot -------------------------------------------------

def boot_once(name, argv, timeout_s):
    """One real-kernel boot. Returns a dict: ready_ns, guest_mono_ns,
    guest_boot_ns, mem (smaps_memory), exit_ns, rc, problem."""
    r = {"ready_ns": None, "guest_mono_ns": None, "guest_boot_ns": None, "mem": None,
         "exit_ns": None, "rc": None, "problem": None, "others": bl.other_vmms()}
    if r["others"]:
        bl.log(f"warning: other VMs are running ({', '.join(r['others'])}): "
               "this boot's times are skewed")
    bl.log(f"{name}: booting the real kernel (timeout {timeout_s} s): {shell_quote(argv)}")
    vmm = bl.Vmm(name, argv)
    try:
        ns, m = vmm.wait_line(READY_RE, timeout_s)
        if ns is None:
            try:  # at EOF the VMM is exiting: give it a moment to finish
                rc = vmm.proc.wait(timeout=2 if vmm._eof else 0)
            except subprocess.TimeoutExpired:
                rc = None
            what = (f"exited with status {rc} before printing 'kiln-init: ready'"
                    if rc is not None else f"no 'kiln-init: ready' line within {timeout_s} s")
            r["problem"] = f"{what}\n{vmm.stderr_tail()}"
            return r
        try:
            r["mem"] = bl.smaps_memory(vmm.pid, MEM_MIB * bl.MIB)
        except OSError as e:
            r["problem"] = f"cannot read /proc/{vmm.pid}/smaps: {e}"
        r["ready_ns"] = ns
        r["guest_mono_ns"] = int(m.group(1))
        r["guest_boot_ns"] = int(m.group(2))
        bl.log(f"{name}: ready after {ns / 1e9:.1f} s; waiting for the guest to finish")
        left = min(AFTER_READY_S, max(30.0, timeout_s - ns / 1e9))
        rc = vmm.wait_exit(left)
        if rc is None:
            r["problem"] = r["problem"] or (f"did not exit within {left:.0f} s after ready\n"
                                            f"{vmm.stderr_tail()}")
            return r
        r["rc"] = rc
        r["exit_ns"] = vmm.exit_ns - vmm.t0_ns
        if rc != 0 and not r["problem"]:
            r["problem"] = f"exit status {rc}, expected 0 (`true`)\n{vmm.stderr_tail()}"
        if r["mem"] and r["mem"]["guest_map"] is None and not r["problem"]:
            r["problem"] = (f"no anonymous mapping of {MEM_MIB} MiB in smaps: "
                            "cannot tell guest RAM apart")
        return r
    finally:
        vmm.kill()


def find_kernel():
    path = os.environ.get("BENCH_KERNEL")
    if path:
        return Path(path)
    bl.log("guest kernel: images/kernel/build.sh (builds it once, cached)")
    try:
        out = subprocess.run([str(bl.ROOT / "images/kernel/build.sh")], stdout=subprocess.PIPE,
                             text=True, timeout=4 * 3600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise bl.BenchError(f"images/kernel/build.sh: {e}")
    if out.returncode != 0 or not out.stdout.strip():
        raise bl.BenchError(f"images/kernel/build.sh failed (status {out.returncode})")
    return Path(out.stdout.strip().splitlines()[-1])


def find_initramfs(build):
    path = os.environ.get("BENCH_INITRAMFS")
    if path:
        return Path(path)
    script = bl.ROOT / "images/rootfs/build.sh"
    if not script.exists():
        raise bl.BenchError(f"{script} does not exist yet: cannot build the initramfs")
    bl.log(f"initramfs: images/rootfs/build.sh {build}")
    try:
        out = subprocess.run([str(script), str(build)], stdout=subprocess.DEVNULL,
                             timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise bl.BenchError(f"images/rootfs/build.sh: {e}")
    if out.returncode != 0:
        raise bl.BenchError(f"images/rootfs/build.sh failed (status {out.returncode})")
    return Path(build) / "initramfs.cpio"


def file_id(path):
    """'sha256 0123456789ab, 12.3 MiB' for a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"sha256 {h.hexdigest()[:12]}, {os.path.getsize(path) / bl.MIB:.1f} MiB"


# ---- report -------------------------------------------------------------------

def fmt_ms(ns):
    return "-" if ns is None else f"{ns / 1e6:.2f} ms"


def fmt_s(ns):
    return "-" if ns is None else f"{ns / 1e9:.1f} s"


def fmt_mib(b):
    return "-" if b is None else f"{b / bl.MIB:.2f} MiB"


def verdict(ok):
    return "-" if ok is None else ("met" if ok else "MISSED")


def stat(values, fn):
    return fn(values) if values else None


def build_rows(first, boots, runs, boot_runs):
    """Returns [(measurement, kiln, qemu, goal, verdict)]."""
    k, q = first["kiln"], first["qemu"]
    kmed = stat(k["first"], bl.median)
    rows = [
        (f"start -> first guest instruction, median ({runs} runs)", fmt_ms(kmed),
         fmt_ms(stat(q["first"], bl.median)), f"kiln < {GOAL_FIRST_MS:g} ms",
         verdict(None if kmed is None else kmed / 1e6 < GOAL_FIRST_MS)),
        ("start -> first guest instruction, p90", fmt_ms(stat(k["first"], lambda v: bl.percentile(v, 90))),
         fmt_ms(stat(q["first"], lambda v: bl.percentile(v, 90))), "", ""),
        ("start -> first guest instruction, min", fmt_ms(stat(k["first"], min)),
         fmt_ms(stat(q["first"], min)), "", ""),
        ("start -> VMM exit (tiny guest), median", fmt_ms(stat(k["exit"], bl.median)),
         fmt_ms(stat(q["exit"], bl.median)), "", ""),
    ]
    if boots is None:
        return rows

    def col(key, field, sub=None):
        vals = []
        for r in boots[key]:
            v = r[field]
            if sub and v is not None:
                v = v[sub]
            if v is not None:
                vals.append(v)
        return stat(vals, bl.median)

    kr, qr = col("kiln", "ready_ns"), col("qemu", "ready_ns")
    kb = col("kiln", "mem", "beyond")
    n = f"median of {boot_runs}" if boot_runs > 1 else "1 run"
    rows += [
        (f"start -> kiln-init ready ({n})", fmt_s(kr), fmt_s(qr), "kiln <= QEMU",
         verdict(None if kr is None or qr is None else kr <= qr)),
        ("guest monotonic clock at ready", fmt_s(col("kiln", "guest_mono_ns")),
         fmt_s(col("qemu", "guest_mono_ns")), "", ""),
        ("start -> VMM exit (after `true`)", fmt_s(col("kiln", "exit_ns")),
         fmt_s(col("qemu", "exit_ns")), "", ""),
        ("VMM RSS beyond guest memory, at ready", fmt_mib(kb),
         fmt_mib(col("qemu", "mem", "beyond")), f"kiln < {GOAL_BEYOND_MIB:g} MiB",
         verdict(None if kb is None else kb / bl.MIB < GOAL_BEYOND_MIB)),
        ("  VMM total RSS", fmt_mib(col("kiln", "mem", "total_rss")),
         fmt_mib(col("qemu", "mem", "total_rss")), "", ""),
        (f"  guest RAM RSS ({MEM_MIB} MiB mapping)", fmt_mib(col("kiln", "mem", "guest_rss")),
         fmt_mib(col("qemu", "mem", "guest_rss")), "", ""),
    ]
    return rows


def text_table(rows):
    head = ("Measurement", "kiln-vmm", "QEMU microvm", "Goal", "")
    all_rows = [head] + rows
    w = [max(len(r[i]) for r in all_rows) for i in range(5)]
    out = []
    for j, r in enumerate(all_rows):
        out.append("  ".join([r[0].ljust(w[0]), r[1].rjust(w[1]), r[2].rjust(w[2]),
                              r[3].ljust(w[3]), r[4]]).rstrip())
        if j == 0:
            out.append("  ".join("-" * x for x in w))
    return "\n".join(out)


def md_table(rows):
    out = ["| Measurement | kiln-vmm | QEMU microvm | Goal | |",
           "|---|---:|---:|---|---|"]
    for r in rows:
        label = r[0].replace("->", "→")
        if label.startswith("  "):
            label = "&nbsp;&nbsp;" + label.strip()
        out.append(f"| {label} | {r[1]} | {r[2]} | {r[3]} | {r[4]} |")
    return "\n".join(out)


def md_section(rows, info, runs, boot_runs, cmds, problems, loadavg, others):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["## Boot", "",
             f"Last run: {now}, `make bench` ({runs} tiny-guest runs per VMM, "
             f"{boot_runs} real-kernel boot(s) per VMM, load average "
             f"{loadavg[0]:.2f} before the boots).", "",
             "| Machine | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in info]
    lines += ["", md_table(rows), ""]
    if others:
        lines += [f"**Warning:** other VMs were running during {others} of the real-kernel "
                  "boots (processes this harness did not start); their times are skewed.", ""]
    if problems:
        lines += ["**Problems in this run** (the cells above show what did work):", ""]
        for p in problems:
            first, _, rest = p.partition("\n")
            lines.append(f"- {first}")
            if rest.strip():
                lines += ["", "  ```", *("  " + l for l in rest.rstrip().splitlines()),
                          "  ```"]
        lines.append("")
    lines += [
        "Method (details in [docs/benchmarks.md](../docs/benchmarks.md)):",
        "",
        "- *First guest instruction*: `bench/guests/first-byte.S`, whose first I/O is "
        "a `\\n` to COM1 (port 0x3f8); kiln-vmm enters it at `e_entry` in long mode, "
        "QEMU through its PVH note (after microvm's qboot firmware). The clock starts "
        "just before the harness spawns the VMM and stops when the byte is read from "
        "the VMM's stdout pipe. One warm-up run each is discarded; runs alternate "
        "between the VMMs. p90 is nearest-rank.",
        "- *kiln-init ready*: the same vmlinux and initramfs, 128 MiB, 1 vCPU, guest "
        "command `true`; the clock stops when the line `kiln-init: ready ...` is read "
        "from the VMM's stdout. \"Guest monotonic clock\" is the `monotonic_ns` that "
        "line carries (time since the guest kernel's clock started). Boots run one "
        "at a time, never concurrently.",
        "- *RSS beyond guest memory*: read from `/proc/PID/smaps` of the VMM when the "
        "ready line arrives: total `Rss` minus the `Rss` of the anonymous mapping of "
        f"{MEM_MIB} MiB (up to 4 MiB more for alignment) that holds guest RAM. Shared "
        "library pages count in full.",
        "",
        "Command lines:",
        "",
        "```",
        *cmds,
        "```",
    ]
    return "\n".join(lines) + "\n"


def shell_quote(argv):
    import shlex
    return " ".join(shlex.quote(str(a)) for a in argv)


# ---- main ---------------------------------------------------------------------

def run(args):
    ok, why = bl.kvm_usable()
    if not ok:
        bar = "!" * 72
        print(f"{bar}\nbench: SKIPPED: {why}.\n"
              f"bench: kiln and QEMU both need KVM; no numbers were measured.\n{bar}")
        print("skipped")
        return 0
    qemu = bl.qemu_path()
    if not qemu:
        raise bl.BenchError("qemu-system-x86_64 not found: run scripts/setup "
                            "(it installs Debian's qemu-system-x86)")
    build = Path(args.build)
    vmm = build / "kiln-vmm"
    if not os.access(vmm, os.X_OK):
        raise bl.BenchError(f"{vmm} not found: build it first (make {vmm})")
    guest = Path(args.guest)
    if not guest.is_file():
        raise bl.BenchError(f"{guest} not found (bench/run builds it)")

    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    runs = env_int("BENCH_FIRST_RUNS", 20)
    boot_runs = env_int("BENCH_BOOT_RUNS", 1)
    timeout = env_int("BENCH_BOOT_TIMEOUT", 600)
    results_path = Path(os.environ.get("BENCH_RESULTS", bl.ROOT / "bench" / "RESULTS.md"))

    debug_exit = ["-device", "isa-debug-exit,iobase=0xf4,iosize=4"]
    tiny = [("kiln", kiln_argv(vmm, guest), 0),
            ("qemu", qemu_argv(qemu, guest, extra=debug_exit), 1)]
    cmds = [f"# tiny guest\n{shell_quote(tiny[0][1])}", shell_quote(tiny[1][1])]
    first = bench_first_byte(tiny, runs)
    problems = [f"{name} tiny guest, {p}" for name in ("kiln", "qemu")
                for p in first[name]["problems"]]

    boots = None
    info = bl.machine_info(qemu)
    loadavg = os.getloadavg()
    if quick:
        bl.log("BENCH_QUICK set: real-kernel boots skipped")
    else:
        kernel = find_kernel()
        initrd = find_initramfs(build)
        for p in (kernel, initrd):
            if not p.is_file():
                raise bl.BenchError(f"{p} is not a file")
        info.append(("Guest kernel", f"`{kernel}` ({file_id(kernel)})"))
        info.append(("Initramfs", f"`{initrd}` ({file_id(initrd)})"))
        real = [("kiln", kiln_argv(vmm, kernel, initrd, GUEST_COMMAND)),
                ("qemu", qemu_argv(qemu, kernel, initrd, qemu_append(), QEMU_RESET))]
        cmds += [f"# real kernel\n{shell_quote(real[0][1])}", shell_quote(real[1][1])]
        boots = {"kiln": [], "qemu": []}
        loadavg = os.getloadavg()
        for i in range(boot_runs):
            order = real if i % 2 == 0 else list(reversed(real))
            for key, argv in order:
                r = boot_once(key, argv, timeout)
                boots[key].append(r)
                if r["problem"]:
                    problems.append(f"{key} real-kernel boot {i + 1}: {r['problem']}")

    rows = build_rows(first, boots, runs, boot_runs)
    print()
    print(f"Boot: kiln-vmm vs QEMU {bl.qemu_version(qemu)} -M microvm (KVM, "
          f"{'nested kvm_pvm' if bl.nested_kvm() else 'hardware'}), {MEM_MIB} MiB, 1 vCPU")
    print(text_table(rows))
    for p in problems:
        print(f"\nproblem: {p.rstrip()}")
    if quick:
        print(f"\n(BENCH_QUICK: {results_path} not updated)")
    else:
        others = sum(1 for rs in boots.values() for r in rs if r["others"])
        section = md_section(rows, info, runs, boot_runs, cmds, problems, loadavg, others)
        bl.update_results(results_path, "## Boot", section)
        print(f"\nwritten: {results_path} (section \"## Boot\")")
    return 1 if problems else 0


def main():
    return bl.group_main(run, __doc__, guest_arg=True)


if __name__ == "__main__":
    sys.exit(main())
