#!/usr/bin/env python3
"""Progress convergence, gaggle beside Serf's user events, on this machine.

gaggle: --agents agents (default 3, `--profile lan`) run a plan of --targets
targets (default 300) whose `run` step sleeps a short pseudo-random time
(0 to --max-delay seconds, from --seed) and then writes the wall-clock time it
finished to a file, so completions spread out over the run. Meanwhile one
thread per agent polls GET /v1/plans/ID/targets?state=succeeded every
--interval seconds (default 20 ms: the measurement resolution) and notes when
each target first shows as succeeded there. A target's convergence time is
from the end of its step on its holder (the stamp the step wrote, taken before
the holder records the result, so it also counts the holder's own reaping and
recording) until it is visible as succeeded on every other agent (the poll
answer that first shows it, an upper bound).

The side-by-side figure uses the same two ends on both systems: from the item
being visible on its origin to it being visible on every other member. gaggle:
from the answer of the holder's poll that first lists the target as succeeded
to that of the last other agent (the same resolution at both ends). Serf (the
baseline; Serf has no task progress): a cluster of as many members (`serf
agent` defaults) with a user-event handler that writes the wall-clock time it
ran; the same number of events (`serf event -coalesce=false`, spaced like the
completions) sent on the first member; from the handler having run there to it
having run on every other member (the handler's start-up cost is on both ends).
The time from starting `serf event` is printed too (it includes the CLI's ~40 ms).

Prints p50, p99 and max of each, then as the last lines the ratio of gaggle's
p99 to the 1 s goal and the ratios gaggle/Serf (origin -> every other member).

Usage: tools/bench/convergence.py [--agents 3] [--targets 300] [--interval 0.02]
                                  [--max-delay 2] [--seed 1] [--skip-serf]
Uses GAGGLE_BIN (default build-demo/bin, a Release build) and Debian's serf.
"""

import argparse
import http.client
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, HERE)
os.environ.setdefault("GAGGLE_BIN", os.path.join(ROOT, "build-demo", "bin"))
import harness  # noqa: E402
from failure_detection import distinct_port_pairs  # noqa: E402
from throughput import apply, start  # noqa: E402

RUN_DEADLINE = 300.0  # the whole plan, or all events, must be done within this
SERF_SENDERS_MAX = 8  # `serf event` processes running at once, so sends keep to time


