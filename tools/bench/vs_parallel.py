#!/usr/bin/env python3
"""Execution overhead beside GNU parallel, on this machine.

The same N targets (default 2,000), the same trivial `run` step (a shell that
writes the target's name to /dev/null) and the same concurrency (-j / --workers,
default 8): GNU parallel over the list of names, then one gaggle agent, then
three (each with the same --workers). gaggle's time runs from `gaggle plan
apply` (catalog resolution and signing included) to the plan completed on every
agent, once every agent has synced: a freshly started agent claims nothing until
it has synced with a peer or, alone, waited one lease ttl (15 s with `lan`), a
start-up cost printed on its own. Prints the times and the ratios
gaggle/parallel as its last lines.

Usage: tools/bench/vs_parallel.py [--targets 2000] [-j 8]
Needs Debian's `parallel` (GNU parallel). Uses GAGGLE_BIN (default build-demo/bin).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, HERE)
os.environ.setdefault("GAGGLE_BIN", os.path.join(ROOT, "build-demo", "bin"))
import harness  # noqa: E402
from throughput import start, wait_synced, write_catalog  # noqa: E402

STEP = "echo {{target.name}} > /dev/null"


def gnu_parallel(names, jobs):
    t0 = time.monotonic()
    proc = subprocess.run(["parallel", "--will-cite", "-j", str(jobs), "echo {} > /dev/null"],
                          input="\n".join(names) + "\n", text=True, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"parallel failed: {proc.stderr.strip()}")
    return time.monotonic() - t0


def gaggle_run(n_agents, n_targets, jobs):
    with harness.Cluster(prefix="gaggle-bench-par-") as cluster:
        write_catalog(cluster, n_targets)
        plan = cluster.write("plan.yaml", f"""apiVersion: gaggle/v1
kind: MigrationPlan
metadata: {{name: trivial}}
spec:
  catalog: ./catalog/catalog-info.yaml
  dataset: {{from: resource:default/user-ds-v1, to: resource:default/user-ds-v2}}
  steps: [{{name: trivial, run: {json.dumps(STEP)}}}]
""")
        t_start = time.monotonic()
        agents = start(cluster, n_agents, workers=jobs)
        wait_synced(agents)
        print(f"gaggle, {n_agents} agent(s): started and synced in "
              f"{time.monotonic() - t_start:.2f} s (not counted)", flush=True)
        env = dict(os.environ, GAGGLE_KEY=cluster.operator.key)
        t0 = time.monotonic()
        code, out, err = harness.gaggle("--addr", agents[0].http_addr, "plan", "apply", plan,
                                        "--json", env=env, timeout=600)
        if code != 0:
            raise SystemExit(f"apply failed: {err}")
        plan_id = json.loads(out)["id"]
        harness.wait_until(lambda: all(a.get_json(f"/v1/plans/{plan_id}")["state"] == "completed"
                                       for a in agents), 1800, "completion", interval=0.05)
        elapsed = time.monotonic() - t0
        counts = agents[0].get_json(f"/v1/plans/{plan_id}")["counts"]
        assert counts.get("succeeded") == n_targets, counts
        return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, default=2000)
    ap.add_argument("-j", "--jobs", type=int, default=8)
    args = ap.parse_args()
    if not shutil.which("parallel"):
        raise SystemExit("GNU parallel is needed: apt-get install parallel")
    names = [f"c-{i:06d}" for i in range(args.targets)]
    tp = gnu_parallel(names, args.jobs)
    print(f"GNU parallel -j{args.jobs}: {args.targets} runs in {tp:.2f} s", flush=True)
    g1 = gaggle_run(1, args.targets, args.jobs)
    print(f"gaggle, 1 agent, --workers {args.jobs}: {g1:.2f} s", flush=True)
    g3 = gaggle_run(3, args.targets, args.jobs)
    print(f"gaggle, 3 agents, --workers {args.jobs} each: {g3:.2f} s", flush=True)
    print(f"ratio gaggle(1 agent)/parallel: {g1 / tp:.2f} (goal <= 1.10)")
    print(f"ratio gaggle(3 agents)/parallel: {g3 / tp:.2f}")


if __name__ == "__main__":
    main()
