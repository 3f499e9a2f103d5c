"""harness.py: shared plumbing for gaggle's integration tests (stdlib only).

Integration tests run the real binaries: they make keys with `gaggle keygen`,
start `gaggled` processes on free local ports, talk to them over HTTP and
with the CLI, and send them signals. This module does the common parts so a
test reads as the behaviour it checks:

    class MyTest(harness.AgentTestCase):
        def test_health(self):
            agent = self.cluster.start_agent("n1")
            status, _, body = agent.get("/healthz")
            self.assertEqual(status, 200)

Rules it enforces:
- every started process is tracked by pid and killed (SIGTERM, then SIGKILL
  after a grace period) when the test ends, when the Cluster's `with` block
  exits, and at interpreter exit (atexit), whatever happened;
- waiting is always polling with a deadline (wait_until), never a blind sleep;
- when a test fails or errors, the logs of every agent it started are printed.

Binaries come from $GAGGLE_BIN (else $GAGGLE_SOURCE/build/bin).
"""
import atexit
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

GAGGLE_BIN = os.environ.get("GAGGLE_BIN") or os.path.join(
    os.environ.get("GAGGLE_SOURCE", os.path.join(os.path.dirname(__file__), "..", "..")),
    "build", "bin")
GAGGLED = os.path.join(GAGGLE_BIN, "gaggled")
GAGGLE = os.path.join(GAGGLE_BIN, "gaggle")

# Sanitizer builds are slower; these bound every wait.
START_TIMEOUT = 30.0
EXIT_TIMEOUT = 20.0
KILL_GRACE = 5.0
POLL_INTERVAL = 0.05

_live_processes = {}  # pid -> Popen, every process any Cluster started


def _kill_all_live():
    for proc in list(_live_processes.values()):
        _stop_process(proc, KILL_GRACE)


atexit.register(_kill_all_live)


def _stop_process(proc, grace):
    """SIGTERM, then SIGKILL after `grace` seconds; always reaps."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    _live_processes.pop(proc.pid, None)
    return proc.returncode


class WaitTimeout(AssertionError):
    """A wait_until deadline passed (an AssertionError so unittest reports a failure)."""


def wait_until(predicate, timeout, what, interval=POLL_INTERVAL):
    """Polls predicate() until it returns a truthy value, which is returned.
    Raises WaitTimeout naming `what` when `timeout` seconds pass first.
    Exceptions from the predicate count as "not yet" (the last is reported)."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - not ready yet
            last_error = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)


_handed_ports = set()


def free_port():
    """A TCP port free on 127.0.0.1 now, never handed out twice by this process."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_ports:
            _handed_ports.add(port)
            return port
    raise RuntimeError("no free TCP port found")


def metric(agent, name, label=""):
    """The sum of the agent's /metrics samples of `name` whose line holds
    `label` (e.g. 'result="ok"'); 0 when there are none."""
    _, _, body = agent.get("/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if (line.startswith(name + " ") or line.startswith(name + "{")) and label in line:
            total += float(line.rpartition(" ")[2])
    return total


def write_consumer_catalog(cluster, n, annotations=None, path="catalog/catalog-info.yaml"):
    """A Backstage catalog file: Resource user-ds-v1 and n Components
    consumer-0000... depending on it (owners team-0..19). `annotations` maps
    a component name to its metadata.annotations. Returns the file's path."""
    import json as _json
    annotations = annotations or {}
    docs = ["""apiVersion: backstage.io/v1alpha1
kind: Resource
metadata: {name: user-ds-v1}
spec: {type: database, owner: group:default/data-platform}
"""]
    for i in range(n):
        name = f"consumer-{i:04d}"
        ann = (f"\n  annotations: {_json.dumps(annotations[name])}" if name in annotations
               else "")
        docs.append(f"""apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: {name}{ann}
spec:
  type: service
  lifecycle: production
  owner: group:default/team-{i % 20}
  dependsOn: [resource:default/user-ds-v1]
""")
    return cluster.write(path, "---\n".join(docs))


