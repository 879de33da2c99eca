"""Functions' networks (docs/networking.md) through a real kilnd: a function
deployed with "network": "egress" fetches a page from an HTTP server this test
runs in a network namespace of its own; a function without a network has none
(its attempt fails at once: ENETUNREACH); functions cannot reach each other,
nor the host (its services on any address, kilnd's API); VMs restored from the
same snapshot each get their own address and a working network.

Traffic only goes to addresses on this machine. Needs root (taps, network
namespaces, nftables): without it the tests are skipped and say why."""

import json
import os
import shutil
import socket
import subprocess
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import Kilnd, free_port

HANDLER = r'''
import errno, json, socket, time, urllib.request

def my_addr(host, port):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect((host, port))
        return s.getsockname()[0]
    finally:
        s.close()

def probe(host, port, timeout):
    s = socket.socket()
    s.settimeout(timeout)
    t = time.monotonic()
    try:
        s.connect((host, port))
        out = "connected"
    except socket.timeout:
        out = "timeout"
    except OSError as e:
        out = errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()
    return {"result": out, "seconds": round(time.monotonic() - t, 3)}

def handle(event, context):
    out = {}
    if event.get("fetch"):
        try:
            with urllib.request.urlopen(event["fetch"], timeout=20) as r:
                out["page"] = r.read().decode()
        except OSError as e:
            out["error"] = str(e)
            out["errno"] = errno.errorcode.get(getattr(e, "errno", None) or
                                               getattr(getattr(e, "reason", None), "errno", 0), "")
    if event.get("whoami"):
        try:
            out["addr"] = my_addr(*event["whoami"])
        except OSError as e:
            out["addr_error"] = str(e)
    if event.get("probe"):
        out["probes"] = [probe(h, p, 3) for h, p in event["probe"]]
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return out
'''

FILES = {"handler.py": HANDLER}


