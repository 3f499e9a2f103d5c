#!/usr/bin/env python3
"""test_plan_cli.py: the plan-facing CLI and HTTP API against three real
gaggled processes (--profile test) on loopback.

A generated catalog (tools/gen-catalog.py, 30 consumers) feeds plans that are
applied through one node and then followed from every node:
- a `noop` plan: `plan watch` runs to completion (exit 0, summary counts),
  `plan show --json` gives identical counts on every node, by id, id prefix and
  name; `plan list`; the targets API pages through every target; metrics and
  the dashboard show it;
- a `run` plan (`echo migrated NAME; exit 0`): `report --format json` totals,
  the Markdown report, `logs` of targets run on other nodes, `status`, `audit`;
- a slow plan (`sleep 0.2`, maxParallel 1): pause, resume and cancel through
  different nodes reach every node; `plan watch` of a cancelled plan exits 1;
- refusals: an invalid plan file, no key, a public key, an untrusted operator
  key, an unsigned or malformed body: refused with one line on stderr and
  nothing changes on any node;
- node commands: `drain` through the node's own agent reaches every member,
  `force-leave` refuses an alive node and marks a dead one left everywhere.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import wait_until  # noqa: E402

SOURCE = os.environ.get("GAGGLE_SOURCE") or os.path.join(os.path.dirname(__file__), "..", "..")
GEN_CATALOG = os.path.join(SOURCE, "tools", "gen-catalog.py")
CONVERGE = 30.0   # membership and replication, seconds
RUN_TIMEOUT = 180.0  # a whole plan under a sanitizer build
STATES = ["pending", "awaiting_approval", "running", "retry_wait", "succeeded", "skipped",
          "needs_review", "failed", "cancelled"]


def one_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    return len(lines) == 1


class PlanCliTest(harness.AgentTestCase):

    # ---- fixtures ----

    def start_fleet(self, names=("n1", "n2", "n3")):
        agents = []
        seed = None
        for name in names:
            args = ["--join", f"tcp://127.0.0.1:{seed.bind_port}"] if seed else []
            agent = self.cluster.start_agent(name, args=args)
            agents.append(agent)
            seed = seed or agent

        def converged():
            for a in agents:
                ms = a.get_json("/v1/members")["members"]
                if sorted(m["name"] for m in ms if m["state"] == "alive") != sorted(names):
                    return False
            return True
        wait_until(converged, CONVERGE, "every agent to see every agent alive")
        for a in agents:
            status, _, body = a.get("/v1/plans")
            self.assertEqual(status, 200, f"{a.name} does not serve GET /v1/plans: {body[:200]!r}")
        self.agents = agents
        return agents

    def gen_catalog(self):
        out = self.cluster.path("catalog")
        subprocess.run([sys.executable, GEN_CATALOG, "--out", out, "--consumers", "30",
                        "--owners", "4", "--seed", "7"], check=True, capture_output=True,
                       timeout=120)
        return out

    def write_plan(self, filename, name, steps, extra=""):
        return self.cluster.write(filename, (
            "apiVersion: gaggle/v1\nkind: MigrationPlan\n"
            f"metadata: {{name: {name}, owner: group:default/data-platform}}\n"
            "spec:\n"
            "  catalog: ./catalog/catalog-info.yaml\n"
            "  dataset: {from: user-ds-v1, to: user-ds-v2}\n"
            f"  steps:\n{steps}{extra}"))

    def cli(self, agent, *args, key=None, timeout=120.0):
        env = {"GAGGLE_KEY": key if key is not None else self.cluster.operator.key}
        return harness.gaggle("--addr", agent.http_addr, *args, env=env, timeout=timeout)

    def cli_ok(self, agent, *args, **kw):
        code, out, err = self.cli(agent, *args, **kw)
        self.assertEqual(code, 0, f"gaggle {' '.join(args)} on {agent.name}: {err}")
        return out

    def cli_json(self, agent, *args):
        return json.loads(self.cli_ok(agent, *args, "--json"))

    def validate(self, path):
        out = self.cli_ok(self.agents[0], "plan", "validate", path, "--json")
        doc = json.loads(out)
        self.assertTrue(doc["valid"], doc)
        self.assertGreater(len(doc["targets"]), 0)
        return doc

    def apply(self, agent, path):
        out = self.cli_ok(agent, "plan", "apply", path)
        plan_id = out.strip()
        self.assertRegex(plan_id, r"^[0-9a-f]{64}$")
        return plan_id

    def show(self, agent, plan):
        return self.cli_json(agent, "plan", "show", plan)

    def wait_everywhere(self, plan, predicate, what, timeout=RUN_TIMEOUT):
        """Waits until predicate(show-json) holds on every agent; returns
        the answers by agent name."""
        seen = {}

        def ok():
            for a in self.agents:
                seen[a.name] = self.show(a, plan)
                if not predicate(seen[a.name]):
                    return False
            return True
        try:
            wait_until(ok, timeout, what)
        except AssertionError:
            sys.stderr.write(f"last answers: {json.dumps(seen, indent=1)[:4000]}\n")
            raise
        return seen

    def capture_signed_body(self, *args):
        """Runs `gaggle ARGS` against a stub agent; returns the signed body it posted."""
        caught = []

        class Stub(BaseHTTPRequestHandler):
            def do_POST(self):
                caught.append(self.rfile.read(int(self.headers["Content-Length"])))
                answer = b'{"node": "x", "draining": true}'
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *a):
                pass
        server = HTTPServer(("127.0.0.1", 0), Stub)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            env = {"GAGGLE_KEY": self.cluster.operator.key}
            code, out, err = harness.gaggle("--addr", f"127.0.0.1:{server.server_port}", *args,
                                            env=env)
            self.assertEqual(code, 0, err)
        finally:
            server.shutdown()
            server.server_close()
        self.assertEqual(len(caught), 1)
        return caught[0]

    # ---- tests ----

    def test_apply_watch_show_list_report_logs(self):
        agents = self.start_fleet()
        n1, n2, n3 = agents
        self.gen_catalog()
        noop_path = self.write_plan("noop.yaml", "noop-migration",
                                    "    - {name: touch, noop: {}}\n")
        run_path = self.write_plan(
            "run.yaml", "run-migration",
            "    - {name: hello, run: 'echo migrated {{target.name}}; exit 0'}\n")
        refs = self.validate(noop_path)["targets"]
        total = len(refs)

        noop_id = self.apply(n1, noop_path)
        run_id = self.apply(n1, run_path)
        self.assertNotEqual(noop_id, run_id)

        # watch (not a TTY: one line per change) until done: exit 0 and the counts.
        code, out, err = self.cli(n2, "plan", "watch", noop_id, "--timeout", "3m",
                                  timeout=RUN_TIMEOUT + 30)
        self.assertEqual(code, 0, err)
        lines = out.strip().splitlines()
        self.assertGreaterEqual(len(lines), 2, out)
        self.assertEqual(lines[-1], f"plan noop-migration completed: succeeded {total}")
        self.assertIn(f"{total}/{total}", lines[-2])

        # Every node ends with the same counts, by id, prefix and name.
        done = {s: (total if s == "succeeded" else 0) for s in STATES}
        seen = self.wait_everywhere(
            noop_id, lambda d: d["counts"] == done and d["state"] == "completed",
            "the noop plan completed with identical counts on every node")
        for name, doc in seen.items():
            self.assertEqual(doc["id"], noop_id, name)
            self.assertEqual(doc["name"], "noop-migration", name)
            self.assertEqual(doc["total"], total, name)
            self.assertTrue(doc["completed"], name)
            self.assertEqual(doc["progress"], 1.0, name)
        self.assertEqual(self.show(n3, "noop-migration")["id"], noop_id)
        self.assertEqual(self.show(n3, noop_id[:10])["id"], noop_id)
        human = self.cli_ok(n3, "plan", "show", "noop-migration")
        self.assertRegex(human, r"(?m)^state\s+completed$")
        self.assertRegex(human, rf"(?m)^\s+succeeded\s+{total}$")

        # The run plan completes too.
        code, out, err = self.cli(n3, "plan", "watch", "run-migration", "--timeout", "3m",
                                  timeout=RUN_TIMEOUT + 30)
        self.assertEqual(code, 0, err)
        self.wait_everywhere(run_id, lambda d: d["counts"]["succeeded"] == total,
                             "the run plan succeeded on every node")

        # list: both plans, on every node.
        for a in agents:
            plans = {p["id"]: p for p in self.cli_json(a, "plan", "list")["plans"]}
            self.assertEqual(set(plans), {noop_id, run_id}, a.name)
            for p in plans.values():
                self.assertEqual(p["total"], total)
                self.assertEqual(p["state"], "completed")
                self.assertEqual(set(p["counts"]), set(STATES))
        listing = self.cli_ok(n2, "plan", "list")
        self.assertIn("noop-migration", listing)
        self.assertIn("run-migration", listing)
        self.assertIn(noop_id[:12], listing)

        # targets API: paging with cursors covers every target once.
        got, cursor = [], None
        for _ in range(total + 2):
            path = f"/v1/plans/{noop_id}/targets?state=succeeded&limit=7"
            if cursor:
                path += f"&cursor={cursor}"
            page = n2.get_json(path)
            self.assertLessEqual(len(page["targets"]), 7)
            for t in page["targets"]:
                self.assertEqual(t["state"], "succeeded")
                self.assertIn(t["node"], ("n1", "n2", "n3"))
                self.assertGreaterEqual(t["attempt"], 1)
                self.assertGreaterEqual(t["epoch"], 1)
                self.assertIn("error", t)
            got += [t["ref"] for t in page["targets"]]
            cursor = page["next"]
            if cursor is None:
                break
        self.assertEqual(sorted(got), sorted(refs))
        status, _, body = n2.get(f"/v1/plans/{noop_id}/targets?state=exploded")
        self.assertEqual(status, 400)
        self.assertIn("error", json.loads(body))
        self.assertEqual(n2.get_json(f"/v1/plans/{noop_id}/targets?state=failed")["targets"], [])
        status, _, _ = n2.get("/v1/plans/" + "0" * 64)
        self.assertEqual(status, 404)

        # report: JSON totals and every target; the Markdown from another node.
        report = self.cli_json(n3, "report", run_id, "--format", "json")
        self.assertEqual(report["plan"], run_id)
        self.assertEqual(report["name"], "run-migration")
        self.assertEqual(report["dataset"]["from"], "resource:default/user-ds-v1")
        self.assertEqual(report["dataset"]["to"], "resource:default/user-ds-v2")
        self.assertEqual(report["totals"]["succeeded"], total)
        self.assertEqual(sum(report["totals"].values()), total)
        self.assertEqual(sorted(t["ref"] for t in report["targets"]), sorted(refs))
        for t in report["targets"]:
            self.assertEqual(t["state"], "succeeded")
            self.assertGreaterEqual(t["attempts"], 1)
            self.assertIn(t["node"], ("n1", "n2", "n3"))
        md = self.cli_ok(n1, "report", "run-migration")
        self.assertTrue(md.startswith("# Migration report: run-migration\n"), md[:200])
        self.assertIn(f"| succeeded | {total} |", md)
        self.assertEqual(md.count("| component:"), total)
        status, headers, body = n2.get(f"/v1/plans/{run_id}/report?format=md")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/markdown"))
        self.assertIn(b"| Targets | %d |" % total, body)

        # logs: from whichever node ran the target, asked through n1.
        by_node = {}
        for t in report["targets"]:
            by_node.setdefault(t["node"], t["ref"])
        self.assertGreaterEqual(len(by_node), 2, "the targets ran on one node only")
        for node, ref in by_node.items():
            name = ref.split("/", 1)[1]
            code, out, err = self.cli(n1, "logs", run_id, ref)
            self.assertEqual(code, 0, f"logs of {ref} (ran on {node}): {err}")
            self.assertIn(f"migrated {name}", out)
            doc = self.cli_json(n1, "logs", "run-migration", ref)
            self.assertEqual(doc["target"], ref)
            self.assertEqual(doc["node"], node)
        code, out, err = self.cli(n1, "logs", run_id, "component:default/no-such-thing")
        self.assertEqual(code, 1)
        self.assertTrue(one_line(err), err)

        # status: one screen with the plans; nothing needs a human.
        screen = self.cli_ok(n2, "status")
        self.assertRegex(screen, r"(?m)^members\s+3 \(3 alive\)$")
        self.assertRegex(screen, r"(?m)^plans\s+2$")
        self.assertIn("noop-migration", screen)
        self.assertIn("needs a human: nothing", screen)
        st = self.cli_json(n2, "status")
        self.assertEqual(st["node"]["name"], "n2")
        self.assertEqual(len(st["members"]), 3)
        self.assertEqual({p["id"] for p in st["plans"]}, {noop_id, run_id})
        self.assertEqual(st["needs_human"], [])

        # audit: both applies, on a node that received them by replication.
        entries = self.cli_json(n3, "audit")["entries"]
        plans_audited = {e.get("plan") for e in entries}
        self.assertTrue({noop_id, run_id} <= plans_audited, entries)
        self.assertIn("AT", self.cli_ok(n3, "audit").splitlines()[0])

        # metrics: the fleet view per plan, valid exposition text.
        status, _, body = n3.get("/metrics")
        self.assertEqual(status, 200)
        text = body.decode()
        self.assertIn(f'gaggle_targets{{plan="noop-migration",state="succeeded"}} {total}', text)
        self.assertIn('gaggle_plan_progress_ratio{plan="run-migration"} 1', text)
        self.assertRegex(text, r"(?m)^gaggle_targets_owned 0$")
        self.assertRegex(text, r"(?m)^gaggle_fleet_claims_total \d+$")
        if shutil.which("promtool"):
            proc = subprocess.run(["promtool", "check", "metrics"], input=body,
                                  capture_output=True, timeout=60)
            self.assertEqual(proc.returncode, 0, proc.stderr.decode() + proc.stdout.decode())

        # dashboard: a self-contained page that polls /v1/status.
        status, headers, body = n1.get("/")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/html"))
        self.assertIn(b"gaggle node n1", body)
        self.assertIn(b"/v1/status", body)
        self.assertNotRegex(body.decode(), r"(src|href)=\"https?://")

    def test_pause_resume_cancel(self):
        agents = self.start_fleet()
        n1, n2, n3 = agents
        self.gen_catalog()
        path = self.write_plan("slow.yaml", "slow-migration",
                               "    - {name: wait, run: 'sleep 0.2'}\n",
                               "  rollout: {maxParallel: 1}\n")
        plan_id = self.apply(n1, path)

        out = self.cli_ok(n2, "plan", "pause", "slow-migration")
        self.assertEqual(out, f"paused plan slow-migration ({plan_id[:12]})\n")
        self.wait_everywhere(plan_id, lambda d: d["state"] == "paused",
                             "the pause to reach every node", timeout=CONVERGE)
        st = self.cli_json(n1, "status")
        self.assertIn(plan_id, [p["id"] for p in st["plans"] if p["state"] == "paused"])
        self.assertIn("slow-migration is paused", self.cli_ok(n1, "status"))

        self.cli_ok(n3, "plan", "resume", plan_id[:12])
        self.wait_everywhere(plan_id, lambda d: d["state"] in ("active", "completed"),
                             "the resume to reach every node", timeout=CONVERGE)

        self.cli_ok(n1, "plan", "cancel", plan_id)
        seen = self.wait_everywhere(
            plan_id, lambda d: d["state"] == "cancelled" and d["counts"]["running"] == 0
            and d["counts"]["pending"] == 0,
            "the cancel to reach every node", timeout=CONVERGE)
        counts = {json.dumps(d["counts"], sort_keys=True) for d in seen.values()}
        self.assertEqual(len(counts), 1, seen)
        some = next(iter(seen.values()))
        self.assertGreater(some["counts"]["cancelled"], 0)
        self.assertEqual(sum(some["counts"].values()), some["total"])

        code, out, err = self.cli(n2, "plan", "watch", "slow-migration", "--timeout", "30s")
        self.assertEqual(code, 1)
        self.assertTrue(one_line(err), err)
        self.assertIn("cancelled", err)
        self.assertIn("plan slow-migration cancelled:", out)

        types = [e.get("type") for e in self.cli_json(n2, "audit")["entries"]]
        for t in ("pause", "resume", "cancel"):
            self.assertIn(t, types)

    def test_refused_applies_change_nothing(self):
        agents = self.start_fleet()
        n1, n2, n3 = agents
        self.gen_catalog()
        good = self.write_plan("good.yaml", "good-migration", "    - {name: touch, noop: {}}\n")
        bad = self.cluster.write("bad.yaml", "apiVersion: gaggle/v1\nkind: MigrationPlan\n"
                                             "metadata: {name: [unclosed\n")
        rogue = self.cluster.make_operator("rogue", trusted=False)

        # An invalid plan: refused by the CLI, ending with one gaggle: line.
        code, out, err = self.cli(n1, "plan", "apply", bad)
        self.assertEqual(code, 1)
        self.assertEqual(out, "")
        self.assertTrue(err.strip().splitlines()[-1].startswith("gaggle: "), err)
        # No key at all, a public key, an operator the fleet does not trust.
        code, out, err = self.cli(n1, "plan", "apply", good, key="")
        self.assertEqual(code, 2)
        self.assertTrue(one_line(err), err)
        code, out, err = self.cli(n1, "plan", "apply", good, key=rogue.pub)
        self.assertNotEqual(code, 0)
        self.assertTrue(one_line(err), err)
        code, out, err = self.cli(n2, "plan", "apply", good, key=rogue.key)
        self.assertEqual(code, 1)
        self.assertTrue(one_line(err), err)
        self.assertIn("trusted", err)
        # Bodies that are not signed plans.
        for body, statuses in ((b"this is not json", (400,)),
                               (b'{"apiVersion": "gaggle/v1", "kind": "MigrationPlan"}',
                                (400, 401, 403)),
                               (b'{"payload": {"kind": "MigrationPlan"}, "signature": '
                                b'{"key": "00", "sig": "00"}}', (400, 401, 403))):
            status, _, answer = n3.request("POST", "/v1/plans", body=body)
            self.assertIn(status, statuses, answer)
            self.assertIn("error", json.loads(answer))
        # A command for a plan nobody has.
        code, out, err = self.cli(n1, "plan", "pause", "no-such-plan")
        self.assertEqual(code, 1)
        self.assertTrue(one_line(err), err)
        code, out, err = self.cli(n1, "plan", "retry", "no-such-plan", "--state", "bogus")
        self.assertEqual(code, 2)
        self.assertTrue(one_line(err), err)

        # Nothing changed anywhere.
        for a in agents:
            self.assertEqual(a.get_json("/v1/plans"), {"plans": []}, a.name)
            self.assertEqual(self.cli_ok(a, "plan", "list"), "no plans\n")
            self.assertEqual(a.get_json("/v1/audit")["entries"], [], a.name)

        # The good plan, signed by the trusted key, is then accepted everywhere.
        plan_id = self.apply(n2, good)
        self.wait_everywhere(plan_id, lambda d: d["id"] == plan_id,
                             "the accepted plan to reach every node", timeout=CONVERGE)

    def test_node_commands(self):
        agents = self.start_fleet()
        n1, n2, n3 = agents
        # drain through the node's own agent: every member learns it.
        out = self.cli_ok(n3, "drain", "n3")
        self.assertEqual(out, "draining n3\n")

        def draining_everywhere():
            for a in agents:
                ms = {m["name"]: m for m in a.get_json("/v1/members")["members"]}
                if not ms["n3"]["draining"]:
                    return False
            return True
        wait_until(draining_everywhere, CONVERGE, "every member to see n3 draining")
        self.assertIn("draining", self.cli_ok(n1, "members"))
        # drain of another node through this one: relayed to it.
        out = self.cli_ok(n1, "drain", "n2")
        self.assertEqual(out, "draining n2\n")

        def n2_draining_everywhere():
            return all({m["name"]: m for m in a.get_json("/v1/members")["members"]}
                       ["n2"]["draining"] for a in agents)
        wait_until(n2_draining_everywhere, CONVERGE, "every member to see n2 draining")
        # A signed drain replayed through another node is refused by the
        # drained node (nonce seen). The CLI's document is caught by a stub.
        body = self.capture_signed_body("drain", "n2")
        for via in (n1, n3):
            status, _, answer = via.request("POST", "/v1/nodes/n2/drain", body=body)
            self.assertEqual(status, 202, answer)
        n2.wait_log("a replayed command", timeout=CONVERGE)
        code, out, err = self.cli(n1, "drain", "nobody")
        self.assertEqual(code, 1)
        self.assertTrue(one_line(err), err)
        self.assertIn("no member", err)
        # force-leave of an alive node is refused (it would refute).
        code, out, err = self.cli(n1, "force-leave", "n2")
        self.assertEqual(code, 1)
        self.assertTrue(one_line(err), err)
        self.assertIn("alive", err)
        code, out, err = self.cli(n1, "force-leave", "nobody")
        self.assertEqual(code, 1)
        self.assertTrue(one_line(err), err)
        # Unsigned and untrusted node commands.
        status, _, body = n1.request("POST", "/v1/nodes/n1/drain", body=b'{"type": "drain"}')
        self.assertEqual(status, 401, body)
        rogue = self.cluster.make_operator("rogue", trusted=False)
        code, out, err = self.cli(n2, "drain", "n1", key=rogue.key)
        self.assertEqual(code, 1)
        self.assertTrue(one_line(err), err)
        code, out, err = self.cli(n1, "drain", "n1", key=rogue.key)
        self.assertEqual(code, 1)
        self.assertTrue(one_line(err), err)
        ms = {m["name"]: m for m in n2.get_json("/v1/members")["members"]}
        self.assertFalse(ms["n1"]["draining"])
        # force-leave of a dead node: it is marked left on every survivor.
        n2.signal(signal.SIGKILL)
        n2.wait_exit()
        survivors = [n1, n3]

        def dead_n2():
            return all({m["name"]: m for m in a.get_json("/v1/members")["members"]}
                       ["n2"]["state"] == "dead" for a in survivors)
        wait_until(dead_n2, CONVERGE, "the survivors to declare n2 dead")
        out = self.cli_ok(n1, "force-leave", "n2")
        self.assertEqual(out, "forced to leave: n2\n")

        def left_n2():
            return all({m["name"]: m for m in a.get_json("/v1/members")["members"]}
                       ["n2"]["state"] == "left" for a in survivors)
        wait_until(left_n2, CONVERGE, "every survivor to mark n2 left")

        # Node commands enter the audit trail of the nodes that accepted them.
        def audited(agent, type_, node):
            entries = self.cli_json(agent, "audit")["entries"]
            return any(e.get("type") == type_ and e.get("node") == node for e in entries)
        self.assertTrue(audited(n3, "drain", "n3"))
        self.assertTrue(audited(n1, "drain", "n2"))  # relayed by n1
        self.assertTrue(audited(n1, "force-leave", "n2"))
        self.assertIn("force-leave", self.cli_ok(n1, "audit"))


if __name__ == "__main__":
    harness.main()
