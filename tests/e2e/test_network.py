"""Functions' networks (docs/networking.md) through a real kilnd: a function
deployed with "network": "egress" fetches a page from an HTTP server this test
runs in a network namespace of its own; a function without a network has none
(its attempt fails at once: ENETUNREACH); functions cannot reach each other,
nor the host (its services on any address, kilnd's API); VMs restored from the
same snapshot each get their own address and a working network; the
resolver a deploy gives ("dns", "dns_search") is the guest's /etc/resolv.conf,
and names resolve through a DNS server the test runs beside the web server.

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
    if event.get("read"):
        try:
            with open(event["read"]) as f:
                out["read"] = f.read()
        except OSError as e:
            out["read_error"] = errno.errorcode.get(e.errno, str(e))
    if event.get("resolve"):
        try:
            out["resolved"] = socket.gethostbyname(event["resolve"])
        except OSError as e:
            out["resolve_error"] = str(e)
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
    server = dnsd = None
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
        # A DNS server beside it: web.kiln.test is the web server.
        dnsd = subprocess.Popen(
            ["ip", "netns", "exec", ns, "/usr/bin/python3",
             os.path.join(os.path.dirname(__file__), "dnsd.py"), ns_ip,
             f"web.kiln.test={ns_ip}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if dnsd.stdout.readline().strip() != "ready":
            pytest.fail("the test's DNS server did not start")
        yield {"url": f"http://{ns_ip}:8000/page.txt", "token": token, "ip": ns_ip,
               "host_ip": host_ip}
    finally:
        for p in (server, dnsd):
            if p:
                p.kill()
                p.wait()
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


def host_resolvers():
    """What kilnd gives a function without "dns": the host's nameservers a
    VM can reach (IPv4, not 127/8), at most three."""
    out = []
    try:
        lines = open("/etc/resolv.conf").read().splitlines()
    except OSError:
        return out
    for line in lines:
        w = line.split()
        if len(w) >= 2 and w[0] == "nameserver" and len(out) < 3:
            try:
                a = socket.inet_aton(w[1])
            except OSError:
                continue
            if w[1].count(".") == 3 and a[0] != 127 and a != bytes(4):
                out.append(w[1])
    return out


def test_dns_from_the_deploy(knet, web):
    """The deploy's nameserver and search domain are the guest's resolver:
    a bare name resolves through the search domain, and a new deploy of the
    same code with other settings (the snapshot is reused) has them."""
    deploy(knet, "net-dns", network="egress", dns=[web["ip"]], dns_search=["kiln.test"])
    out = call(knet, "net-dns", {"read": "/etc/resolv.conf", "resolve": "web",
                                 "fetch": "http://web.kiln.test:8000/page.txt"})
    assert out.get("read") == f"nameserver {web['ip']}\nsearch kiln.test\n", out
    assert out.get("resolved") == web["ip"], out
    assert out.get("page") == web["token"], out
    out = call(knet, "net-dns", {"fetch": "http://web:8000/page.txt", "resolve": "nowhere"})
    assert out.get("page") == web["token"], out
    assert "resolve_error" in out, out
    spec = knet.request("GET", "/system/function/net-dns").json()
    assert spec["dns"] == [web["ip"]] and spec["dns_search"] == ["kiln.test"], spec
    r = knet.deploy("net-dns", FILES, runtime="python", network="egress",
                    dns=["10.9.9.9", web["ip"]], dns_search=[], timeout=300, method="PUT")
    assert r.status in (200, 201), (r.status, r.body)
    out = call(knet, "net-dns", {"read": "/etc/resolv.conf", "resolve": "web.kiln.test"})
    assert out.get("read") == f"nameserver 10.9.9.9\nnameserver {web['ip']}\n", out


def test_dns_default_is_the_hosts(egress):
    """A function with a network and no "dns": the host's resolvers."""
    want = host_resolvers()
    out = call(egress, "net-egress", {"read": "/etc/resolv.conf"})
    if want:
        got = [l.split()[1] for l in out.get("read", "").splitlines()
               if l.startswith("nameserver ")]
        assert got == want, out
    else:
        assert "nameserver" not in out.get("read", ""), out


@pytest.mark.parametrize("spec, field", [
    ({"dns": ["10.0.0.2"]}, "dns"),                               # no network
    ({"dns_search": ["a.test"]}, "dns_search"),                   # no network
    ({"network": "egress", "dns": ["10.0.0.256"]}, "dns"),
    ({"network": "egress", "dns": ["fe80::1"]}, "dns"),
    ({"network": "egress", "dns": []}, "dns"),
    ({"network": "egress", "dns": "10.0.0.2"}, "dns"),
    ({"network": "egress", "dns": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]}, "dns"),
    ({"network": "egress", "dns_search": ["a test"]}, "dns_search"),
    ({"network": "egress", "dns_search": ["a.test\nnameserver 6.6.6.6"]}, "dns_search"),
    ({"network": "egress", "dns_search": ["a..test"]}, "dns_search"),
    ({"network": "egress", "dns_search": ["-a.test"]}, "dns_search"),
    ({"network": "egress", "dns_search": ["a.test"] * 7}, "dns_search"),
    ({"network": "egress", "dns_search": ["x" * 60 + ".test"] * 5}, "dns_search"),
])
def test_bad_dns_refused(knet, spec, field):
    r = knet.deploy("net-bad-dns", FILES, runtime="python", **spec)
    assert r.status == 400, (r.status, r.body)
    assert r.json()["error"].startswith(field + ":"), r.body
    assert knet.request("GET", "/system/function/net-bad-dns").status == 404


def test_cli_deploys_dns(knet, web, tmp_path):
    """`kiln deploy --dns --dns-search` reaches the guest's resolv.conf (the
    same code as net-dns: its snapshot is reused, nothing loads)."""
    from conftest import BUILD
    code = tmp_path / "code"
    code.mkdir()
    (code / "handler.py").write_text(HANDLER)
    gw = f"http://127.0.0.1:{knet.port}"
    r = subprocess.run([str(BUILD / "kiln"), "--gateway", gw, "deploy", "net-cli",
                        "--runtime", "python", "--code", str(code), "--network", "egress",
                        "--dns", web["ip"], "--dns-search", "kiln.test", "--timeout", "300s"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout, r.stderr)
    out = call(knet, "net-cli", {"read": "/etc/resolv.conf", "resolve": "web"})
    assert out.get("read") == f"nameserver {web['ip']}\nsearch kiln.test\n", out
    assert out.get("resolved") == web["ip"], out
    bad = subprocess.run([str(BUILD / "kiln"), "--gateway", gw, "deploy", "net-cli2",
                          "--runtime", "python", "--code", str(code), "--dns", web["ip"]],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--dns needs --network egress" in bad.stderr, bad.stderr
