#!/bin/sh
# sim-ab.sh: the simulator's speed, this tree against another revision, run
# alternately so that both see the same machine (docs/SIMULATION.md).
#
# A shared machine's speed drifts by more than a 10% change between two runs
# minutes apart; pairs run back to back, the order swapped every pair, and
# the trace hash of each run printed so that a speed difference is known not
# to be a behaviour difference. Usage:
#   tools/bench/sim-ab.sh REV [PAIRS] [-- gaggle-sim options]
# e.g.
#   tools/bench/sim-ab.sh 66d5c39 2 -- --nodes 1000 --profile lan --duration 10m --targets 2000
# REV is built in a temporary worktree (Release); this tree in build-sim-o2.
# $GAGGLE_SIM_A and $GAGGLE_SIM_B, when set, are used instead of building.
set -eu

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
REV=$1
shift
PAIRS=2
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
    PAIRS=$1
    shift
fi
[ $# -gt 0 ] && [ "$1" = "--" ] && shift
case $PAIRS in
'' | *[!0-9]*) echo "sim-ab: PAIRS must be a number, not '$PAIRS'" >&2 && exit 2 ;;
esac

SRC=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d)
cleanup() {
    if [ -d "$TMP/rev" ]; then
        git -C "$SRC" worktree remove --force "$TMP/rev" >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

if [ -z "${GAGGLE_SIM_A:-}" ]; then
    BUILD=${GAGGLE_SIM_BUILD:-$SRC/build-sim-o2}
    echo "building this tree in $BUILD" >&2
    cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD" -j2 --target gaggle-sim >/dev/null
    GAGGLE_SIM_A=$BUILD/bin/gaggle-sim
fi
if [ -z "${GAGGLE_SIM_B:-}" ]; then
    echo "building $REV in a temporary worktree" >&2
    git -C "$SRC" worktree add --detach "$TMP/rev" "$REV" >/dev/null 2>&1 ||
        { echo "sim-ab: cannot check out '$REV'" >&2 && exit 1; }
    # the revision's CMakeLists may expect ../shared beside it, as this tree does
    if [ -d "$SRC/../shared" ] && [ ! -e "$TMP/shared" ]; then
        ln -s "$SRC/../shared" "$TMP/shared"
    fi
    cmake -S "$TMP/rev" -B "$TMP/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$TMP/build" -j2 --target gaggle-sim >/dev/null
    GAGGLE_SIM_B=$TMP/build/bin/gaggle-sim
fi

# one NAME BIN OPTIONS...: runs BIN, prints its wall time, speed and trace
one() {
    name=$1
    bin=$2
    shift 2
    "$bin" "$@" >"$TMP/out" 2>&1 || true
    wall=$(sed -n 's/^  wall time  *\([0-9.]*\) s.*/\1/p' "$TMP/out")
    speed=$(sed -n 's/^  simulated seconds per wall second  *\(.*\)/\1/p' "$TMP/out")
    trace=$(sed -n 's/^  trace  *\([0-9a-f]*\).*/\1/p' "$TMP/out")
    if [ -z "$wall" ]; then
        echo "sim-ab: $name printed no wall time:" >&2
        tail -n 5 "$TMP/out" >&2
        exit 1
    fi
    printf '  %-5s wall %8.3f s  speed %-22s trace %s\n' "$name" "$wall" "$speed" "$trace"
    echo "$wall $trace" >"$TMP/res.$name"
}

echo "gaggle-sim $*"
echo "this = $GAGGLE_SIM_A"
echo "rev  = $GAGGLE_SIM_B ($REV)"
differ=0
i=1
while [ "$i" -le "$PAIRS" ]; do
    echo "pair $i"
    if [ $((i % 2)) = 1 ]; then
        one this "$GAGGLE_SIM_A" "$@"
        one rev "$GAGGLE_SIM_B" "$@"
    else
        one rev "$GAGGLE_SIM_B" "$@"
        one this "$GAGGLE_SIM_A" "$@"
    fi
    read -r wa ta <"$TMP/res.this"
    read -r wb tb <"$TMP/res.rev"
    [ "$ta" = "$tb" ] || differ=1
    awk -v a="$wa" -v b="$wb" 'BEGIN { printf "  rev/this wall time: %.2fx\n", b / a }'
    i=$((i + 1))
done
if [ "$differ" = 1 ]; then
    echo "the traces differ: the two builds do not behave alike on this run"
fi
