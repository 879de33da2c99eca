"""kilnd's API security end to end (docs/security.md): bearer tokens with a
management and an invoke scope, HTTPS with a certificate made at test time,
refusals at start, request bounds, and the kiln CLI over HTTPS.

One kilnd with tokens and TLS serves the module and one Python function is
deployed on it once (a deploy restores the cached base snapshot; no kernel
boot after the first run on a machine). Start-up refusals and the config
file test run short-lived kilnd processes with `--pool 0`, which start no
VM at all.
"""
import http.client
import json
import os
import socket
import ssl
import subprocess
import time

import pytest

from conftest import BUILD, Kilnd, Response, check_stderr, free_port

KILN = BUILD / "kiln"
FN = "sec-echo"
HANDLER = '''
def handle(event, context):
    return {"event": event, "fn": context.function_name}
'''

EXIT_UNREACHABLE, EXIT_REJECTED = 3, 5


def write_token(path, token, mode=0o600):
    path.write_text(token + "\n")
    os.chmod(path, mode)
    return path


def make_cert(d):
    """A self-signed certificate for localhost and 127.0.0.1 (openssl CLI,
    Debian's openssl package)."""
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    return cert, key


class SecureKilnd(Kilnd):
    """A kilnd that may serve HTTPS and want tokens; request() sends
    `token` (None: no Authorization header) and checks the certificate
    against `cacert`."""

    def __init__(self, workdir, kernel, rootfs, extra=(), cacert=None, token=None):
        self.cacert = cacert
        self.token = token
        super().__init__(workdir, kernel, rootfs, extra=extra)
        self.url = f"{'https' if cacert else 'http'}://127.0.0.1:{self.port}"

    def connection(self, timeout):
        if self.cacert:
            ctx = ssl.create_default_context(cafile=str(self.cacert))
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                               context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=600, token="default"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        headers = dict(headers or {})
        token = self.token if token == "default" else token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    d = tmp_path_factory.mktemp("tokens")
    manage, invoke = os.urandom(24).hex(), os.urandom(24).hex()
    return {"dir": d, "manage": manage, "invoke": invoke,
            "manage_file": write_token(d / "manage.token", "# kilnd\n" + manage),
            "invoke_file": write_token(d / "invoke.token", invoke)}


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def secure(kvm, vmm, kernel, rootfs_python, tmp_path_factory, tokens, cert):
    """kilnd on loopback with both token files and HTTPS, FN deployed."""
    k = SecureKilnd(tmp_path_factory.mktemp("kilnd-secure"), kernel, rootfs_python,
                    extra=("--token-file", str(tokens["manage_file"]),
                           "--invoke-token-file", str(tokens["invoke_file"]),
                           "--tls-cert", str(cert[0]), "--tls-key", str(cert[1]),
                           "--pause-after", "1500"),
                    cacert=cert[0], token=tokens["manage"])
    try:
        deploy_and_wait(k, FN, {"handler.py": HANDLER})
    except BaseException:
        k.stop()
        raise
    yield k
    assert k.stop() == 0, k.tail()


def deploy_and_wait(k, name, files, timeout=1800):
    """Deploys without ?wait=1 and polls until ready: the first deploy after
    kiln-vmm changed boots a kernel for the base snapshot, which takes
    longer than one request's time-out on a loaded machine."""
    r = k.deploy(name, files, wait=False, runtime="python")
    assert r.status == 202, (r.status, r.body, k.tail())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = k.request("GET", f"/system/function/{name}", timeout=60).json()
        if d["status"] == "ready":
            return d
        assert d["status"] != "failed", (d, k.tail())
        time.sleep(1)
    raise AssertionError(f"{name} not ready after {timeout} s\n{k.tail()}")


def refused(r, status=401, error=None):
    """A refusal: the status, a JSON error and WWW-Authenticate: Bearer."""
    assert r.status == status, (r.status, r.body)
    assert r.header("content-type") == "application/json"
    assert r.json()["error"]
    www = r.header("www-authenticate")
    assert www and www.startswith("Bearer"), r.headers
    if error:
        assert f'error="{error}"' in www, www


