"""kiln-vmm against tiny hand-written guests (tests/vmm/guests/*.S).

Each guest is a few dozen instructions of 64-bit code that checks one part
of the contract kiln-vmm gives a kernel (long mode, boot_params, port and
MMIO dispatch, the UART, the control page, reset, triple fault) and reports
through COM1 (kiln-vmm's stdout) and its exit status.
"""

import os
import selectors
import signal
import struct
import subprocess
import time

import pytest

from kilnvmm import sanitizer_report

pytestmark = pytest.mark.kvm

MiB = 1 << 20
HELLO = "hello from a tiny guest\n"


def host_is_nested_pvm():
    """The nested kvm_pvm host, where kiln-vmm adds compat kernel arguments."""
    return os.path.exists("/sys/module/kvm_pvm")


def assert_status(r, status):
    assert r.returncode == status, f"expected exit status {status}" + r.describe()


# ---- output, exit status, the control page ----------------------------------

def test_hello_prints_and_exits_0(vmm):
    r = vmm.boot("hello")
    assert_status(r, 0)
    assert r.stdout == HELLO, r.describe()
    assert not r.error_lines(), r.describe()


def test_exit_status_from_control_page(vmm):
    r = vmm.boot("exit7")
    assert_status(r, 7)
    assert r.stdout == "", r.describe()


@pytest.mark.parametrize("value,status", [(0, 0), (1, 1), (42, 42), (255, 255), (300, 300 & 0xFF)])
def test_status_from_cmdline(vmm, value, status):
    r = vmm.boot("status", "--cmdline", f"status={value}")
    assert_status(r, status)
    assert f"status={value}\n" in r.stdout, r.describe()


def test_cmdline_reaches_guest_intact(vmm):
    user = "a b=c  d=\"e f\" status=5 -- init arg"
    r = vmm.boot("status", "--no-compat", "--cmdline", user)
    assert_status(r, 5)
    line = next((l for l in r.stdout.splitlines() if l.startswith("cmdline: ")), None)
    assert line is not None, r.describe()
    assert line.endswith(" " + user) or line == "cmdline: " + user, r.describe()


def test_long_cmdline_reaches_guest(vmm):
    # Well under the 2047-byte limit even with kiln's own arguments in front.
    user = "pad=" + "x" * 1800 + " status=42"
    r = vmm.boot("status", "--no-compat", "--cmdline", user)
    assert_status(r, 42)
    assert user in r.stdout, r.describe()


def test_console_file(vmm, tmp_path):
    out = tmp_path / "console.txt"
    r = vmm.boot("hello", "--console", out)
    assert_status(r, 0)
    assert r.stdout == "", r.describe()
    assert out.read_text() == HELLO, r.describe()


def test_console_stdio_explicit(vmm):
    r = vmm.boot("hello", "--console", "stdio")
    assert_status(r, 0)
    assert r.stdout == HELLO, r.describe()


def test_two_vcpus_exit_stops_all(vmm):
    # Only the BSP runs the guest; the AP waits for an INIT/SIPI that never
    # comes. The exit write must still stop every vCPU thread.
    r = vmm.boot("hello", "--vcpus", "2")
    assert_status(r, 0)
    assert r.stdout == HELLO, r.describe()


@pytest.mark.parametrize("flag", ["-v", "--verbose"])
def test_verbose(vmm, flag):
    r = vmm.boot("hello", flag)
    assert_status(r, 0)
    assert r.stdout == HELLO, r.describe()


# ---- CPU state at entry ------------------------------------------------------

def test_long_mode_entry_state(vmm):
    r = vmm.boot("longmode")
    assert "FAIL" not in r.stdout, r.describe()
    assert_status(r, 0)
    assert "long mode ok\n" in r.stdout, r.describe()


def test_memory_above_mem_is_not_ram(vmm):
    # With --mem 64, 100 MiB is unbacked: longmode's store there is ignored
    # and the load reads all ones, so exactly those two checks fail. (This
    # also shows a failing EXPECT makes a guest exit 1.)
    r = vmm.boot("longmode", "--mem", "64")
    assert_status(r, 1)
    assert "[100 MiB] = 0xffffffff, expected 0x600df00d FAIL\n" in r.stdout, r.describe()
    assert "2 check(s) failed\n" in r.stdout, r.describe()


