#!/usr/bin/env python3
"""test_plan_large.py: a plan of a few thousand targets held compact by three real
gaggled processes (--profile test) on loopback.

Agents keep a plan that arrives in canonical form (what the CLI sends) as an index
and read each target's frozen entity back from the document stored in LMDB when the
target runs. This checks, end to end, that nothing a user sees changes:
- a 3,000-target plan (a document of several 1 MiB store chunks) applied through
  one node is held by every node with the same total and refs, and completes; each
  node writes the catalog entity of every target it ran (docs.catalogOut), read back
  from its store: every file is there with dependsOn moved and its fields kept;
- a `run` plan renders each target's fields ({{target.name}}, an annotation,
  {{target.path}}) from the stored document, seen through `gaggle logs`;
- the same signed document re-serialised (not canonical) is accepted with the same
  id, and a plan that only ever travels in that form is held whole by every node
  and completes;
- a node killed with SIGKILL and restarted rebuilds its plans from its store: same
  totals, counts, report;
- a large plan signed by an operator that one node does not trust is held by the
  nodes that trust it and refused by that node, which keeps nothing of it (not even
  after a restart) and still holds the plans it can verify.
The signed body the CLI sends is captured by pointing `gaggle plan apply` at a
small local HTTP server.
"""
import http.server
import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import wait_until  # noqa: E402

CONVERGE = 30.0
RUN_TIMEOUT = 300.0  # thousands of targets under a sanitizer build
N_BIG = 3000
N_CMD = 20000  # a document of ~17 MB: slow enough to fetch that a command overtakes it
N_RUN = 12


def catalog_text(n, prefix):
    docs = ["""apiVersion: backstage.io/v1alpha1
kind: Resource
metadata: {name: user-ds-v1}
spec: {type: database, owner: group:default/data-platform}
"""]
    for i in range(n):
        docs.append(f"""apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: {prefix}-{i:05d}
  description: component number {i} of a rather large catalog, to make the document big
  annotations: {{myorg.org/team: team-{i % 7}, backstage.io/source-location: 'url:https://git.example/{prefix}-{i}/'}}
  tags: [java, t{i % 3}]
spec:
  type: service
  lifecycle: production
  owner: group:default/team-{i % 7}
  dependsOn: [resource:default/user-ds-v1, component:default/lib-{i % 11}]
""")
    return "---\n".join(docs)


