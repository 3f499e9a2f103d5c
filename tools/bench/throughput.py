#!/usr/bin/env python3
"""Built-in throughput and plan distribution, on this machine.

throughput: N targets (default 20,000) with the in-process `noop` step, applied on
  one agent; time from `plan apply` returning to the plan completed on every
  agent, on 1 and on 3 agents; targets/s and LMDB commits per target.
distribution: a plan of M targets (default 100,000) applied on one agent of 3;
  time until every agent holds it, and each agent's private memory (RSS minus
  shared file pages) with it loaded.

Usage: tools/bench/throughput.py [--targets 20000] [--plan-targets 100000]
                                 [--only throughput|distribution]
Uses GAGGLE_BIN (default build-demo/bin, a Release build: tools/demo.sh makes it).
Prints the figures and the ratios to the goals as its last lines.
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("GAGGLE_BIN", os.path.join(ROOT, "build-demo", "bin"))
import harness  # noqa: E402


def write_catalog(cluster, n):
    parts = ["""apiVersion: backstage.io/v1alpha1
kind: Resource
metadata: {name: user-ds-v1}
spec: {type: database, owner: group:default/data-platform}
"""]
    for i in range(n):
        parts.append("apiVersion: backstage.io/v1alpha1\nkind: Component\n"
                     f"metadata: {{name: c-{i:06d}}}\n"
                     "spec: {type: service, lifecycle: production, owner: group:default/t, "
                     "dependsOn: [resource:default/user-ds-v1]}\n")
    return cluster.write("catalog/catalog-info.yaml", "---\n".join(parts))


def write_plan(cluster, name):
    return cluster.write(f"{name}.yaml", f"""apiVersion: gaggle/v1
kind: MigrationPlan
metadata: {{name: {name}}}
spec:
  catalog: ./catalog/catalog-info.yaml
  dataset: {{from: resource:default/user-ds-v1, to: resource:default/user-ds-v2}}
  steps: [{{name: nothing, noop: {{}}}}]
""")


def start(cluster, n, profile="lan", workers=64):
    agents = []
    for i in range(n):
        args = ["--profile", profile, "--workers", str(workers)]
        if agents:
            args += ["--join", f"tcp://127.0.0.1:{agents[0].bind_port}"]
        agents.append(cluster.start_agent(f"t{i}", args=args))
    harness.wait_until(lambda: all(sum(m["state"] == "alive" for m in
                                       a.get_json("/v1/members")["members"]) == n
                                   for a in agents), 60, "the fleet to form")
    return agents


def metric(agent, name):
    _, _, body = agent.get("/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def apply(agent, plan, cluster):
    env = dict(os.environ, GAGGLE_KEY=cluster.operator.key)
    code, out, err = harness.gaggle("--addr", agent.http_addr, "plan", "apply", plan, "--json",
                                    env=env, timeout=600)
    if code != 0:
        raise SystemExit(f"apply failed: {err}")
    return json.loads(out)["id"]


def throughput(n_agents, n_targets):
    with harness.Cluster(prefix="gaggle-bench-tp-") as cluster:
        write_catalog(cluster, n_targets)
        plan = write_plan(cluster, "noop")
        agents = start(cluster, n_agents)
        # Execution, not start-up: an agent claims nothing until it has synced
        # with a peer, or, alone, waited one lease ttl (15 s with lan).
        harness.wait_until(lambda: all(metric(a, "gaggle_fleet_synced") == 1 for a in agents),
                           60, "every agent to be synced")
        commits0 = sum(metric(a, "gaggle_store_commits_total") for a in agents)
        plan_id = apply(agents[0], plan, cluster)
        t0 = time.monotonic()

        def done():
            return all(a.get_json(f"/v1/plans/{plan_id}")["state"] == "completed" for a in agents)
        harness.wait_until(done, 1800, "the plan to complete everywhere", interval=0.1)
        elapsed = time.monotonic() - t0
        commits = sum(metric(a, "gaggle_store_commits_total") for a in agents) - commits0
        counts = agents[0].get_json(f"/v1/plans/{plan_id}")["counts"]
        assert counts.get("succeeded") == n_targets, counts
        return elapsed, commits


def private_mib(pid):
    """RSS minus shared file pages: anonymous and shmem resident memory."""
    kib = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssShmem:")):
                kib += int(line.split()[1])
    return kib / 1024.0


def distribution(n_targets):
    with harness.Cluster(prefix="gaggle-bench-dist-") as cluster:
        t_cat = time.monotonic()
        write_catalog(cluster, n_targets)
        plan = write_plan(cluster, "big")
        agents = start(cluster, 3)
        # Pause nothing: the noop plan would also start running; measure holding.
        t_apply = time.monotonic()
        plan_id = apply(agents[0], plan, cluster)
        t0 = time.monotonic()

        def held():
            for a in agents:
                status, _, _ = a.get(f"/v1/plans/{plan_id}")
                if status != 200:
                    return False
            return True
        harness.wait_until(held, 600, "every agent to hold the plan", interval=0.02)
        elapsed = time.monotonic() - t0
        mem = [private_mib(a.pid) for a in agents]
        return elapsed, t0 - t_apply, mem, t_apply - t_cat


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, default=20000)
    ap.add_argument("--plan-targets", type=int, default=100000)
    ap.add_argument("--only", choices=["throughput", "distribution"])
    args = ap.parse_args()
    lines = []
    if args.only in (None, "throughput"):
        for n in (1, 3):
            t, commits = throughput(n, args.targets)
            rate = args.targets / t
            lines.append(f"throughput {n} agent(s): {args.targets} noop targets in {t:.2f} s = "
                         f"{rate:.0f} targets/s ({rate / n:.0f} per node), "
                         f"{commits / args.targets:.3f} LMDB commits per target; "
                         f"ratio to the goal of 5000/s per node: {rate / n / 5000:.2f}")
            print(lines[-1], flush=True)
    if args.only in (None, "distribution"):
        t, apply_s, mem, _ = distribution(args.plan_targets)
        lines.append(f"distribution: {args.plan_targets}-target plan held by all 3 agents "
                     f"{t:.2f} s after apply returned (apply itself: {apply_s:.1f} s); "
                     f"ratio to the 2 s goal: {t / 2:.2f}")
        lines.append("private memory (RssAnon) with it loaded: "
                     + ", ".join(f"{m:.0f} MiB" for m in mem)
                     + f"; ratio to the 64 MiB goal: {max(mem) / 64:.2f}")
        print("\n".join(lines[-2:]), flush=True)


if __name__ == "__main__":
    main()
