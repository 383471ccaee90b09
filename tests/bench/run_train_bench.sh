#!/bin/sh
# run_train_bench.sh - `colddiff train` end to end against the network part
# of its step, in one run.
#
#   tests/bench/run_train_bench.sh --data MNIST_DIR [--rounds R] [--images N]
#       [--threads T] [--model cnn|unet|both]
#
# For each decoder, alternates R rounds (default 3) of
#   - bench_decoder --workload train at batch 128: forward and backward of
#     the network alone, as PyTorch's side of docs/performance.md times it;
#   - colddiff train --preset ddpm-cnn-good / cold-blur-unet at batch 128,
#     one epoch of the first N training images (default 2560, 20 steps):
#     the data, the degradation, the loss, Adam, the EMA, and a validation
#     batch of 128 images, as a user's run pays them.
# and prints a markdown table: images/s of each (best over the rounds; the
# epoch's seconds count its validation batch too) and their ratio, against
# the step's best time and against its median. The epoch's sample grid and
# restorations come after its time is taken, and are kept to a few images
# so that the rounds stay short.
# The environment is left as it is (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build="${BUILD_DIR:-$root/build}"
bench=$build/tests/bench_decoder
cli=$build/examples/colddiff
data= rounds=3 images=2560 threads=2 model=both

usage() {
    echo "usage: $0 --data MNIST_DIR [--rounds R] [--images N] [--threads T] [--model cnn|unet|both]" >&2
    exit 2
}
count() {
    case "$1" in '' | *[!0-9]* | 0) usage ;; esac
    echo "$1"
}
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || usage
    case "$1" in
        --data) data=$2 ;;
        --rounds) rounds=$(count "$2") ;;
        --images) images=$(count "$2") ;;
        --threads) threads=$(count "$2") ;;
        --model)
            case "$2" in cnn | unet | both) ;; *) usage ;; esac
            model=$2
            ;;
        *) usage ;;
    esac
    shift 2
done
[ -n "$data" ] || usage
for f in "$bench" "$cli"; do
    [ -x "$f" ] || { echo "run_train_bench: $f not found; build first (or set BUILD_DIR)" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/train-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT HUP INT TERM

# images/s of the network's step at batch 128, from the JSON line: its
# best time and its median ("best median").
step_rate() { # model
    "$bench" --model "$1" --workload train --batch 128 --threads "$threads" \
        --reps 5 --warmup 2 --json |
        sed -n 's/.*"best_ms": *\([0-9.]*\).*"median_ms": *\([0-9.]*\).*/\1 \2/p' |
        awk '{ printf "%.1f %.1f", 128000 / $1, 128000 / $2 }'
}

# images/s of one epoch of `colddiff train`, from its losses.csv.
train_rate() { # model
    if [ "$1" = cnn ]; then
        set -- --preset ddpm-cnn-good --grid-sampler ddim --grid-steps 2
    else
        set -- --preset cold-blur-unet --grid-sampler direct
    fi
    rm -rf "$work/run"
    "$cli" train "$@" --data "$data" --out "$work/run" --epochs 1 --batch 128 \
        --train-limit "$images" --val-limit 128 --n-samples 1 --restore-times 1 \
        --threads "$threads" >"$work/log" 2>&1 ||
        { echo "run_train_bench: colddiff train failed:" >&2; tail -n 5 "$work/log" >&2; exit 1; }
    tail -n 1 "$work/run/losses.csv" | cut -d, -f5
}

best() { tr ' ' '\n' | awk 'NF && $1 > b { b = $1 } END { printf "%.1f", b }'; }

cpu=$(LC_ALL=C lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); CPU: ${cpu:-unknown}; $threads thread(s)"
echo "- $rounds alternating rounds; colddiff train: 1 epoch of $images images at batch 128"
echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| decoder | network step img/s, best (median) | colddiff train img/s | train / step best (median) |"
echo "|---|---:|---:|---:|"
for m in cnn unet; do
    [ "$model" = both ] || [ "$model" = "$m" ] || continue
    steps= medians= trains= r=1
    while [ "$r" -le "$rounds" ]; do
        echo "$m: round $r/$rounds" >&2
        set -- $(step_rate "$m")
        steps="$steps $1" medians="$medians $2"
        trains="$trains $(train_rate "$m")"
        r=$((r + 1))
    done
    # Best over the rounds of each: the rounds that ran on the quietest
    # machine. A step's median is the fairer yardstick for an epoch, which
    # averages all of its steps.
    s=$(echo "$steps" | best)
    md=$(echo "$medians" | best)
    t=$(echo "$trains" | best)
    echo "| $m | $s ($md) | $t | $(awk -v t="$t" -v s="$s" -v m="$md" \
        'BEGIN { printf "%.2f (%.2f)", t / s, t / m }') |"
    echo "  ($m rounds: step$steps; step medians$medians; train$trains)" >&2
done
echo
echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
