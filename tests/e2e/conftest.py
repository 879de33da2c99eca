"""End-to-end fixtures: the real guest kernel and initramfs, built (cached) once."""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / os.environ.get("KILN_BUILD", "build")


def kvm_usable():
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError as e:
        return False, f"/dev/kvm not available ({e.strerror}): end-to-end KVM tests skipped"
    os.close(fd)
    return True, ""


@pytest.fixture(scope="session")
def kvm():
    ok, why = kvm_usable()
    if not ok:
        pytest.skip(why)


@pytest.fixture(scope="session")
def kernel():
    out = subprocess.run([str(ROOT / "images/kernel/build.sh")], stdout=subprocess.PIPE,
                         text=True, check=True, timeout=3600)
    path = Path(out.stdout.strip().splitlines()[-1])
    assert path.is_file(), f"kernel build printed {path}, which is not a file"
    return path


@pytest.fixture(scope="session")
def initramfs():
    subprocess.run([str(ROOT / "images/rootfs/build.sh"), str(BUILD)], check=True,
                   stdout=subprocess.DEVNULL, timeout=600)
    path = BUILD / "initramfs.cpio"
    assert path.is_file()
    return path


@pytest.fixture(scope="session")
def vmm():
    path = BUILD / "kiln-vmm"
    assert path.is_file(), f"{path} missing: run make first"
    return path