class _Capture(http.server.BaseHTTPRequestHandler):
    """Answers POST /v1/plans like an agent and keeps the body."""
    bodies = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        _Capture.bodies.append(body)
        answer = json.dumps({}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


class LargePlanTest(harness.AgentTestCase):

    def start_fleet(self, names=("a", "b", "c")):
        agents, seed = [], None
        for name in names:
            args = ["--workers", "16"]
            if seed:
                args += ["--join", f"tcp://127.0.0.1:{seed.bind_port}"]
            agent = self.cluster.start_agent(name, args=args)
            agents.append(agent)
            seed = seed or agent

        def converged():
            return all(sorted(m["name"] for m in a.get_json("/v1/members")["members"]
                              if m["state"] == "alive") == sorted(names) for a in agents)
        wait_until(converged, CONVERGE, "every agent to see every agent alive")
        return agents

    def write_plan(self, filename, name, steps, extra=""):
        return self.cluster.write(filename, (
            "apiVersion: gaggle/v1\nkind: MigrationPlan\n"
            f"metadata: {{name: {name}}}\n"
            "spec:\n"
            "  catalog: ./catalog/catalog-info.yaml\n"
            "  dataset: {from: user-ds-v1, to: user-ds-v2}\n"
            f"  steps:\n{steps}{extra}"))

    def gaggle(self, agent_addr, *args, timeout=180.0):
        env = {"GAGGLE_KEY": self.cluster.operator.key}
        return harness.gaggle("--addr", agent_addr, *args, env=env, timeout=timeout)

    def signed_body(self, plan_path):
        """The exact bytes `gaggle plan apply` posts, from a stand-in server."""
        _Capture.bodies = []
        server = http.server.HTTPServer(("127.0.0.1", 0), _Capture)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            code, out, err = self.gaggle(f"127.0.0.1:{server.server_address[1]}",
                                         "plan", "apply", plan_path)
        finally:
            server.shutdown()
            server.server_close()
        self.assertEqual(code, 0, err)
        self.assertEqual(len(_Capture.bodies), 1)
        return _Capture.bodies[0], out.strip()

    def post(self, agent, body):
        status, _, answer = agent.request("POST", "/v1/plans", body=body,
                                          headers={"Content-Type": "application/json"},
                                          timeout=120.0)
        return status, json.loads(answer or b"{}")

    def held_everywhere(self, agents, plan_id, total):
        def held():
            for a in agents:
                status, _, body = a.get(f"/v1/plans/{plan_id}")
                if status != 200 or json.loads(body)["total"] != total:
                    return False
            return True
        wait_until(held, CONVERGE, f"every agent to hold plan {plan_id[:12]}")

    def wait_completed(self, agents, plan_id, total):
        def done():
            for a in agents:
                p = a.get_json(f"/v1/plans/{plan_id}")
                if p["state"] != "completed" or p["counts"].get("succeeded") != total:
                    return False
            return True
        wait_until(done, RUN_TIMEOUT, f"plan {plan_id[:12]} completed everywhere")

    def all_refs(self, agent, plan_id):
        refs, cursor = [], None
        while True:
            path = f"/v1/plans/{plan_id}/targets?limit=1000"
            if cursor:
                path += f"&cursor={cursor}"
            page = agent.get_json(path)
            refs += [t["ref"] for t in page["targets"]]
            cursor = page["next"]
            if cursor is None:
                return refs

    def test_command_before_its_plan(self):
        """A pause issued right after a large plan is applied is small: other
        nodes may fetch it before the plan it names. They keep it until the
        plan arrives instead of refusing it, so every node ends up paused."""
        self.cluster.write("catalog/catalog-info.yaml", catalog_text(N_CMD, "cmd"))
        agents = self.start_fleet()
        a = agents[0]
        slow = self.write_plan("slow.yaml", "slow-big", "    - {name: wait, run: 'sleep 30'}\n",
                               "  rollout: {maxParallel: 1}\n")
        body, plan_id = self.signed_body(slow)
        self.assertGreater(len(body), 2 << 20, "the plan takes several chunks to fetch")
        status, answer = self.post(a, body)
        self.assertEqual(status, 200, answer)
        code, out, err = self.gaggle(a.http_addr, "plan", "pause", "slow-big")
        self.assertEqual(code, 0, err)
        self.held_everywhere(agents, plan_id, N_CMD)

        def paused():
            return all(x.get_json(f"/v1/plans/{plan_id}")["state"] == "paused" for x in agents)
        wait_until(paused, CONVERGE, "the pause to hold on every node")

    def test_large_plan_compact_and_whole(self):
        self.cluster.write("catalog/catalog-info.yaml", catalog_text(N_BIG, "svc"))
        agents = self.start_fleet()
        a, b, c = agents
        out_dir = self.cluster.path("catalog-out")
        big = self.write_plan("big.yaml", "big", "    - {name: touch, noop: {}}\n",
                              f"  docs: {{catalogOut: {out_dir}}}\n")
        body, printed_id = self.signed_body(big)
        self.assertRegex(printed_id, r"^[0-9a-f]{64}$")
        self.assertGreater(len(body), 2 << 20, "the document spans several store chunks")
        doc = json.loads(body)
        self.assertEqual(len(doc["payload"]["targets"]), N_BIG)
        self.assertTrue(body.startswith(b'{"payload":{"apiVersion":'))

        # Canonical form, through a: held by every node with every ref.
        status, answer = self.post(a, body)
        self.assertEqual(status, 200, answer)
        plan_id = answer["id"]
        self.assertEqual(plan_id, printed_id)
        self.assertEqual(answer["total"], N_BIG)
        self.held_everywhere(agents, plan_id, N_BIG)
        want_refs = [t["ref"] for t in doc["payload"]["targets"]]
        for agent in agents:
            self.assertEqual(self.all_refs(agent, plan_id), want_refs, agent.name)

        # The same document re-serialised is the same plan (same id).
        spaced = json.dumps(doc, indent=1, ensure_ascii=False).encode()
        status, answer = self.post(b, spaced)
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer["id"], plan_id)
        self.assertEqual(len(a.get_json("/v1/plans")["plans"]), 1)

        self.wait_completed(agents, plan_id, N_BIG)
        # Every target's entity, read back from the stored document by the node
        # that ran it, is written with dependsOn moved and every field kept.
        written = 0
        for root, _, files in os.walk(out_dir):
            written += sum(1 for f in files if f.endswith(".yaml"))
        self.assertEqual(written, N_BIG)
        with open(os.path.join(out_dir, "default", "component", "svc-01234.yaml")) as f:
            text = f.read()
        self.assertIn("resource:default/user-ds-v2", text)
        self.assertNotIn("user-ds-v1", text)
        self.assertIn("component:default/lib-2", text)
        self.assertIn("team-2", text)
        self.assertIn("component number 1234 of a rather large catalog", text)

        # A run step renders each target's fields from the stored document.
        run = self.write_plan(
            "run.yaml", "run",
            "    - {name: say, run: 'echo name={{target.name}} "
            "team={{target.annotations.myorg.org/team}} path={{target.path}}'}\n",
            "  targets: {exclude: [" + ", ".join(f"svc-{i:05d}" for i in range(N_RUN, N_BIG))
            + "]}\n")
        code, out, err = self.gaggle(c.http_addr, "plan", "apply", run, "--json")
        self.assertEqual(code, 0, err)
        run_id = json.loads(out)["id"]
        self.wait_completed(agents, run_id, N_RUN)
        code, out, err = self.gaggle(a.http_addr, "logs", run_id, "svc-00009")
        if code != 0 and "fetching" in (out + err):
            wait_until(lambda: self.gaggle(a.http_addr, "logs", run_id, "svc-00009")[0] == 0,
                       CONVERGE, "the log of svc-00009")
            code, out, err = self.gaggle(a.http_addr, "logs", run_id, "svc-00009")
        self.assertEqual(code, 0, err)
        self.assertIn("name=svc-00009 team=team-2 path=" + self.cluster.path("catalog"), out)

        # A plan that only ever travels re-serialised is held whole everywhere.
        other = self.write_plan("other.yaml", "other", "    - {name: touch, noop: {}}\n",
                                "  targets: {exclude: ["
                                + ", ".join(f"svc-{i:05d}" for i in range(300, N_BIG)) + "]}\n")
        other_body, other_id = self.signed_body(other)
        other_spaced = json.dumps(json.loads(other_body), indent=2).encode()
        status, answer = self.post(c, other_spaced)
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer["id"], other_id)
        self.wait_completed(agents, other_id, 300)

        # A restarted node rebuilds every plan from its store.
        before = b.get_json(f"/v1/plans/{plan_id}")
        report_before = b.get_json(f"/v1/plans/{plan_id}/report")
        b.signal(signal.SIGKILL)
        b.wait_exit()
        back = self.cluster.start_agent(
            "b", identity=b.identity, bind_port=b.bind_port,
            args=["--workers", "16", "--join", f"tcp://127.0.0.1:{a.bind_port}"])
        for pid, total in ((plan_id, N_BIG), (run_id, N_RUN), (other_id, 300)):
            self.held_everywhere([back], pid, total)
        after = back.get_json(f"/v1/plans/{plan_id}")
        self.assertEqual(after["counts"], before["counts"])
        self.assertEqual(after["state"], "completed")
        report_after = back.get_json(f"/v1/plans/{plan_id}/report")
        self.assertEqual(len(report_after.get("targets", [])), len(report_before.get("targets", [])))
        self.assertEqual(self.all_refs(back, plan_id), want_refs)

    def test_replicated_plan_refused_by_one_node(self):
        """A large replicated plan is checked while it is written to the store;
        a node that refuses it (here: signed by an operator it does not trust)
        undoes the write and keeps running."""
        self.cluster.write("catalog/catalog-info.yaml", catalog_text(N_BIG, "svc"))
        main = self.cluster.operator  # signs node certificates; every node trusts it
        other = self.cluster.make_operator("other", trusted=False)
        both = self.cluster.path("operators-both")
        os.makedirs(both)
        for op in (main, other):
            with open(op.pub) as src, open(os.path.join(both, op.name + ".pub"), "w") as dst:
                dst.write(src.read())
        agents, seed = [], None
        for name in ("a", "b", "c"):
            args = ["--workers", "16"]
            if name != "c":
                args += ["--operators", both]
            if seed:
                args += ["--join", f"tcp://127.0.0.1:{seed.bind_port}"]
            agents.append(self.cluster.start_agent(name, args=args))
            seed = seed or agents[0]
        a, b, c = agents

        def converged():
            return all(sum(m["state"] == "alive" for m in x.get_json("/v1/members")["members"])
                       == 3 for x in agents)
        wait_until(converged, CONVERGE, "every agent to see every agent alive")

        plan = self.write_plan("big.yaml", "by-other", "    - {name: touch, noop: {}}\n",
                               "  rollout: {maxParallel: 1}\n")
        env = {"GAGGLE_KEY": other.key}
        code, out, err = harness.gaggle("--addr", a.http_addr, "plan", "apply", plan, "--json",
                                        env=env, timeout=180.0)
        self.assertEqual(code, 0, err)
        plan_id = json.loads(out)["id"]
        self.held_everywhere([a, b], plan_id, N_BIG)
        c.wait_log("a replicated document was refused: the document is not signed by a "
                   "trusted operator key", timeout=CONVERGE)
        status, _, _ = c.get(f"/v1/plans/{plan_id}")
        self.assertEqual(status, 404)

        # A plan c can verify still arrives, and c keeps nothing of the refused
        # one across a restart.
        good = self.write_plan("good.yaml", "by-main", "    - {name: touch, noop: {}}\n",
                               "  targets: {exclude: ["
                               + ", ".join(f"svc-{i:05d}" for i in range(1500, N_BIG)) + "]}\n")
        code, out, err = self.gaggle(a.http_addr, "plan", "apply", good, "--json")
        self.assertEqual(code, 0, err)
        good_id = json.loads(out)["id"]
        self.held_everywhere(agents, good_id, 1500)
        c.signal(signal.SIGKILL)
        c.wait_exit()
        back = self.cluster.start_agent(
            "c", identity=c.identity, bind_port=c.bind_port,
            args=["--workers", "16", "--join", f"tcp://127.0.0.1:{a.bind_port}"])
        self.held_everywhere([back], good_id, 1500)
        self.assertEqual([p["id"] for p in back.get_json("/v1/plans")["plans"]], [good_id])
        self.assertNotIn("no longer verifies", back.log())


if __name__ == "__main__":
    harness.main()
