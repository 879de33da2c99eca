"""Native functions end to end through kilnd: a static x86-64 executable as
the code, in exec mode (stdin -> stdout) and in server mode (it speaks the
runtime channel itself: examples/native/server.c). Both are built from
examples/native with the host's C compiler, as a user would, and deployed
over HTTP; they run on the base image's snapshot like sh functions, so
every VM here comes from a restore.
"""
import json
import os
import subprocess

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def bins(tmp_path_factory):
    out = tmp_path_factory.mktemp("native")
    made = {}
    for name in ("server", "exec"):
        path = out / name
        subprocess.run(["cc", "-static", "-O2", "-o", str(path),
                        str(ROOT / "examples" / "native" / f"{name}.c")], check=True)
        made[name] = path.read_bytes()
    return made



def test_native_server_mode(kilnd, bins):
    r = kilnd.deploy("nat-srv", {"bootstrap": (bins["server"], 0o755)}, runtime="native",
                     mode="server", handler="bootstrap", env={"GREETING": "hi"}, timeout=3)
    assert r.status == 201, (r.status, r.body, kilnd.tail())
    assert r.json()["runtime"] == "native" and r.json()["mode"] == "server", r.body
    ok = kilnd.invoke("nat-srv", b"hello world")
    assert ok.status == 200, (ok.body, kilnd.tail())
    body = json.loads(ok.body)
    assert body["upper"] == "HELLO WORLD" and body["request_id"] == ok.header("x-call-id")
    # The environment reaches the handler; its stderr is the function's log.
    assert kilnd.invoke("nat-srv", b"env").body == b"hi"
    assert ("stderr", "native: call 1, 11 bytes") in kilnd.call_logs("nat-srv",
                                                                  ok.header("x-call-id"))
    # A handled error: Lambda's body, status 500, the error header.
    err = kilnd.invoke("nat-srv", b"fail")
    assert err.status == 500 and err.header("x-kiln-function-error") == "Handled", err.body
    assert err.json()["errorType"] == "InputError", err.body
    # Overrunning the timeout: 504, and the next call runs in a fresh VM.
    before = kilnd.invoke("nat-srv", b"x").header("x-kiln-vm")
    slow = kilnd.invoke("nat-srv", b"sleep")
    assert slow.status == 504, slow.body
    nxt = kilnd.invoke("nat-srv", b"again")
    assert nxt.status == 200 and nxt.header("x-kiln-vm") != before, (nxt.status, nxt.body)


def test_native_exec_mode(kilnd, bins):
    # exec mode and handler ./bootstrap are the native runtime's defaults.
    r = kilnd.deploy("nat-exec", {"bootstrap": (bins["exec"], 0o755)}, runtime="native")
    assert r.status == 201, (r.status, r.body, kilnd.tail())
    assert r.json()["mode"] == "exec" and r.json()["handler"] == "./bootstrap", r.body
    ok = kilnd.invoke("nat-exec", b"abc def")
    assert ok.status == 200 and ok.body == b"nat-exec: ABC DEF", (ok.status, ok.body)
    assert ("stderr", "native exec: 7 bytes") in kilnd.call_logs("nat-exec", ok.header("x-call-id"))
    bad = kilnd.invoke("nat-exec", b"fail")
    assert bad.status == 500 and bad.header("x-kiln-function-error") == "Unhandled", bad.body
    assert b"told to fail" in bad.body and b"exit status 3" in bad.body, bad.body


def test_native_bad_deploys_are_refused(kilnd, bins):
    exe = {"bootstrap": (bins["exec"], 0o755)}
    for handler in ("../bootstrap", "/bin/sh", "./bootstrap", "a//b"):
        r = kilnd.deploy("nat-bad", exe, runtime="native", mode="server", handler=handler)
        assert r.status == 400 and "relative" in r.json()["error"], (handler, r.status, r.body)
    # Not executable: the guest refuses the load; the function is recorded
    # as failed (as a first deploy whose import fails), never served.
    r = kilnd.deploy("nat-bad", {"bootstrap": (bins["server"], 0o644)}, runtime="native",
                     mode="server", handler="bootstrap")
    assert r.status == 422 and "not an executable file" in r.json()["error"], r.body
    d = kilnd.request("GET", "/system/function/nat-bad").json()
    assert d["status"] == "failed" and "not an executable file" in d["versions"][0]["error"], d
    r = kilnd.invoke("nat-bad", b"x")
    assert r.status >= 400, (r.status, r.body)


