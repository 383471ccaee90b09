#!/bin/sh
# Usage: test-grid.sh COLDDIFF DATA_DIR
# The colddiff grid command on the tests/data slice: a PNG of the right size,
# and one-line errors with non-zero exits for bad input.
set -u
cli=$1
data=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/colddiff-cli-XXXXXX")
trap 'rm -rf "$work"' EXIT
pass=0
fail=0
check() { # description, then a command that must succeed
  desc=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $desc"; fail=$((fail + 1)); fi
}
be32() { od -An -tu1 -j "$2" -N4 "$1" | awk '{print $1*16777216 + $2*65536 + $3*256 + $4}'; }

"$cli" grid --images "$data/t10k-images-idx3-ubyte.gz" --labels "$data/t10k-labels-idx1-ubyte.gz" \
  --n 10 --cols 4 --out "$work/g.png" >"$work/out.txt" 2>&1
check "grid exits 0" [ $? -eq 0 ]
check "grid writes a PNG signature" [ "$(od -An -tx1 -N8 "$work/g.png" | tr -d ' \n')" = 89504e470d0a1a0a ]
# 4 columns x 3 rows of 28x28 tiles with a 2-pixel border: 4*30+2 by 3*30+2.
check "grid width is 122" [ "$(be32 "$work/g.png" 16)" -eq 122 ]
check "grid height is 92" [ "$(be32 "$work/g.png" 20)" -eq 92 ]
check "grid reports what it wrote" grep -q "wrote 10 images" "$work/out.txt"

"$cli" grid --images "$work/missing.gz" --labels "$work/missing.gz" --out "$work/x.png" 2>"$work/err.txt"
check "missing file exits 1" [ $? -eq 1 ]
check "missing file error names it" grep -q "missing.gz" "$work/err.txt"
check "error is one line" [ "$(wc -l <"$work/err.txt")" -eq 1 ]
"$cli" grid --images a --labels b --n 0 --out "$work/x.png" 2>/dev/null
check "out-of-range --n exits 2" [ $? -eq 2 ]
"$cli" grid --bogus 1 2>/dev/null
check "unknown flag exits 2" [ $? -eq 2 ]
"$cli" frobnicate 2>/dev/null
check "unknown command exits 2" [ $? -eq 2 ]
check "no output left behind by failures" [ ! -e "$work/x.png" ]
"$cli" grid --help >/dev/null
check "--help exits 0" [ $? -eq 0 ]

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
