#!/usr/bin/env python3
"""The plan's notify hook across three real agents: each listed event is told
of exactly once fleet-wide (target events by the node that ran the target,
plan events by one node), with GAGGLE_EVENT / GAGGLE_TARGET and a JSON
description on stdin; events not listed are not told of; the hook's results
are counted in gaggle_notify_total."""

import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import wait_until  # noqa: E402

CONVERGE = 30.0
RUN_DEADLINE = 120.0
N = 10
GATED = ("consumer-0002", "consumer-0005")
FAILING = ("consumer-0003", "consumer-0007")


metric = harness.metric


class NotifyTest(harness.AgentTestCase):
    def start_fleet(self):
        agents = []
        for name in ("n1", "n2", "n3"):
            args = ["--join", f"tcp://127.0.0.1:{agents[0].bind_port}"] if agents else []
            agents.append(self.cluster.start_agent(name, args=args))

        def converged():
            for a in agents:
                ms = a.get_json("/v1/members")["members"]
                if sum(m["state"] == "alive" for m in ms) != len(agents):
                    return False
            return True
        wait_until(converged, CONVERGE, "every agent to see every agent alive")
        return agents

    def cli_ok(self, agent, *args):
        env = {"GAGGLE_KEY": self.cluster.operator.key}
        code, out, err = harness.gaggle("--addr", agent.http_addr, *args, env=env)
        self.assertEqual(code, 0, f"gaggle {' '.join(args)}: {err}")
        return out

    def test_events_told_once_fleet_wide(self):
        harness.write_consumer_catalog(
            self.cluster, N, annotations={n: {"myorg.org/security": "true"} for n in GATED})
        outdir = self.cluster.path("notified")
        os.makedirs(outdir)
        fail = "|".join(FAILING)
        plan = self.cluster.write("plan.yaml", f"""apiVersion: gaggle/v1
kind: MigrationPlan
metadata: {{name: notify-demo}}
spec:
  catalog: ./catalog/catalog-info.yaml
  dataset: {{from: resource:default/user-ds-v1, to: resource:default/user-ds-v2}}
  vars: {{out: {json.dumps(outdir)}}}
  steps:
    - name: work
      run: "case {{{{target.name}}}} in {fail}) exit 3;; esac"
  retry: {{maxAttempts: 1}}
  approval: {{when: {{annotations: {{myorg.org/security: "true"}}}}}}
  notify:
    run: "cat > {{{{vars.out}}}}/$GAGGLE_EVENT.$(date +%s%N).$$.json"
    on: [failed, awaiting_approval, paused, completed]
""")
        agents = self.start_fleet()
        n1, n2, n3 = agents
        plan_id = self.cli_ok(n1, "plan", "apply", plan).strip()

        def files(event):
            return sorted(glob.glob(os.path.join(outdir, f"{event}.*.json")))

        def show(a):
            return a.get_json(f"/v1/plans/{plan_id}")

        # Gated targets wait for approval from the start: one notification.
        wait_until(lambda: len(files("awaiting_approval")) >= 1, CONVERGE,
                   "the awaiting_approval notification")
        wait_until(lambda: all(show(a)["counts"].get("failed") == len(FAILING)
                               and show(a)["counts"].get("succeeded") == N - 4 for a in agents),
                   RUN_DEADLINE, "the ungated targets to finish on every node")
        wait_until(lambda: len(files("failed")) >= len(FAILING), CONVERGE,
                   "a notification for each failed target")

        self.cli_ok(n2, "plan", "pause", plan_id)
        wait_until(lambda: len(files("paused")) >= 1, CONVERGE, "the paused notification")
        self.cli_ok(n3, "plan", "resume", plan_id)
        self.cli_ok(n1, "approve", plan_id)
        wait_until(lambda: all(show(a)["state"] == "completed" for a in agents), RUN_DEADLINE,
                   "the plan to complete on every node")
        wait_until(lambda: len(files("completed")) >= 1, CONVERGE, "the completed notification")

        # Every hook that ran was counted as ok on the node that ran it.
        def told():
            return len(os.listdir(outdir))
        wait_until(lambda: sum(metric(a, "gaggle_notify_total", 'result="ok"')
                               for a in agents) >= told(), CONVERGE,
                   "every hook to be counted as ok")
        self.assertEqual(sum(metric(a, "gaggle_notify_total", 'result="ok"') for a in agents),
                         told())
        self.assertEqual(sum(metric(a, "gaggle_notify_total", 'result="failed"')
                             for a in agents), 0)

        # Plan events once each; nothing for events not listed (succeeded).
        self.assertEqual(len(files("awaiting_approval")), 1)
        self.assertEqual(len(files("paused")), 1)
        self.assertEqual(len(files("completed")), 1)
        self.assertEqual(told(), 3 + len(files("failed")), os.listdir(outdir))

        # Target events: one per run that ended so. A run is one (target,
        # epoch): a second one only follows a takeover (a holder declared
        # dead, which a loaded machine can cause), never a duplicate.
        names = {a.name for a in agents}
        failed_refs = set()
        runs = []
        for path in files("failed"):
            with open(path) as f:
                doc = json.load(f)
            self.assertEqual(doc["event"], "failed")
            self.assertIn(doc["node"], names)
            self.assertEqual(doc["plan"]["id"], plan_id)
            self.assertEqual(doc["plan"]["name"], "notify-demo")
            self.assertEqual(doc["target"]["state"], "failed")
            self.assertIn("exited with 3", doc["target"]["error"])
            failed_refs.add(doc["target"]["ref"])
            runs.append((doc["target"]["ref"], doc["target"]["epoch"]))
        self.assertEqual(len(runs), len(set(runs)), runs)
        self.assertEqual(failed_refs, {f"component:default/{n}" for n in FAILING})
        with open(files("awaiting_approval")[0]) as f:
            doc = json.load(f)
        self.assertEqual(doc["plan"]["counts"]["awaiting_approval"], len(GATED))
        self.assertNotIn("target", doc)
        with open(files("completed")[0]) as f:
            doc = json.load(f)
        self.assertEqual(doc["plan"]["state"], "completed")
        self.assertEqual(doc["plan"]["total"], N)
        self.assertEqual(doc["plan"]["counts"]["succeeded"], N - len(FAILING))


if __name__ == "__main__":
    harness.main()
