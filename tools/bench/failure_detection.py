#!/usr/bin/env python3
"""Failure detection, gaggle beside Serf, on this machine.

For each of --runs rounds: start a 5-member cluster of each system at its LAN
defaults on loopback (gaggled --profile lan; serf agent defaults), wait until
every member sees every other alive, kill -9 one member, and measure the time
until every survivor lists it dead (gaggle) or failed (Serf). Prints each run,
then the medians and the ratio gaggle/Serf as the last lines.

Usage: tools/bench/failure_detection.py [--runs 5] [--nodes 5] [--skip-serf]
Needs: a build in build/ (or GAGGLE_BIN), and Debian's serf for the baseline.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("GAGGLE_BIN", os.path.join(ROOT, "build", "bin"))
import harness  # noqa: E402

POLL = 0.05


def gaggle_round(n, profile="lan"):
    with harness.Cluster(prefix="gaggle-bench-fd-") as cluster:
        agents = []
        for i in range(n):
            args = ["--profile", profile]
            if agents:
                args += ["--join", f"tcp://127.0.0.1:{agents[0].bind_port}"]
            agents.append(cluster.start_agent(f"b{i}", args=args))
        names = {a.name for a in agents}

        def view(a):
            return {m["name"]: m["state"] for m in a.get_json("/v1/members")["members"]}
        harness.wait_until(lambda: all(set(view(a)) == names and
                                       all(s == "alive" for s in view(a).values())
                                       for a in agents), 120, "the cluster to converge")
        victim = agents[-1]
        survivors = agents[:-1]
        victim.signal(signal.SIGKILL)
        t0 = time.monotonic()
        seen = {}
        while len(seen) < len(survivors) and time.monotonic() - t0 < 120:
            for a in survivors:
                if a.name not in seen and view(a).get(victim.name) == "dead":
                    seen[a.name] = time.monotonic() - t0
            time.sleep(POLL)
        if len(seen) < len(survivors):
            raise RuntimeError("not every survivor declared the victim dead in 120 s")
        return max(seen.values()), seen


def distinct_port_pairs(n):
    """n (bind, rpc) pairs, all different: free_port() may hand out a port twice."""
    seen = set()
    while len(seen) < 2 * n:
        seen.add(harness.free_port())
    ports = sorted(seen)
    return [(ports[2 * i], ports[2 * i + 1]) for i in range(n)]


def serf_round(n):
    tmp = tempfile.mkdtemp(prefix="serf-bench-")
    procs = []
    try:
        ports = distinct_port_pairs(n)
        for i, (bind, rpc) in enumerate(ports):
            argv = ["serf", "agent", f"-node=s{i}", f"-bind=127.0.0.1:{bind}",
                    f"-rpc-addr=127.0.0.1:{rpc}", "-log-level=warn"]
            if i:
                argv.append(f"-join=127.0.0.1:{ports[0][0]}")
            log = open(os.path.join(tmp, f"s{i}.log"), "w")
            procs.append(subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True))
            if i == 0:
                # The others join through it: it must listen first (a join
                # refused makes `serf agent` exit).
                harness.wait_until(lambda: subprocess.run(
                    ["serf", "members", f"-rpc-addr=127.0.0.1:{rpc}"], capture_output=True,
                    timeout=10).returncode == 0, 30, "the first serf member to listen")

        def view(i):
            out = subprocess.run(["serf", "members", f"-rpc-addr=127.0.0.1:{ports[i][1]}",
                                  "-format=json"], capture_output=True, text=True, timeout=10)
            if out.returncode != 0:
                return {}
            return {m["name"]: m["status"] for m in json.loads(out.stdout)["members"]}
        harness.wait_until(lambda: all(len(view(i)) == n and
                                       all(s == "alive" for s in view(i).values())
                                       for i in range(n)), 120, "serf to converge")
        victim = n - 1
        procs[victim].send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        seen = {}
        while len(seen) < n - 1 and time.monotonic() - t0 < 120:
            for i in range(n - 1):
                if i not in seen and view(i).get(f"s{victim}") == "failed":
                    seen[i] = time.monotonic() - t0
            time.sleep(POLL)
        if len(seen) < n - 1:
            raise RuntimeError("not every serf survivor marked the victim failed in 120 s")
        return max(seen.values()), seen
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--skip-serf", action="store_true")
    args = ap.parse_args()
    g, s = [], []
    for r in range(args.runs):
        t, _ = gaggle_round(args.nodes)
        g.append(t)
        print(f"run {r + 1}: gaggle {t:.2f} s", flush=True)
        if not args.skip_serf and shutil.which("serf"):
            # Serf also binds UDP on its port, which free_port() cannot vouch
            # for: a round whose cluster never forms is started again.
            for tries in range(3):
                try:
                    t, _ = serf_round(args.nodes)
                    break
                except harness.WaitTimeout as e:
                    print(f"run {r + 1}: serf did not form ({e}); starting it again", flush=True)
            else:
                raise SystemExit("serf never formed a cluster")
            s.append(t)
            print(f"run {r + 1}: serf   {t:.2f} s", flush=True)
    gm = statistics.median(g)
    print(f"gaggle median kill-9 -> dead at every survivor: {gm:.2f} s ({args.runs} runs, "
          f"{args.nodes} agents, profile lan)")
    if s:
        sm = statistics.median(s)
        print(f"serf   median kill-9 -> failed at every survivor: {sm:.2f} s")
        print(f"ratio gaggle/serf: {gm / sm:.2f}")


if __name__ == "__main__":
    main()