# ---- port I/O and MMIO dispatch -------------------------------------------------

def test_port_io(vmm):
    r = vmm.boot("pio")
    assert "FAIL" not in r.stdout, r.describe()
    assert_status(r, 0)
    assert "pio ok\n" in r.stdout, r.describe()


def test_mmio(vmm):
    r = vmm.boot("mmio", "-v")
    assert "FAIL" not in r.stdout, r.describe()
    assert_status(r, 0)
    assert "ready written\n" in r.stdout, r.describe()
    assert "mmio ok\n" in r.stdout, r.describe()
    assert "ready" in r.stderr, "-v should log the guest's ready event" + r.describe()


# ---- how a guest stops -------------------------------------------------------------

def test_triple_fault(vmm):
    r = vmm.boot("triplefault")
    assert_status(r, 1)
    assert "triple fault" in r.stderr, r.describe()
    assert "about to fault\n" in r.stdout, r.describe()
    assert "survived" not in r.stdout, r.describe()


def test_i8042_reset(vmm):
    r = vmm.boot("reset")
    assert_status(r, 0)
    assert "resetting\n" in r.stdout, r.describe()
    assert "still running" not in r.stdout, r.describe()
    assert "reset" in r.stderr.lower(), r.describe()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_spinning_guest(vmm, sig):
    """A guest spinning with interrupts off must not keep kiln-vmm alive:
    SIGTERM/SIGINT stop it promptly with status 128+N (see --help)."""
    p = vmm.popen("--kernel", vmm.guest("spin"))
    try:
        # Wait until the guest runs (it prints "spinning"), at most 30 s.
        sel = selectors.DefaultSelector()
        sel.register(p.stdout, selectors.EVENT_READ)
        out = b""
        deadline = time.monotonic() + 30
        while b"spinning\n" not in out and time.monotonic() < deadline and p.poll() is None:
            if sel.select(timeout=0.5):
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    break
                out += chunk
        sel.close()
        assert p.poll() is None, f"kiln-vmm exited early with {p.returncode}: {out!r}"
        assert b"spinning\n" in out, f"the spin guest did not start: {out!r}"
        time.sleep(0.2)
        assert p.poll() is None, "kiln-vmm exited while the guest spins"
        sent = time.monotonic()
        p.send_signal(sig)
        try:
            rest, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"kiln-vmm still running 10 s after {sig.name}")
        took = time.monotonic() - sent
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err = err.decode(errors="replace")
    assert p.returncode >= 0, f"kiln-vmm died of the signal instead of handling it\n{err}"
    assert sanitizer_report(err) is None, err
    assert p.returncode == 128 + sig, f"exit status {p.returncode}, expected {128 + sig}\n{err}"
    assert took < 5, f"took {took:.1f} s to stop"


# ---- boot_params: e820, command line, initrd -------------------------------------------

def parse_bootparams(r):
    """Returns {'entries': n, 'e820': [(addr, size, type)], 'ram_end': int,
    'cmdline': int, 'initrd': (addr, size, first or None)} from the guest's output."""
    out = r.stdout
    assert "bootparams ok\n" in out and "FAIL" not in out, r.describe()
    info = {"e820": []}
    for line in out.splitlines():
        f = line.split()
        if line.startswith("e820 entries "):
            info["entries"] = int(f[2])
        elif line.startswith("e820 "):
            info["e820"].append((int(f[1], 16), int(f[2], 16), int(f[3])))
        elif line.startswith("ram end "):
            info["ram_end"] = int(f[2], 16)
        elif line.startswith("cmdline "):
            info["cmdline"] = int(f[1], 16)
        elif line.startswith("initrd "):
            first = int(f[5], 16) if len(f) > 5 else None
            info["initrd"] = (int(f[1], 16), int(f[3], 16), first)
    assert info["entries"] == len(info["e820"]), r.describe()
    return info