MANAGE_ROUTES = [("GET", "/system/functions", None), ("POST", "/system/functions", {}),
                 ("PUT", "/system/functions", {}),
                 ("DELETE", "/system/functions", {"functionName": FN}),
                 ("GET", f"/system/function/{FN}", None),
                 ("DELETE", f"/system/function/{FN}", None),
                 ("GET", "/system/calls/nope", None), ("GET", f"/system/logs?name={FN}", None),
                 ("GET", "/system/info", None), ("GET", "/metrics", None)]
INVOKE_ROUTES = [("POST", f"/function/{FN}", {"x": 1}),
                 ("GET", f"/function/{FN}/sub?q=1", None),
                 ("POST", f"/async-function/{FN}", {"x": 1}),
                 ("POST", f"/2015-03-31/functions/{FN}/invocations", {"x": 1})]


def test_healthz_is_open(secure):
    r = secure.request("GET", "/healthz", token=None)
    assert r.status == 200 and r.body == b"OK\n"
    assert secure.request("GET", "/healthz", token="wrong-token-0123456789").status == 200


def test_no_token_is_401_everywhere(secure):
    for method, path, body in MANAGE_ROUTES + INVOKE_ROUTES + [("GET", "/nothing", None)]:
        refused(secure.request(method, path, body, token=None))
    # Not a bearer token at all.
    r = secure.request("GET", "/system/functions", token=None,
                       headers={"Authorization": "Basic dXNlcjpwYXNz"})
    refused(r)
    # The function survived the DELETEs above.
    assert secure.request("GET", f"/system/function/{FN}").status == 200


def test_wrong_token_is_401(secure, tokens):
    for token in ("wrong-token-0123456789", tokens["manage"][:-1], tokens["manage"] + "0",
                  tokens["manage"].upper()):
        for method, path, body in [MANAGE_ROUTES[0], INVOKE_ROUTES[0]]:
            refused(secure.request(method, path, body, token=token), 401, "invalid_token")


def test_invoke_token_invokes_but_cannot_manage(secure, tokens):
    tok = tokens["invoke"]
    r = secure.request("POST", f"/function/{FN}", {"x": 1}, token=tok)
    assert r.status == 200, (r.body, secure.tail())
    assert r.json() == {"event": {"x": 1}, "fn": FN}
    lam = secure.request("POST", f"/2015-03-31/functions/{FN}/invocations", {"n": 2}, token=tok)
    assert lam.status == 200 and lam.json()["event"] == {"n": 2}
    a = secure.request("POST", f"/async-function/{FN}", {"a": 1}, token=tok)
    assert a.status == 202 and a.header("x-call-id")
    for method, path, body in MANAGE_ROUTES:
        refused(secure.request(method, path, body, token=tok), 403, "insufficient_scope")
    # Nothing was removed or changed by the refused requests.
    d = secure.request("GET", f"/system/function/{FN}").json()
    assert d["status"] == "ready" and d["version"] == 1


def test_management_token_manages_and_invokes(secure):
    names = [f["name"] for f in secure.request("GET", "/system/functions").json()]
    assert FN in names
    assert secure.request("GET", "/system/info").status == 200
    assert secure.request("GET", "/metrics").status == 200
    r = secure.invoke(FN, b'{"m": 1}')
    assert r.status == 200 and r.json()["event"] == {"m": 1}
    assert secure.request("GET", "/nothing").status == 404


def test_plain_http_on_the_https_port_gets_nothing(secure):
    conn = http.client.HTTPConnection("127.0.0.1", secure.port, timeout=10)
    try:
        with pytest.raises((OSError, http.client.HTTPException)):
            conn.request("GET", "/healthz")
            conn.getresponse().read()
    finally:
        conn.close()


