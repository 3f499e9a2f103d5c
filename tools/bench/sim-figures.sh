#!/bin/sh
# sim-figures.sh: the simulator's benchmark figures (docs/SIMULATION.md).
#
# Builds gaggle-sim with optimisation (a Release build in build-sim-o2, or
# uses $GAGGLE_SIM), runs each measured scenario, prints every command and
# then one table of figures. All runs are deterministic: the same seed gives
# the same numbers (wall-clock speed aside). Usage:
#   tools/bench/sim-figures.sh            every figure (about 15 minutes)
#   QUICK=1 tools/bench/sim-figures.sh    fewer trials, no 50%-loss run
set -eu

SRC=$(cd "$(dirname "$0")/../.." && pwd)
QUICK=${QUICK:-0}
SEED=${SEED:-1}
if [ -z "${GAGGLE_SIM:-}" ]; then
    BUILD=${GAGGLE_SIM_BUILD:-$SRC/build-sim-o2}
    cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD" -j2 --target gaggle-sim >/dev/null
    GAGGLE_SIM=$BUILD/bin/gaggle-sim
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

if [ "$QUICK" = 1 ]; then TRIALS=3; else TRIALS=5; fi

# run NAME ARGS...: one scenario (seed $RUN_SEED), its JSON kept as $OUT/NAME.json.
RUN_SEED=$SEED
run() {
    name=$1
    shift
    echo "\$ gaggle-sim --seed $RUN_SEED $*" >&2
    if ! "$GAGGLE_SIM" --seed "$RUN_SEED" --json "$@" >"$OUT/$name.json"; then
        echo "sim-figures: $name failed (invariant violated or error):" >&2
        cat "$OUT/$name.json" >&2
        exit 1
    fi
}

# get NAME EXPR: a value from a run's JSON (EXPR in Python over `j`).
get() {
    python3 - "$OUT/$1.json" "$2" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
try:
    v = eval(sys.argv[2], {"j": j})
except (KeyError, TypeError, IndexError):
    v = None
if v is None:
    print("n/a")
elif isinstance(v, float):
    print("%.2f" % v)
else:
    print(v)
EOF
}

# Dissemination: one update to 99.99% of 1,000 nodes.
run dis0 --nodes 1000 --profile lan --duration 10m --experiment disseminate --trials $TRIALS
run dis10 --nodes 1000 --profile lan --duration 10m --experiment disseminate --trials $TRIALS --loss 0.1
run dis10g --nodes 1000 --profile lan --duration 10m --experiment disseminate --trials $TRIALS \
    --loss 0.1 --loss-on gossip
run dis50g --nodes 1000 --profile lan --duration 10m --experiment disseminate --trials $TRIALS \
    --loss 0.5 --loss-on gossip
if [ "$QUICK" != 1 ]; then
    run dis50 --nodes 1000 --profile lan --duration 10m --experiment disseminate --trials 3 \
        --loss 0.5
fi
# Crash detection.
run det100 --nodes 100 --profile lan --duration 1h --experiment detect --trials 20
run det1000 --nodes 1000 --profile lan --duration 1h --experiment detect --trials $TRIALS
# False dead declarations at 10% loss with one node 5x slow (three seeds of
# 100 node-hours each).
for s in 1 2 3; do
    RUN_SEED=$((SEED + s - 1))
    run fd$s --nodes 100 --profile lan --duration 1h --loss 0.1 --slow 1 --slow-factor 5 \
        --fleet off
done
RUN_SEED=$SEED
# Ownership: targets moved when one node joins 100 (and 1,000).
run join100 --nodes 101 --profile lan --duration 10m --experiment join --targets 10000
run join1000 --nodes 1001 --profile lan --duration 10m --experiment join --targets 10000
run joincap --nodes 101 --profile lan --duration 10m --experiment join --targets 10000 \
    --load-cap 1.15
