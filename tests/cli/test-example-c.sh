#!/bin/sh
# Usage: test-example-c.sh PROGRAM DATA_DIR
# examples/c/train_and_sample.c runs end to end on the MNIST slice: it
# trains an epoch, exports model.cdm and writes a grid of 16 samples.
set -u
work=$(mktemp -d "${TMPDIR:-/tmp}/colddiff-example-XXXXXX")
trap 'rm -rf "$work"' EXIT
"$1" "$2" "$work" 1 >"$work/out.txt" 2>&1 || { cat "$work/out.txt"; exit 1; }
grep -q "^wrote 16 samples to " "$work/out.txt" || { cat "$work/out.txt"; exit 1; }
[ -s "$work/model.cdm" ] && [ -s "$work/samples.png" ] || { echo "missing output"; exit 1; }
# A PNG of 8 x 2 cells of 28 pixels with 2-pixel borders: 242 x 62.
be32() { od -An -tu1 -j "$2" -N4 "$1" | awk '{ print (($1 * 256 + $2) * 256 + $3) * 256 + $4 }'; }
[ "$(be32 "$work/samples.png" 16)" -eq 242 ] && [ "$(be32 "$work/samples.png" 20)" -eq 62 ] ||
  { echo "the grid is not 8 x 2 cells"; exit 1; }
echo "example_c: passed"