def run(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def can_network():
    if os.geteuid() != 0:
        return "not root"
    if not shutil.which("ip"):
        return "no ip(8)"
    if not any(os.path.exists(p) for p in ("/usr/sbin/nft", "/sbin/nft")):
        return "nft not installed (scripts/setup installs nftables)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    return None


@pytest.fixture(scope="module")
def netok():
    why = can_network()
    if why:
        pytest.skip(f"function networking tests NOT RUN: {why}")


@pytest.fixture(scope="module")
def web(netok, tmp_path_factory):
    """An HTTP server in a network namespace of its own, reached from the host
    through a veth pair: 10.201.N.2:8000 serves page.txt (a random token)."""
    tag = uuid.uuid4().hex[:6]
    ns, host_if, ns_if = f"kilnt-web-{tag}", f"kvh{tag}", f"kvn{tag}"
    n = int(tag, 16) % 250
    host_ip, ns_ip = f"10.201.{n}.1", f"10.201.{n}.2"
    root = tmp_path_factory.mktemp("web")
    token = uuid.uuid4().hex
    (root / "page.txt").write_text(token)
    server = None
    try:
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        run("ip", "link", "set", ns_if, "netns", ns)
        run("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        run("ip", "-n", ns, "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        run("ip", "-n", ns, "link", "set", ns_if, "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, "/usr/bin/python3", "-m", "http.server", "8000",
             "--bind", ns_ip, "--directory", str(root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if run("ip", "netns", "exec", ns, "/usr/bin/python3", "-c",
                   f"import socket; socket.create_connection(('{ns_ip}', 8000), 1)",
                   check=False).returncode == 0:
                break
            threading.Event().wait(0.1)
        else:
            pytest.fail("the test's HTTP server did not start")
        yield {"url": f"http://{ns_ip}:8000/page.txt", "token": token, "ip": ns_ip,
               "host_ip": host_ip}
    finally:
        if server:
            server.kill()
            server.wait()
        run("ip", "link", "del", host_if, check=False)
        run("ip", "netns", "del", ns, check=False)


@pytest.fixture(scope="module")
def knet(netok, kvm, vmm, kernel, rootfs_python, tmp_path_factory):
    """A kilnd of this module with its own network range and tag."""
    tag = uuid.uuid4().hex[:3]
    k = Kilnd(tmp_path_factory.mktemp("kilnd-net"), kernel, rootfs_python,
              extra=("--net-range", "10.202.0.0/24", "--net-tag", "t" + tag,
                     "--pause-after", "0", "--pool", "1"))
    k.tag = "t" + tag
    try:
        yield k
    finally:
        assert k.stop() == 0, k.tail()
        # kilnd removed its table and its taps went with the VMs.
        assert f"kiln_{k.tag}" not in run("nft", "list", "tables").stdout
        assert f"kt{k.tag}-" not in run("ip", "-o", "link").stdout


def deploy(k, name, **spec):
    spec.setdefault("timeout", 300)  # a deadline for a loaded host, not a measurement
    r = k.deploy(name, FILES, runtime="python", **spec)
    assert r.status == 201, (r.status, r.body, k.tail())
    return r.json()


def call(k, name, event):
    r = k.invoke(name, json.dumps(event).encode())
    assert r.status == 200, (r.status, r.body, k.tail())
    return r.json()


@pytest.fixture(scope="module")
def egress(knet):
    deploy(knet, "net-egress", network="egress")
    return knet


def test_egress_fetches_page(egress, web):
    out = call(egress, "net-egress", {"fetch": web["url"], "whoami": [web["ip"], 8000]})
    assert out.get("page") == web["token"], out
    assert out["addr"].startswith("10.202.0."), out
    spec = egress.request("GET", "/system/function/net-egress").json()
    assert spec["network"] == "egress"


def test_no_network_fails_fast(knet, web):
    deploy(knet, "net-none")  # the default: no network
    out = call(knet, "net-none", {"fetch": web["url"], "probe": [[web["ip"], 8000]]})
    assert "page" not in out, out
    assert out["errno"] == "ENETUNREACH", out
    assert out["probes"][0]["result"] == "ENETUNREACH", out


def test_bad_network_value_refused(knet):
    r = knet.deploy("net-bad", FILES, runtime="python", network="everything")
    assert r.status == 400, (r.status, r.body)
    assert b"network" in r.body


def test_functions_cannot_reach_each_other_or_the_host(egress, web):
    deploy(egress, "net-other", network="egress")
    # The other function's VM stays alive, idle, after its call.
    other_ip = call(egress, "net-other", {"whoami": [web["ip"], 8000]})["addr"]
    # A listener on every host address (a host service), the host's end of
    # the function's own tap, kilnd's API port on it, and the other VM.
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    try:
        me = call(egress, "net-egress", {"whoami": [web["ip"], 8000]})["addr"]
        gw = me.rsplit(".", 1)[0] + "." + str(int(me.rsplit(".", 1)[1]) - 1)
        out = call(egress, "net-egress", {"probe": [
            [web["ip"], 8000],        # allowed: the outside
            [web["host_ip"], port],   # the host on another of its addresses
            [gw, port],               # the host on its end of the tap
            [gw, egress.port],        # kilnd's port
            ["127.0.0.1", egress.port],  # the guest's own loopback, not the host's
            [other_ip, 22],           # another function's VM
        ]})
    finally:
        srv.close()
    results = [p["result"] for p in out["probes"]]
    assert results[0] == "connected", out
    assert results[1] == "timeout", out
    assert results[2] == "timeout", out
    assert results[3] == "timeout", out
    assert results[4] == "ECONNREFUSED", out
    assert results[5] == "timeout", out


def test_restored_vms_get_their_own_address(egress, web):
    """Two calls at once: two VMs restored from the same snapshot, each with
    its own tap and address, both fetching the page."""
    with ThreadPoolExecutor(2) as ex:
        outs = list(ex.map(lambda _: call(egress, "net-egress", {
            "fetch": web["url"], "whoami": [web["ip"], 8000], "sleep": 3}), range(2)))
    assert all(o.get("page") == web["token"] for o in outs), outs
    addrs = {o["addr"] for o in outs}
    assert len(addrs) == 2, outs
    assert all(a.startswith("10.202.0.") for a in addrs), outs