# Speed: 1,000 nodes, lan, 10 minutes, no faults: membership alone.
run speed --nodes 1000 --profile lan --duration 10m --fleet off
# The fleet core: a plan of 2,000 targets on 100 nodes (progress convergence,
# speed), under faults on 20 nodes, and (not QUICK) on 1,000 nodes.
run fleet100 --nodes 100 --profile lan --duration 1m --targets 2000
run fleetchaos --nodes 20 --profile lan --duration 10m --targets 2000 --loss 0.05 --dup 0.01 \
    --reorder 0.05 --crash-rate 10 --slow 1 --partition 120s:240s:0.3
if [ "$QUICK" != 1 ]; then
    run fleet1000 --nodes 1000 --profile lan --duration 30s --targets 2000
    # The whole core at 1,000 nodes for 10 minutes, with lazy push (the
    # default) and beside it with records pushed to every peer.
    run fleetspeed --nodes 1000 --profile lan --duration 10m --targets 2000
    run fleetspeed0 --nodes 1000 --profile lan --duration 10m --targets 2000 --push-eager 0
    # ... and with the simulator's default plan (200 targets).
    run fleetspeed200 --nodes 1000 --profile lan --duration 10m
fi

d() { # dissemination row: NAME LABEL
    printf '  %-44s %8s %8s %8s %8s\n' "$2" "$(get "$1" 'j["experiment"]["t50"]["mean"]')" \
        "$(get "$1" 'j["experiment"]["t99"]["mean"]')" \
        "$(get "$1" 'j["experiment"]["t9999"]["mean"]')" \
        "$(get "$1" 'j["experiment"]["t9999"]["max"]')"
}
fd_sum() { # total of one stat over the three false-dead runs
    python3 - "$OUT" "$1" <<'EOF'
import json, sys
print(sum(json.load(open("%s/fd%d.json" % (sys.argv[1], s)))["stats"][sys.argv[2]]
          for s in (1, 2, 3)))
EOF
}

echo
echo "gaggle-sim figures (lan profile, seed $SEED; times in virtual seconds)"
echo
echo "Dissemination of one update, 1,000 nodes (Serf's model: ~2.2 s, ~4.4 s at 50% loss)"
printf '  %-44s %8s %8s %8s %8s\n' "" "50%" "99%" "99.99%" "max"
d dis0 "no loss"
d dis10 "10% loss, every message"
d dis10g "10% loss, gossip messages only"
d dis50g "50% loss, gossip messages only"
if [ "$QUICK" != 1 ]; then d dis50 "50% loss, every message"; fi
echo
echo "Crash detection (memberlist: ~10 s at 100 nodes, ~14 s at 1,000)"
printf '  %-44s %8s %8s %8s\n' "" "suspect" "1st dead" "all dead"
for n in 100 1000; do
    printf '  %-44s %8s %8s %8s\n' "$n nodes (mean)" \
        "$(get det$n 'j["experiment"]["first_suspect"]["mean"]')" \
        "$(get det$n 'j["experiment"]["first_dead"]["mean"]')" \
        "$(get det$n 'j["experiment"]["all_dead"]["mean"]')"
done
echo
echo "False dead declarations, 100 nodes, 10% loss, one node 5x slow (goal 0)"
printf '  %-44s %s\n' "node-hours simulated" "$(fd_sum node_hours)"
printf '  %-44s %s\n' "suspicions per observer (of slow node) / refuted" \
    "$(fd_sum suspicions) ($(fd_sum suspicions_of_slow)) / $(fd_sum refutations)"
