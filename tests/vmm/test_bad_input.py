"""kiln-vmm given bad command lines and bad files.

Every case must end with a non-zero status (2 for usage errors, 1 for bad
files), one "kiln-vmm: error: " line on stderr that says what is wrong
(and names the file), no crash, no sanitizer report, and no guest run.

Usage errors are found before kiln-vmm touches KVM, so those tests run
without /dev/kvm. kiln-vmm creates the VM before it reads the kernel, so
the bad-file tests need /dev/kvm and are skipped (loudly) without it.
"""

import os
import random
import re
import shutil
import struct

import pytest

MiB = 1 << 20
EM_AARCH64 = 183


# ---- helpers -------------------------------------------------------------------------

def assert_usage_error(r, *words):
    """Status 2, exactly one error line mentioning each of WORDS, a hint to
    --help, nothing on stdout."""
    assert r.returncode == 2, "expected a usage error (status 2)" + r.describe()
    errors = r.error_lines()
    assert len(errors) == 1, "expected exactly one error line" + r.describe()
    for w in words:
        assert w in errors[0], f"the error should mention {w!r}" + r.describe()
    assert "--help" in r.stderr, "a usage error should point to --help" + r.describe()
    assert r.stdout == "", r.describe()


def assert_file_error(r, path, pattern=None, status=(1,)):
    """Status 1 (or one of STATUS), exactly one error line naming PATH and
    matching the regular expression PATTERN (case-insensitive), no guest output."""
    assert r.returncode in status, f"expected exit status {status}" + r.describe()
    errors = r.error_lines()
    assert len(errors) == 1, "expected exactly one error line" + r.describe()
    if path is not None:
        assert str(path) in errors[0], f"the error should name {path}" + r.describe()
    if pattern is not None:
        assert re.search(pattern, errors[0], re.I), f"the error should match {pattern!r}" + r.describe()
    assert r.stdout == "", "no guest should have run" + r.describe()


def elf_phdrs(data):
    """(offset, (p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align))
    for each program header of an ELF64 image."""
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    return [(phoff + i * phentsize, struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize))
            for i in range(phnum)]


def first_load(data):
    return next(off for off, ph in elf_phdrs(data) if ph[0] == 1)


def patched(tmp_path, src, name, patches):
    """Copies SRC to tmp_path/NAME with PATCHES applied: (offset, struct format, value)."""
    data = bytearray(src.read_bytes())
    for off, fmt, value in patches:
        struct.pack_into(fmt, data, off, value)
    out = tmp_path / name
    out.write_bytes(bytes(data))
    return out


# ---- usage errors (no KVM needed) ------------------------------------------------------------

def test_help(vmm):
    r = vmm.run("--help")
    assert r.returncode == 0, r.describe()
    assert "usage" in r.stdout.lower() and "--kernel" in r.stdout, r.describe()
    assert r.stderr == "", r.describe()


def test_no_arguments(vmm):
    assert_usage_error(vmm.run(), "--kernel")


def test_missing_kernel_option(vmm):
    assert_usage_error(vmm.run("--mem", "64"), "--kernel")


def test_unknown_option(vmm):
    assert_usage_error(vmm.run("--kernel", "/nonexistent", "--bogus"), "--bogus")


@pytest.mark.parametrize("option", ["--kernel", "--initrd", "--cmdline", "--mem", "--vcpus", "--console"])
def test_option_without_value(vmm, option):
    # The option exists; what is missing is its value: the message must say
    # so rather than call the option unknown.
    r = vmm.run("--kernel", "/nonexistent", option) if option != "--kernel" else vmm.run(option)
    assert_usage_error(r, option)
    assert "unknown" not in r.error_lines()[0], r.describe()


def test_unexpected_argument(vmm):
    assert_usage_error(vmm.run("--kernel", "/nonexistent", "stray"), "stray")


@pytest.mark.parametrize("value", ["abc", "", "0", "-1", "12x", "0x10", "1.5",
                                   "99999999999999999999999", "18446744073709551616"])
def test_bad_mem(vmm, value):
    assert_usage_error(vmm.run("--kernel", "/nonexistent", "--mem", value), "--mem")


@pytest.mark.parametrize("value", ["0", "1000", "abc", "", "-1", "4294967297"])
def test_bad_vcpus(vmm, value):
    assert_usage_error(vmm.run("--kernel", "/nonexistent", "--vcpus", value), "--vcpus")


# ---- bad kernel files (kiln-vmm opens /dev/kvm first) -------------------------------------------