def kiln(*args, env=None, timeout=120):
    e = {k: v for k, v in os.environ.items()
         if k not in ("KILN_GATEWAY", "KILN_TOKEN", "KILN_TOKEN_FILE", "KILN_CACERT")}
    e.update(env or {})
    return subprocess.run([str(KILN), *map(str, args)], capture_output=True, text=True,
                          input="", timeout=timeout, env=e)


def test_cli_over_https(secure, tokens, cert):
    gw = ["--gateway", secure.url]
    r = kiln(*gw, "--cacert", cert[0], "--token-file", tokens["manage_file"], "list")
    assert r.returncode == 0 and FN in r.stdout, r.stderr
    # The options after the command, the token from the environment.
    r = kiln("invoke", FN, "--data", '{"cli": 1}', *gw, "--cacert", cert[0],
             env={"KILN_TOKEN": tokens["invoke"]})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["event"] == {"cli": 1}
    # --insecure skips the certificate check, as curl's -k does.
    r = kiln(*gw, "-k", "describe", FN, env={"KILN_TOKEN_FILE": str(tokens["manage_file"])})
    assert r.returncode == 0 and FN in r.stdout, r.stderr


def test_cli_errors_are_clear(secure, tokens, cert):
    gw = ["--gateway", secure.url]
    # Without the CA: the certificate is not trusted.
    r = kiln(*gw, "--token-file", tokens["manage_file"], "list")
    assert r.returncode == EXIT_UNREACHABLE and "certificate" in r.stderr, r.stderr
    # Without a token: 401, and how to give one.
    r = kiln(*gw, "--cacert", cert[0], "list")
    assert r.returncode == EXIT_REJECTED, r.stderr
    assert "HTTP 401" in r.stderr and "--token-file" in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1
    r = kiln(*gw, "--cacert", cert[0], "invoke", FN, env={"KILN_TOKEN": "wrong-0123456789abc"})
    assert r.returncode == EXIT_REJECTED and "not accepted" in r.stderr, r.stderr
    # The invoke token cannot manage: 403.
    r = kiln(*gw, "--cacert", cert[0], "remove", FN, env={"KILN_TOKEN": tokens["invoke"]})
    assert r.returncode == EXIT_REJECTED and "HTTP 403" in r.stderr, r.stderr
    assert secure.request("GET", f"/system/function/{FN}").status == 200
    # A token that would break the header is refused before any request.
    r = kiln(*gw, "--cacert", cert[0], "list", env={"KILN_TOKEN": "two words"})
    assert r.returncode == 2 and "KILN_TOKEN" in r.stderr, r.stderr


def raw_request(k, head):
    """Sends raw request bytes over TLS and returns the status code."""
    ctx = ssl.create_default_context(cafile=str(k.cacert))
    with socket.create_connection(("127.0.0.1", k.port), timeout=30) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            t.sendall(head)
            data = b""
            while b"\r\n" not in data:
                chunk = t.recv(4096)
                if not chunk:
                    break
                data += chunk
    return int(data.split(b" ", 2)[1])


def test_oversize_requests_get_4xx_and_kilnd_keeps_serving(secure):
    auth = f"Authorization: Bearer {secure.token}\r\n".encode()
    # A header block over --max-header-bytes (32 KiB by default): 431.
    head = (b"GET /system/info HTTP/1.1\r\nHost: x\r\n" + auth + b"X-Big: " + b"a" * 40000 +
            b"\r\n\r\n")
    assert raw_request(secure, head) == 431
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(400))
    assert raw_request(secure, b"GET /system/info HTTP/1.1\r\nHost: x\r\n" + auth + many +
                       b"\r\n") == 431
    # A URL over 8 KiB (kilnd's limit) or over the memory limit: 414.
    assert secure.request("GET", "/system/function/" + "a" * 9000).status == 414
    assert raw_request(secure, b"GET /function/" + b"a" * 40000 + b" HTTP/1.1\r\nHost: x\r\n" +
                       auth + b"\r\n") == 414
    # A body over the invoke route's 6 MiB: 413, JSON.
    r = secure.request("POST", f"/function/{FN}", b"x" * (6 * 1024 * 1024 + 1))
    assert r.status == 413 and "larger than" in r.json()["error"]
    # Still serving.
    assert secure.request("GET", "/healthz", token=None).status == 200
    r = secure.invoke(FN, b'{"after": 1}')
    assert r.status == 200 and r.json()["event"] == {"after": 1}


