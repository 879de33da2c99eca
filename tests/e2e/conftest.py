"""End-to-end fixtures: the real guest kernel and initramfs, built (cached) once."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / os.environ.get("KILN_BUILD", "build")
sys.path.insert(0, str(ROOT / "tests"))  # kilnclient
from kilnvmm import sanitizer_report  # noqa: E402 - tests/kilnvmm.py, shared by every tier
from kilnclient import make_tar  # noqa: E402,F401 - the tests import it from here


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
    if os.environ.get("KILN_KERNEL"):  # a developer's own vmlinux
        return Path(os.environ["KILN_KERNEL"])
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


def runtime_image(runtime):
    """BUILD/rootfs-RUNTIME.ext4, built or taken from KILN_CACHE."""
    out = subprocess.run([str(ROOT / "images/rootfs/build-runtime.sh"), str(BUILD), runtime],
                         stdout=subprocess.PIPE, text=True, check=True, timeout=1800)
    path = Path(out.stdout.strip().splitlines()[-1])
    assert path.is_file(), f"build-runtime.sh printed {path}, which is not a file"
    return path


@pytest.fixture(scope="session")
def rootfs_python():
    return runtime_image("python")


@pytest.fixture(scope="session")
def rootfs_node():
    """build/rootfs-node.ext4 (Node.js 18)."""
    return runtime_image("node")


def terminate(proc, timeout=30):
    """SIGTERM, then SIGKILL when proc has not exited after timeout seconds.
    Returns its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def check_stderr(text):
    """A sanitizer build's report fails the test that ran the process."""
    assert sanitizer_report(text) is None, text


class GuestVM:
    """A kiln-vmm process booting the Python root filesystem with kiln-init's
    agent on vsock port 1024; `uds` is the host side of its vsock."""

    READY = re.compile(rb"^kiln-init: ready monotonic_ns=(\d+)", re.M)

    def __init__(self, vmm, kernel, rootfs, workdir, mem=256, extra=()):
        self.workdir = Path(workdir)
        self.uds = str(self.workdir / "vsock.sock")
        self.console = self.workdir / "console.log"
        self.stderr = self.workdir / "vmm.stderr"
        self.args = [str(vmm), "--kernel", str(kernel), "--disk", str(rootfs),
                     "--mem", str(mem), "--vsock-uds", self.uds,
                     "--console", str(self.console), *extra, "--cmdline",
                     "root=/dev/vda ro rootfstype=ext4 init=/sbin/kiln-init kiln.agent=1024 quiet"]
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(self.stderr, "wb"))

    def diag(self):
        out = self.console.read_bytes()[-3000:] if self.console.exists() else b""
        err = self.stderr.read_bytes()[-3000:] if self.stderr.exists() else b""
        return f"console:\n{out.decode(errors='replace')}\nstderr:\n{err.decode(errors='replace')}"

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.console.exists() and self.READY.search(self.console.read_bytes()):
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"kiln-vmm exited {self.proc.returncode} before the "
                                     f"guest was ready\n{self.diag()}")
            time.sleep(0.5)
        raise AssertionError(f"guest not ready after {timeout}s\n{self.diag()}")

    def stop(self):
        status = terminate(self.proc)
        check_stderr(self.stderr.read_text(errors="replace") if self.stderr.exists() else "")
        return status


# ---- kilnd ------------------------------------------------------------------

def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vmm_pids(run_dir):
    """kiln-vmm processes whose command line names run_dir (kilnd's VMs), or,
    jailed (their paths are the jail's), whose cgroup is one of kilnd's,
    kiln-<run dir name>-... (docs/security.md)."""
    out = []
    tag = f"/kiln-{Path(run_dir).name}-".encode()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
            if not argv or not argv[0].endswith(b"kiln-vmm"):
                continue
            if any(run_dir.encode() in a for a in argv) or tag in (p / "cgroup").read_bytes():
                out.append(int(p.name))
        except OSError:
            continue
    return out


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        import json
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name.lower())


class Kilnd:
    """A kilnd process on a free port with its own state directory."""

    def __init__(self, workdir, kernel, rootfs, extra=(), port=None):
        self.workdir = Path(workdir)
        self.state_dir = self.workdir / "state"
        self.kernel = kernel
        self.rootfs = rootfs
        # KILN_E2E_KILND_ARGS="--no-jail": every kilnd of the run gets them
        self.extra = list(extra) + os.environ.get("KILN_E2E_KILND_ARGS", "").split()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.workdir / "kilnd.log"
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [str(BUILD / "kilnd"), "--state-dir", str(self.state_dir), "--port", str(self.port),
             "--kernel", str(self.kernel), "--rootfs", str(self.rootfs), *self.extra],
            stdin=subprocess.DEVNULL, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.request("GET", "/healthz", timeout=2).status == 200:
                    return
            except OSError:
                pass
            assert self.proc.poll() is None, f"kilnd exited {self.proc.returncode}:\n{self.tail()}"
            assert time.monotonic() < deadline, f"kilnd did not answer\n{self.tail()}"
            time.sleep(0.05)

    def tail(self, n=4000):
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def request(self, method, path, body=None, headers=None, timeout=600):
        import http.client
        import json
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def deploy(self, name, files, method="POST", wait=True, http_timeout=600, **spec):
        """Deploys files as name; spec fields as keywords (`timeout` is the
        function's), http_timeout how long the request may wait."""
        import base64
        body = {"name": name, "code": base64.b64encode(make_tar(files)).decode(), **spec}
        return self.request(method, "/system/functions" + ("?wait=1" if wait else ""), body,
                            timeout=http_timeout)

    def invoke(self, name, body=b"", path="", headers=None, timeout=600):
        return self.request("POST", f"/function/{name}{path}", body, headers, timeout)

    def info(self):
        return self.request("GET", "/system/info").json()

    def call_logs(self, name, call_id, tail=500):
        """(stream, text) of each log line of one call of function name."""
        import json
        lines = [json.loads(x) for x in self.request(
            "GET", f"/system/logs?name={name}&tail={tail}").body.splitlines()]
        return [(x["stream"], x["text"]) for x in lines if x["call_id"] == call_id]

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        status = terminate(self.proc, timeout=60)
        check_stderr(self.tail(100000))
        return status


@pytest.fixture(scope="session")
def kilnd(kvm, vmm, kernel, rootfs_python, tmp_path_factory):
    """One kilnd for the session's tests (functions deployed by one test may
    be used by another: names are unique per test module)."""
    k = Kilnd(tmp_path_factory.mktemp("kilnd"), kernel, rootfs_python,
              extra=("--mem-budget", "1536", "--pause-after", "1500"))
    yield k
    assert k.stop() == 0, k.tail()


@pytest.fixture(scope="session")
def kilnd_factory(kvm, vmm, kernel, rootfs_python, tmp_path_factory):
    """Starts extra kilnd processes (own state directories); stops them at the end."""
    made = []

    def make(*extra):
        k = Kilnd(tmp_path_factory.mktemp("kilnd-extra"), kernel, rootfs_python, extra=extra)
        made.append(k)
        return k
    yield make
    for k in made:
        k.stop()
