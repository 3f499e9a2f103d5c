#!/usr/bin/env python3
"""Fleet autoscaling with real agents and the shipped local provider
(deploy/scale-local): one agent with `scale:` and a 40-target backlog asks for
more agents (targetsPerAgent 10, maxAgents 3) and the provider starts two,
which join and take work; once the backlog drains, the scaler retires agents
down to minAgents 1: each retired one drains first (no new targets), then the
provider stops it and it leaves gracefully. Nothing is lost: every target
succeeds exactly once. Agents started by the provider are killed by pid at the
end whatever happens."""

import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import wait_until  # noqa: E402

N_TARGETS = 40
SCALE_UP = 60.0
RUN_DEADLINE = 180.0
SCALE_LOCAL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy",
                           "scale-local")


metric = harness.metric


class ScaleTest(harness.AgentTestCase):
    def provider_pids(self):
        pids = {}
        root = self.state
        for name in (os.listdir(root) if os.path.isdir(root) else []):
            try:
                with open(os.path.join(root, name, "pid")) as f:
                    pids[name] = int(f.read())
            except (OSError, ValueError):
                pass
        return pids

    def kill_provider_agents(self):
        for pid in self.provider_pids().values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    @staticmethod
    def running(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(") ", 1)[1][0] != "Z"
        except OSError:
            return False

    def test_backlog_grows_then_shrinks_the_fleet(self):
        harness.write_consumer_catalog(self.cluster, N_TARGETS)
        trace = self.cluster.path("trace.log")
        plan = self.cluster.write("plan.yaml", f"""apiVersion: gaggle/v1
kind: MigrationPlan
metadata: {{name: scale-demo}}
spec:
  catalog: ./catalog/catalog-info.yaml
  dataset: {{from: resource:default/user-ds-v1, to: resource:default/user-ds-v2}}
  vars: {{trace: {json.dumps(trace)}}}
  steps:
    - name: work
      run: "sleep 0.5; echo {{{{target.name}}}} >> {{{{vars.trace}}}}"
""")
        self.state = self.cluster.path("scale")
        self.addCleanup(self.kill_provider_agents)
        bind = harness.free_port()
        scaled_cfg = self.cluster.path("scaled.yaml")
        run = " ".join([
            sys.executable, SCALE_LOCAL, "--dir", self.state,
            "--join", f"tcp://127.0.0.1:{bind}",
            "--operators", self.cluster.operators_dir,
            "--sign-with", self.cluster.operator.key, "--config", scaled_cfg,
            "--gaggled", harness.GAGGLED, "--gaggle", harness.GAGGLE,
            "--profile", "test", "--workers", "2"])
        cfg = f"""scale:
  run: {json.dumps(run)}
  targetsPerAgent: 10
  minAgents: 1
  maxAgents: 3
  cooldown: 2s
"""
        # The provider's agents are elastic: the scaler may retire them; n1 is not.
        self.cluster.write("scaled.yaml", cfg + "  elastic: true\n")
        n1 = self.cluster.start_agent("n1", args=["--workers", "2"], config=cfg, bind_port=bind)

        env = {"GAGGLE_KEY": self.cluster.operator.key}
        code, out, err = harness.gaggle("--addr", n1.http_addr, "plan", "apply", plan, env=env)
        self.assertEqual(code, 0, err)
        plan_id = out.strip()

        def members():
            return n1.get_json("/v1/members")["members"]

        # Scale up: the backlog of 40 wants 3 agents (capped by maxAgents).
        wait_until(lambda: sum(m["state"] == "alive" for m in members()) == 3, SCALE_UP,
                   "the provider's agents to join (3 alive)")
        self.assertEqual(len(self.provider_pids()), 2, self.provider_pids())
        wait_until(lambda: metric(n1, "gaggle_scale_calls_total", 'result="ok"') >= 1,
                   SCALE_UP, "n1 to count its provider call")

        # The run ends with every target done exactly once.
        wait_until(lambda: n1.get_json(f"/v1/plans/{plan_id}")["state"] == "completed",
                   RUN_DEADLINE, "the plan to complete")
        counts = n1.get_json(f"/v1/plans/{plan_id}")["counts"]
        self.assertEqual(counts.get("succeeded"), N_TARGETS, counts)
        with open(trace) as f:
            done = f.read().split()
        self.assertEqual(len(done), N_TARGETS)
        self.assertEqual(len(set(done)), N_TARGETS)
        # Agents the provider started took part.
        holders = {t["node"] for t in n1.get_json(
            f"/v1/plans/{plan_id}/targets?limit=100")["targets"]}
        self.assertTrue(holders & set(self.provider_pids()), holders)

        # Scale down to minAgents: n1 alone; both agents the provider started
        # drained, were stopped and left gracefully; n1 (not elastic) stays.
        def scaled_down():
            ms = {m["name"]: m for m in members()}
            if ms["n1"]["state"] != "alive" or ms["n1"]["draining"]:
                return False
            for name, pid in self.provider_pids().items():
                if self.running(pid) or ms.get(name, {}).get("state") != "left":
                    return False
            return True
        wait_until(scaled_down, RUN_DEADLINE, "the fleet to scale down to n1 alone")
        ms = {m["name"]: m for m in members()}
        for name in self.provider_pids():
            self.assertTrue(ms[name]["retiring"], ms[name])
        self.assertFalse(ms["n1"]["retiring"])
        # Nothing ran twice while agents came and went.
        with open(trace) as f:
            self.assertEqual(len(f.read().split()), N_TARGETS)


if __name__ == "__main__":
    harness.main()
