"""The Node.js runtime end to end: kilnd with --rootfs-node, Lambda's handler
forms (async, callback, ES module), context, errors, logs, vendored
node_modules, and a warm second call that reuses the loaded module.

One kilnd serves the module. Three deploys of one code archive (one per
handler form) run at once; they share the node base snapshot (one boot,
cached in KILN_CACHE/base), and each is a restore + node start + require in
a guest + a diff snapshot. Everything after that runs from restores or warm
VMs.
"""
import base64
import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import Kilnd, make_tar

INDEX_JS = r'''
const pad = require('kiln-pad');            // vendored in node_modules/
let calls = 0;                              // module state: survives warm calls
const loadedAt = Date.now();

exports.handler = async (event, context) => {
    calls++;
    if (event && event.raise)
        throw new RangeError(event.raise);
    if (event && event.log) {
        console.log(event.log);
        console.error('stderr: ' + event.log);
    }
    const before = context.getRemainingTimeInMillis();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const after = context.getRemainingTimeInMillis();
    return {
        event, calls, loadedAt, padded: pad(String(calls), 4),
        requestId: context.awsRequestId, functionName: context.functionName,
        functionVersion: context.functionVersion, memoryLimitInMB: context.memoryLimitInMB,
        remaining: [before, after], http: context.http, node: process.version,
        env: process.env.GREETING || '',
    };
};
'''

CB_JS = r'''
exports.handler = (event, context, callback) => {
    if (event && event.sleep)   // overruns the function's timeout
        return setTimeout(() => callback(null, 'too late'), event.sleep);
    setTimeout(() => {
        if (event && event.fail)
            callback(new TypeError(event.fail));
        else
            callback(null, { style: 'callback', event, fn: context.functionName });
    }, 10);
};
'''

ESM_MJS = r'''
import pad from 'kiln-pad';
import { createHash } from 'node:crypto';

export const handler = async (event) => ({
    style: 'esm', padded: pad('7', 3), module: typeof import.meta.url,
    sha: createHash('sha256').update('kiln').digest('hex').slice(0, 12),
});
'''

CODE = {
    "index.js": INDEX_JS,
    "cb.js": CB_JS,
    "esm.mjs": ESM_MJS,
    "node_modules/kiln-pad/package.json": '{"name": "kiln-pad", "main": "lib/pad.js"}\n',
    "node_modules/kiln-pad/lib/pad.js":
        "module.exports = (s, n) => String(s).padStart(n, '0');\n",
}

HANDLERS = {"node-main": "index.handler", "node-cb": "cb.handler", "node-esm": "esm.handler"}
TIMEOUTS = {"node-cb": 5}  # seconds; the others keep the default (30)


def call(k, name, event=None, **kw):
    return k.invoke(name, json.dumps(event if event is not None else {}).encode(), **kw)


@pytest.fixture(scope="module")
def node(kvm, vmm, kernel, rootfs_python, rootfs_node, tmp_path_factory):
    """A kilnd with the node image, the three functions deployed at once."""
    k = Kilnd(tmp_path_factory.mktemp("kilnd-node"), kernel, rootfs_python,
              extra=("--rootfs-node", str(rootfs_node), "--mem-budget", "1536",
                     "--pause-after", "1500"))
    t0 = time.monotonic()

    def deploy(name):
        r = k.request("POST", "/system/functions?wait=1", timeout=2400, body={
            "name": name, "runtime": "node", "handler": HANDLERS[name],
            "env": {"GREETING": "hi"}, "timeout": TIMEOUTS.get(name, 30),
            "code": base64.b64encode(make_tar(CODE)).decode()})
        return name, r, time.monotonic() - t0

    with ThreadPoolExecutor(len(HANDLERS)) as pool:
        done = list(pool.map(deploy, HANDLERS))
    for name, r, took in done:
        assert r.status == 201, (name, r.status, r.body, k.tail())
        print(f"deployed {name} in {took:.1f} s")
    # Deploys that waited for the base snapshot another one built use it
    # as it is, without taking their own snapshot twice.
    assert "taking the snapshot again" not in k.tail(1 << 20), k.tail()
    yield k
    assert k.stop() == 0, k.tail()


def test_info_lists_node(node):
    assert node.info()["runtimes"] == ["python", "sh", "native", "node"]
    d = node.request("GET", "/system/function/node-main").json()
    assert d["runtime"] == "node" and d["handler"] == "index.handler" and d["status"] == "ready"


