"""kiln-init's agent without a VM: build/kiln-init runs as an ordinary process
(not PID 1: supervisor mode) with KILN_AGENT_LISTEN=unix:PATH, and the tests
speak the wire protocol to it through tests/kilnclient.py. The python runtime
is runtimes/python/bootstrap.py run by the host's python3.

Each test gets a fresh kiln-init in its own temporary directory (function
code goes to TMP/fn). Fast: a few seconds for the whole file.
"""
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kilnclient as kc  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / os.environ.get("KILN_BUILD", "build")
INIT = BUILD / "kiln-init"
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


class Agent:
    def __init__(self, tmp, runtime_dir=ROOT / "runtimes"):
        self.tmp = tmp
        self.sock = str(tmp / "agent.sock")
        self.fndir = tmp / "fn"
        (tmp / "cmdline").write_text("console=ttyS0 quiet\n")
        env = dict(os.environ,
                   KILN_INIT_CMDLINE_FILE=str(tmp / "cmdline"),
                   KILN_AGENT_LISTEN="unix:" + self.sock,
                   KILN_AGENT_FNDIR=str(self.fndir),
                   KILN_RUNTIME_DIR=str(runtime_dir),
                   KILN_PYTHON=PYTHON)
        self.stderr = open(tmp / "stderr", "w+")
        self.proc = subprocess.Popen([str(INIT)], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.stderr)
        # The ready line comes after the socket listens.
        line = self.proc.stdout.readline().decode()
        assert line.startswith("kiln-init: ready "), line

    def client(self, timeout=20.0):
        return kc.Client.connect("unix:" + self.sock, timeout=timeout)

    def raw(self, timeout=10.0):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.sock)
        return s

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self.stderr.seek(0)
        return self.proc.returncode, self.stderr.read()


@pytest.fixture
def agent(tmp_path):
    assert INIT.is_file(), f"{INIT} missing: run make {INIT.relative_to(ROOT)} first"
    a = Agent(tmp_path)
    yield a
    code, err = a.stop()
    assert code == 0, err
    assert not os.path.exists(a.sock), "the socket file is removed at exit"


LAMBDA = """\
import os, sys, time
COUNT = 0
def handle(event, context):
    global COUNT
    COUNT += 1
    if event == "crash":
        os._exit(1)
    if event == "sleep":
        time.sleep(30)
    if event == "fail":
        raise ValueError("bad input: fail")
    if event == "print":
        print("hello from the handler")
        print("to stderr", file=sys.stderr)
        return "printed"
    if event == "env":
        return os.environ.get("GREETING")
    if isinstance(event, dict):
        return {"n2": event["n"] * 2, "s": event["s"][::-1], "rid": context.aws_request_id,
                "fn": context.function_name, "left": context.get_remaining_time_in_millis(),
                "mem": context.memory_limit_in_mb, "count": COUNT}
    return {"raw": event, "count": COUNT}
"""


def load_lambda(c, **kw):
    return c.load({"handler.py": LAMBDA}, runtime="python", mode="server",
                  handler="handler.handle", **kw)


# ---- basics ------------------------------------------------------------------

def test_hello(agent):
    with agent.client() as c:
        h = c.hello()
    assert h == {"version": 1, "agent": "kiln-init", "agent_version": h["agent_version"],
                 "generation": 0, "state": "none", "runtime": "", "mode": "", "handler": ""}


def test_invoke_before_load(agent):
    with agent.client() as c:
        with pytest.raises(kc.KilnError) as e:
            c.invoke(b"{}")
        assert e.value.code == kc.ERR_NOT_LOADED
        assert "no function loaded" in e.value.message
        assert c.ping(b"still here") == b"still here"