def test_native_from_the_cli(kilnd, bins, tmp_path):
    """kiln deploy --runtime native --code DIR keeps the execute bit; kiln
    invoke prints the answer."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "bootstrap").write_bytes(bins["server"])
    (code / "bootstrap").chmod(0o755)
    kiln = [str(ROOT / os.environ.get("KILN_BUILD", "build") / "kiln"), "--gateway", kilnd.url]
    r = subprocess.run(kiln + ["deploy", "nat-cli", "--runtime", "native", "--mode", "server",
                               "--handler", "bootstrap", "--code", str(code)],
                       capture_output=True, text=True, input="", timeout=600)
    assert r.returncode == 0, (r.stdout, r.stderr)
    r = subprocess.run(kiln + ["invoke", "nat-cli", "--data", "from the cli"],
                       capture_output=True, text=True, input="", timeout=600)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert json.loads(r.stdout)["upper"] == "FROM THE CLI", r.stdout


AVX_PROBE = r"""
#include <cpuid.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void)
{
	unsigned int a, b, c, d;
	uint32_t lo = 0, hi = 0;
	uint64_t supp = 0;
	const char *t = getenv("GLIBC_TUNABLES");
	int osxsave, avx, ymm = 0, saved = -1;

	__get_cpuid(1, &a, &b, &c, &d);
	osxsave = !!(c & bit_OSXSAVE);
	avx = !!(c & bit_AVX);
	if (osxsave) {
		__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
		ymm = !!(lo & 4);
	}
	if (syscall(SYS_arch_prctl, 0x1021, &supp) == 0)
		saved = !!(supp & 4);
	printf("osxsave=%d avx=%d ymm=%d kernel_saves_ymm=%d tunables=%s\n", osxsave, avx, ymm,
	       saved, t ? t : "");
	return 0;
}
"""


def test_glibc_keeps_off_avx_where_the_guest_kernel_does_not_save_it(kilnd, tmp_path):
    """On the nested KVM the guest kernel runs without XSAVE, so it does not
    keep a task's AVX registers across task switches. Where the CPU still
    offers AVX to user space there (CPUID and XCR0 as a process in the guest
    reads them: some hosts pass the host's through, others the guest
    kernel's), every process kiln-init starts gets GLIBC_TUNABLES with AVX
    off (src/agent/avxguard.h); where it does not, or where the kernel saves
    AVX state, it never does. A static probe in the guest reads both."""
    src = tmp_path / "probe.c"
    src.write_text(AVX_PROBE)
    exe = tmp_path / "probe"
    subprocess.run(["cc", "-static", "-O2", "-o", str(exe), str(src)], check=True)
    r = kilnd.deploy("avx-env", {"bootstrap": (exe.read_bytes(), 0o755)}, runtime="native")
    assert r.status == 201, (r.status, r.body, kilnd.tail())
    out = kilnd.invoke("avx-env", b"").body.decode()
    seen = dict(kv.split("=", 1) for kv in out.strip().split(" ", 4))
    offered = seen["osxsave"] == "1" and seen["avx"] == "1" and seen["ymm"] == "1"
    unsaved = seen["kernel_saves_ymm"] == "0"
    if os.path.exists("/sys/module/kvm_pvm"):
        assert unsaved, out  # the guest kernel runs without XSAVE here
    if offered and unsaved:
        assert "glibc.cpu.hwcaps=-AVX,-AVX2," in seen["tunables"], out
    else:
        assert "-AVX2" not in seen["tunables"], out
