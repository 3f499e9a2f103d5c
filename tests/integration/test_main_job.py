#!/usr/bin/env python3
"""The main job across real gaggled processes on loopback (--profile test):
a 300-target plan applied on one node runs to the end with identical counts on
every node; a node killed with SIGKILL mid-run and restarted loses nothing and
no target is ever executed by two nodes at once; bad plans change nothing."""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import wait_until  # noqa: E402

N_TARGETS = 300
CONVERGE = 30.0
RUN_DEADLINE = 180.0


def write_catalog(cluster, n):
    return harness.write_consumer_catalog(cluster, n)


def write_plan(cluster, name, run):
    return cluster.write(f"plans/{name}.yaml", f"""apiVersion: gaggle/v1
kind: MigrationPlan
metadata: {{name: {name}}}
spec:
  catalog: ../catalog/catalog-info.yaml
  dataset: {{from: resource:default/user-ds-v1, to: resource:default/user-ds-v2}}
  steps:
    - name: work
      run: {json.dumps(run)}
  retry: {{maxAttempts: 3, initialBackoff: 100ms, maxBackoff: 1s}}
""")


def metric(agent, name):
    return harness.metric(agent, name)


class MainJobTest(harness.AgentTestCase):
    def start_fleet(self, workers=4):
        agents = []
        for name in ("a", "b", "c"):
            args = ["--workers", str(workers)]
            if agents:
                args += ["--join", f"tcp://127.0.0.1:{agents[0].bind_port}"]
            agents.append(self.cluster.start_agent(name, args=args))

        def alive_everywhere():
            for a in agents:
                ms = a.get_json("/v1/members")["members"]
                if sum(m["state"] == "alive" for m in ms) != len(agents):
                    return False
            return True
        wait_until(alive_everywhere, CONVERGE, "3 agents to see 3 alive")
        return agents

    def apply(self, agent, plan_path, key=None):
        args = ["--addr", agent.http_addr, "plan", "apply", plan_path, "--json"]
        env = dict(os.environ, GAGGLE_KEY=key or self.cluster.operator.key)
        code, out, err = harness.gaggle(*args, env=env)
        return code, out, err

    def show(self, agent, plan_id):
        return agent.get_json(f"/v1/plans/{plan_id}")

    def wait_done(self, agents, plan_id, total):
        def done():
            for a in agents:
                status, _, body = a.get(f"/v1/plans/{plan_id}")
                if status != 200:
                    return False
                d = json.loads(body)
                if d["state"] != "completed" or d["total"] != total:
                    return False
            return True
        wait_until(done, RUN_DEADLINE, f"plan {plan_id[:12]} to complete on every node")

    def test_300_targets_identical_counts_everywhere(self):
        write_catalog(self.cluster, N_TARGETS)
        plan = write_plan(self.cluster, "noop-300", "true")
        agents = self.start_fleet()
        code, out, err = self.apply(agents[1], plan)
        self.assertEqual(code, 0, err)
        plan_id = json.loads(out)["id"]
        self.assertEqual(json.loads(out)["total"], N_TARGETS)
        self.wait_done(agents, plan_id, N_TARGETS)
        views = [self.show(a, plan_id)["counts"] for a in agents]
        self.assertEqual(views[0].get("succeeded"), N_TARGETS, views[0])
        self.assertEqual(views[0], views[1])
        self.assertEqual(views[0], views[2])
        # Applying the same plan again is idempotent.
        code, out, err = self.apply(agents[2], plan)
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)["id"], plan_id)
        for a in agents:
            self.assertEqual(len(a.get_json("/v1/plans")["plans"]), 1)
        # Work was spread over the fleet.
        runs = [metric(a, "gaggle_fleet_claims_total") for a in agents]
        self.assertTrue(all(r > 0 for r in runs), runs)

    def test_kill_9_mid_run_loses_nothing_and_never_runs_twice(self):
        write_catalog(self.cluster, N_TARGETS)
        trace = self.cluster.path("trace.log")
        # Each execution records its interval and the executing agent's pid.
        run = (f"echo \"$GAGGLE_TARGET $GAGGLE_EPOCH $PPID start $(date +%s.%N)\" >> {trace}; "
               f"sleep 0.1; "
               f"echo \"$GAGGLE_TARGET $GAGGLE_EPOCH $PPID end $(date +%s.%N)\" >> {trace}")
        plan = write_plan(self.cluster, "slow-300", run)
        agents = self.start_fleet(workers=4)
        code, out, err = self.apply(agents[1], plan)
        self.assertEqual(code, 0, err)
        plan_id = json.loads(out)["id"]

        def progress():
            c = self.show(agents[0], plan_id)["counts"]
            return c.get("succeeded", 0)
        wait_until(lambda: progress() >= N_TARGETS // 4, RUN_DEADLINE, "a quarter done")
        victim = agents[2]
        killed_pid = victim.pid
        victim.signal(signal.SIGKILL)
        victim.wait_exit()
        kill_time = time.time()

        # The survivors declare it dead, so its held targets are taken over.
        def dead_for_survivors():
            return all({m["name"]: m["state"] for m in a.get_json("/v1/members")["members"]}
                       .get("c") == "dead" for a in agents[:2])
        wait_until(dead_for_survivors, CONVERGE, "the survivors to declare c dead")
        back = self.cluster.start_agent(
            "c", identity=victim.identity, bind_port=victim.bind_port,
            args=["--workers", "4", "--join", f"tcp://127.0.0.1:{agents[0].bind_port}"])
        agents[2] = back
        self.wait_done(agents, plan_id, N_TARGETS)
        views = [self.show(a, plan_id)["counts"] for a in agents]
        self.assertEqual(views[0].get("succeeded"), N_TARGETS, views[0])
        self.assertEqual(views[0], views[1])
        self.assertEqual(views[0], views[2])

        # No target was executed by two agents at overlapping times.
        intervals = {}
        with open(trace) as f:
            for line in f:
                parts = line.split()
                if len(parts) != 5:
                    continue
                ref, epoch, pid, what, at = parts
                key = (ref, pid, epoch)
                iv = intervals.setdefault(ref, {}).setdefault(key, [None, None])
                iv[0 if what == "start" else 1] = float(at)
        concurrent = 0
        for ref, runs in intervals.items():
            spans = []
            for (r, pid, epoch), (start, end) in runs.items():
                if end is None:
                    # Cut short: only the killed agent's step may end without a line.
                    self.assertEqual(int(pid), killed_pid, f"{ref} ran without finishing")
                    end = kill_time
                spans.append((start, end, pid))
            for i in range(len(spans)):
                for j in range(i + 1, len(spans)):
                    a, b = spans[i], spans[j]
                    if a[2] != b[2] and a[0] < b[1] and b[0] < a[1]:
                        concurrent += 1
        self.assertEqual(len(intervals), N_TARGETS)
        self.assertEqual(concurrent, 0, "targets executed concurrently by two agents")
        self.assertEqual(sum(metric(a, "gaggle_fleet_conflicts_total") for a in agents), 0)

    def test_bad_plans_change_nothing(self):
        write_catalog(self.cluster, 5)
        plan = write_plan(self.cluster, "small", "true")
        agents = self.start_fleet()
        # Malformed: not even JSON.
        status, _, body = agents[0].request("POST", "/v1/plans", body=b"{not json")
        self.assertEqual(status, 400, body)
        self.assertIn("error", json.loads(body))
        # Unsigned: a payload without a signature.
        status, _, body = agents[0].request("POST", "/v1/plans",
                                            body=b'{"payload": {"kind": "MigrationPlan"}}')
        self.assertEqual(status, 400, body)
        # Signed by a key no agent trusts: refused with one clear line.
        rogue = self.cluster.make_operator("rogue", trusted=False)
        code, out, err = self.apply(agents[1], plan, key=rogue.key)
        self.assertEqual(code, 1)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertIn("trusted operator", err)
        # An invalid plan file never leaves the CLI.
        bad = self.cluster.write("plans/bad.yaml", "apiVersion: gaggle/v1\nkind: Nope\n")
        code, out, err = self.apply(agents[1], bad)
        self.assertNotEqual(code, 0)
        # A good plan applied afterwards is the barrier: once every node has it,
        # anything accepted before it would have replicated too.
        code, out, err = self.apply(agents[1], plan)
        self.assertEqual(code, 0, err)
        good = json.loads(out)["id"]
        wait_until(lambda: all([p["id"] for p in a.get_json("/v1/plans")["plans"]] == [good]
                               for a in agents), CONVERGE, "only the good plan everywhere")


if __name__ == "__main__":
    harness.main()