def test_ping_entropy_time(agent):
    with agent.client() as c:
        assert c.ping() == b""
        if os.geteuid() == 0:
            c.entropy(os.urandom(64))
        else:
            with pytest.raises(kc.KilnError) as e:
                c.entropy(os.urandom(64))
            assert e.value.code == kc.ERR_INTERNAL
        for bad in (b"", os.urandom(4097)):
            with pytest.raises(kc.KilnError) as e:
                c.entropy(bad)
            assert e.value.code == kc.ERR_BAD_PAYLOAD
        # Not PID 1: TIME is checked and acknowledged, the host clock is left alone.
        before = time.time()
        c.set_time(0)
        assert time.time() >= before
        with pytest.raises(kc.KilnError) as e:
            c.request(kc.TIME, b"1234")
        assert e.value.code == kc.ERR_BAD_PAYLOAD


# ---- python, server mode ------------------------------------------------------

def test_python_lambda_100(agent):
    with agent.client() as c:
        info = load_lambda(c, memory_mb=256)
        assert info["generation"] == 1
        h = c.hello()
        assert (h["state"], h["runtime"], h["mode"], h["handler"]) == \
            ("ready", "python", "server", "handler.handle")
        rng = random.Random(1)
        for i in range(100):
            n = rng.randrange(-10**9, 10**9)
            s = "".join(rng.choice("abcdefgh\u00e9\u4e2d") for _ in range(rng.randrange(0, 40)))
            r = c.invoke(json.dumps({"n": n, "s": s}), deadline_ms=5000,
                         context={"function_name": "doubler", "request_id": f"req-{i}"})
            assert r.ok, r
            got = json.loads(r.body)
            assert got["n2"] == 2 * n and got["s"] == s[::-1]
            assert got["rid"] == f"req-{i}" and got["fn"] == "doubler"
            assert 0 < got["left"] <= 5000
            assert got["mem"] == 256
            assert got["count"] == i + 1  # one process, imported once
            assert r.logs == []


def test_python_raw_payload(agent):
    with agent.client() as c:
        load_lambda(c)
        r = c.invoke(b"not json at all")
        assert r.ok and json.loads(r.body) == {"raw": "not json at all", "count": 1}
        r = c.invoke(b"")
        assert r.ok and json.loads(r.body)["raw"] == ""


def test_python_openfaas(agent):
    code = ("def handle(req):\n"
            "    if req == 'bytes':\n"
            "        return b'\\x00\\x01raw'\n"
            "    if req == 'none':\n"
            "        return None\n"
            "    return req.upper()\n")
    with agent.client() as c:
        c.load({"fn/handler.py": code, "fn/__init__.py": ""}, handler="fn.handler.handle")
        for i in range(20):
            r = c.invoke(f"hello {i} {{not json}}")
            assert r.ok and r.body == f"HELLO {i} {{NOT JSON}}".encode()
        assert c.invoke("bytes").body == b"\x00\x01raw"
        assert c.invoke("none").body == b""


def test_python_handled_error(agent):
    with agent.client() as c:
        load_lambda(c)
        r = c.invoke('"fail"')
        assert r.status == kc.STATUS_HANDLED
        assert r.error_type == "ValueError"
        assert r.error_message == "bad input: fail"
        body = json.loads(r.body)
        assert body["errorType"] == "ValueError" and body["errorMessage"] == "bad input: fail"
        assert b"Traceback" in r.log(kc.STDERR)
        r = c.invoke('{"n": 1, "s": "ab"}')
        assert r.ok and json.loads(r.body)["count"] == 2  # same process


def test_python_crash_restarts(agent):
    with agent.client() as c:
        load_lambda(c)
        assert json.loads(c.invoke('"x"').body)["count"] == 1
        r = c.invoke('"crash"', deadline_ms=5000)
        assert r.status == kc.STATUS_UNHANDLED, r
        assert r.error_type == "Runtime.ExitError"
        assert "exit status 1" in r.error_message
        # The runtime was restarted (imported again): the counter starts over.
        r = c.invoke('"x"', deadline_ms=5000)
        assert r.ok, r
        assert json.loads(r.body)["count"] == 1
        assert c.hello()["state"] == "ready"


