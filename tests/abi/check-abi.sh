#!/bin/sh
# Usage: check-abi.sh [--update]
# The public ABI of libcolddiff against the committed baseline
# (cmake/abi/libcolddiff.abi), with abigail-tools: a build with debug
# information is described by abidw (only what include/ makes public) and
# compared by abidiff. New functions and enum values pass; a removed
# function, a changed signature or type, or a renumbered enum value fails.
# The calls of include/colddiff_experimental.h are not checked.
# --update rewrites the baseline instead: what a release does, and what a
# change made on purpose before the first one does (say it in CHANGELOG.md).
# Environment: ABI_BUILD_DIR (default build-abi), JOBS.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${ABI_BUILD_DIR:-$root/build-abi}
baseline=$root/cmake/abi/libcolddiff.abi
for tool in abidw abidiff; do
  command -v "$tool" >/dev/null ||
    { echo "check-abi: $tool is missing (Debian: apt-get install abigail-tools)"; exit 1; }
done
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCD_BUILD_TESTS=OFF \
  -DCD_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j "${JOBS:-$(nproc 2>/dev/null || echo 2)}" --target colddiff >/dev/null
lib=$(find "$build/lib" -name 'libcolddiff.so.*.*.*' | head -n 1)
current=$build/libcolddiff.abi
abidw --headers-dir "$root/include" --drop-private-types --no-show-locs --no-corpus-path \
  --no-comp-dir-path --out-file "$current" "$lib"
if [ "${1:-}" = "--update" ]; then
  cp "$current" "$baseline"
  echo "check-abi: baseline rewritten from $lib"
  exit 0
fi
# The experimental header's calls are outside the promise: abidiff ignores
# them (one suppression per function it declares).
suppr=$build/experimental.suppr
: >"$suppr"
for name in $(sed -n 's/.*CD_API[^(]*[ *]\(cd_[a-z0-9_]*\)(.*/\1/p' "$root/include/colddiff_experimental.h"); do
  printf '[suppress_function]\n  name = %s\n\n' "$name" >>"$suppr"
done
set +e
abidiff --suppressions "$suppr" --headers-dir2 "$root/include" "$baseline" "$current" \
  >"$build/abidiff.txt" 2>&1
rc=$?
set -e
# abidiff's status is a bit field: 1 error, 2 usage, 4 a change, 8 an
# incompatible change.
if [ $((rc & 3)) -ne 0 ]; then
  cat "$build/abidiff.txt"; echo "check-abi: abidiff failed (status $rc)"; exit 1
fi
# Bit 8 marks only removed symbols; a changed signature or type sets bit 4,
# as an added function may. So the summary lines decide: anything removed
# or changed fails, additions pass.
if [ $((rc & 8)) -ne 0 ] || grep -qE '(^|, )[1-9][0-9]* (Removed|Changed)' "$build/abidiff.txt"; then
  cat "$build/abidiff.txt"
  echo "check-abi: the ABI changed incompatibly against cmake/abi/libcolddiff.abi."
  echo "  If that is intended (before 1.0, or with a new SONAME), run"
  echo "  'sh tests/abi/check-abi.sh --update' and commit the baseline."
  exit 1
fi
if [ $((rc & 4)) -ne 0 ]; then
  echo "check-abi: additions only; the ABI extends the baseline"
else
  echo "check-abi: the ABI matches the baseline"
fi