def http_request(url, method="GET", body=None, headers=None, timeout=10.0):
    """One HTTP request. Returns (status, headers dict with lower-case names,
    body bytes); HTTP errors are returned, not raised. Never uses a proxy."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def run(argv, timeout=60.0, env=None, input_bytes=None):
    """Runs a command to completion: (exit code, stdout text, stderr text)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run(argv, capture_output=True, timeout=timeout, env=full_env,
                          input=input_bytes)
    return (proc.returncode, proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"))


def gaggle(*args, env=None, timeout=60.0):
    """Runs the CLI: (exit code, stdout, stderr)."""
    return run([GAGGLE, *args], timeout=timeout, env=env)


def gaggled_once(*args, timeout=EXIT_TIMEOUT, env=None):
    """Runs gaggled expecting it to exit by itself (bad flags, refused
    start): (exit code, stdout, stderr)."""
    return run([GAGGLED, *args], timeout=timeout, env=env)


class Operator:
    """An operator key pair made with `gaggle keygen operator`."""

    def __init__(self, directory, name):
        self.name = name
        self.key = os.path.join(directory, name + ".key")
        self.pub = os.path.join(directory, name + ".pub")


class NodeIdentity:
    """A node key and operator-signed certificate made with `gaggle keygen node`."""

    def __init__(self, directory, name):
        self.name = name
        self.cert = os.path.join(directory, name + ".cert")
        self.key = os.path.join(directory, name + ".key")


class Agent:
    """A running gaggled."""

    def __init__(self, cluster, name, proc, argv, http_port, bind_port, workdir, identity):
        self.cluster = cluster
        self.name = name
        self.proc = proc
        self.pid = proc.pid
        self.argv = argv
        self.http_port = http_port
        self.bind_port = bind_port
        self.http_addr = f"127.0.0.1:{http_port}"
        self.workdir = workdir
        self.data_dir = os.path.join(workdir, "data")
        self.stdout_path = os.path.join(workdir, "stdout.log")
        self.stderr_path = os.path.join(workdir, "stderr.log")
        self.identity = identity

    # -- HTTP --
    def url(self, path):
        return f"http://{self.http_addr}{path}"

    def get(self, path, headers=None, timeout=10.0):
        return http_request(self.url(path), headers=headers, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=10.0):
        return http_request(self.url(path), method=method, body=body, headers=headers,
                            timeout=timeout)

    def get_json(self, path, headers=None, expect=200):
        status, hdrs, body = self.get(path, headers=headers)
        if status != expect:
            raise AssertionError(f"GET {path}: HTTP {status}, expected {expect}: {body[:500]!r}")
        return json.loads(body)

    def healthy(self):
        try:
            return self.get("/healthz", timeout=2.0)[0] == 200
        except OSError:
            return False

    # -- process --
    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_exit(self, timeout=EXIT_TIMEOUT):
        """Waits for the process to exit by itself; returns its exit code."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise WaitTimeout(f"{self.name} (pid {self.pid}) did not exit within {timeout}s")
        finally:
            if self.proc.poll() is not None:
                _live_processes.pop(self.pid, None)

    def stop(self, grace=KILL_GRACE):
        return _stop_process(self.proc, grace)

    # -- logs --
    def log(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, text, timeout=START_TIMEOUT, after=0):
        """Waits until `text` appears in the agent's stderr past offset
        `after` (use log_size() before an action to see only new lines)."""
        return wait_until(lambda: text in self.log()[after:], timeout,
                          f"{text!r} in {self.name}'s log")

    def log_size(self):
        return len(self.log())


class Cluster:
    """A temp dir with operator keys, node identities and agents. Use as a
    context manager (or call close()): every process it started is stopped."""

    def __init__(self, prefix="gaggle-it-"):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.operators_dir = os.path.join(self.dir, "operators")  # trusted *.pub only
        os.makedirs(self.operators_dir)
        self.agents = []
        self._operator = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def write(self, relpath, text, mode=0o644):
        path = self.path(relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    # -- keys --
    def make_operator(self, name="operator", trusted=True):
        """An operator key pair (kept outside the trust dir); its .pub is
        copied into operators_dir when trusted."""
        keydir = self.path("operator-keys")
        code, out, err = gaggle("keygen", "operator", "--out", keydir, "--name", name)
        if code != 0:
            raise AssertionError(f"gaggle keygen operator failed ({code}): {err.strip()}")
        op = Operator(keydir, name)
        if trusted:
            shutil.copy(op.pub, os.path.join(self.operators_dir, name + ".pub"))
        return op

    @property
    def operator(self):
        if self._operator is None:
            self._operator = self.make_operator()
        return self._operator

    def make_node(self, name, operator=None, valid_days=None):
        """A node key + certificate signed by operator (default: the trusted one)."""
        op = operator or self.operator
        keydir = self.path("node-keys", name)
        args = ["keygen", "node", "--name", name, "--out", keydir, "--sign-with", op.key]
        if valid_days is not None:
            args += ["--valid-days", str(valid_days)]
        code, out, err = gaggle(*args)
        if code != 0:
            raise AssertionError(f"gaggle keygen node failed ({code}): {err.strip()}")
        return NodeIdentity(keydir, name)

    # -- agents --
    def agent_args(self, name, identity, http_port, bind_port, workdir, profile="test"):
        return ["--name", name,
                "--data-dir", os.path.join(workdir, "data"),
                "--bind", f"tcp://127.0.0.1:{bind_port}",
                "--http", f"127.0.0.1:{http_port}",
                "--node-cert", identity.cert,
                "--operators", self.operators_dir,
                "--profile", profile]

    def start_agent(self, name, args=(), identity=None, config=None, wait=True,
                    http_port=None, env=None, bind_port=None):
        """Starts gaggled for node `name` on free ports with --profile test.
        `args` are appended (they win over the defaults); `config` (text) is
        written to a YAML file passed with --config. Restart a node by passing
        its identity (same work dir, so same data dir) and bind_port. With wait, returns once
        /healthz answers 200 (raises with the log if the process exits)."""
        identity = identity or self.make_node(name)
        workdir = self.path("agents", name)
        os.makedirs(workdir, exist_ok=True)
        http_port = http_port or free_port()
        bind_port = bind_port or free_port()
        argv = [GAGGLED, *self.agent_args(name, identity, http_port, bind_port, workdir)]
        if config is not None:
            argv += ["--config", self.write(os.path.join("agents", name, "gaggled.yaml"), config)]
        argv += list(args)
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        with open(os.path.join(workdir, "stdout.log"), "ab") as out, \
                open(os.path.join(workdir, "stderr.log"), "ab") as err:
            proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    env=full_env, start_new_session=True)
        _live_processes[proc.pid] = proc
        agent = Agent(self, name, proc, argv, http_port, bind_port, workdir, identity)
        self.agents.append(agent)
        if wait:
            def ready():
                if not agent.alive():
                    raise AssertionError(
                        f"{name} exited with {agent.proc.returncode} while starting:\n"
                        + agent.log())
                return agent.healthy()
            try:
                wait_until(ready, START_TIMEOUT, f"{name} to answer /healthz")
            except AssertionError as e:
                # An early exit is the real error: report it, not the timeout.
                if not agent.alive():
                    raise AssertionError(
                        f"{name} exited with {agent.proc.returncode} while starting:\n"
                        + agent.log()) from e
                raise
        return agent

    def stop_all(self):
        for agent in self.agents:
            agent.stop()

    def dump_logs(self, stream=None):
        stream = stream or sys.stderr
        for agent in self.agents:
            stream.write(f"\n----- {agent.name} (pid {agent.pid}) stderr: "
                         f"{agent.stderr_path} -----\n")
            stream.write(agent.log())
            stream.write(f"----- end of {agent.name} -----\n")
        stream.flush()

    def close(self, keep=False):
        self.stop_all()
        if not keep and os.environ.get("GAGGLE_KEEP_TMP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)


def raw_request(host, port, head_lines, body=b"", timeout=10.0):
    """Sends a hand-made request head (list of lines, no CRLFs) and body and
    returns (status, headers dict, body bytes). For requests urllib will not
    make, such as a Content-Length larger than the body actually sent."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        method, path = head_lines[0].split(" ")[:2]
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for line in head_lines[1:]:
            name, value = line.split(":", 1)
            conn.putheader(name.strip(), value.strip())
        conn.endheaders(body or None)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


class AgentTestCase(unittest.TestCase):
    """A TestCase with self.cluster, stopped after each test; prints every
    agent's log when the test failed or errored."""

    def setUp(self):
        self.cluster = Cluster()

    def tearDown(self):
        self.cluster.stop_all()

    def run(self, result=None):
        result = result or self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        try:
            return super().run(result)
        finally:
            cluster = getattr(self, "cluster", None)
            if cluster is not None:
                failed = len(result.failures) + len(result.errors) > before
                if failed:
                    sys.stderr.write(f"\n===== logs for failed {self.id()} =====")
                    cluster.dump_logs()
                cluster.close(keep=failed)
                if failed:
                    sys.stderr.write(f"(files kept in {cluster.dir})\n")


def main():
    """unittest.main with verbose output; the exit code reflects the result."""
    unittest.main(verbosity=2)
