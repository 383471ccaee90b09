#!/bin/sh
# The README's first command: install what is missing, build, draw digits
# from the pretrained model that ships with the library, fetch MNIST (or
# fall back to the 1,000-image slice in tests/data when offline), train the
# fast preset for a few minutes, evaluate it, and say where everything is.
# Environment: DATA_DIR (default data/mnist), OUT_DIR (default out),
# EPOCHS (epochs of the fast preset, default 1: 4 to 7 minutes on 2 cores;
# the preset itself trains 3).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
data=${DATA_DIR:-$root/data/mnist}
out=${OUT_DIR:-$root/out}
epochs=${EPOCHS:-1}
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start )) s"; }

sh "$root/cmake/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCD_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)"
mkdir -p "$out"
cli=$build/examples/colddiff

# Digits first: the pretrained model (DDIM, 50 steps) needs no data. It is
# class-conditional, so the grid has a row per digit; guidance 2 trades some
# variety for cleaner strokes (docs/conditional.md).
"$cli" sample --guidance 2 --out "$out/pretrained.png"
echo "quickstart: 80 digits from the pretrained model in $out/pretrained.png ($(elapsed) in)"

if ! sh "$root/cmake/fetch-mnist.sh" "$data"; then
  echo "quickstart: MNIST could not be fetched; using the 1,000-image slice in tests/data"
  data=$root/tests/data
fi
"$cli" grid --data "$data" --split train --seed 42 --n 64 --cols 8 --out "$out/digits.png"

# The fast preset: a small UNet that predicts v, made to learn quickly on a
# CPU (docs/fast-preset.md). --resume continues, or finds complete, an
# earlier run; another EPOCHS is another run, in its own folder.
run=$out/run
[ "$epochs" = 1 ] || run=$out/run-$epochs
"$cli" train --preset fast --data "$data" --out "$run" --epochs "$epochs" --resume
n=1000
[ "$data" = "$root/tests/data" ] && n=100 # the slice's test split is small
"$cli" eval --checkpoint "$run/best.cdm" --data "$data" --n 100 --fd-samples "$n" \
  --json "$out/metrics.json" | tee "$out/metrics.txt"
cp "$(ls "$run"/samples_epoch*.png | tail -n 1)" "$out/samples.png"
restore=$(ls "$run"/restore_epoch*.png | tail -n 1)
echo "quickstart: done in $(elapsed)."
echo "  pretrained model's digits: $out/pretrained.png"
echo "  real digits:               $out/digits.png"
echo "  your model's samples:      $out/samples.png (the model: $run/best.cdm)"
echo "  restorations, loss curve:  $restore, $run/loss.svg"
echo "  metrics:                   $out/metrics.txt and $out/metrics.json"