def check_e820_sane(info, r):
    ram = sorted((a, a + s) for a, s, t in info["e820"] if t == 1)
    every = sorted((a, a + s) for a, s, _ in info["e820"])
    for (a0, e0), (a1, _) in zip(every, every[1:]):
        assert e0 <= a1, "overlapping e820 entries" + r.describe()
    assert all(s > 0 for _, s, _ in info["e820"]), "empty e820 entry" + r.describe()
    return ram


@pytest.mark.parametrize("mem", [None, 64, 256])
def test_bootparams_e820(vmm, mem):
    args = [] if mem is None else ["--mem", str(mem)]
    r = vmm.boot("bootparams", *args)
    assert_status(r, 0)
    info = parse_bootparams(r)
    size = (mem or 128) * MiB
    assert info["ram_end"] == size, f"RAM ends at {info['ram_end']:#x}, want {size:#x}" + r.describe()
    ram = check_e820_sane(info, r)
    assert sum(e - a for a, e in ram) <= size, "e820 announces more RAM than --mem" + r.describe()
    assert info["cmdline"] != 0, r.describe()
    assert info["initrd"][1] == 0, "an initrd without --initrd" + r.describe()


def test_bootparams_e820_above_mmio_gap(vmm):
    # layout.h: RAM runs up to the MMIO gap at 3 GiB and continues at 4 GiB.
    r = vmm.boot("bootparams", "--mem", "3584")
    assert_status(r, 0)
    info = parse_bootparams(r)
    assert info["ram_end"] == 3 << 30, r.describe()
    ram = check_e820_sane(info, r)
    assert (4 << 30, (4 << 30) + (512 * MiB)) in ram, r.describe()
    assert sum(e - a for a, e in ram) <= 3584 * MiB, r.describe()


def test_bootparams_initrd(vmm, tmp_path):
    data = b"KILN" + bytes(range(256)) * 64 + b"tail"
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(data)
    r = vmm.boot("bootparams", "--initrd", initrd)
    assert_status(r, 0)
    info = parse_bootparams(r)
    addr, size, first = info["initrd"]
    assert size == len(data), r.describe()
    assert first == int.from_bytes(b"KILN", "little"), r.describe()
    assert addr >= MiB and addr % 4096 == 0, f"initrd at {addr:#x}" + r.describe()
    assert addr + size <= 128 * MiB, r.describe()
    ram = check_e820_sane(info, r)
    assert any(a <= addr and addr + size <= e for a, e in ram), "initrd outside e820 RAM" + r.describe()


# ---- the image loader ----------------------------------------------------------------

def test_big_bss_is_loaded_zeroed(vmm):
    r = vmm.boot("bigbss", "--mem", "128")
    assert "FAIL" not in r.stdout, r.describe()
    assert_status(r, 0)
    assert "bigbss ok\n" in r.stdout, r.describe()


# ---- nested-KVM compatibility arguments ---------------------------------------------------

def cmdline_of(r):
    line = next((l for l in r.stdout.splitlines() if l.startswith("cmdline: ")), None)
    assert line is not None, r.describe()
    return line[len("cmdline: "):]


def test_compat_arguments(vmm):
    r = vmm.boot("status", "--cmdline", "status=0")
    assert_status(r, 0)
    logged = [l for l in r.stderr.splitlines() if "clearcpuid" in l]
    if host_is_nested_pvm():
        assert len(logged) == 1, "expected one log line about the compat arguments" + r.describe()
        assert "clearcpuid=" in cmdline_of(r), r.describe()
    else:
        assert not logged, r.describe()
        assert "clearcpuid=" not in cmdline_of(r), r.describe()


def test_no_compat(vmm):
    r = vmm.boot("status", "--no-compat", "--cmdline", "status=0")
    assert_status(r, 0)
    assert "clearcpuid" not in r.stderr, r.describe()
    assert "clearcpuid" not in cmdline_of(r), r.describe()


