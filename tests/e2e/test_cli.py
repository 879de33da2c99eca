"""The kiln command-line client (build/kiln) end to end against a real kilnd
(docs/cli.md, docs/kiln.1).

Deploys are few because a Python deploy costs about a minute on this
machine (the guest kernel is emulated): one module-scoped setup runs
`kiln new` + `kiln up` for a Python function (inside tmux, so the terminal
test can watch its progress line) and `kiln deploy` with every flag for a
sh function; the tests share them. The Cloudlet test pays for one run of a
Python program in exec mode.
"""
import json
import os
import re
import select
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / os.environ.get("KILN_BUILD", "build")
KILN = BUILD / "kiln"

PY_NAME = "cli-hello"
SH_NAME = "cli-sh"

SH_HANDLER = """#!/bin/sh
input=$(cat)
if [ "$input" = fail ]; then
    echo "asked to fail" >&2
    exit 3
fi
echo "sh saw A=$A B=$B input=$input"
"""

FIB = """import sys
def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
for i in range(12):
    print(f"fib({i}) = {fib(i)}")
print("stderr line from the program", file=sys.stderr)
"""

EXIT_OK, EXIT_FUNCTION, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_NOT_FOUND, EXIT_REJECTED, EXIT_SERVER = 4, 5, 6


def kiln(*args, gateway=None, cwd=None, input=None, timeout=600, env_gateway=None):
    """Runs build/kiln; --gateway goes before the command when given."""
    env = {k: v for k, v in os.environ.items() if k != "KILN_GATEWAY"}
    if env_gateway:
        env["KILN_GATEWAY"] = env_gateway
    argv = [str(KILN)] + (["--gateway", gateway] if gateway else []) + [str(a) for a in args]
    # Without an event, stdin is empty (never the test runner's own stdin).
    return subprocess.run(argv, cwd=cwd, input=input if input is not None else "",
                          capture_output=True, text=True, timeout=timeout, env=env)


