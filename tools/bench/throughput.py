#!/usr/bin/env python3
"""Built-in throughput and plan distribution, on this machine.

throughput: N targets (default 20,000) with the in-process `noop` step, applied on
  one agent; time from `plan apply` returning to the plan completed on every
  agent, on 1 and on 3 agents; targets/s and LMDB commits per target.
distribution: a plan of M targets (default 100,000) applied on one agent of 3;
  time until every agent holds it (and when each one did), each agent's CPU
  time from apply to then, and each agent's private memory (RSS minus shared
  file pages) with it loaded. --runs N repeats it on a new fleet each time.

Usage: tools/bench/throughput.py [--targets 20000] [--plan-targets 100000]
                                 [--only throughput|distribution] [--runs 1]
Uses GAGGLE_BIN (default build-demo/bin, a Release build: tools/demo.sh makes it).
Prints the figures and the ratios to the goals as its last lines.
"""

import argparse
import concurrent.futures
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


def wait_synced(agents):
    """Until every agent has synced (before that it claims nothing)."""
    harness.wait_until(lambda: all(metric(a, "gaggle_fleet_synced") == 1 for a in agents),
                       60, "every agent to be synced", interval=0.05)


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
        wait_synced(agents)
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


def cpu_seconds(pid):
    """User plus system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def distribution(n_targets):
    """Returns (held by all, apply time, [held per agent], [MiB per agent],
    [CPU s per agent from apply to held])."""
    with harness.Cluster(prefix="gaggle-bench-dist-") as cluster:
        write_catalog(cluster, n_targets)
        plan = write_plan(cluster, "big")
        agents = start(cluster, 3)
        # Pause nothing: the noop plan would also start running; measure holding.
        cpu0 = [cpu_seconds(a.pid) for a in agents]
        t_apply = time.monotonic()
        plan_id = apply(agents[0], plan, cluster)
        t0 = time.monotonic()
        # Each agent is asked on its own thread: an agent busy with the plan
        # answers late, and must not delay the question to the others.
        held_at = [None] * len(agents)

        def watch(k):
            def held():
                status, _, _ = agents[k].get(f"/v1/plans/{plan_id}", timeout=60.0)
                return status == 200
            harness.wait_until(held, 600, f"{agents[k].name} to hold the plan", interval=0.02)
            held_at[k] = time.monotonic() - t0
        with concurrent.futures.ThreadPoolExecutor(len(agents)) as pool:
            for f in [pool.submit(watch, k) for k in range(len(agents))]:
                f.result()
        elapsed = max(held_at)
        cpu = [cpu_seconds(a.pid) - c for a, c in zip(agents, cpu0)]
        mem = [private_mib(a.pid) for a in agents]
        return elapsed, t0 - t_apply, held_at, mem, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, default=20000)
    ap.add_argument("--plan-targets", type=int, default=100000)
    ap.add_argument("--only", choices=["throughput", "distribution"])
    ap.add_argument("--runs", type=int, default=1,
                    help="distribution: repeat the measurement on a new fleet each time")
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
        for _ in range(args.runs):
            t, apply_s, held_at, mem, cpu = distribution(args.plan_targets)
            lines.append(f"distribution: {args.plan_targets}-target plan held by all 3 agents "
                         f"{t:.2f} s after apply returned (apply itself: {apply_s:.1f} s); "
                         f"ratio to the 2 s goal: {t / 2:.2f}")
            lines.append("held per agent (s after apply returned): "
                         + ", ".join(f"{h:.2f}" for h in held_at)
                         + "; CPU per agent from apply to held: "
                         + ", ".join(f"{c:.2f} s" for c in cpu))
            lines.append("private memory (RssAnon) with it loaded: "
                         + ", ".join(f"{m:.0f} MiB" for m in mem)
                         + f"; ratio to the 64 MiB goal: {max(mem) / 64:.2f}")
            print("\n".join(lines[-3:]), flush=True)


if __name__ == "__main__":
    main()
