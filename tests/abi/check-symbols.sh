#!/bin/sh
# Usage: check-symbols.sh LIBRARY HEADER [SOURCE_DIR]
# The shared library must export only cd_ symbols, and exactly the functions
# the headers declare with CD_API (so the version script and the headers
# agree): HEADER (include/colddiff.h) and colddiff_experimental.h beside it,
# whose calls are exported too, only outside the ABI promise.
# With SOURCE_DIR, it must also hold no path into the source tree (data
# files are found beside the library, debug paths are relative).
set -eu
lib=$1
header=$2
src=${3:-}
fail=0

all=$(nm -D --defined-only "$lib" | awk '{print $NF}' | sed 's/@.*//' |
  grep -vE '^(_init|_fini|_edata|_end|__bss_start)$' | sort -u)
exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' |
  sed 's/@.*//' | grep -vE '^(_init|_fini|_edata|_end|__bss_start)$' | sort -u)
experimental=$(dirname "$header")/colddiff_experimental.h
if [ ! -f "$experimental" ]; then
  echo "no $experimental beside $header"; exit 1
fi
# The CD_API functions a header declares, one name a line.
declarations() {
  grep -v '^ *#' "$1" | tr '\n' ' ' | grep -oE 'CD_API [^;{]*\(' |
    sed -E 's/\($//; s/.*[ *]//' | sort -u
}
stable=$(declarations "$header")
unstable=$(declarations "$experimental")
both=$(printf '%s\n' "$stable" | while read -r s; do
  [ -n "$s" ] && printf '%s\n' "$unstable" | grep -qx "$s" && echo "$s"; done || true)
if [ -n "$both" ]; then
  echo "declared in both $header and $experimental:"; echo "$both"; fail=1
fi
declared=$(printf '%s\n%s\n' "$stable" "$unstable" | grep -v '^$' | sort -u)

leaked=$(printf '%s\n' "$all" | grep -v '^cd_' || true)
if [ -n "$leaked" ]; then
  echo "exported symbols without the cd_ prefix:"; echo "$leaked"; fail=1
fi
internal=$(printf '%s\n' "$exported" | grep '^cd__' || true)
if [ -n "$internal" ]; then
  echo "internal cd__ symbols are exported:"; echo "$internal"; fail=1
fi
missing=$(printf '%s\n' "$declared" | while read -r s; do
  printf '%s\n' "$exported" | grep -qx "$s" || echo "$s"; done)
if [ -n "$missing" ]; then
  echo "declared with CD_API but not exported (add them to the version script):"
  echo "$missing"; fail=1
fi
extra=$(printf '%s\n' "$exported" | while read -r s; do
  printf '%s\n' "$declared" | grep -qx "$s" || echo "$s"; done)
if [ -n "$extra" ]; then
  echo "exported but not declared in the header:"; echo "$extra"; fail=1
fi
versioned=$(nm -D --defined-only "$lib" | grep -c '@@cd_[0-9]' || true)
if [ "$versioned" -eq 0 ]; then
  echo "no symbol carries a cd_<release> version node"; fail=1
fi
soname=$(objdump -p "$lib" | awk '$1 == "SONAME" {print $2}')
case $soname in
  libcolddiff.so.0) ;;
  *) echo "SONAME is '$soname', expected libcolddiff.so.0"; fail=1 ;;
esac
if [ -n "$src" ] && strings "$lib" | grep -qF "$src"; then
  echo "the library holds paths into the source tree $src:"
  strings "$lib" | grep -F "$src" | head -5; fail=1
fi

n=$(printf '%s\n' "$exported" | wc -l)
n_exp=$(printf '%s\n' "$unstable" | grep -c . || true)
[ "$fail" -eq 0 ] &&
  echo "abi: $n exported symbols ($n_exp experimental), all cd_, all declared, SONAME $soname"
exit "$fail"
