#!/bin/sh
# Usage: run_dp_bench.sh BUILD_DIR [ROUNDS]
# One process with 2 threads against 2 ranks with 1 thread each, for the
# report's CNN and UNet at batch 128 and the fast preset at its batch of
# 32; the ranks with their default buckets (overlapping backward), small
# buckets, and one sum after backward (--bucket 0). The two layouts
# alternate, round after round, so that a noisy machine slows both alike;
# each line is the median over the rounds. docs/distributed.md shows the
# tables this prints.
set -eu
build=$1
rounds=${2:-3}
bench="$build/tests/bench_dp"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
lscpu | sed -n 's/^Model name: *//p' | sed 's/^/# CPU: /'
for spec in "cnn 128 6" "fast 32 8" "unet 128 2"; do
  set -- $spec
  dec=$1 batch=$2 steps=$3
  : >"$raw"
  r=0
  while [ $r -lt "$rounds" ]; do
    "$bench" --decoder "$dec" --batch "$batch" --steps "$steps" --rounds 1 --threads 2 \
      --buckets 0 | awk -v t="1 process x 2 threads" '!/^#/ && $1 ~ /^[0-9]/ { print t "|" $0 }' >>"$raw"
    mpirun -np 2 "$bench" --decoder "$dec" --batch "$batch" --steps "$steps" --rounds 1 \
      --threads 1 --buckets 262144,16384,0 |
      awk -v t="2 ranks x 1 thread" '!/^#/ && $1 ~ /^[0-9]/ { print t "|" $0 }' >>"$raw"
    r=$((r + 1))
  done
  echo "## $dec, global batch $batch ($rounds rounds of $steps steps; median)"
  echo "| layout | bucket | sums/step | ms/step | ms in sums (least rank) | share | ms in sums (most) | images/s |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  # Medians per (layout, bucket) over the rounds.
  python3 - "$raw" "$batch" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    layout, rest = line.rstrip("\n").split("|")
    bucket, sums, ms, comm, most = rest.split()[:5]
    rows.setdefault((layout, int(bucket)), [sums, [], [], []])
    for k, v in ((1, ms), (2, comm), (3, most)):
        rows[(layout, int(bucket))][k].append(float(v))
for (layout, bucket), (sums, ms, comm, most) in rows.items():
    m, c, w = (statistics.median(v) for v in (ms, comm, most))
    one = layout.startswith("1 ")
    print(f"| {layout} | {'-' if one else bucket} | {'-' if one else sums} | {m:.1f} | "
          f"{'-' if one else f'{c:.1f}'} | {'-' if one else f'{100 * c / m:.1f}%'} | "
          f"{'-' if one else f'{w:.1f}'} | {1000 * int(sys.argv[2]) / m:.0f} |")
PY
  echo
done
