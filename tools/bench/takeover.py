#!/usr/bin/env python3
"""Takeover time after kill -9, beside failure detection in the same run.

For each of --runs rounds: start --agents agents (default 5, `--profile lan`),
apply a plan of --targets targets (default 4 per agent) whose `run` step sleeps
--step-seconds (default 60, longer than any round), and wait until every target
is running in every agent's view. Every agent gets --workers equal to the
number of targets, so no target ever waits for a free worker: what is measured
is the takeover, not queueing. The victim is the agent holding the most running
targets (so it certainly holds some). Note each of its targets' epochs in its
own view, `kill -9` it, and poll every survivor every --interval seconds
(default 20 ms, the resolution) for:
  - detection: the victim listed dead in /v1/members;
  - takeover: each target the victim held listed again with a higher epoch,
    a holder other than the victim, and running (or already finished).
Detection time is kill -> dead in every survivor's view; takeover time is
kill -> every target the victim held taken over in every survivor's view.

Leases (`lan`: ttl 15 s) are live while their holder is alive or suspect and
heard from within ttl plus a margin; once a survivor lists the holder dead its
targets may be taken over at once, so takeover is expected close to detection.

Prints each run, then the medians and the ratio takeover/detection as the last
lines.

Usage: tools/bench/takeover.py [--runs 3] [--agents 5] [--targets N]
                               [--step-seconds 60] [--interval 0.02]
Uses GAGGLE_BIN (default build-demo/bin, a Release build).
"""

import argparse
import os
import signal
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, HERE)
os.environ.setdefault("GAGGLE_BIN", os.path.join(ROOT, "build-demo", "bin"))
import harness  # noqa: E402
from throughput import apply, start, write_catalog  # noqa: E402

LEASE_TTL_LAN = 15.0  # seconds, coordination/fleet.h
DEADLINE = 120.0      # a round's takeover must be seen within this after the kill
TERMINAL = {"succeeded", "skipped", "needs_review", "failed", "cancelled"}


def write_plan(cluster, seconds):
    return cluster.write("takeover.yaml", f"""apiVersion: gaggle/v1
kind: MigrationPlan
metadata: {{name: takeover}}
spec:
  catalog: ./catalog/catalog-info.yaml
  dataset: {{from: resource:default/user-ds-v1, to: resource:default/user-ds-v2}}
  steps:
    - name: work
      run: "sleep {seconds}"
""")


def targets(agent, plan_id):
    return agent.get_json(f"/v1/plans/{plan_id}/targets?limit=10000")["targets"]


class Watcher(threading.Thread):
    """Polls one survivor every `interval` s from t0 (monotonic); notes when it
    first lists the victim dead and when it first lists each held target
    taken over (ref -> seconds after t0)."""

    def __init__(self, agent, plan_id, victim, held, t0, interval):
        super().__init__(daemon=True)
        self.agent = agent
        self.plan_id = plan_id
        self.victim = victim
        self.held = held  # ref -> the victim's epoch
        self.t0 = t0
        self.interval = interval
        self.dead = None
        self.taken = {}
        self.stop = False

    def done(self):
        return self.dead is not None and len(self.taken) == len(self.held)

    def run(self):
        while not self.stop and not self.done() and time.monotonic() - self.t0 < DEADLINE:
            t_req = time.monotonic()
            try:
                if self.dead is None:
                    members = self.agent.get_json("/v1/members")["members"]
                    if any(m["name"] == self.victim and m["state"] == "dead" for m in members):
                        self.dead = time.monotonic() - self.t0
                if len(self.taken) < len(self.held):
                    for t in targets(self.agent, self.plan_id):
                        ref = t["ref"]
                        if (ref in self.held and ref not in self.taken
                                and t["epoch"] > self.held[ref] and t["node"]
                                and t["node"] != self.victim
                                and (t["state"] == "running" or t["state"] in TERMINAL)):
                            self.taken[ref] = time.monotonic() - self.t0
            except (OSError, AssertionError, ValueError):
                pass  # a slow or failed answer: poll again
            rest = t_req + self.interval - time.monotonic()
            if rest > 0:
                time.sleep(rest)  # the polling period itself, not a wait for state