def test_python_timeout_restarts(agent):
    with agent.client() as c:
        load_lambda(c)
        t = time.monotonic()
        r = c.invoke('"sleep"', deadline_ms=300)
        took = time.monotonic() - t
        assert r.status == kc.STATUS_TIMEOUT, r
        assert r.error_type == "Runtime.Timeout"
        assert 0.25 < took < 3
        r = c.invoke('"y"', deadline_ms=5000)
        assert r.ok, r
        assert json.loads(r.body) == {"raw": "y", "count": 1}


def test_python_logs(agent):
    with agent.client() as c:
        load_lambda(c)
        r = c.invoke('"print"')
        assert r.ok and json.loads(r.body) == "printed"
        assert r.log(kc.STDOUT) == b"hello from the handler\n"
        assert r.log(kc.STDERR) == b"to stderr\n"
        assert b"hello" not in r.body
        # Logs carry the invocation's request id: they were collected under it.
        rid = c.invoke_async('"print"')
        res = c.wait_result(rid)
        assert res.id == rid and res.log(kc.STDOUT) == b"hello from the handler\n"


def test_python_log_during_import_and_env(agent):
    code = "print('importing')\nimport os\n" + LAMBDA
    with agent.client() as c:
        info = c.load({"handler.py": code}, env={"GREETING": "hi there"})
        assert (kc.STDOUT, b"importing\n") in info["logs"]
        r = c.invoke('"env"')
        assert r.ok and json.loads(r.body) == "hi there"


@pytest.mark.parametrize("code,handler,want", [
    ("def handle(e, c):\n    return e +\n", "handler.handle", "SyntaxError"),
    ("import no_such_module_kiln\n", "handler.handle", "ModuleNotFoundError"),
    ("raise RuntimeError('init failed')\n", "handler.handle", "RuntimeError: init failed"),
    ("def other(e, c):\n    pass\n", "handler.handle", "AttributeError"),
    ("X = 1\n", "nodot", "ValueError"),
])
def test_python_load_errors(agent, code, handler, want):
    with agent.client() as c:
        with pytest.raises(kc.KilnError) as e:
            c.load({"handler.py": code}, handler=handler)
        assert e.value.code == kc.ERR_LOAD_FAILED
        assert want in e.value.message, e.value.message
        assert "\n" not in e.value.message  # the last line only
        assert c.hello()["state"] == "failed"
        with pytest.raises(kc.KilnError) as e:
            c.invoke(b"{}")
        assert e.value.code == kc.ERR_LOAD_FAILED
        # A good LOAD fixes it.
        load_lambda(c)
        assert c.invoke('"z"').ok


def test_python_queue_in_order(agent):
    with agent.client() as c:
        load_lambda(c)
        ids = [c.invoke_async(f'{{"n": {i}, "s": "q"}}') for i in range(10)]
        for i, rid in enumerate(reversed(ids)):
            r = c.wait_result(rid)
            assert r.ok
            assert json.loads(r.body)["n2"] == 2 * (9 - i)
            assert json.loads(r.body)["count"] == 10 - i  # ran in order


def test_load_replaces(agent):
    with agent.client() as c:
        load_lambda(c)
        assert c.invoke('"a"').ok
        info = c.load({"h.sh": "echo replaced"}, runtime="sh", mode="exec", handler="sh h.sh")
        assert info["generation"] == 2
        h = c.hello()
        assert (h["generation"], h["runtime"], h["mode"]) == (2, "sh", "exec")
        assert c.invoke(b"").body == b"replaced\n"
        assert sorted(os.listdir(agent.fndir)) == ["2"]  # the old code is gone


# ---- spare runtimes (PRESTART) ----------------------------------------------------

def runtime_children(agent):
    """{pid: cmdline} of kiln-init's children running a bootstrap."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == agent.proc.pid and any(b"bootstrap" in a for a in cmd):
            out[int(d.name)] = [a.decode() for a in cmd if a]
    return out


WHO = """\
import os, sys
def handle(event, context):
    return {"pid": os.getpid(), "cwd": os.getcwd(), "greeting": os.environ.get("GREETING"),
            "dir": os.environ.get("KILN_FUNCTION_DIR"), "h": os.environ.get("KILN_HANDLER"),
            "mem": os.environ.get("KILN_MEMORY_MB"), "ctxmem": context.memory_limit_in_mb,
            "path0": sys.path[0], "event": event}
