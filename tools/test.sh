#!/bin/sh
# Installs the dependencies, builds gaggle with ASan+UBSan and runs every test:
# unit and integration tests through ctest, then a short libFuzzer run of each
# fuzz target. Usage: tools/test.sh [ctest args...]
set -eu
cd "$(dirname "$0")/.."

./tools/install-deps.sh

BUILD=${GAGGLE_TEST_BUILD:-build-test}
cmake -S . -B "$BUILD" -DGAGGLE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$BUILD" -j"$(nproc)"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

ctest --test-dir "$BUILD" --output-on-failure -j2 -L unit "$@"
ctest --test-dir "$BUILD" --output-on-failure -L integration "$@"
ctest --test-dir "$BUILD" --output-on-failure -L sim "$@"
if [ -x tests/fuzz/run-fuzz.sh ]; then
    tests/fuzz/run-fuzz.sh "${GAGGLE_FUZZ_SECONDS:-20}"
fi