printf '  %-44s %s\n' "false dead declarations" "$(fd_sum false_dead)"
printf '  %-44s %s\n' "false dead episodes" "$(fd_sum false_dead_episodes)"
echo
echo "Ownership (rendezvous over the live view, 10,000 targets)"
for n in 100 1000; do
    printf '  %-44s %s of %s (expected ~%s)\n' "targets moved when one node joins $n" \
        "$(get join$n 'j["experiment"]["moved"]')" "$(get join$n 'j["experiment"]["targets"]')" \
        "$(get join$n '10000 / (j["nodes"])')"
    printf '  %-44s %s / %s\n' "max/mean owned before / after ($n nodes)" \
        "$(get join$n 'j["experiment"]["max_mean_before"]')" \
        "$(get join$n 'j["experiment"]["max_mean_after"]')"
done
printf '  %-44s %s of %s / %s / %s\n' "with --load-cap 1.15: moved / max/mean before / after" \
    "$(get joincap 'j["experiment"]["moved"]')" "$(get joincap 'j["experiment"]["targets"]')" \
    "$(get joincap 'j["experiment"]["max_mean_before"]')" \
    "$(get joincap 'j["experiment"]["max_mean_after"]')"
echo
echo "Speed, 1,000 nodes, lan, 10 minutes (goal >= 10 simulated s per wall s)"
printf '  %-44s %s\n' "whole run (fleet forming included)" "$(get speed 'j["sim_s_per_wall_s"]')"
printf '  %-44s %s\n' "after the fleet formed" \
    "$(get speed 'j["sim_s_per_wall_s_after_forming"]')"
printf '  %-44s %s s\n' "fleet formed at" "$(get speed 'j["formed_s"]')"
if [ "$QUICK" != 1 ]; then
    for r in fleetspeed fleetspeed0; do
        if [ $r = fleetspeed ]; then label="with the fleet core, lazy push"; else
            label="... records pushed to every peer"; fi
        fmt='  %-44s %s (%s after forming); records per change %s; p99 %s s, max %s s\n'
        printf "$fmt" "$label" "$(get $r 'j["sim_s_per_wall_s"]')" \
            "$(get $r 'j["sim_s_per_wall_s_after_forming"]')" \
            "$(get $r 'j["fleet"]["records_in"] / j["fleet"]["records_merged"]')" \
            "$(get $r 'j["fleet"]["convergence"]["p99"]')" \
            "$(get $r 'j["fleet"]["convergence"]["max"]')"
    done
    printf '  %-44s %s (%s after forming)\n' "... the default 200-target plan" \
        "$(get fleetspeed200 'j["sim_s_per_wall_s"]')" \
        "$(get fleetspeed200 'j["sim_s_per_wall_s_after_forming"]')"
fi
echo
echo "Fleet core: a plan of 2,000 targets (4 workers per node, 10% of attempts fail)"
f() { # fleet row: NAME LABEL
    printf '  %-44s %s\n' "$2" "done $(get "$1" 'j["fleet"]["done_s"]') s after apply; \
convergence p50 $(get "$1" 'j["fleet"]["convergence"]["p50"]') s, \
p99 $(get "$1" 'j["fleet"]["convergence"]["p99"]') s; \
$(get "$1" 'j["sim_s_per_wall_s"]') sim s per wall s"
}
f fleet100 "100 nodes, no faults"
f fleetchaos "20 nodes, loss, crashes, a partition"
if [ "$QUICK" != 1 ]; then f fleet1000 "1,000 nodes, no faults"; fi
printf '  %-44s %s\n' "under faults: claims / takeovers / re-claims" \
    "$(get fleetchaos 'j["fleet"]["claims"]') / $(get fleetchaos 'j["fleet"]["takeovers"]') / \
$(get fleetchaos 'j["fleet"]["reclaims"]')"
printf '  %-44s %s\n' "same-epoch claims / concurrent runs" \
    "$(get fleetchaos 'j["fleet"]["same_epoch"]') / $(get fleetchaos 'j["fleet"]["overlaps"]') \
(all while views disagreed; a violation otherwise)"
printf '  %-44s %s\n' "fenced results discarded" "$(get fleetchaos 'j["fleet"]["fenced_results"]')"
