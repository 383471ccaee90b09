#!/bin/sh
# run_train_bench.sh - `colddiff train` end to end against the network part
# of its step, in one run.
#
#   tests/bench/run_train_bench.sh --data MNIST_DIR [--rounds R] [--images N]
#       [--threads T] [--model cnn|unet|both]
#
# For each decoder, alternates R rounds (default 3) of
#   - bench_decoder --workload train at batch 128: forward and backward of
#     the network alone, as PyTorch's side of docs/performance.md times it,
#     repeated as many times as the epoch below has steps;
#   - colddiff train --preset ddpm-cnn-good / cold-blur-unet at batch 128,
#     one epoch of the first N training images (default 2560, 20 steps):
#     the data, the degradation, the loss, Adam, the EMA, and a validation
#     batch of 128 images, as a user's run pays them.
# and prints a markdown table: images/s of each, and their ratios. The
# epoch's seconds count its validation batch too; its sample grid and
# restorations come after its time is taken, and are kept to a few images
# so that the rounds stay short.
#
# Two ratios, because these machines run a short burst faster than a
# stretch of minutes (a UNet step's time spreads by 40% and more within
# one run of a hundred steps):
#   - the epoch against the step's best time over all rounds (a burst);
#   - the epoch against the median step of its own round, timed over as
#     many steps as the epoch that follows it: the same work for the same
#     length of time, so what is left is what training adds. Each round's
#     ratio is printed, then their median.
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

# images/s of the network's step at batch 128 over as many steps as an
# epoch, from the JSON line: its best time and its median ("best median").
steps=$(((images + 127) / 128))
step_rate() { # model
    "$bench" --model "$1" --workload train --batch 128 --threads "$threads" \
        --reps "$steps" --warmup 2 --json |
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
median() { tr ' ' '\n' | awk 'NF' | sort -n | awk '{ v[NR] = $1 }
    END { printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

cpu=$(LC_ALL=C lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); CPU: ${cpu:-unknown}; $threads thread(s)"
echo "- $rounds alternating rounds; colddiff train: 1 epoch of $images images at batch 128;"
echo "  the network's step timed $steps times per round"
echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| decoder | network step img/s, best (median) | colddiff train img/s | train / best step | train / its round's median step |"
echo "|---|---:|---:|---:|---:|"
for m in cnn unet; do
    [ "$model" = both ] || [ "$model" = "$m" ] || continue
    bests= medians= trains= ratios= r=1
    while [ "$r" -le "$rounds" ]; do
        echo "$m: round $r/$rounds" >&2
        set -- $(step_rate "$m")
        t=$(train_rate "$m")
        bests="$bests $1" medians="$medians $2" trains="$trains $t"
        ratios="$ratios $(awk -v t="$t" -v m="$2" 'BEGIN { printf "%.2f", t / m }')"
        r=$((r + 1))
    done
    s=$(echo "$bests" | best)
    md=$(echo "$medians" | best)
    t=$(echo "$trains" | best)
    echo "| $m | $s ($md) | $t | $(awk -v t="$t" -v s="$s" 'BEGIN { printf "%.2f", t / s }') |$ratios (median $(echo "$ratios" | median)) |"
    echo "  ($m rounds: step$bests; step medians$medians; train$trains)" >&2
done
echo
echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