def test_async_handler_context_and_vendored_package(node):
    r = call(node, "node-main", {"x": 1}, path="/sub?q=1", headers={"X-Test": "yes"})
    assert r.status == 200, (r.body, node.tail())
    b = r.json()
    assert b["event"] == {"x": 1} and b["node"].startswith("v18.")
    assert b["requestId"] == r.header("x-call-id") and b["requestId"]
    assert b["functionName"] == "node-main" and b["functionVersion"] == "1"
    assert b["memoryLimitInMB"] == "128"  # a string, as Lambda's
    assert b["env"] == "hi"
    before, after = b["remaining"]
    assert 0 < after < before <= 30000  # the default timeout, counting down
    assert b["http"]["method"] == "POST" and b["http"]["path"] == "/sub"
    assert b["http"]["query"] == "q=1" and b["http"]["headers"]["x-test"] == "yes"
    assert b["padded"] == "000" + str(b["calls"])
    assert r.header("content-type") == "application/json"


def test_warm_call_reuses_the_loaded_module(node):
    first = call(node, "node-main", {}).json()
    r = call(node, "node-main", {})
    assert r.status == 200 and r.header("x-kiln-start") == "warm"
    again = r.json()
    assert again["calls"] == first["calls"] + 1  # the same module instance
    assert again["loadedAt"] == first["loadedAt"]  # required once, in the snapshot
    assert again["requestId"] != first["requestId"]


def test_handler_error(node):
    r = call(node, "node-main", {"raise": "out of range"})
    assert r.status == 500 and r.header("x-kiln-function-error") == "Handled", r.body
    e = r.json()
    assert e["errorType"] == "RangeError" and e["errorMessage"] == "out of range"
    assert any("index.js" in line for line in e["stackTrace"]), e
    lam = node.request("POST", "/2015-03-31/functions/node-main/invocations",
                       {"raise": "lambda route"})
    assert lam.status == 200 and lam.header("x-amz-function-error") == "Unhandled"
    assert lam.json()["errorType"] == "RangeError"


def test_console_output_goes_to_logs(node):
    r = call(node, "node-main", {"log": "hello-from-node"})
    # The result is the handler's value alone (it echoes the event); what
    # it printed is in the logs.
    assert r.status == 200 and r.json()["event"] == {"log": "hello-from-node"}, r.body
    assert b"stderr: hello-from-node" not in r.body
    cid = r.header("x-call-id")
    lines = [json.loads(x) for x in
             node.request("GET", "/system/logs?name=node-main&tail=100").body.splitlines()]
    mine = [(x["stream"], x["text"]) for x in lines if x["call_id"] == cid]
    assert ("stdout", "hello-from-node") in mine, lines[-10:]
    assert ("stderr", "stderr: hello-from-node") in mine, lines[-10:]


def test_callback_handler(node):
    r = call(node, "node-cb", {"y": 2})
    assert r.status == 200, (r.body, node.tail())
    assert r.json() == {"style": "callback", "event": {"y": 2}, "fn": "node-cb"}
    bad = call(node, "node-cb", {"fail": "via callback"})
    assert bad.status == 500 and bad.json()["errorType"] == "TypeError"
    assert bad.json()["errorMessage"] == "via callback"


def test_timeout_gives_504_and_a_fresh_vm(node):
    first = call(node, "node-cb", {"y": 1})
    assert first.status == 200, (first.body, node.tail())
    slow = call(node, "node-cb", {"sleep": 60000})
    assert slow.status == 504, (slow.status, slow.body)
    nxt = call(node, "node-cb", {"y": 3})
    assert nxt.status == 200 and nxt.json()["event"] == {"y": 3}, (nxt.status, nxt.body)
    assert nxt.header("x-kiln-vm") != first.header("x-kiln-vm")


def test_esm_handler(node):
    r = call(node, "node-esm", {})
    assert r.status == 200, (r.body, node.tail())
    sha = hashlib.sha256(b"kiln").hexdigest()[:12]
    assert r.json() == {"style": "esm", "padded": "007", "module": "string", "sha": sha}


def test_without_a_node_image_node_is_refused(kilnd_factory):
    k = kilnd_factory()
    assert k.info()["runtimes"] == ["python", "sh", "native"]
    r = k.deploy("no-node", CODE, runtime="node", handler="index.handler")
    assert r.status in (400, 422), r.body
    msg = r.json().get("error") or r.json().get("message") or r.body.decode()
    assert "node" in str(msg) and "--rootfs-node" in str(msg), r.body
    r = k.deploy("no-such", CODE, runtime="cobol")
    assert r.status in (400, 422) and "cobol" in r.body.decode(), r.body
