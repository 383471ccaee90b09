#!/bin/sh
# The README's test command: install what is missing, build with warnings as
# errors, run the whole suite. Extra arguments go to CMake's configure step,
# e.g. `sh tests/run.sh -DCD_SANITIZE=ON` (CI's second pass).
# Environment: BUILD_DIR (default build), JOBS (default: all cores).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

sh "$root/cmake/install-deps.sh"
cmake -S "$root" -B "$build" -DCD_WERROR=ON -DCD_BUILD_TESTS=ON "$@"
cmake --build "$build" -j "$jobs"
cd "$build"
ctest --output-on-failure -j "$jobs"
