#!/bin/sh
# Usage: run.sh BUILD_DIR CONSUMER_SRC_DIR CMAKE CC
# Installs the build into a temporary prefix, then builds and runs a tiny
# consumer once through pkg-config and once through find_package(colddiff).
set -eu
build=$1
src=$2
cmake=$3
cc=$4
work=$(mktemp -d "${TMPDIR:-/tmp}/colddiff-install-XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log"
libdir=$(dirname "$(find "$prefix" -name 'libcolddiff.so.0' | head -n 1)")
[ -f "$prefix/include/colddiff.h" ] || { echo "header not installed"; exit 1; }
[ -f "$libdir/pkgconfig/colddiff.pc" ] || { echo "colddiff.pc not installed"; exit 1; }
[ -f "$libdir/cmake/colddiff/colddiffConfig.cmake" ] || { echo "CMake package not installed"; exit 1; }

# In a sanitizer build the consumers need the ASan runtime preloaded.
run() {
  if [ -n "${CD_TEST_PRELOAD:-}" ]; then
    LD_PRELOAD=$CD_TEST_PRELOAD ASAN_OPTIONS=detect_leaks=0 "$@"
  else
    "$@"
  fi
}

echo "== pkg-config"
PKG_CONFIG_PATH=$libdir/pkgconfig
export PKG_CONFIG_PATH
# shellcheck disable=SC2046 # word splitting of the flags is intended
"$cc" -std=c99 -Wall -Wextra -pedantic -Werror -o "$work/consumer_pc" "$src/consumer/main.c" \
  $(pkg-config --cflags --libs colddiff)
LD_LIBRARY_PATH=$libdir
export LD_LIBRARY_PATH
run "$work/consumer_pc"

echo "== find_package"
"$cmake" -S "$src/consumer" -B "$work/cbuild" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_COMPILER="$cc" >"$work/configure.log" || { cat "$work/configure.log"; exit 1; }
"$cmake" --build "$work/cbuild" >"$work/build.log" || { cat "$work/build.log"; exit 1; }
# The CMake consumer carries an RPATH to the installed library.
run "$work/cbuild/consumer"
echo "install: both consumers built and ran"
