"""Shared pytest helpers for kiln's VMM tests (tests/vmm) and end-to-end
tests (tests/e2e).

KVM gating: a test that needs a usable /dev/kvm carries `@pytest.mark.kvm`
(or a module sets `pytestmark = pytest.mark.kvm`). When /dev/kvm is missing
or cannot be opened read-write, such tests are *skipped with a reason*
("/dev/kvm not available: KVM tests skipped ..."), which pytest prints in
its summary (`-rs` is in the repo's pytest.ini), and the report header says
so before any test runs. They never pass without running.

Set KILN_NO_KVM=1 to behave as if /dev/kvm were absent (to check the gating).
"""

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
KVM_SKIP_REASON = "/dev/kvm not available: KVM tests skipped"


def kvm_unavailable_reason():
    """Returns None when /dev/kvm can be opened read-write, else why not."""
    if os.environ.get("KILN_NO_KVM"):
        return f"{KVM_SKIP_REASON} (KILN_NO_KVM is set)"
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return f"{KVM_SKIP_REASON} (no such device)"
    except OSError as e:
        return f"{KVM_SKIP_REASON} (cannot open it read-write: {e.strerror})"
    os.close(fd)
    return None


def host_is_nested_pvm():
    """True on the nested, software-assisted KVM (kvm_pvm) described in
    docs/DESIGN: kiln-vmm adds compatibility kernel arguments there."""
    return os.path.exists("/sys/module/kvm_pvm")


def build_dir():
    """$KILN_BUILD (default "build"), relative to the repository root."""
    return REPO_ROOT / os.environ.get("KILN_BUILD", "build")


def pytest_configure(config):
    config.addinivalue_line("markers", "kvm: the test needs a usable /dev/kvm (skipped loudly otherwise)")


def pytest_report_header(config):
    reason = kvm_unavailable_reason()
    flavour = " (nested kvm_pvm host: guest kernel code is emulated, slow)" if host_is_nested_pvm() else ""
    kvm = "/dev/kvm usable" + flavour if reason is None else reason
    return [f"kiln: build dir {build_dir()}", f"kiln: {kvm}"]


def pytest_collection_modifyitems(config, items):
    reason = kvm_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker("kvm") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope="session")
def kiln_build():
    """The build directory ($KILN_BUILD, default build/) as an absolute path."""
    return build_dir()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Even under -q (as `make vmm-test` runs), say loudly when KVM tests
    were skipped for want of /dev/kvm."""
    reason = kvm_unavailable_reason()
    if reason is None:
        return
    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if KVM_SKIP_REASON in str(getattr(r, "longrepr", ""))]
    if skipped:
        terminalreporter.write_sep("!", f"{len(skipped)} tests NOT RUN: {reason}", yellow=True, bold=True)
