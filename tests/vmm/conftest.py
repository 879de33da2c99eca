"""Fixtures for kiln-vmm's tiny-guest tests.

`vmm` runs $KILN_BUILD/kiln-vmm (default build/kiln-vmm, relative to the
repository root) and checks every run for crashes: killed by a signal,
AddressSanitizer/UBSan/LeakSanitizer reports, or a timeout all fail the test.
`vmm.guest("hello")` is the path of build/tests/vmm/guests/hello.elf, built
by the Makefile from tests/vmm/guests/hello.S.
"""

import os
import signal
import subprocess
from dataclasses import dataclass

import pytest

from kilnvmm import SANITIZER_MARKERS


ERROR_PREFIX = "kiln-vmm: error: "
CRASH_MARKERS = SANITIZER_MARKERS + ("Traceback (most recent call last)",)
DEFAULT_TIMEOUT = 60


@dataclass
class VmmResult:
    args: list
    returncode: int
    stdout: str
    stderr: str

    def describe(self):
        """The whole run, for assertion messages."""
        return (
            f"\n$ {' '.join(self.args)}\nexit status {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )

    def error_lines(self):
        return [l for l in self.stderr.splitlines() if l.startswith(ERROR_PREFIX)]


def check_no_crash(r):
    """Fails the test if kiln-vmm died of a signal or a sanitizer spoke."""
    if r.returncode < 0:
        try:
            name = signal.Signals(-r.returncode).name
        except ValueError:
            name = str(-r.returncode)
        pytest.fail(f"kiln-vmm was killed by {name}" + r.describe())
    for marker in CRASH_MARKERS:
        if marker in r.stderr:
            pytest.fail(f"kiln-vmm's stderr has {marker!r}" + r.describe())


class Vmm:
    def __init__(self, build):
        self.build = build
        self.path = build / "kiln-vmm"
        self.guests = build / "tests" / "vmm" / "guests"

    def guest(self, name):
        """Path of the built tiny guest NAME (tests/vmm/guests/NAME.S)."""
        p = self.guests / f"{name}.elf"
        if not p.is_file():
            pytest.fail(f"{p} is missing: build it with `make` or run the tests "
                        "with `make vmm-test`")
        return p

    def run(self, *args, timeout=DEFAULT_TIMEOUT, check=True):
        """Runs kiln-vmm with ARGS (stdin from /dev/null) and returns a
        VmmResult; with check, fails the test on a crash or sanitizer report."""
        if not os.access(self.path, os.X_OK):
            pytest.fail(f"{self.path} not found: run `make` (or `make vmm-test`) first")
        argv = [str(self.path)] + [str(a) for a in args]
        try:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace")
            err = (e.stderr or b"").decode(errors="replace")
            pytest.fail(f"kiln-vmm did not finish within {timeout} s"
                        + VmmResult(argv, -1, out, err).describe())
        r = VmmResult(argv, p.returncode, p.stdout.decode(errors="replace"),
                      p.stderr.decode(errors="replace"))
        if check:
            check_no_crash(r)
        return r

    def boot(self, guest, *args, **kw):
        """Runs the tiny guest GUEST with extra kiln-vmm ARGS."""
        return self.run("--kernel", self.guest(guest), *args, **kw)

    def popen(self, *args):
        """Starts kiln-vmm in the background (stdin /dev/null, pipes for
        stdout and stderr); the caller waits for it."""
        if not os.access(self.path, os.X_OK):
            pytest.fail(f"{self.path} not found: run `make` (or `make vmm-test`) first")
        argv = [str(self.path)] + [str(a) for a in args]
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)


@pytest.fixture(scope="session")
def vmm(kiln_build):
    """A Vmm for $KILN_BUILD (see kiln_build in tests/conftest.py)."""
    return Vmm(kiln_build)
