#!/bin/sh
# run-fuzz.sh: builds every libFuzzer target (tests/fuzz/fuzz_*.c) with clang
# in its own build directory and runs each one for a bounded time, seeded from
# tests/fuzz/corpus/<name> when that exists (<name> without its "fuzz_"
# prefix: fuzz_wire reads tests/fuzz/corpus/wire). Exits non-zero on the first crash,
# leak, timeout or sanitizer report; the failing input is left in
# <build>/artifacts/. The seed corpus is only read: new inputs go to
# <build>/corpus/<name>.
#
# Usage: tests/fuzz/run-fuzz.sh [seconds-per-target]   (default 30)
# Environment: GAGGLE_FUZZ_BUILD overrides the build directory
# (default <repo>/build-fuzz).
set -eu

seconds=${1:-30}
case $seconds in
'' | *[!0-9]*)
    echo "run-fuzz.sh: seconds must be a whole number, got '$seconds'" >&2
    exit 2
    ;;
esac

repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${GAGGLE_FUZZ_BUILD:-$repo/build-fuzz}

CC=clang cmake -S "$repo" -B "$build" -DGAGGLE_FUZZ=ON >/dev/null

targets=
for src in "$repo"/tests/fuzz/fuzz_*.c; do
    [ -e "$src" ] || continue
    targets="$targets $(basename "$src" .c)"
done
if [ -z "$targets" ]; then
    echo "run-fuzz.sh: no fuzz targets in $repo/tests/fuzz" >&2
    exit 2
fi

# shellcheck disable=SC2086 # word splitting of the target list is intended
cmake --build "$build" -j2 --target $targets

mkdir -p "$build/artifacts"
status=0
for name in $targets; do
    work="$build/corpus/$name"
    mkdir -p "$work"
    seeds=
    if [ -d "$repo/tests/fuzz/corpus/${name#fuzz_}" ]; then
        seeds="$repo/tests/fuzz/corpus/${name#fuzz_}"
    fi
    echo "== $name: ${seconds}s"
    # shellcheck disable=SC2086 # $seeds is empty or one directory
    if ! "$build/fuzz/$name" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$build/artifacts/$name-" "$work" $seeds; then
        echo "== $name: FAILED (inputs in $build/artifacts/)" >&2
        status=1
        break
    fi
    echo "== $name: ok"
done
exit $status
