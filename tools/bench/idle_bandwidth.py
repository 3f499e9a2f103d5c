#!/usr/bin/env python3
"""Idle gossip bandwidth per node, gaggle beside Serf, on this machine.

An idle cluster of --nodes members (default 8) of each, at their LAN defaults, on
loopback. After it has formed and settled, count the bytes each member sends to
its peers over --seconds (default 30): gaggle from its own counter
gaggle_gossip_bytes_total{dir="out"} (message payloads); Serf from memberlist's
statsd counters memberlist.udp.sent + memberlist.tcp.sent (message payloads),
received on a local UDP socket. Prints bytes/s per node for each and the ratio.

Usage: tools/bench/idle_bandwidth.py [--nodes 8] [--seconds 30]
Uses GAGGLE_BIN (default build-demo/bin) and Debian's serf.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
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
from throughput import start  # noqa: E402

SETTLE = 10.0


def sent_bytes(agent):
    _, _, body = agent.get("/metrics")
    for line in body.decode().splitlines():
        if line.startswith('gaggle_gossip_bytes_total{dir="out"}'):
            return float(line.split()[-1])
    return 0.0


def gaggle_idle(n, seconds):
    with harness.Cluster(prefix="gaggle-bench-bw-") as cluster:
        agents = start(cluster, n)
        time.sleep(SETTLE)  # a settling period before the measured window, not a wait for state
        before = [sent_bytes(a) for a in agents]
        time.sleep(seconds)  # the measured window itself
        after = [sent_bytes(a) for a in agents]
        return sum(a - b for a, b in zip(after, before)) / n / seconds


class Statsd(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.counting = False
        self.total = 0.0
        self.stop = False
        self.pattern = re.compile(r"memberlist\.(udp|tcp)\.sent:([0-9.]+)\|c")

    def run(self):
        while not self.stop:
            try:
                data = self.sock.recv(65536).decode(errors="replace")
            except socket.timeout:
                continue
            if self.counting:
                for m in self.pattern.finditer(data):
                    self.total += float(m.group(2))


def serf_idle(n, seconds):
    tmp = tempfile.mkdtemp(prefix="serf-bench-bw-")
    stats = Statsd()
    stats.start()
    cfg = os.path.join(tmp, "serf.json")
    with open(cfg, "w") as f:
        json.dump({"statsd_addr": f"127.0.0.1:{stats.port}"}, f)
    procs = []
    try:
        ports = distinct_port_pairs(n)
        for i, (bind, rpc) in enumerate(ports):
            argv = ["serf", "agent", f"-node=s{i}", f"-bind=127.0.0.1:{bind}",
                    f"-rpc-addr=127.0.0.1:{rpc}", "-log-level=warn", f"-config-file={cfg}"]
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

        def formed():
            out = subprocess.run(["serf", "members", f"-rpc-addr=127.0.0.1:{ports[0][1]}",
                                  "-format=json"], capture_output=True, text=True, timeout=10)
            return out.returncode == 0 and sum(
                m["status"] == "alive" for m in json.loads(out.stdout)["members"]) == n
        harness.wait_until(formed, 60, "serf to form")
        time.sleep(SETTLE)  # a settling period before the measured window
        stats.counting = True
        time.sleep(seconds)  # the measured window itself
        stats.counting = False
        return stats.total / n / seconds
    finally:
        stats.stop = True
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    g = gaggle_idle(args.nodes, args.seconds)
    print(f"gaggle idle gossip, {args.nodes} agents, lan: {g:.0f} bytes/s sent per node", flush=True)
    for _ in range(3):
        try:
            s = serf_idle(args.nodes, args.seconds)
            break
        except harness.WaitTimeout as e:
            # Serf also binds UDP on its port, which free_port() cannot vouch for.
            print(f"serf did not form ({e}); starting it again", flush=True)
    else:
        raise SystemExit("serf never formed a cluster")
    print(f"serf   idle gossip, {args.nodes} agents, lan: {s:.0f} bytes/s sent per node", flush=True)
    print(f"ratio gaggle/serf: {g / s:.2f}")


if __name__ == "__main__":
    main()
