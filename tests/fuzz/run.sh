#!/bin/sh
# Build the libFuzzer targets with clang and fuzz each one for a bounded
# time over a copy of its seed corpus (the committed corpus is never
# written). Fails on any crash, leak, timeout, out-of-memory or sanitizer
# report, and prints how to reproduce it. docs/fuzzing.md has the details.
#
# Environment: FUZZ_SECONDS (per target, default 60), FUZZ_BUILD_DIR
# (default build-fuzz in the source tree), FUZZ_TARGETS (default
# "idx png ckpt cli"), JOBS (build parallelism, default: all cores).
# Extra arguments go to every fuzzer, after the defaults.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-idx png ckpt cli}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

# clang and its runtime (libFuzzer, the sanitizers), as install-deps.sh
# installs the rest: only when missing, with sudo when not root.
fuzzer_links() {
  probe=$(mktemp -d)
  printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)%s\n' \
    '{ (void)d; (void)n; return 0; }' >"$probe/p.c"
  ok=0
  clang -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" >/dev/null 2>&1 || ok=1
  rm -rf "$probe"
  return $ok
}
sh "$root/cmake/install-deps.sh"
if ! command -v clang >/dev/null 2>&1 || ! fuzzer_links; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "fuzz: clang with libFuzzer is missing; install clang and its runtime" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "fuzz: installing clang libclang-rt-14-dev"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    clang libclang-rt-14-dev >/dev/null
  fuzzer_links || { echo "fuzz: clang still cannot link -fsanitize=fuzzer" >&2; exit 1; }
fi

CC=clang cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCD_FUZZ=ON \
  -DCD_BUILD_TESTS=ON -DCD_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$jobs" --target cd_fuzzers
# Every seed once first: a harness or corpus that broke fails here, plainly.
(cd "$build" && ctest -L fuzz --output-on-failure)

work=$build/fuzz-run
rm -rf "$work"
failed=""
for t in $targets; do
  exe=$build/tests/fuzz/fuzz_$t
  [ -x "$exe" ] || { echo "fuzz: $exe was not built" >&2; exit 1; }
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  cp "$root/tests/fuzz/corpus/$t/"* "$work/$t/corpus/"
  quiet=""
  [ "$t" = cli ] && quiet="-close_fd_mask=3" # the parser's usage and help text
  echo "fuzz: $t for ${seconds} s"
  # An allocation above 2 GB or an input slower than 10 s is a failure:
  # no honest input of a few kilobytes needs either.
  rc=0
  # shellcheck disable=SC2086 # $quiet is one flag or nothing
  # Leaks count; an impossible allocation is a report, never a NULL to cope with.
  ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1:allocator_may_return_null=0" \
  UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1" "$exe" -max_total_time="$seconds" \
    -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -dict="$root/tests/fuzz/$t.dict" -artifact_prefix="$work/$t/artifacts/" $quiet "$@" \
    "$work/$t/corpus" >"$work/$t/log" 2>&1 || rc=$?
  { grep "cov:" "$work/$t/log" | tail -n 1; grep -E "^(stat::|Done)" "$work/$t/log"; } |
    sed "s/^/fuzz: $t: /" || true
  found=$(ls -A "$work/$t/artifacts")
  if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
    failed="$failed $t"
    echo "fuzz: $t FAILED (exit $rc); the end of its log ($work/$t/log):" >&2
    tail -n 40 "$work/$t/log" >&2
    for a in "$work/$t/artifacts"/*; do
      if [ -f "$a" ]; then echo "fuzz: reproduce with: $exe $quiet $a" >&2; fi
    done
  fi
done
if [ -n "$failed" ]; then
  echo "fuzz: failures in:$failed" >&2
  exit 1
fi
echo "fuzz: no failures in: $targets"