def one_round(n_agents, n_targets, step_seconds, interval):
    with harness.Cluster(prefix="gaggle-bench-takeover-") as cluster:
        write_catalog(cluster, n_targets)
        plan = write_plan(cluster, step_seconds)
        agents = start(cluster, n_agents, workers=n_targets)
        plan_id = apply(agents[0], plan, cluster)

        def all_running():
            views = [targets(a, plan_id) for a in agents]
            if all(len(v) == n_targets and all(t["state"] == "running" for t in v)
                   for v in views):
                return views
            return None
        harness.wait_until(all_running, 60, "every target running in every view",
                           interval=0.1)
        # The victim: the agent holding the most running targets, in its own view.
        held_by = {}
        for a in agents:
            held_by[a.name] = {t["ref"]: t["epoch"] for t in targets(a, plan_id)
                               if t["node"] == a.name and t["state"] == "running"}
        victim = max(agents, key=lambda a: len(held_by[a.name]))
        held = held_by[victim.name]
        if not held:
            raise SystemExit("no agent holds a running target")
        survivors = [a for a in agents if a is not victim]
        victim.signal(signal.SIGKILL)
        t0 = time.monotonic()
        watchers = [Watcher(a, plan_id, victim.name, held, t0, interval) for a in survivors]
        for w in watchers:
            w.start()
        for w in watchers:
            w.join()
        if not all(w.done() for w in watchers):
            missing = {w.agent.name: sorted(set(held) - set(w.taken)) for w in watchers}
            raise SystemExit(f"not taken over everywhere within {DEADLINE:.0f} s "
                             f"(dead seen: {[w.dead for w in watchers]}; missing: {missing})")
        detection = max(w.dead for w in watchers)
        takeover = max(max(w.taken.values()) for w in watchers)
        first_takeover = min(min(w.taken.values()) for w in watchers)
        return {"victim": victim.name, "held": len(held), "detection": detection,
                "takeover": takeover, "first_takeover": first_takeover}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--agents", type=int, default=5)
    ap.add_argument("--targets", type=int, default=None,
                    help="targets in the plan (default 4 per agent)")
    ap.add_argument("--step-seconds", type=int, default=60)
    ap.add_argument("--interval", type=float, default=0.02)
    args = ap.parse_args()
    n_targets = args.targets or 4 * args.agents
    if args.agents < 2 or n_targets < args.agents:
        raise SystemExit("need at least 2 agents and as many targets as agents")
    print(f"load average before the runs: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)",
          flush=True)
    det, tko = [], []
    for r in range(args.runs):
        res = one_round(args.agents, n_targets, args.step_seconds, args.interval)
        det.append(res["detection"])
        tko.append(res["takeover"])
        print(f"run {r + 1}: killed {res['victim']} holding {res['held']} running targets; "
              f"dead everywhere {res['detection']:.2f} s, all taken over everywhere "
              f"{res['takeover']:.2f} s (first {res['first_takeover']:.2f} s), "
              f"takeover/detection {res['takeover'] / res['detection']:.2f}", flush=True)
    dm, tm = statistics.median(det), statistics.median(tko)
    print(f"median kill-9 -> dead at every survivor: {dm:.2f} s ({args.runs} runs, "
          f"{args.agents} agents, profile lan, resolution {args.interval * 1000:.0f} ms)")
    print(f"median kill-9 -> every held target running again elsewhere, at every survivor: "
          f"{tm:.2f} s (lease ttl {LEASE_TTL_LAN:.0f} s)")
    print(f"ratio takeover/detection: {tm / dm:.2f}")


if __name__ == "__main__":
    main()
