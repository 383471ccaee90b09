#!/bin/sh
# The README's first command: install what is missing, build, fetch MNIST
# (or fall back to the 1,000-image slice in tests/data when offline), train
# the report's cold-diffusion blur UNet for a few minutes, and write a sample
# grid, restorations, a loss curve and a metrics file.
# Environment: DATA_DIR (default data/mnist), OUT_DIR (default out),
# TRAIN_IMAGES (images per epoch, default 4000; three epochs take about 3
# minutes of training on 2 cores).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
data=${DATA_DIR:-$root/data/mnist}
out=${OUT_DIR:-$root/out}
images=${TRAIN_IMAGES:-4000}

sh "$root/cmake/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCD_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)"
mkdir -p "$out"
cli=$build/examples/colddiff

if ! sh "$root/cmake/fetch-mnist.sh" "$data"; then
  echo "quickstart: MNIST could not be fetched; using the 1,000-image slice in tests/data"
  data=$root/tests/data
fi
"$cli" grid --data "$data" --split train --seed 42 --n 64 --cols 8 --out "$out/digits.png"

# The blur UNet gives digit-like samples soonest: a deterministic degradation
# learns faster than noise, and its prior is a constant grey level.
# --resume continues (or finds complete) an earlier run; another
# TRAIN_IMAGES is another run, in its own folder.
run=$out/run
[ "$images" = 4000 ] || run=$out/run-$images
"$cli" train --preset cold-blur-unet --data "$data" --out "$run" --epochs 3 \
  --train-limit "$images" --val-fraction 0.02 --n-samples 64 --sample-epochs 3 --resume
"$cli" eval --checkpoint "$run/best.cdm" --data "$data" --n 100 --fd-samples 100 \
  --json "$out/metrics.json" | tee "$out/metrics.txt"
cp "$run/samples_epoch003.png" "$out/samples.png"
echo "quickstart: done. Real digits: $out/digits.png; samples: $out/samples.png;"
echo "  restorations: $run/restore_epoch003.png; loss curve: $run/loss.svg;"
echo "  metrics: $out/metrics.txt and $out/metrics.json"