"""


def test_prestart_python_spare_takes_the_function(agent):
    with agent.client() as c:
        info = c.prestart("python")
        assert info["generation"] == 0 and info["init_us"] > 0
        spare = runtime_children(agent)
        assert len(spare) == 1, spare
        (pid, argv), = spare.items()
        assert argv[-1].endswith("python/bootstrap.py"), argv  # no function arguments
        h = c.hello()
        assert (h["generation"], h["state"], h["runtime"]) == (0, "none", "")
        with pytest.raises(kc.KilnError) as e:
            c.invoke(b"{}")
        assert e.value.code == kc.ERR_NOT_LOADED
        info = c.load({"who.py": WHO}, handler="who.handle", env={"GREETING": "hi"},
                      memory_mb=256)
        assert info["generation"] == 1
        r = c.invoke('"x"')
        assert r.ok, r
        got = json.loads(r.body)
        fndir = str(agent.fndir / "1")
        assert got == {"pid": pid, "cwd": fndir, "greeting": "hi", "dir": fndir,
                       "h": "who.handle", "mem": "256", "ctxmem": 256, "path0": fndir,
                       "event": "x"}
        assert c.hello()["state"] == "ready"


def test_prestart_load_needing_a_fresh_start_replaces_the_spare(agent):
    """Variables read at interpreter start-up cannot be taken in-process."""
    with agent.client() as c:
        c.prestart("python")
        (spare,) = runtime_children(agent)
        c.load({"who.py": WHO}, handler="who.handle",
               env={"GREETING": "fresh", "PYTHONHASHSEED": "0"})
        got = json.loads(c.invoke('"x"').body)
        assert got["pid"] != spare and got["greeting"] == "fresh"
        assert list(runtime_children(agent)) == [got["pid"]]


def test_prestart_then_exec_or_other_runtime_stops_the_spare(agent):
    with agent.client() as c:
        c.prestart("python")
        (spare,) = runtime_children(agent)
        c.load({"h.sh": "echo exec"}, runtime="sh", mode="exec", handler="sh h.sh")
        assert c.invoke(b"").body == b"exec\n"
        deadline = time.monotonic() + 5
        while runtime_children(agent) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not runtime_children(agent), "the spare was stopped"


def test_prestart_bound_function_errors_crashes_and_timeouts(agent):
    with agent.client() as c:
        c.prestart("python")
        with pytest.raises(kc.KilnError) as e:
            c.load({"bad.py": "def handle(e, c):\n  return (\n"}, handler="bad.handle")
        assert e.value.code == kc.ERR_LOAD_FAILED
        assert "SyntaxError" in e.value.message
        assert c.hello()["state"] == "failed"
        # A new spare, then a function that crashes: it restarts the usual way.
        c.prestart("python")
        load_lambda(c)
        assert json.loads(c.invoke('"x"').body)["count"] == 1
        r = c.invoke('"crash"', deadline_ms=5000)
        assert r.status == kc.STATUS_UNHANDLED and "exit status 1" in r.error_message, r
        assert json.loads(c.invoke('"y"').body) == {"raw": "y", "count": 1}
        r = c.invoke('"sleep"', deadline_ms=300)
        assert r.status == kc.STATUS_TIMEOUT, r
        assert c.invoke('"fail"').status == kc.STATUS_HANDLED


def test_prestart_errors(agent):
    with agent.client() as c:
        for runtime, code, want in (("sh", kc.ERR_UNSUPPORTED, "cannot be pre-started"),
                                    ("native", kc.ERR_UNSUPPORTED, "cannot be pre-started"),
                                    ("BAD NAME", kc.ERR_UNSUPPORTED, "bad runtime name")):
            with pytest.raises(kc.KilnError) as e:
                c.prestart(runtime)
            assert e.value.code == code and want in e.value.message, e.value
        rid = c.send(kc.PRESTART, kc.enc_str("python"))  # no init_timeout_ms
        with pytest.raises(kc.KilnError) as e:
            c.wait(rid)
        assert e.value.code == kc.ERR_BAD_PAYLOAD and "malformed PRESTART" in e.value.message
        assert not runtime_children(agent)
        assert c.ping(b"ok") == b"ok"


def test_prestart_spare_that_dies_is_reported(tmp_path):
    """A spare that cannot start answers the PRESTART LOAD_FAILED; the agent
    goes on with no function."""
    bad = tmp_path / "rt"
    (bad / "python").mkdir(parents=True)
    (bad / "python" / "bootstrap.py").write_text(
        "import sys\nprint('spare start-up failed', file=sys.stderr)\nsys.exit(4)\n")
    a = Agent(tmp_path, runtime_dir=bad)
    try:
        with a.client() as c:
            with pytest.raises(kc.KilnError) as e:
                c.prestart("python", init_timeout_ms=20000)
            assert e.value.code == kc.ERR_LOAD_FAILED
            assert "exit status 4" in e.value.message
            assert "spare start-up failed" in e.value.message
            assert c.hello()["state"] == "none"
            assert c.ping(b"ok") == b"ok"
    finally:
        code, err = a.stop()
    assert code == 0, err


@pytest.mark.skipif(not os.path.exists("/usr/bin/node"), reason="no /usr/bin/node here")
def test_prestart_node_spare_takes_the_function(agent):
    js = ("exports.handler = async (event, context) => ({pid: process.pid, cwd: process.cwd(),"
          " greeting: process.env.GREETING, event});\n")
    with agent.client(timeout=60) as c:
        c.prestart("node", init_timeout_ms=60000)
        (pid,) = runtime_children(agent)
        c.load({"index.js": js}, runtime="node", handler="index.handler",
               env={"GREETING": "hej"})
        got = json.loads(c.invoke('{"a": 1}').body)
        assert got == {"pid": pid, "cwd": str(agent.fndir / "1"), "greeting": "hej",
                       "event": {"a": 1}}


# ---- sh, exec mode ----------------------------------------------------------------

SH = """\
#!/bin/sh
read -r line
case "$line" in
fail) echo "something went wrong" >&2; exit 3 ;;
sleep) sleep 30 ;;
env) echo "$KILN_REQUEST_ID $KILN_FUNCTION_NAME $GREETING" ;;
*) echo "echo:$line"; echo "log line" >&2 ;;
esac
"""


def test_sh_exec_100(agent):
    with agent.client() as c:
        c.load({"handler.sh": (SH, 0o755)}, runtime="sh", mode="exec", handler="./handler.sh",
               env={"GREETING": "hey"})
        rng = random.Random(2)
        for i in range(100):
            word = "".join(rng.choice("abcxyz0123 ") for _ in range(rng.randrange(1, 30)))
            word = word.strip() or "w"
            r = c.invoke(word + "\n", deadline_ms=5000)
            assert r.ok, r
            assert r.body == f"echo:{word}\n".encode()
            assert r.log(kc.STDERR) == b"log line\n"
        r = c.invoke("env\n", context={"function_name": "shfn"})
        assert r.body == f"{r.id} shfn hey\n".encode()


def test_sh_exec_errors(agent):
    with agent.client() as c:
        c.load({"handler.sh": SH}, runtime="sh", mode="exec", handler="sh handler.sh")
        r = c.invoke("fail\n")
        assert r.status == kc.STATUS_UNHANDLED
        assert r.error_type == "Runtime.ExitError"
        assert "something went wrong" in r.error_message and "exit status 3" in r.error_message
        t = time.monotonic()
        r = c.invoke("sleep\n", deadline_ms=200)
        assert r.status == kc.STATUS_TIMEOUT and time.monotonic() - t < 3
        assert c.invoke("ok\n").body == b"echo:ok\n"


def test_sh_exec_big_io(agent):
    with agent.client() as c:
        c.load({}, runtime="sh", mode="exec", handler="cat; head -c 2000000 /dev/zero")
        data = os.urandom(1 << 20)
        r = c.invoke(data, deadline_ms=10000)
        assert r.ok, r
        assert r.body == data + b"\0" * 2000000
        c.load({}, runtime="sh", mode="exec", handler="head -c 7000000 /dev/zero")
        r = c.invoke(b"", deadline_ms=10000)
        assert r.status == kc.STATUS_UNHANDLED and r.error_type == "Runtime.ResponseTooLarge"


def test_sh_exec_endless_stdout_is_stopped_at_the_cap(agent):
    # A handler that would write forever is killed once its body passes
    # 6 MiB, not drained until its deadline (120 s here).
    with agent.client() as c:
        c.load({}, runtime="sh", mode="exec", handler="cat /dev/zero")
        t = time.monotonic()
        r = c.invoke(b"", deadline_ms=120000)
        assert r.status == kc.STATUS_UNHANDLED and r.error_type == "Runtime.ResponseTooLarge", r
        assert time.monotonic() - t < 60
        c.load({}, runtime="sh", mode="exec", handler="echo fine")
        assert c.invoke(b"").body == b"fine\n"


# ---- bad input ---------------------------------------------------------------------

def expect_error(c, code):
    f = c.recv_frame()
    assert f.type == kc.ERROR, f
    r = kc.Reader(f.payload)
    assert r.u32() == code
    return f, r.str()


def expect_eof(c):
    with pytest.raises(kc.ConnectionClosed):
        c.recv_frame()


def test_truncated_header_then_close(agent):
    s = agent.raw()
    s.sendall(kc.frame(kc.PING, 1, b"abc")[:7])
    s.close()
    with agent.client() as c:
        assert c.ping(b"ok") == b"ok"
    assert agent.alive()


def test_truncated_payload_then_close(agent):
    s = agent.raw()
    s.sendall(kc.frame(kc.PING, 1, b"abcdef" * 100)[:-10])
    s.close()
    with agent.client() as c:
        assert c.ping(b"ok") == b"ok"


def test_unknown_type_keeps_connection(agent):
    c = agent.client()
    c.send_raw(kc.frame(0x7F, 42, b"x" * 1000) + kc.frame(kc.PING, 43, b"after"))
    f, msg = expect_error(c, kc.ERR_UNKNOWN_TYPE)
    assert f.id == 42 and "unknown" in msg
    f = c.recv_frame()
    assert (f.type, f.id, f.payload) == (kc.PONG, 43, b"after")
    # A reply type sent as a request: refused, connection kept.
    c.send_raw(kc.frame(kc.RESULT, 44, b"") + kc.frame(kc.PING, 45, b"x"))
    f, _ = expect_error(c, kc.ERR_UNSUPPORTED)
    assert f.id == 44
    assert c.recv_frame().id == 45
    c.close()


@pytest.mark.parametrize("length", [0xFFFFFFFF, (1 << 20) + 1])
def test_huge_length_closes(agent, length):
    c = agent.client()
    c.send_raw(kc.frame(kc.PING, 9, b"", length=length))
    f, msg = expect_error(c, kc.ERR_TOO_BIG)
    assert f.id == 9
    expect_eof(c)
    with agent.client() as c:
        assert c.ping(b"fine") == b"fine"


@pytest.mark.parametrize("forge", [{"magic": 0x20544547}, {"version": 2}])
def test_bad_header_closes(agent, forge):
    c = agent.client()
    c.send_raw(kc.frame(kc.PING, 5, b"abc", **forge))
    expect_error(c, kc.ERR_BAD_HEADER)
    expect_eof(c)


def test_malformed_payload_keeps_connection(agent):
    with agent.client() as c:
        # A LOAD whose first str claims 1000 bytes.
        rid = c.send(kc.LOAD, struct.pack("<I", 1000) + b"python")
        with pytest.raises(kc.KilnError) as e:
            c.wait(rid)
        assert e.value.code == kc.ERR_BAD_PAYLOAD
        # An INVOKE with a kv count far too large.
        load_lambda(c)
        rid = c.send(kc.INVOKE, struct.pack("<II", 0, 10**6) + kc.enc_bytes(b"x"))
        with pytest.raises(kc.KilnError) as e:
            c.wait(rid)
        assert e.value.code == kc.ERR_BAD_PAYLOAD
        # A HELLO of the wrong size.
        with pytest.raises(kc.KilnError) as e:
            c.request(kc.HELLO, b"\x01")
        assert e.value.code == kc.ERR_BAD_PAYLOAD
        assert c.invoke('"ok"').ok
        # Unknown mode, bad runtime name.
        with pytest.raises(kc.KilnError) as e:
            c.load({"a": "b"}, mode="daemon")
        assert e.value.code == kc.ERR_UNSUPPORTED
        with pytest.raises(kc.KilnError) as e:
            c.load({"a": "b"}, runtime="../python")
        assert e.value.code == kc.ERR_UNSUPPORTED
        with pytest.raises(kc.KilnError) as e:
            c.load({"a": "b"}, runtime="cobol")
        assert e.value.code == kc.ERR_UNSUPPORTED
        # The function from before is still there.
        assert c.invoke('"ok"').ok


@pytest.mark.parametrize("evil", ["../evil", "/TMPDIR/abs", "a/../../evil2", "", "a//b"])
def test_load_bad_paths(agent, evil):
    evil = evil.replace("/TMPDIR", str(agent.tmp))
    before = sorted(os.listdir(agent.tmp))
    with agent.client() as c:
        with pytest.raises(kc.KilnError) as e:
            c.load({"ok.py": "x = 1", evil: "evil"}, runtime="sh", mode="exec", handler="true")
        assert e.value.code == kc.ERR_BAD_ARCHIVE
        assert c.hello()["state"] == "none"
    assert sorted(os.listdir(agent.tmp)) == before
    assert not os.path.exists(agent.tmp / "evil") and not os.path.exists(agent.tmp / "abs")
    if agent.fndir.exists():
        assert not any(agent.fndir.rglob("*evil*"))
        assert not any(agent.fndir.rglob("ok.py"))


def test_load_bad_archive_kinds(agent):
    with agent.client() as c:
        link = struct.pack("<II", kc.ARCHIVE_MAGIC, 1) + struct.pack("<BBHHI", 3, 0, 0o777, 4, 6) \
            + b"link" + b"/etc/x"
        lying = struct.pack("<II", kc.ARCHIVE_MAGIC, 1) + struct.pack("<BBHHI", 2, 0, 0o644, 1,
                                                                       1000) + b"f" + b"short"
        for archive in (link, lying, b"", b"KLNA"):
            with pytest.raises(kc.KilnError) as e:
                c.load(None, runtime="sh", mode="exec", handler="true", archive=archive)
            assert e.value.code == kc.ERR_BAD_ARCHIVE


# ---- many connections --------------------------------------------------------------

def test_32_connections_ping_1mib(agent):
    errors = []

    def one(seed):
        try:
            rng = random.Random(seed)
            c = agent.client(timeout=60)
            data = rng.randbytes(1 << 20)
            sizes, off = [], 0
            while off < len(data):
                n = min(rng.choice([1, 100, 4096, 65536, 300000]), len(data) - off)
                sizes.append((off, n))
                off += n
            if seed % 4 == 0:
                sizes = [(0, len(data))]  # one frame of the maximum size
            ids = []

            def sender():
                for o, n in sizes:
                    ids.append(c.send(kc.PING, data[o:o + n]))

            t = threading.Thread(target=sender)
            t.start()
            got = bytearray()
            for _ in sizes:
                f = c.recv_frame()
                assert f.type == kc.PONG
                got += f.payload
            t.join()
            assert bytes(got) == data
            c.close()
        except Exception as e:  # reported by the main thread
            errors.append(f"connection {seed}: {e!r}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert agent.alive()


def test_client_disconnects_mid_invoke(agent):
    with agent.client() as c:
        load_lambda(c)
    c = agent.client()
    c.invoke_async('"sleep"', deadline_ms=300)
    c.close()
    time.sleep(0.5)
    with agent.client() as c2:
        r = c2.invoke('"after"', deadline_ms=5000)
        assert r.ok, r


def test_sigterm_stops_runtime(agent):
    with agent.client() as c:
        load_lambda(c)
        c.invoke('"a"')
    code, err = agent.stop()
    assert code == 0, err
    # No bootstrap.py left running from this agent's function directory.
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(agent.fndir) not in out


# ---- native ------------------------------------------------------------------

@pytest.fixture(scope="module")
def native_bins(tmp_path_factory):
    """examples/native built static with the host's C compiler, as a user would."""
    out = tmp_path_factory.mktemp("native")
    bins = {}
    for name in ("server", "exec"):
        bins[name] = out / name
        subprocess.run(["cc", "-static", "-O2", "-o", str(bins[name]),
                        str(ROOT / "examples" / "native" / f"{name}.c")], check=True)
    return {k: v.read_bytes() for k, v in bins.items()}