# ---- start-up refusals and the config file ---------------------------------

def run_kilnd(kernel, rootfs, tmp_path, *extra, timeout=30):
    """Runs kilnd expecting it to refuse to start: (status, stderr)."""
    p = subprocess.run([str(BUILD / "kilnd"), "--state-dir", str(tmp_path / "state"), "--pool",
                        "0", "--port", str(free_port()), "--kernel", str(kernel), "--rootfs",
                        str(rootfs), *map(str, extra)],
                       capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    check_stderr(p.stderr)
    return p.returncode, p.stderr


def test_non_loopback_listen_needs_a_token(kernel, rootfs_python, tmp_path):
    for addr in ("0.0.0.0", "::"):
        status, err = run_kilnd(kernel, rootfs_python, tmp_path, "--listen", addr)
        assert status == 2, err
        assert "not a loopback address" in err and "--token-file" in err, err
        assert len(err.strip().splitlines()) == 1, err


def test_token_file_readable_by_others_is_refused(kernel, rootfs_python, tmp_path):
    f = write_token(tmp_path / "t", os.urandom(16).hex(), 0o644)
    status, err = run_kilnd(kernel, rootfs_python, tmp_path, "--token-file", f)
    assert status == 2 and "mode 0644" in err and "chmod 600" in err, err
    os.chmod(f, 0o640)
    status, err = run_kilnd(kernel, rootfs_python, tmp_path, "--token-file", f)
    assert status == 2 and "mode 0640" in err, err


def test_other_bad_security_settings_are_refused(kernel, rootfs_python, tmp_path, tokens, cert):
    cases = [
        (("--invoke-token-file", tokens["invoke_file"]), "needs --token-file"),
        (("--token-file", write_token(tmp_path / "short", "short")), "16 to 4096 bytes"),
        (("--token-file", write_token(tmp_path / "empty", "# nothing")), "no token"),
        (("--token-file", tmp_path / "missing"), "No such file"),
        (("--tls-cert", cert[0]), "both --tls-cert and --tls-key"),
        (("--tls-cert", cert[0], "--tls-key", cert[0]), "lets every user read"),
    ]
    for extra, msg in cases:
        status, err = run_kilnd(kernel, rootfs_python, tmp_path, *extra)
        assert status == 2 and msg in err, (extra, err)


def test_config_file_takes_the_same_settings(kilnd_factory, tmp_path, tokens):
    cfg = tmp_path / "kilnd.toml"
    cfg.write_text(f'token-file = "{tokens["manage_file"]}"\n'
                   f'invoke-token-file = "{tokens["invoke_file"]}"\n'
                   'max-connections = 50\nconnection-timeout = 30\n'
                   'max-header-bytes = 16384\npool = 0\n')
    k = kilnd_factory("--config", str(cfg))  # plain HTTP; /healthz answers its probe
    manage = {"Authorization": f"Bearer {tokens['manage']}"}
    refused(k.request("GET", "/system/info"))
    refused(k.request("GET", "/system/info",
                      headers={"Authorization": f"Bearer {tokens['invoke']}"}), 403)
    assert k.request("GET", "/system/info", headers=manage).status == 200
    # max-header-bytes = 16384: a 20 KiB header no longer fits.
    assert k.request("GET", "/system/info", headers={**manage, "X-Big": "a" * 20000}).status == 431
    assert k.request("GET", "/healthz").status == 200
