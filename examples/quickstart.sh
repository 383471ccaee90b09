#!/bin/sh
# The README's first command: install what is missing, build, fetch MNIST
# (or fall back to the 1,000-image slice in tests/data when offline) and
# write a PNG grid of real digits. It grows as training and sampling land.
# Environment: DATA_DIR (default data/mnist), OUT_DIR (default out).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
data=${DATA_DIR:-$root/data/mnist}
out=${OUT_DIR:-$root/out}

sh "$root/cmake/install-deps.sh"
cmake -S "$root" -B "$build" -DCD_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)"
mkdir -p "$out"
cli=$build/examples/colddiff

if sh "$root/cmake/fetch-mnist.sh" "$data"; then
  "$cli" grid --data "$data" --split train --seed 42 --n 64 --cols 8 --out "$out/digits.png"
else
  echo "quickstart: MNIST could not be fetched; using the 1,000-image slice in tests/data"
  "$cli" grid --images "$root/tests/data/t10k-images-idx3-ubyte.gz" \
    --labels "$root/tests/data/t10k-labels-idx1-ubyte.gz" \
    --split train --seed 42 --n 64 --cols 8 --out "$out/digits.png"
fi
echo "quickstart: done; see $out/digits.png"