def test_native_server(agent, native_bins):
    with agent.client() as c:
        c.load({"bin/bootstrap": (native_bins["server"], 0o755)}, runtime="native",
               mode="server", handler="bin/bootstrap", env={"GREETING": "hi"})
        for i in range(1, 30):
            r = c.invoke("hello world", context={"request_id": f"r{i}"}, deadline_ms=5000)
            assert r.ok, r
            assert json.loads(r.body) == {"upper": "HELLO WORLD", "request_id": f"r{i}",
                                          "calls": i}
            assert r.log(kc.STDERR) == f"native: call {i}, 11 bytes\n".encode()
        assert c.invoke("env").body == b"hi"
        r = c.invoke("fail")
        assert r.status == kc.STATUS_HANDLED and r.error_type == "InputError", r
        assert json.loads(r.body)["errorMessage"] == "bad input: fail"
        r = c.invoke("crash", deadline_ms=5000)
        assert r.status == kc.STATUS_UNHANDLED and "exit status 1" in r.error_message, r
        r = c.invoke("sleep", deadline_ms=300)
        assert r.status == kc.STATUS_TIMEOUT, r
        # Restarted after the crash and the timeout: its counter starts over.
        assert json.loads(c.invoke("again", deadline_ms=5000).body)["calls"] == 1