def one_error_line(r, code):
    """The documented exit code and exactly one clear error line."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("kiln: error: "), r.stderr
    return lines[0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tmux:
    """A private tmux server with one pane running bash, driven with
    send-keys and read with capture-pane."""

    def __init__(self, cwd):
        self.sock = f"kiln-cli-test-{os.getpid()}"
        self.run("new-session", "-d", "-s", "t", "-x", "150", "-y", "40", "-c", str(cwd),
                 "bash --norc --noprofile")

    def run(self, *args):
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True,
                              text=True, timeout=30, check=True).stdout

    def send(self, line):
        self.run("send-keys", "-t", "t", "-l", line)
        self.run("send-keys", "-t", "t", "Enter")

    def capture(self):
        return self.run("capture-pane", "-p", "-t", "t")

    def wait_for(self, pattern, timeout, every=0.1, on_capture=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.capture()
            if on_capture:
                on_capture(text)
            m = re.search(pattern, text)
            if m:
                return m, text
            time.sleep(every)
        raise AssertionError(f"{pattern!r} not on the terminal after {timeout}s:\n{text}")

    def kill(self):
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True)


@pytest.fixture(scope="module")
def env(kilnd, tmp_path_factory):
    """kiln new + kiln up (a Python function, in tmux when available) and
    kiln deploy with every flag (a sh function)."""
    work = tmp_path_factory.mktemp("cli")
    proj = work / "proj"
    proj.mkdir()
    r = kiln("new", PY_NAME, "--runtime", "python", gateway=kilnd.url, cwd=proj)
    assert r.returncode == 0, r.stderr
    assert (proj / PY_NAME / "handler.py").is_file()
    stack = (proj / "kiln.yml").read_text()
    assert f"gateway: {kilnd.url}" in stack and f"code: ./{PY_NAME}" in stack

    captures = []
    if shutil.which("tmux"):
        tmux = Tmux(proj)
        try:
            # The gateway comes from the stack file's provider.gateway.
            tmux.send(f"unset KILN_GATEWAY; {KILN} up; echo EXIT=$?")
            m, final = tmux.wait_for(r"EXIT=(\d+)", timeout=1200, every=0.25,
                                     on_capture=captures.append)
            assert m.group(1) == "0", final
            tmux.send("clear")
            tmux.send(f"{KILN} list --gateway {kilnd.url}; echo LISTED=$?")
            m, listing = tmux.wait_for(r"LISTED=(\d+)", timeout=60)
            assert m.group(1) == "0", listing
        finally:
            tmux.kill()
        up_out = final
    else:
        r = kiln("up", cwd=proj, timeout=1200)
        assert r.returncode == 0, (r.stdout, r.stderr)
        up_out, listing = r.stdout, None

    code = work / "shcode"
    code.mkdir()
    (code / "handler.sh").write_text(SH_HANDLER)
    (code / "handler.sh").chmod(0o755)
    # memory and vcpus stay at the default VM shape: another shape would
    # need a base snapshot of its own (a boot of minutes here).
    deploy = kiln("deploy", SH_NAME, "--runtime", "sh", "--handler", "sh handler.sh",
                  "--mode", "exec", "--code", code, "--env", "A=1", "-e", "B=two words",
                  "--memory", "128M", "--vcpus", "1", "--timeout", "45s",
                  "--concurrency", "3", "--queue-timeout", "2500ms", "--min", "0",
                  "--max", "4", "--keep-alive", "2m", gateway=kilnd.url, timeout=1200)
    assert deploy.returncode == 0, (deploy.stdout, deploy.stderr)
    return {"kilnd": kilnd, "url": kilnd.url, "work": work, "proj": proj, "up": up_out,
            "captures": captures, "listing": listing, "deploy": deploy}


def test_new_up_invoke_round_trip(env):
    assert f"{env['url']}/function/{PY_NAME}" in env["up"]
    r = kiln("invoke", PY_NAME, "--data", '{"name": "e2e"}', gateway=env["url"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"message": "Hello, e2e!"}
    # The event from standard input, and the gateway from KILN_GATEWAY.
    r = kiln("invoke", PY_NAME, input='{"name": "stdin"}', env_gateway=env["url"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"message": "Hello, stdin!"}


def test_invoke_verbose_shows_start_duration_vm(env):
    r = kiln("-v", "invoke", PY_NAME, "--data", '"v"', gateway=env["url"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"message": "Hello, v!"}
    m = re.search(r"call (\S+): (cold|warm) start, ([0-9.]+)s, VM (\S+), version (\d+), "
                  r"HTTP 200", r.stderr)
    assert m, r.stderr
    assert m.group(4) != "?" and m.group(1) != "?"


def test_deploy_every_flag_then_describe(env):
    out = env["deploy"].stdout.splitlines()
    assert out[-1] == f"{env['url']}/function/{SH_NAME}", out
    r = kiln("describe", SH_NAME, gateway=env["url"])
    assert r.returncode == 0, r.stderr
    fields = {}
    for line in r.stdout.splitlines():
        key, _, value = line.partition(":")
        if value:
            fields.setdefault(key.strip(), value.strip())
    assert fields["Name"] == SH_NAME
    assert fields["Status"] == "ready"
    assert fields["Runtime"] == "sh"
    assert fields["Handler"] == "sh handler.sh"
    assert fields["Mode"] == "exec"
    assert fields["Memory"] == "128 MiB"
    assert fields["vCPUs"] == "1"
    assert fields["Timeout"] == "45s"
    assert fields["Concurrency"] == "3"
    assert fields["Queue timeout"] == "2.5s"
    assert fields["Min instances"] == "0"
    assert fields["Max instances"] == "4"
    assert fields["Keep alive"] == "2m"
    assert "A=1" in r.stdout and "B=two words" in r.stdout
    assert fields["URL"] == f"{env['url']}/function/{SH_NAME}"
    j = json.loads(kiln("describe", SH_NAME, "--json", gateway=env["url"]).stdout)
    assert j["env"] == {"A": "1", "B": "two words"} and j["queue_timeout"] == 2.5
    # The sh function runs with its environment.
    r = kiln("invoke", SH_NAME, "--data", "hi", gateway=env["url"])
    assert r.returncode == 0 and r.stdout.strip() == "sh saw A=1 B=two words input=hi", r


def test_handler_error_exit_1(env):
    r = kiln("invoke", SH_NAME, "--data", "fail", gateway=env["url"])
    line = one_error_line(r, EXIT_FUNCTION)
    assert SH_NAME in line and "asked to fail" in line
    assert r.stdout == ""


def test_list_table_and_json(env):
    r = kiln("list", gateway=env["url"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "VERSION", "RUNTIME", "MEMORY", "VCPUS",
                                "INVOCATIONS", "REPLICAS"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert PY_NAME in rows and SH_NAME in rows
    # Aligned: every row's STATUS starts in the header's STATUS column.
    col = lines[0].index("STATUS")
    for line in lines[1:]:
        assert line[col - 3:col] == "   " and line[col] != " ", lines
    names = [f["name"] for f in json.loads(kiln("list", "--json", gateway=env["url"]).stdout)]
    assert PY_NAME in names and SH_NAME in names


def test_logs_follow_shows_a_later_line(env):
    env_vars = {k: v for k, v in os.environ.items() if k != "KILN_GATEWAY"}
    p = subprocess.Popen([str(KILN), "--gateway", env["url"], "logs", PY_NAME, "--follow",
                          "--since", "1s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env_vars)
    try:
        time.sleep(1.0)
        assert p.poll() is None, p.stderr.read()
        marker = f"follow-{os.getpid()}"
        r = kiln("invoke", PY_NAME, "--data", json.dumps({"name": marker}), gateway=env["url"])
        assert r.returncode == 0, r.stderr
        want = re.compile(rf"^\S+Z {PY_NAME} stdout greeting {marker}$")
        buf, deadline = b"", time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([p.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(p.stdout.fileno(), 65536)
                assert chunk, f"logs --follow ended early: {buf!r} {p.stderr.read()!r}"
                buf += chunk
                if any(want.match(line) for line in buf.decode().splitlines()):
                    break
        else:
            raise AssertionError(f"no line for {marker} in {buf!r}")
    finally:
        p.kill()
        p.wait()


def test_logs_tail_since_json(env):
    kiln("invoke", PY_NAME, "--data", '{"name": "tail"}', gateway=env["url"])
    r = kiln("logs", PY_NAME, "--tail", "1", gateway=env["url"])
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 1
    assert r.stdout.startswith("20") and " stdout greeting tail" in r.stdout
    r = kiln("logs", PY_NAME, "--since", "10m", "--json", gateway=env["url"])
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert lines and all(x["name"] == PY_NAME and "timestamp" in x for x in lines)


def test_async_invoke_then_calls(env):
    r = kiln("invoke", PY_NAME, "--async", "--data", '{"name": "later"}', gateway=env["url"])
    assert r.returncode == 0, r.stderr
    call_id = r.stdout.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", call_id), r.stdout
    r = kiln("calls", call_id, "--wait", gateway=env["url"], timeout=300)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^Status:\s+done \(HTTP 200\)$", r.stdout, re.M), r.stdout
    assert '{"message": "Hello, later!"}' in r.stdout
    j = json.loads(kiln("calls", call_id, "--json", gateway=env["url"]).stdout)
    assert j["status"] == "done" and j["function"] == PY_NAME


def test_cloudlet_config_runs_program(env, tmp_path):
    cfgdir = tmp_path / "cloudlet"
    (cfgdir / "src").mkdir(parents=True)
    (cfgdir / "src" / "fib.py").write_text(FIB)
    (cfgdir / "config.toml").write_text(
        '# a Cloudlet run config, unchanged\n'
        'workload-name = "cli-fib"\n'
        'language = "python"\n'
        'action = "prepare-and-run"\n'
        '\n'
        '[server]\n'
        'address = "localhost"\n'
        'port = 50051\n'
        '\n'
        '[build]\n'
        'source-code-path = "src/fib.py"   # relative to this file\n'
        'release = true\n')
    # Run from another directory: the source is found next to the config.
    r = kiln("run", "--config-path", cfgdir / "config.toml", gateway=env["url"],
             cwd=tmp_path, timeout=1200)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.splitlines() == [f"fib({i}) = {f}" for i, f in
                                     enumerate([0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89])]
    for stage in ("preparing", "running", "done"):
        assert f"cli-fib: {stage}" in r.stderr, r.stderr
    assert "stderr line from the program" in r.stderr


def test_cloudlet_rust_not_available(env, tmp_path):
    (tmp_path / "main.rs").write_text('fn main() { println!("hi"); }\n')
    (tmp_path / "rust.toml").write_text(
        'workload-name = "cli-rusty"\nlanguage = "rust"\naction = "prepare-and-run"\n'
        f'[build]\nsource-code-path = "{tmp_path / "main.rs"}"\nrelease = false\n')
    r = kiln("run", "--config-path", tmp_path / "rust.toml", "--quiet", gateway=env["url"])
    line = one_error_line(r, EXIT_REJECTED)
    assert "rust" in line and "not available" in line


def test_bad_toml_one_line(env, tmp_path):
    (tmp_path / "bad.toml").write_text('workload-name = "x"\nlanguage = "python"\n'
                                       'action = "prepare-and-run"\ntimeout = 1.5\n')
    r = kiln("run", "--config-path", tmp_path / "bad.toml", gateway=env["url"])
    line = one_error_line(r, EXIT_USAGE)
    assert "bad.toml:4:" in line and "floats are not supported" in line


def test_yaml_error_on_line_7(env, tmp_path):
    (tmp_path / "kiln.yml").write_text("version: 1.0\n"
                                       "functions:\n"
                                       "  broken:\n"
                                       "    runtime: python\n"
                                       "    code: ./broken\n"
                                       "    memory: 128\n"
                                       "    timeout: whenever\n")
    r = kiln("up", "-f", tmp_path / "kiln.yml", gateway=env["url"])
    line = one_error_line(r, EXIT_USAGE)
    assert f"{tmp_path / 'kiln.yml'}:7:14:" in line and "timeout" in line
    (tmp_path / "syntax.yml").write_text("version: 1.0\nfunctions:\n  a:\n    runtime: sh\n"
                                         "    code: x\n    memory: 128\n   oops: [\n")
    line = one_error_line(kiln("up", "-f", tmp_path / "syntax.yml", gateway=env["url"]),
                          EXIT_USAGE)
    assert "syntax.yml:7:" in line and "YAML syntax error" in line


COMMANDS = [
    ("deploy", "x", "--runtime", "sh", "--code", "."),
    ("invoke", "x"),
    ("list",),
    ("describe", "x"),
    ("remove", "x"),
    ("logs", "x"),
    ("calls", "00000000-0000-0000-0000-000000000000"),
    ("run", "--config-path", "cfg.toml", "--quiet"),
    ("up",),
]


def test_gateway_down_exit_3(env, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "handler.sh").write_text("echo hi\n")
    (tmp_path / "kiln.yml").write_text("functions:\n  x:\n    runtime: sh\n    code: ./x\n")
    (tmp_path / "cfg.toml").write_text('workload-name = "x"\nlanguage = "python"\n'
                                       'action = "prepare-and-run"\n[build]\n'
                                       'source-code-path = "x/handler.sh"\n')
    down = f"http://127.0.0.1:{free_port()}"
    for cmd in COMMANDS:
        line = one_error_line(kiln(*cmd, gateway=down, cwd=tmp_path), EXIT_UNREACHABLE)
        assert "cannot reach the gateway" in line and down in line, (cmd, line)


def test_unknown_function_exit_4(env):
    for cmd in (("invoke", "cli-nope"), ("describe", "cli-nope"), ("remove", "cli-nope"),
                ("logs", "cli-nope"), ("invoke", "cli-nope", "--async"),
                ("calls", "00000000-0000-0000-0000-000000000000")):
        line = one_error_line(kiln(*cmd, gateway=env["url"]), EXIT_NOT_FOUND)
        assert "not found" in line, (cmd, line)


def test_bad_flag_exit_2(env):
    for cmd in COMMANDS + [("new", "x", "--runtime", "sh")]:
        line = one_error_line(kiln(*cmd, "--no-such-flag", gateway=env["url"]), EXIT_USAGE)
        assert "unknown option '--no-such-flag'" in line, (cmd, line)
    line = one_error_line(kiln("deploy", "x", "--runtime", "sh", "--code", ".", "--timeout",
                               "soon", gateway=env["url"]), EXIT_USAGE)
    assert "--timeout 'soon'" in line
    line = one_error_line(kiln("invoke", gateway=env["url"]), EXIT_USAGE)
    assert "missing" in line
    line = one_error_line(kiln("frobnicate"), EXIT_USAGE)
    assert "unknown command" in line


def test_rejected_exit_5(env, tmp_path):
    (tmp_path / "handler.sh").write_text("echo hi\n")
    r = kiln("deploy", "cli-tiny", "--runtime", "sh", "--code", tmp_path, "--memory", "8",
             "--quiet", gateway=env["url"])
    line = one_error_line(r, EXIT_REJECTED)
    assert "memory" in line and "HTTP 400" in line


def test_help_for_every_command():
    for cmd in [c[0] for c in COMMANDS] + ["new"]:
        r = kiln(cmd, "--help")
        assert r.returncode == 0 and r.stdout.startswith(f"Usage: kiln {cmd}"), (cmd, r)
        assert kiln("help", cmd).stdout == r.stdout
    r = kiln("--help")
    assert r.returncode == 0 and "Exit codes" in r.stdout


def test_unix_socket_gateway(kilnd_factory, tmp_path):
    """A unix:/path gateway (CURLOPT_UNIX_SOCKET_PATH), on a kilnd of its own."""
    sock = tmp_path / "kilnd.sock"
    kilnd_factory("--socket", str(sock), "--pool", "0")
    r = kiln("list", gateway=f"unix:{sock}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["NAME", "STATUS", "VERSION", "RUNTIME", "MEMORY", "VCPUS",
                                "INVOCATIONS", "REPLICAS"]
    line = one_error_line(kiln("describe", "nothing", gateway=f"unix:{sock}"), EXIT_NOT_FOUND)
    assert "not found" in line


def test_terminal_progress_line_and_list_table(env):
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed")
    # While kiln up ran on the terminal, one line showed the stage and a
    # growing elapsed time, redrawn in place.
    progress = re.compile(rf"^[|/\\-] deploying {PY_NAME}: (\S+) \((\S+)\)\s*$", re.M)
    seen = []
    for text in env["captures"]:
        lines = progress.findall(text)
        assert len(lines) <= 1, text  # updated in place, never a second line
        if lines and (not seen or seen[-1] != lines[0]):
            seen.append(lines[0])
    stages = [s for s, _ in seen]
    assert len(seen) >= 3, seen
    assert len({e for _, e in seen}) >= 3, seen  # the elapsed time moved
    assert "loading" in stages or "snapshotting" in stages, seen
    final = env["up"]
    assert re.search(rf"^deploying {PY_NAME}: ready \(\S+\)$", final, re.M), final
    assert f"{env['url']}/function/{PY_NAME}" in final
    # kiln list on the terminal: an aligned table.
    listing = env["listing"].splitlines()
    head = next(i for i, line in enumerate(listing) if line.startswith("NAME "))
    assert listing[head].split()[:3] == ["NAME", "STATUS", "VERSION"]
    row = next(line for line in listing[head + 1:] if line.startswith(PY_NAME + " "))
    assert row[listing[head].index("STATUS"):].startswith("ready")