@pytest.mark.parametrize("flag", ["-q", "--quiet"])
def test_quiet(vmm, flag):
    r = vmm.boot("status", flag, "--cmdline", "status=0")
    assert_status(r, 0)
    # The compat arguments are still added, but not logged; no info lines.
    assert r.stderr == "", r.describe()
    if host_is_nested_pvm():
        assert "clearcpuid=" in cmdline_of(r), r.describe()


# ---- the bzImage path, with a tiny guest inside -----------------------------------------------

def elf_to_bzimage(elf):
    """Wraps a tiny guest in a minimal bzImage (boot protocol 2.15, 64-bit
    entry point at load address + 0x200). The guests only use RIP-relative
    addressing for their own code and data, so they run wherever the
    payload lands."""
    phoff, = struct.unpack_from("<Q", elf, 32)
    phentsize, phnum = struct.unpack_from("<HH", elf, 54)
    loads = []
    for i in range(phnum):
        p_type, _, off, _, paddr, filesz, memsz, _ = struct.unpack_from("<IIQQQQQQ", elf, phoff + i * phentsize)
        if p_type == 1:
            loads.append((paddr, off, filesz, memsz))
    base = min(p[0] for p in loads)
    end_file = max(p[0] + p[2] for p in loads)
    end_mem = max(p[0] + p[3] for p in loads)
    image = bytearray(end_file - base)
    for paddr, off, filesz, _ in loads:
        image[paddr - base:paddr - base + filesz] = elf[off:off + filesz]
    payload = b"\x0f\x0b" * 0x100 + bytes(image)  # ud2 where the 32-bit entry would be
    payload += bytes(-len(payload) % 16)  # syssize counts 16-byte paragraphs
    setup_sects = 1
    setup = bytearray((setup_sects + 1) * 512)
    struct.pack_into("<B", setup, 0x1F1, setup_sects)
    struct.pack_into("<I", setup, 0x1F4, (len(payload) + 15) // 16)  # syssize
    struct.pack_into("<H", setup, 0x1FE, 0xAA55)
    setup[0x200:0x202] = b"\xeb\x6a"  # jmp over the header: it ends at 0x26c
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x020F)
    struct.pack_into("<B", setup, 0x211, 0x01)  # loadflags: LOADED_HIGH
    struct.pack_into("<I", setup, 0x214, 0x100000)  # code32_start
    struct.pack_into("<I", setup, 0x230, 0x200000)  # kernel_alignment
    struct.pack_into("<H", setup, 0x236, 0x3)  # xloadflags: KERNEL_64 | CAN_BE_LOADED_ABOVE_4G
    struct.pack_into("<I", setup, 0x238, 2047)  # cmdline_size
    struct.pack_into("<Q", setup, 0x258, 0x100000)  # pref_address
    struct.pack_into("<I", setup, 0x260, 0x200 + end_mem - base)  # init_size
    return bytes(setup) + payload


def test_bzimage_hello(vmm, tmp_path):
    bz = tmp_path / "bzImage"
    bz.write_bytes(elf_to_bzimage(vmm.guest("hello").read_bytes()))
    r = vmm.run("--kernel", bz)
    assert_status(r, 0)
    assert r.stdout == HELLO, r.describe()


def test_bzimage_cmdline_and_bootparams(vmm, tmp_path):
    bz = tmp_path / "bzImage"
    bz.write_bytes(elf_to_bzimage(vmm.guest("status").read_bytes()))
    r = vmm.run("--kernel", bz, "--cmdline", "status=42")
    assert_status(r, 42)
    bz.write_bytes(elf_to_bzimage(vmm.guest("bootparams").read_bytes()))
    r = vmm.run("--kernel", bz, "--mem", "64")
    assert_status(r, 0)
    info = parse_bootparams(r)
    assert info["ram_end"] == 64 * MiB, r.describe()


def test_bzimage_long_mode_entry_state(vmm, tmp_path):
    bz = tmp_path / "bzImage"
    bz.write_bytes(elf_to_bzimage(vmm.guest("longmode").read_bytes()))
    r = vmm.run("--kernel", bz)
    assert "FAIL" not in r.stdout, r.describe()
    assert_status(r, 0)