def percentile(values, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def summary(values):
    return percentile(values, 50), percentile(values, 99), max(values)


# ---- gaggle ----

def write_catalog(cluster, n, max_delay, seed):
    rng = random.Random(seed)
    parts = ["""apiVersion: backstage.io/v1alpha1
kind: Resource
metadata: {name: user-ds-v1}
spec: {type: database, owner: group:default/data-platform}
"""]
    for i in range(n):
        delay = rng.uniform(0.0, max_delay)
        parts.append("apiVersion: backstage.io/v1alpha1\nkind: Component\n"
                     f"metadata: {{name: c-{i:05d}, annotations: {{bench/delay: '{delay:.3f}'}}}}\n"
                     "spec: {type: service, lifecycle: production, owner: group:default/t, "
                     "dependsOn: [resource:default/user-ds-v1]}\n")
    return cluster.write("catalog/catalog-info.yaml", "---\n".join(parts))


def write_plan(cluster, stamps):
    # The stamp file's path is ours (not a catalog value); the step appends one
    # short line, which O_APPEND keeps whole.
    run = ("sleep {{target.annotations.bench/delay}} && "
           f"echo \"$GAGGLE_TARGET $(date +%s.%N)\" >> {stamps}")
    return cluster.write("convergence.yaml", f"""apiVersion: gaggle/v1
kind: MigrationPlan
metadata: {{name: convergence}}
spec:
  catalog: ./catalog/catalog-info.yaml
  dataset: {{from: resource:default/user-ds-v1, to: resource:default/user-ds-v2}}
  steps:
    - name: work
      run: {json.dumps(run)}
""")


class Poller(threading.Thread):
    """Polls one agent's succeeded targets every `interval` s; notes, per ref,
    the wall-clock time of the first answer listing it and its holder."""

    def __init__(self, agent, plan_id, total, interval):
        super().__init__(daemon=True)
        self.agent = agent
        self.path = f"/v1/plans/{plan_id}/targets?state=succeeded&limit=10000"
        self.total = total
        self.interval = interval
        self.first = {}   # ref -> wall-clock time of the answer that first listed it
        self.holder = {}  # ref -> node name
        self.gaps = []    # time between consecutive answers
        self.errors = 0
        self.stop = False

    def s_get(self, conn):
        """One GET on the kept-alive connection: (status, body); (0, b"") on error."""
        try:
            conn.request("GET", self.path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()  # reconnects on the next request
            return 0, b""

    def run(self):
        last_answer = None
        conn = http.client.HTTPConnection("127.0.0.1", self.agent.http_port, timeout=5.0)
        while not self.stop and len(self.first) < self.total:
            t_req = time.monotonic()
            status, body = self.s_get(conn)
            now_wall, now_mono = time.time(), time.monotonic()
            if status == 404:
                pass  # the plan has not reached this agent yet
            elif status == 200:
                for t in json.loads(body)["targets"]:
                    if t["ref"] not in self.first:
                        self.first[t["ref"]] = now_wall
                        self.holder[t["ref"]] = t["node"]
                if last_answer is not None:
                    self.gaps.append(now_mono - last_answer)
                last_answer = now_mono
            else:
                self.errors += 1
            rest = t_req + self.interval - time.monotonic()
            if rest > 0:
                time.sleep(rest)  # the polling period itself, not a wait for state
        conn.close()


def read_stamps(path):
    stamps = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    stamps.setdefault(parts[0], float(parts[1]))
    except FileNotFoundError:
        pass
    return stamps


def gaggle_convergence(n_agents, n_targets, interval, max_delay, seed):
    with harness.Cluster(prefix="gaggle-bench-conv-") as cluster:
        stamps_path = cluster.path("stamps.txt")
        write_catalog(cluster, n_targets, max_delay, seed)
        plan = write_plan(cluster, stamps_path)
        agents = start(cluster, n_agents, workers=8)
        plan_id = apply(agents[0], plan, cluster)
        pollers = [Poller(a, plan_id, n_targets, interval) for a in agents]
        for p in pollers:
            p.start()
        try:
            harness.wait_until(lambda: all(len(p.first) == n_targets for p in pollers),
                               RUN_DEADLINE, "every target succeeded on every agent",
                               interval=0.1)
        finally:
            for p in pollers:
                p.stop = True
            for p in pollers:
                p.join()
        stamps = read_stamps(stamps_path)
        if len(stamps) != n_targets:
            # One stamp per target (a step run twice would stamp twice: the
            # first is kept); a missing one means the plan did not run as meant.
            raise SystemExit(f"{len(stamps)} step stamps for {n_targets} targets")
        by_name = {p.agent.name: p for p in pollers}
        from_step, from_holder, local = [], [], []
        for ref, t_step in stamps.items():
            holder = pollers[0].holder.get(ref)
            if holder not in by_name:
                raise SystemExit(f"target {ref}: holder {holder!r} is not one of the agents")
            others = [p.first[ref] for p in pollers if p.agent.name != holder]
            t_holder = by_name[holder].first[ref]
            from_step.append(max(others) - t_step)
            from_holder.append(max(others) - t_holder)
            local.append(t_holder - t_step)
        gaps = [g for p in pollers for g in p.gaps]
        return {"from_step": from_step, "from_holder": from_holder, "local": local,
                "period_mean": sum(gaps) / len(gaps), "period_p99": percentile(gaps, 99),
                "errors": sum(p.errors for p in pollers),
                "spread": max(stamps.values()) - min(stamps.values())}


# ---- Serf ----

def s_members(rpc_port):
    """`serf members` of the member whose RPC port is given, or None."""
    out = subprocess.run(["serf", "members", f"-rpc-addr=127.0.0.1:{rpc_port}", "-format=json"],
                         capture_output=True, text=True, timeout=10)
    return json.loads(out.stdout)["members"] if out.returncode == 0 else None


def s_reap_sender(proc):
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise SystemExit("serf event did not return in 10 s")
    if proc.returncode != 0:
        raise SystemExit(f"serf event failed: {err.decode(errors='replace').strip()}")


def serf_propagation(n_members, n_events, spacing, seed):
    tmp = tempfile.mkdtemp(prefix="serf-bench-conv-")
    stamps = os.path.join(tmp, "stamps.txt")
    handler = os.path.join(tmp, "handler.sh")
    with open(handler, "w") as f:
        # Serf runs handlers one at a time: this one forks nothing (bash's
        # EPOCHREALTIME), so a queue of handlers does not pass for propagation.
        f.write("#!/bin/bash\n"
                "# One line per user event: member, event name, wall-clock time.\n"
                f"echo \"$SERF_SELF_NAME $SERF_USER_EVENT $EPOCHREALTIME\" >> {stamps}\n")
    os.chmod(handler, 0o755)
    procs = []
    senders = []  # `serf event` processes not yet reaped, oldest first
    try:
        ports = distinct_port_pairs(n_members)
        for i, (bind, rpc) in enumerate(ports):
            argv = ["serf", "agent", f"-node=s{i}", f"-bind=127.0.0.1:{bind}",
                    f"-rpc-addr=127.0.0.1:{rpc}", "-log-level=warn",
                    f"-event-handler=user={handler}"]
            if i:
                argv.append(f"-join=127.0.0.1:{ports[0][0]}")
            log = open(os.path.join(tmp, f"s{i}.log"), "w")
            procs.append(subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True))
            log.close()
            if i == 0:
                # The others join through the first: it must be listening (a
                # failed -join makes serf exit).
                harness.wait_until(lambda: s_members(ports[0][1]) is not None, 30,
                                   "the first serf member to answer")

        def formed():
            for _, rpc in ports:
                members = s_members(rpc)
                if members is None or sum(m["status"] == "alive" for m in members) != n_members:
                    return False
            return True
        harness.wait_until(formed, 60, "serf to form")
        rng = random.Random(seed)
        sent = {}  # event name -> wall-clock time just before `serf event` started
        due = time.monotonic()
        for e in range(n_events):
            # Send times spread like the completions: each event is due a random
            # 0 to 2*spacing after the previous one was due (the CLI's own time
            # counts against that pause).
            rest = due - time.monotonic()
            if rest > 0:
                time.sleep(rest)  # spacing the events, not a wait for state
            due += rng.uniform(0.0, 2 * spacing)
            name = f"bench{e:05d}"
            while len(senders) >= SERF_SENDERS_MAX:
                s_reap_sender(senders.pop(0))
            sent[name] = time.time()
            senders.append(subprocess.Popen(
                ["serf", "event", f"-rpc-addr=127.0.0.1:{ports[0][1]}", "-coalesce=false", name],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        while senders:
            s_reap_sender(senders.pop(0))

        def handled():
            seen = {}
            with open(stamps) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 3:
                        seen.setdefault(parts[1], {}).setdefault(parts[0], float(parts[2]))
            done = all(len(seen.get(n, {})) == n_members for n in sent)
            return seen if done else None
        seen = harness.wait_until(handled, RUN_DEADLINE, "every event handled on every member",
                                  interval=0.1)
        from_send, from_origin = [], []
        for name, t0 in sent.items():
            others = [t for member, t in seen[name].items() if member != "s0"]
            from_send.append(max(others) - t0)
            from_origin.append(max(others) - seen[name]["s0"])
        return {"from_send": from_send, "from_origin": from_origin,
                "spread": max(sent.values()) - min(sent.values())}
    finally:
        for p in senders + procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def ms(s):
    return f"{s * 1000:.0f} ms"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=3)
    ap.add_argument("--targets", type=int, default=300)
    ap.add_argument("--interval", type=float, default=0.02,
                    help="polling period in seconds (the resolution), at most 0.02")
    ap.add_argument("--max-delay", type=float, default=2.0,
                    help="longest sleep of a target's step, in seconds")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-serf", action="store_true")
    args = ap.parse_args()
    if not 0 < args.interval <= 0.02:
        raise SystemExit("--interval must be in (0, 0.02]: it is the measurement resolution")

    print(f"load average before the run: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)",
          flush=True)
    g = gaggle_convergence(args.agents, args.targets, args.interval, args.max_delay, args.seed)
    gp50, gp99, gmax = summary(g["from_step"])
    hp50, hp99, hmax = summary(g["from_holder"])
    lp50, lp99, lmax = summary(g["local"])
    print(f"gaggle: {args.targets} targets completed over {g['spread']:.1f} s on {args.agents} "
          f"agents (lan); polling every {ms(args.interval)} (measured period: mean "
          f"{g['period_mean'] * 1000:.1f} ms, p99 {g['period_p99'] * 1000:.1f} ms; "
          f"{g['errors']} failed polls)")
    print(f"gaggle: step end -> succeeded on its holder's API: p50 {ms(lp50)}, p99 {ms(lp99)}, "
          f"max {ms(lmax)}", flush=True)

    s = None
    if not args.skip_serf and shutil.which("serf"):
        spacing = g["spread"] / max(1, args.targets)
        for _ in range(3):
            try:
                s = serf_propagation(args.agents, args.targets, spacing, args.seed)
                break
            except harness.WaitTimeout as e:
                # Serf also binds UDP on its port, which free_port() cannot vouch for.
                print(f"serf did not form or deliver ({e}); starting it again", flush=True)
        else:
            raise SystemExit("serf never delivered every event")
        fp50, fp99, fmax = summary(s["from_send"])
        print(f"serf: {args.targets} user events sent over {s['spread']:.1f} s to {args.agents} "
              f"members; `serf event` started -> handler ran on every other member: "
              f"p50 {ms(fp50)}, p99 {ms(fp99)}, max {ms(fmax)} (the CLI and the origin's own "
              f"processing included)")

    print(f"gaggle progress convergence, step end -> succeeded on every other agent "
          f"(resolution {ms(args.interval)}): p50 {ms(gp50)}, p99 {ms(gp99)}, max {ms(gmax)}")
    print(f"gaggle succeeded on the holder's API -> on every other agent's: p50 {ms(hp50)}, "
          f"p99 {ms(hp99)}, max {ms(hmax)}")
    if s:
        op50, op99, omax = summary(s["from_origin"])
        print(f"serf   handler ran on the origin -> on every other member: p50 {ms(op50)}, "
              f"p99 {ms(op99)}, max {ms(omax)}")
    print(f"ratio gaggle p99 / 1 s goal: {gp99 / 1.0:.2f}")
    if s:
        print(f"ratio gaggle/serf (origin -> every other member): p50 {hp50 / op50:.2f}, "
              f"p99 {hp99 / op99:.2f}")

if __name__ == "__main__":
    main()