@pytest.mark.kvm
def test_kernel_missing(vmm, tmp_path):
    path = tmp_path / "no-such-kernel"
    assert_file_error(vmm.run("--kernel", path), path)


@pytest.mark.kvm
def test_kernel_is_directory(vmm, tmp_path):
    assert_file_error(vmm.run("--kernel", tmp_path), tmp_path)


@pytest.mark.kvm
@pytest.mark.parametrize("path", ["/dev/null", "/dev/zero"])
def test_kernel_is_device(vmm, path):
    # /dev/zero never ends: reading "the whole file" must not be the plan.
    assert_file_error(vmm.run("--kernel", path, timeout=20), path)


@pytest.mark.kvm
def test_kernel_is_fifo(vmm, tmp_path):
    # Opening a FIFO nobody writes to must not block kiln-vmm.
    path = tmp_path / "fifo"
    os.mkfifo(path)
    assert_file_error(vmm.run("--kernel", path, timeout=20), path)


@pytest.mark.kvm
def test_kernel_unreadable(vmm, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: file permissions do not stop reads")
    path = tmp_path / "secret"
    shutil.copy(vmm.guest("hello"), path)
    path.chmod(0)
    assert_file_error(vmm.run("--kernel", path), path)


@pytest.mark.kvm
def test_kernel_empty(vmm, tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert_file_error(vmm.run("--kernel", path), path, r"truncated|empty|not a vmlinux ELF or a bzImage")


@pytest.mark.kvm
def test_kernel_truncated_elf_header(vmm, tmp_path):
    path = tmp_path / "truncated.elf"
    path.write_bytes(vmm.guest("hello").read_bytes()[:30])
    assert_file_error(vmm.run("--kernel", path), path, r"truncated")


@pytest.mark.kvm
def test_kernel_truncated_segment(vmm, tmp_path):
    data = vmm.guest("hello").read_bytes()
    path = tmp_path / "short.elf"
    path.write_bytes(data[:0x1000 + 16])  # the text segment starts at 0x1000
    assert_file_error(vmm.run("--kernel", path), path, r"truncated")


@pytest.mark.kvm
def test_kernel_random_bytes(vmm, tmp_path):
    path = tmp_path / "random.bin"
    path.write_bytes(random.Random(20240601).randbytes(64 * 1024))
    assert_file_error(vmm.run("--kernel", path), path, r"not a vmlinux ELF or a bzImage")


@pytest.mark.kvm
def test_kernel_text_file(vmm, tmp_path):
    path = tmp_path / "kernel.txt"
    path.write_text("#!/bin/sh\necho this is not a kernel\n" * 100)
    assert_file_error(vmm.run("--kernel", path), path, r"not a vmlinux ELF or a bzImage")


@pytest.mark.kvm
def test_kernel_aarch64_elf(vmm, tmp_path):
    path = patched(tmp_path, vmm.guest("hello"), "arm64.elf", [(18, "<H", EM_AARCH64)])
    assert_file_error(vmm.run("--kernel", path), path, r"not x86-64")


@pytest.mark.kvm
def test_kernel_elf32(vmm, tmp_path):
    path = patched(tmp_path, vmm.guest("hello"), "elf32.elf", [(4, "<B", 1)])
    assert_file_error(vmm.run("--kernel", path), path, r"x86-64|32-bit|ELFCLASS32")


@pytest.mark.kvm
def test_kernel_big_endian_elf(vmm, tmp_path):
    path = patched(tmp_path, vmm.guest("hello"), "be.elf", [(5, "<B", 2)])
    assert_file_error(vmm.run("--kernel", path), path, r"endian|x86-64")


@pytest.mark.kvm
def test_kernel_phoff_past_eof(vmm, tmp_path):
    path = patched(tmp_path, vmm.guest("hello"), "phoff.elf", [(32, "<Q", 1 << 40)])
    assert_file_error(vmm.run("--kernel", path), path, r"truncated")


@pytest.mark.kvm
def test_kernel_phoff_overflow(vmm, tmp_path):
    path = patched(tmp_path, vmm.guest("hello"), "phoff2.elf", [(32, "<Q", (1 << 64) - 8)])
    assert_file_error(vmm.run("--kernel", path), path)


@pytest.mark.kvm
def test_kernel_too_many_phdrs(vmm, tmp_path):
    path = patched(tmp_path, vmm.guest("hello"), "phnum.elf", [(56, "<H", 0xFFFF)])
    assert_file_error(vmm.run("--kernel", path), path)


@pytest.mark.kvm
def test_kernel_no_phdrs(vmm, tmp_path):
    path = patched(tmp_path, vmm.guest("hello"), "phnum0.elf", [(56, "<H", 0)])
    assert_file_error(vmm.run("--kernel", path), path)


@pytest.mark.kvm
def test_kernel_bad_phentsize(vmm, tmp_path):
    path = patched(tmp_path, vmm.guest("hello"), "phentsize.elf", [(54, "<H", 32)])
    assert_file_error(vmm.run("--kernel", path), path)


@pytest.mark.kvm
def test_kernel_segment_offset_past_eof(vmm, tmp_path):
    src = vmm.guest("hello")
    ph = first_load(src.read_bytes())
    path = patched(tmp_path, src, "poffset.elf", [(ph + 8, "<Q", 1 << 32)])
    assert_file_error(vmm.run("--kernel", path), path, r"truncated")


@pytest.mark.kvm
def test_kernel_segment_offset_overflow(vmm, tmp_path):
    src = vmm.guest("hello")
    ph = first_load(src.read_bytes())
    path = patched(tmp_path, src, "poffset2.elf", [(ph + 8, "<Q", (1 << 64) - 16)])
    assert_file_error(vmm.run("--kernel", path), path)


@pytest.mark.kvm
def test_kernel_segment_filesz_past_eof(vmm, tmp_path):
    src = vmm.guest("hello")
    ph = first_load(src.read_bytes())
    path = patched(tmp_path, src, "pfilesz.elf",
                   [(ph + 32, "<Q", 64 * MiB), (ph + 40, "<Q", 64 * MiB)])
    assert_file_error(vmm.run("--kernel", path), path, r"truncated")


@pytest.mark.kvm
def test_kernel_segment_filesz_above_memsz(vmm, tmp_path):
    src = vmm.guest("hello")
    ph = first_load(src.read_bytes())
    path = patched(tmp_path, src, "pmemsz.elf", [(ph + 40, "<Q", 1)])
    assert_file_error(vmm.run("--kernel", path), path)


@pytest.mark.kvm
def test_kernel_segment_below_1mib(vmm, tmp_path):
    src = vmm.guest("hello")
    ph = first_load(src.read_bytes())
    path = patched(tmp_path, src, "low.elf", [(ph + 16, "<Q", 0x7000), (ph + 24, "<Q", 0x7000)])
    assert_file_error(vmm.run("--kernel", path), path, r"1 MiB")


@pytest.mark.kvm
def test_kernel_segment_address_wraps(vmm, tmp_path):
    src = vmm.guest("hello")
    ph = first_load(src.read_bytes())
    top = (1 << 64) - 0x1000
    path = patched(tmp_path, src, "wrap.elf", [(ph + 16, "<Q", top), (ph + 24, "<Q", top)])
    assert_file_error(vmm.run("--kernel", path), path)


@pytest.mark.kvm
def test_kernel_segment_in_mmio_gap(vmm, tmp_path):
    src = vmm.guest("hello")
    ph = first_load(src.read_bytes())
    addr = 0xD0000000
    path = patched(tmp_path, src, "gap.elf", [(ph + 16, "<Q", addr), (ph + 24, "<Q", addr)])
    assert_file_error(vmm.run("--kernel", path, "--mem", "4096"), path)


@pytest.mark.kvm
def test_kernel_entry_outside_segments(vmm, tmp_path):
    path = patched(tmp_path, vmm.guest("hello"), "entry.elf", [(24, "<Q", 0x4000000)])
    assert_file_error(vmm.run("--kernel", path), path, r"entry")


@pytest.mark.kvm
def test_mem_1_too_small(vmm):
    # 1 MiB holds only the boot structures: not the kernel's fault, so the
    # message need not name it.
    r = vmm.run("--kernel", vmm.guest("hello"), "--mem", "1")
    assert_file_error(r, None, r"use --mem", status=(1, 2))


@pytest.mark.kvm
def test_kernel_bss_does_not_fit(vmm):
    # bigbss's segment at 1 MiB has 64 MiB of .bss: fine with 128, not with 32.
    path = vmm.guest("bigbss")
    assert_file_error(vmm.run("--kernel", path, "--mem", "32"), path, r"use --mem")


# ---- bzImage-shaped files --------------------------------------------------------------------

def fake_bzimage(setup_sects=1, version=0x020F, xloadflags=0x3, payload=b"\xf4" * 4096):
    """A file with a Linux boot protocol header (arch/x86/boot/header.S)."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x200:0x202] = b"\xeb\x6a"  # jmp over the header, which ends at 0x202 + 0x6a
    struct.pack_into("<B", setup, 0x1F1, setup_sects)
    struct.pack_into("<I", setup, 0x1F4, (len(payload) + 15) // 16)  # syssize
    struct.pack_into("<H", setup, 0x1FE, 0xAA55)
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, version)
    struct.pack_into("<B", setup, 0x211, 0x01)  # LOADED_HIGH
    struct.pack_into("<I", setup, 0x214, 0x100000)  # code32_start
    struct.pack_into("<I", setup, 0x230, 0x200000)  # kernel_alignment
    struct.pack_into("<H", setup, 0x236, xloadflags)
    struct.pack_into("<I", setup, 0x238, 2047)  # cmdline_size
    struct.pack_into("<Q", setup, 0x258, 0x100000)  # pref_address
    struct.pack_into("<I", setup, 0x260, len(payload) + 64 * 1024)  # init_size
    return bytes(setup) + payload


@pytest.mark.kvm
def test_bzimage_truncated_setup(vmm, tmp_path):
    path = tmp_path / "bzImage"
    path.write_bytes(fake_bzimage(setup_sects=60)[:4096])  # setup claims 61 sectors
    assert_file_error(vmm.run("--kernel", path), path, r"truncated")


@pytest.mark.kvm
def test_bzimage_header_only(vmm, tmp_path):
    path = tmp_path / "bzImage"
    path.write_bytes(fake_bzimage()[:0x300])
    assert_file_error(vmm.run("--kernel", path), path, r"truncated")


@pytest.mark.kvm
def test_bzimage_old_protocol(vmm, tmp_path):
    path = tmp_path / "bzImage"
    path.write_bytes(fake_bzimage(version=0x0200))
    assert_file_error(vmm.run("--kernel", path), path)


@pytest.mark.kvm
def test_bzimage_not_64bit(vmm, tmp_path):
    path = tmp_path / "bzImage"
    path.write_bytes(fake_bzimage(xloadflags=0))
    assert_file_error(vmm.run("--kernel", path), path)


@pytest.mark.kvm
def test_bzimage_too_big_for_mem(vmm, tmp_path):
    path = tmp_path / "bzImage"
    path.write_bytes(fake_bzimage(payload=b"\xf4" * (3 * MiB)))
    assert_file_error(vmm.run("--kernel", path, "--mem", "2"), path, r"use --mem")


# ---- command line and initrd -----------------------------------------------------------------

@pytest.mark.kvm
@pytest.mark.parametrize("length", [2048, 4096, 100000])
def test_cmdline_too_long(vmm, length):
    r = vmm.run("--kernel", vmm.guest("hello"), "--cmdline", "x" * length)
    # Either a usage error or a boot error; it must name the limit.
    assert_file_error(r, None, r"2047", status=(1, 2))


@pytest.mark.kvm
def test_cmdline_too_long_with_kiln_arguments(vmm):
    # 2040 bytes of user command line plus kiln's own arguments exceed 2047.
    r = vmm.run("--kernel", vmm.guest("hello"), "--no-compat", "--cmdline", "x" * 2040)
    assert_file_error(r, None, r"2047", status=(1, 2))


@pytest.mark.kvm
def test_initrd_missing(vmm, tmp_path):
    path = tmp_path / "no-such-initrd"
    assert_file_error(vmm.run("--kernel", vmm.guest("hello"), "--initrd", path), path)


@pytest.mark.kvm
def test_initrd_nonexistent_absolute(vmm):
    assert_file_error(vmm.run("--kernel", vmm.guest("hello"), "--initrd", "/nonexistent"),
                      "/nonexistent")


@pytest.mark.kvm
def test_initrd_is_directory(vmm, tmp_path):
    assert_file_error(vmm.run("--kernel", vmm.guest("hello"), "--initrd", tmp_path), tmp_path)


@pytest.mark.kvm
def test_initrd_is_device(vmm):
    assert_file_error(vmm.run("--kernel", vmm.guest("hello"), "--initrd", "/dev/zero", timeout=20),
                      "/dev/zero")


@pytest.mark.kvm
def test_initrd_does_not_fit(vmm, tmp_path):
    path = tmp_path / "huge.cpio"
    with open(path, "wb") as f:
        f.truncate(200 * MiB)  # sparse: costs no disk
    assert_file_error(vmm.run("--kernel", vmm.guest("hello"), "--initrd", path, "--mem", "128"),
                      path, r"use --mem")


@pytest.mark.kvm
def test_console_file_in_missing_directory(vmm, tmp_path):
    path = tmp_path / "no-such-dir" / "console.txt"
    assert_file_error(vmm.run("--kernel", vmm.guest("hello"), "--console", path), path)
