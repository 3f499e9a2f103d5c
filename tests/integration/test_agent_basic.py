#!/usr/bin/env python3
"""test_agent_basic.py: one gaggled end to end, through its HTTP API, signals
and the `gaggle` CLI.

Covers: /healthz, /metrics (checked by promtool when it is installed), the
HTML index, /v1/status, 404/405/413 JSON errors, the --http-token bearer
check (on /v1 only), SIGHUP with a broken then a valid config file, SIGTERM
exiting 0, bad flags and bad files exiting 2 with one line, a certificate
from an untrusted operator refusing to start, a taken HTTP port or data dir
refusing to start, and `gaggle status` against a live and a dead address.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

HTTP_BODY_MAX = 64 << 20  # agent/http.h


def one_line(text):
    """The text is exactly one non-empty line."""
    lines = text.strip("\n").split("\n")
    return len(lines) == 1 and lines[0].strip() != ""


class AgentBasicTest(harness.AgentTestCase):

    def test_http_endpoints(self):
        agent = self.cluster.start_agent("node-a")

        status, headers, body = agent.get("/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(json.loads(body), {"status": "ok"})

        doc = agent.get_json("/v1/status")
        self.assertEqual(doc["node"]["name"], "node-a")
        self.assertRegex(doc["node"]["id"], r"^[0-9a-f]{64}$")
        # A lone agent lists itself, alive.
        self.assertEqual([(m["name"], m["state"]) for m in doc["members"]], [("node-a", "alive")])
        self.assertEqual(doc["plans"], [])

        status, headers, body = agent.get("/")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/html"))
        self.assertIn(b"<html", body)
        self.assertIn(b"node-a", body)

        status, headers, body = agent.get("/no/such/thing")
        self.assertEqual(status, 404)
        self.assertEqual(headers["content-type"], "application/json")
        self.assertIn("error", json.loads(body))

        status, headers, body = agent.request("POST", "/healthz", body=b"{}")
        self.assertEqual(status, 405)
        self.assertEqual(headers.get("allow"), "GET")
        self.assertIn("error", json.loads(body))

        # HEAD is served by the GET route, without a body
        status, _, body = agent.request("HEAD", "/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"")

    def test_metrics(self):
        agent = self.cluster.start_agent("node-m")
        agent.get("/healthz")
        status, headers, body = agent.get("/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain"))
        text = body.decode()
        for family in ("gaggle_build_info", "process_start_time_seconds",
                       "process_resident_memory_bytes", "process_virtual_memory_bytes",
                       "process_open_fds", "process_cpu_seconds_total",
                       "gaggle_store_commits_total", "gaggle_store_map_size_bytes",
                       "gaggle_store_used_bytes", "gaggle_store_errors_total",
                       "gaggle_http_requests_total", "gaggle_cert_expiry_timestamp_seconds"):
            self.assertIn(f"# TYPE {family} ", text, family)
        self.assertRegex(text, r'gaggle_build_info\{version="[^"]+"\} 1\n')
        self.assertRegex(text, r'gaggle_http_requests_total\{code="200"\} [1-9]')
        expiry = re.search(r"^gaggle_cert_expiry_timestamp_seconds (\d+)$", text, re.M)
        self.assertIsNotNone(expiry)
        self.assertGreater(int(expiry.group(1)), time.time())
        self.assertRegex(text, r"\ngaggle_store_map_size_bytes 1073741824\n")

        promtool = shutil.which("promtool")
        if not promtool:
            print("WARNING: promtool is not installed: /metrics not checked by promtool",
                  file=sys.stderr)
            return
        proc = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                              timeout=60)
        self.assertEqual(proc.returncode, 0,
                         f"promtool check metrics failed:\n{proc.stdout.decode()}"
                         f"{proc.stderr.decode()}\n--- metrics ---\n{text}")

    def test_body_over_limit(self):
        agent = self.cluster.start_agent("node-b")
        # Declared over the limit: refused before a byte of body is read.
        status, headers, body = harness.raw_request(
            "127.0.0.1", agent.http_port,
            ["POST /v1/status", f"Host: {agent.http_addr}",
             f"Content-Length: {HTTP_BODY_MAX + 1}", "Content-Type: application/json"])
        self.assertEqual(status, 413)
        self.assertIn("larger than the limit", json.loads(body)["error"])
        # Exactly at the limit is not refused for its size (405: no POST route yet).
        status, _, body = harness.raw_request(
            "127.0.0.1", agent.http_port,
            ["POST /v1/status", f"Host: {agent.http_addr}", f"Content-Length: {HTTP_BODY_MAX}"])
        self.assertEqual(status, 405)
        self.assertTrue(agent.healthy())

    def test_http_token(self):
        token_file = self.cluster.write("token", "s3cret-token\n", mode=0o600)
        agent = self.cluster.start_agent("node-t", args=["--http-token", token_file])

        status, headers, body = agent.get("/v1/status")
        self.assertEqual(status, 401)
        self.assertIn("bearer token", json.loads(body)["error"])
        self.assertEqual(headers.get("www-authenticate"), "Bearer")
        status, _, _ = agent.get("/v1/status", headers={"Authorization": "Bearer wrong"})
        self.assertEqual(status, 401)
        status, _, _ = agent.get("/v1/status", headers={"Authorization": "Bearer s3cret-toke"})
        self.assertEqual(status, 401)
        status, _, _ = agent.get("/v1/status", headers={"Authorization": "s3cret-token"})
        self.assertEqual(status, 401)
        status, _, body = agent.get("/v1/status",
                                    headers={"Authorization": "Bearer s3cret-token"})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["node"]["name"], "node-t")
        # /metrics, /healthz and / stay open
        self.assertEqual(agent.get("/metrics")[0], 200)
        self.assertEqual(agent.get("/healthz")[0], 200)
        self.assertEqual(agent.get("/")[0], 200)

        # the CLI sends the token from the environment or a file
        code, out, err = harness.gaggle("--addr", agent.http_addr, "status")
        self.assertEqual(code, 1)
        self.assertTrue(one_line(err), err)
        self.assertIn("bearer token", err)
        code, out, err = harness.gaggle("--addr", agent.http_addr, "status",
                                        env={"GAGGLE_HTTP_TOKEN": "s3cret-token"})
        self.assertEqual(code, 0, err)
        self.assertIn("node-t", out)
        code, out, err = harness.gaggle("status", "--addr", agent.http_addr,
                                        env={"GAGGLE_HTTP_TOKEN_FILE": token_file})
        self.assertEqual(code, 0, err)
        self.assertIn("node-t", out)

    def test_sighup_reload(self):
        good = "log-level: info\nworkers: 4\n"
        agent = self.cluster.start_agent("node-h", config=good)
        config_path = agent.argv[agent.argv.index("--config") + 1]

        # A broken file: the agent keeps running on the old config and says why.
        with open(config_path, "w") as f:
            f.write("log-level: debug\nworkers: 0\n")
        mark = agent.log_size()
        agent.signal(signal.SIGHUP)
        agent.wait_log("keeping the running configuration", after=mark)
        self.assertIn("workers: must be between 1 and 1024, got 0", agent.log()[mark:])
        self.assertIn(" warn ", agent.log()[mark:])
        self.assertTrue(agent.alive())
        self.assertTrue(agent.healthy())
        # still at info: a request logs nothing at debug level
        mark = agent.log_size()
        agent.get("/v1/status")
        self.assertTrue(agent.healthy())
        self.assertNotIn("http: GET /v1/status", agent.log()[mark:])

        # A valid change applies: debug logging shows each request.
        with open(config_path, "w") as f:
            f.write("log-level: debug\nworkers: 4\n")
        mark = agent.log_size()
        agent.signal(signal.SIGHUP)
        agent.wait_log("reload: applied (log-level debug", after=mark)
        mark = agent.log_size()
        agent.get("/v1/status")
        agent.wait_log("http: GET /v1/status 200", after=mark)

        # A change that needs a restart is logged and the running value kept
        # (map-size: not one of the flags the harness passes, which would win).
        with open(config_path, "w") as f:
            f.write("log-level: debug\nworkers: 4\nmap-size: 2GiB\n")
        mark = agent.log_size()
        agent.signal(signal.SIGHUP)
        agent.wait_log("map-size changed; that needs a restart", after=mark)
        agent.wait_log("reload: applied", after=mark)
        self.assertTrue(agent.healthy())
        self.assertIn("\ngaggle_store_map_size_bytes 1073741824\n",
                      agent.get("/metrics")[2].decode())

    def test_sigterm_exits_zero(self):
        agent = self.cluster.start_agent("node-s")
        agent.signal(signal.SIGTERM)
        self.assertEqual(agent.wait_exit(), 0, agent.log())
        self.assertIn("SIGTERM received; leaving the fleet and shutting down", agent.log())
        # the data dir is released: the same node starts again on it
        again = self.cluster.start_agent("node-s", identity=agent.identity)
        again.signal(signal.SIGINT)
        self.assertEqual(again.wait_exit(), 0, again.log())

    def test_bad_flags_exit_2(self):
        cases = [
            (["--workers", "0"], "gaggled: --workers: must be between 1 and 1024, got 0"),
            (["--frobnicate"], "gaggled: unknown flag '--frobnicate'"),
            (["--profile", "fast"], "gaggled: --profile: must be lan, wan or test"),
            (["--bind", "7700"], "gaggled: --bind: expected tcp://IP:PORT"),
            (["--map-size", "huge"], "gaggled: --map-size:"),
            (["--name"], "gaggled: --name: needs a value"),
        ]
        for args, expect in cases:
            code, out, err = harness.gaggled_once(*args)
            self.assertEqual(code, 2, f"{args}: {err}")
            self.assertTrue(one_line(err), f"{args}: {err!r}")
            self.assertTrue(err.startswith(expect), f"{args}: {err!r}")
        bad = self.cluster.write("bad.yaml", "workers: 2\nfrobnicate: yes\n")
        code, out, err = harness.gaggled_once("--config", bad)
        self.assertEqual(code, 2, err)
        self.assertTrue(one_line(err), err)
        self.assertIn(f"{bad}:2: frobnicate: unknown key", err)

        code, out, err = harness.gaggled_once("--help")
        self.assertEqual(code, 0)
        for flag in ("--config", "--data-dir", "--join", "--http-token", "--reap", "--version"):
            self.assertIn(flag, out)
        code, out, err = harness.gaggled_once("--version")
        self.assertEqual(code, 0)
        self.assertRegex(out, r"^gaggled \d+\.\d+\.\d+\n$")

        # --check-config: the file and flags as the agent would take them,
        # nothing started.
        code, out, err = harness.gaggled_once("--config", bad, "--check-config")
        self.assertEqual(code, 2, err)
        self.assertIn(f"{bad}:2: frobnicate: unknown key", err)
        identity = self.cluster.make_node("node-c")
        good = self.cluster.write("good.yaml", f"workers: 2\nnode-cert: {identity.cert}\n"
                                  f"operators: {self.cluster.operators_dir}\n"
                                  "bind: tcp://127.0.0.1:7799\n")
        code, out, err = harness.gaggled_once("--config", good, "--check-config",
                                              "--name", "node-c")
        self.assertEqual(code, 0, err)
        self.assertIn(f"configuration {good} is good (node node-c", out)
        code, out, err = harness.gaggled_once("--config", good, "--check-config",
                                              "--node-cert", "/nonexistent.cert")
        self.assertEqual(code, 2, out + err)
        self.assertTrue(one_line(err), err)

    def test_untrusted_certificate_refused(self):
        rogue = self.cluster.make_operator("rogue", trusted=False)
        self.cluster.operator  # the trusted one exists, so the trust dir is not empty
        identity = self.cluster.make_node("node-u", operator=rogue)
        workdir = self.cluster.path("agents", "node-u")
        args = self.cluster.agent_args("node-u", identity, harness.free_port(),
                                       harness.free_port(), workdir)
        code, out, err = harness.gaggled_once(*args)
        self.assertEqual(code, 1, err)
        last = err.strip().split("\n")[-1]
        self.assertIn("gaggled: the node certificate", last)
        self.assertIn("signed by an operator whose key is not in", last)

        # a name that does not match the certificate is refused too
        good = self.cluster.make_node("node-v")
        args = self.cluster.agent_args("other-name", good, harness.free_port(),
                                       harness.free_port(), workdir)
        code, out, err = harness.gaggled_once(*args)
        self.assertEqual(code, 1, err)
        self.assertIn("names 'node-v'", err)

    def test_resources_in_use_refused(self):
        agent = self.cluster.start_agent("node-p")
        # the same HTTP port
        other = self.cluster.make_node("node-q")
        workdir = self.cluster.path("agents", "node-q")
        args = self.cluster.agent_args("node-q", other, agent.http_port, harness.free_port(),
                                       workdir)
        code, out, err = harness.gaggled_once(*args)
        self.assertEqual(code, 1, err)
        self.assertIn(f"cannot listen on 127.0.0.1:{agent.http_port}", err)
        # the same data dir
        args = self.cluster.agent_args("node-p", agent.identity, harness.free_port(),
                                       harness.free_port(), agent.workdir)
        code, out, err = harness.gaggled_once(*args)
        self.assertEqual(code, 1, err)
        self.assertIn("in use by another gaggled", err)
        self.assertTrue(agent.healthy())

    def test_cli_status(self):
        agent = self.cluster.start_agent("node-c")
        code, out, err = harness.gaggle("--addr", agent.http_addr, "status")
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"node\s+node-c\n")
        self.assertRegex(out, r"members\s+1 \(1 alive\)\n")
        # global flags after the command, and the address from the environment
        code, out, err = harness.gaggle("status", "--json", env={"GAGGLE_ADDR": agent.http_addr})
        self.assertEqual(code, 0, err)
        doc = json.loads(out)
        self.assertEqual(doc["node"]["name"], "node-c")
        self.assertEqual([m["name"] for m in doc["members"]], ["node-c"])

        code, out, err = harness.gaggle("--addr", "127.0.0.1:1", "status")
        self.assertEqual(code, 1)
        self.assertEqual(out, "")
        self.assertEqual(err, "gaggle: cannot reach the agent at 127.0.0.1:1: Connection refused "
                              "(is gaggled running? set --addr or GAGGLE_ADDR)\n")

        code, out, err = harness.gaggle("status", "extra")
        self.assertEqual(code, 2)
        self.assertTrue(one_line(err), err)
        code, out, err = harness.gaggle("frobnicate")
        self.assertEqual(code, 2)
        self.assertTrue(one_line(err), err)
        code, out, err = harness.gaggle("--help")
        self.assertEqual(code, 0)
        for command in ("keygen", "status", "version", "help"):
            self.assertRegex(out, rf"\n  {command} ")
        code, out, err = harness.gaggle("status", "--help")
        self.assertEqual(code, 0)
        self.assertTrue(out.startswith("usage: gaggle status"))
        code, out, err = harness.gaggle("keygen", "--help")
        self.assertEqual(code, 0)
        self.assertIn("gaggle keygen", out)
        code, out, err = harness.gaggle("version", "--json")
        self.assertEqual(code, 0)
        self.assertIn("version", json.loads(out))


if __name__ == "__main__":
    harness.main()