def test_native_exec(agent, native_bins):
    with agent.client() as c:
        c.load({"bootstrap": (native_bins["exec"], 0o755)}, runtime="native", mode="exec",
               handler="./bootstrap")
        r = c.invoke("abc def", context={"function_name": "nat"})
        assert r.ok and r.body == b"nat: ABC DEF", r
        assert r.log(kc.STDERR) == b"native exec: 7 bytes\n"
        r = c.invoke("fail")
        assert r.status == kc.STATUS_UNHANDLED and "told to fail" in r.error_message, r
        assert "exit status 3" in r.error_message


@pytest.mark.parametrize("files,handler,code,want", [
    ({"bootstrap": ("x", 0o644)}, "bootstrap", kc.ERR_LOAD_FAILED, "not an executable file"),
    ({"bootstrap": ("x", 0o755)}, "missing", kc.ERR_LOAD_FAILED, "No such file"),
    ({"d/x": ("x", 0o755)}, "d", kc.ERR_LOAD_FAILED, "not an executable file"),
    ({"bootstrap": ("x", 0o755)}, "../bootstrap", kc.ERR_BAD_PAYLOAD, "relative path"),
    ({"bootstrap": ("x", 0o755)}, "/bin/sh", kc.ERR_BAD_PAYLOAD, "relative path"),
    ({"bootstrap": ("x", 0o755)}, "./bootstrap", kc.ERR_BAD_PAYLOAD, "relative path"),
])
def test_native_bad_handler(agent, files, handler, code, want):
    with agent.client() as c:
        with pytest.raises(kc.KilnError) as e:
            c.load(files, runtime="native", mode="server", handler=handler)
        assert e.value.code == code and want in e.value.message, e.value
        assert c.hello()["state"] in ("none", "failed")
