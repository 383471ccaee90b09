#!/bin/sh
# Usage: run.sh BUILD_DIR CONSUMER_SRC_DIR CMAKE CC [EXAMPLE_C DATA_DIR PYTHON]
# Installs the build into a temporary prefix, then builds and runs a tiny
# consumer once through pkg-config and once through find_package(colddiff);
# with the optional arguments also the complete C example (built with the
# README's rpath flag and run without LD_LIBRARY_PATH), the installed
# colddiff command, and the installed Python binding from a clean
# environment.
set -eu
build=$1
src=$2
cmake=$3
cc=$4
example=${5:-}
data=${6:-}
python=${7:-}
work=$(mktemp -d "${TMPDIR:-/tmp}/colddiff-install-XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log"
libdir=$(dirname "$(find "$prefix" -name 'libcolddiff.so.0' | head -n 1)")
[ -f "$prefix/include/colddiff.h" ] || { echo "header not installed"; exit 1; }
[ -f "$prefix/include/colddiff_experimental.h" ] || { echo "colddiff_experimental.h not installed"; exit 1; }
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

# libcolddiff-mpi, when the build has it (CD_TEST_MPI=1 from CMake): the
# header, colddiff-mpi.pc, and a consumer through find_package(colddiff
# COMPONENTS mpi), run as a single rank.
if [ "${CD_TEST_MPI:-0}" = 1 ]; then
  echo "== libcolddiff-mpi"
  [ -f "$libdir/libcolddiff-mpi.so.0" ] || { echo "libcolddiff-mpi not installed"; exit 1; }
  [ -f "$prefix/include/colddiff_mpi.h" ] || { echo "colddiff_mpi.h not installed"; exit 1; }
  pkg-config --exists colddiff-mpi || { echo "colddiff-mpi.pc not usable"; exit 1; }
  "$cmake" -S "$src/consumer_mpi" -B "$work/mbuild" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_COMPILER="$cc" >"$work/mconfigure.log" || { cat "$work/mconfigure.log"; exit 1; }
  "$cmake" --build "$work/mbuild" >"$work/mbuild.log" || { cat "$work/mbuild.log"; exit 1; }
  run "$work/mbuild/consumer_mpi"
fi
[ -n "$example" ] || exit 0
unset LD_LIBRARY_PATH

echo "== examples/c through pkg-config, with the README's rpath"
libdir_pc=$(pkg-config --variable=libdir colddiff)
# shellcheck disable=SC2046 # word splitting of the flags is intended
"$cc" -std=c99 -Wall -Wextra -Werror -o "$work/example" "$example" \
  $(pkg-config --cflags --libs colddiff) -Wl,-rpath,"$libdir_pc"
mkdir -p "$work/ex"
run "$work/example" "$data" "$work/ex" 1 >"$work/ex.log" 2>&1 || { cat "$work/ex.log"; exit 1; }
[ -s "$work/ex/samples.png" ] || { echo "the example wrote no samples"; exit 1; }

echo "== the installed colddiff command, without LD_LIBRARY_PATH"
run "$prefix/bin/colddiff" --version >"$work/v.txt" 2>&1 ||
  run "$prefix/bin/colddiff" --help >"$work/v.txt" 2>&1 || { cat "$work/v.txt"; exit 1; }
run "$prefix/bin/colddiff" sample --checkpoint "$work/ex/model.cdm" --n 4 --out "$work/s.png" \
  >/dev/null 2>"$work/s.err" || { cat "$work/s.err"; exit 1; }
[ -f "$prefix/share/colddiff/mnist-diffusion.cdm" ] || { echo "the pretrained model is not installed"; exit 1; }
# Without --checkpoint: the pretrained model that ships with the library.
run env -u COLDDIFF_MODEL "$prefix/bin/colddiff" sample --n 4 --steps 5 --out "$work/p.png" \
  >/dev/null 2>"$work/p.err" || { cat "$work/p.err"; exit 1; }
[ -s "$work/p.png" ] || { echo "sample without --checkpoint wrote nothing"; exit 1; }

echo "== the installed Python binding, from a clean environment"
pydir=$(dirname "$(find "$prefix" -name colddiff.py | head -n 1)")
[ -f "$pydir/colddiff-library.txt" ] || { echo "colddiff-library.txt not installed"; exit 1; }
if [ -n "$python" ] && [ -z "${CD_TEST_PRELOAD:-}" ]; then
  loaded=$(cd "$work" && env -i PATH=/usr/bin:/bin PYTHONPATH="$pydir" "$python" -c \
    'import colddiff; print(colddiff.load_library()._name)') || exit 1
  case $loaded in
    "$prefix"/*) ;;
    *) echo "the installed binding loaded $loaded, not the installed library"; exit 1 ;;
  esac
  echo "loaded $loaded"

  echo "== a moved installation finds its own data files"
  # The moved tree's model is swapped for the example's, so only a lookup
  # beside the running library (not the configured prefix, not the source
  # tree) can return it.
  moved=$work/moved
  mv "$prefix" "$moved"
  cp "$work/ex/model.cdm" "$moved/share/colddiff/mnist-diffusion.cdm"
  pydir_m=$moved${pydir#"$prefix"}
  got=$(cd "$work" && env -i PATH=/usr/bin:/bin PYTHONPATH="$pydir_m" "$python" -c '
import sys, colddiff
d, _ = colddiff.load_model()
e, _ = colddiff.load_model(sys.argv[1])
print(d.param_count, e.param_count, colddiff.Classifier.load_default().feature_dim)
' "$work/ex/model.cdm") || exit 1
  set -- $got
  [ "$1" = "$2" ] || { echo "the moved install loaded another model ($1 parameters, want $2)"; exit 1; }
  env -i PATH=/usr/bin:/bin "$moved/bin/colddiff" sample --n 2 --out "$work/m.png" \
    >/dev/null 2>"$work/m.err" || { cat "$work/m.err"; exit 1; }
  mv "$moved" "$prefix"
fi
echo "install: the example, the command and the binding ran from the prefix"
